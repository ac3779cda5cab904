package reports

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The Prometheus families the report charts (sut/ metrics).
const (
	consumerLagFamily = "ledger_worker_consumer_lag_records"
	batchRecordsSum   = "ledger_worker_batch_records_sum"
	batchRecordsCount = "ledger_worker_batch_records_count"
	// workerCommandsFamily counts a worker's records by result; its
	// result="duplicate" series the records whose key already had an
	// effect (dropped, or set aside as a key collision).
	workerCommandsFamily = "ledger_worker_commands_total"
	duplicateLabel       = `result="duplicate"`
)

// metricsLine is one scrape of one target (docs/run-directory.md).
type metricsLine struct {
	Time   time.Time          `json:"time"`
	Target string             `json:"target"`
	Up     bool               `json:"up"`
	Values map[string]float64 `json:"values"`
}

// batchCounters are a worker's batch counters at its previous scrape.
type batchCounters struct{ sum, count float64 }

// metricsSecond is one wall-clock second of scrapes.
type metricsSecond struct {
	// lag is each worker's consumer lag (summed over its partitions) at
	// its last scrape in the second.
	lag map[string]float64
	// batchRecords and batches are the increase of the batch size
	// histogram's sum and count over the workers during the second.
	batchRecords, batches float64
	down                  map[string]bool
}

// metricsStats is what the report keeps of metrics.jsonl: per-second
// figures, not the scrapes.
type metricsStats struct {
	scrapes, invalid int64
	seconds          map[int64]*metricsSecond
	previous         map[string]batchCounters
	targets          map[string]bool
	hasLag, hasBatch bool
	// duplicates is the increase of the workers' duplicate counters over
	// the scrapes (a restarted worker's counter restarts from zero: its
	// increase is then its value); previousDuplicates each target's last
	// value; hasDuplicates says a worker reported the counter.
	duplicates         int64
	previousDuplicates map[string]float64
	hasDuplicates      bool
}

// readMetrics streams metrics.jsonl; nil when the run did not record it.
func readMetrics(dir string) (*metricsStats, error) {
	stats := &metricsStats{seconds: map[int64]*metricsSecond{}, previous: map[string]batchCounters{}, targets: map[string]bool{},
		previousDuplicates: map[string]float64{}}
	invalid, err := eachLine(filepath.Join(dir, MetricsFile), stats.add)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	stats.invalid = invalid
	return stats, nil
}

func (s *metricsStats) add(raw []byte) error {
	var line metricsLine
	if err := json.Unmarshal(raw, &line); err != nil {
		return err
	}
	if line.Time.IsZero() || line.Target == "" {
		return errors.New("no time or target")
	}
	s.scrapes++
	s.targets[line.Target] = true
	key := floorDiv(line.Time.UnixMicro(), 1_000_000)
	second := s.seconds[key]
	if second == nil {
		second = &metricsSecond{}
		s.seconds[key] = second
	}
	if !line.Up {
		if second.down == nil {
			second.down = map[string]bool{}
		}
		second.down[line.Target] = true
		return nil
	}

	lag, hasLag := 0.0, false
	var sum, count, duplicates float64
	hasSum, hasCount, hasDuplicates := false, false, false
	for name, value := range line.Values {
		if math.IsNaN(value) || math.IsInf(value, 0) {
			continue
		}
		family, _, _ := strings.Cut(name, "{")
		switch family {
		case consumerLagFamily:
			lag += value
			hasLag = true
		case batchRecordsSum:
			sum += value
			hasSum = true
		case batchRecordsCount:
			count += value
			hasCount = true
		case workerCommandsFamily:
			if strings.Contains(name, duplicateLabel) {
				duplicates += value
				hasDuplicates = true
			}
		}
	}
	if hasDuplicates {
		// The increase since the target's previous scrape; its first
		// scrape is the baseline (duplicates before the run are not the
		// run's).
		s.hasDuplicates = true
		if previous, ok := s.previousDuplicates[line.Target]; ok {
			delta := duplicates - previous
			if delta < 0 {
				delta = duplicates
			}
			s.duplicates += int64(math.Round(delta))
		}
		s.previousDuplicates[line.Target] = duplicates
	}
	if hasLag {
		s.hasLag = true
		if second.lag == nil {
			second.lag = map[string]float64{}
		}
		second.lag[line.Target] = lag
	}
	if hasSum && hasCount {
		s.hasBatch = true
		if previous, ok := s.previous[line.Target]; ok {
			// A restarted worker starts its counters from zero again: its
			// increase is then everything it counted since.
			deltaSum, deltaCount := sum-previous.sum, count-previous.count
			if deltaSum < 0 || deltaCount < 0 {
				deltaSum, deltaCount = sum, count
			}
			second.batchRecords += deltaSum
			second.batches += deltaCount
		}
		s.previous[line.Target] = batchCounters{sum, count}
	}
	return nil
}

// sortedSeconds returns the seconds in order.
func (s *metricsStats) sortedSeconds() []int64 {
	keys := make([]int64, 0, len(s.seconds))
	for key := range s.seconds {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
