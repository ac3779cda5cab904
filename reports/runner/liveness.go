package runner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// stackStallProbe asks a local stack why it did not drain: for every worker
// and gateway, whether its process runs, the partitions a worker reports
// lagging (ledger_worker_consumer_lag_records) and how long they have not
// advanced (ledger_worker_partition_stalled_seconds), and the last error
// line of its log. Components with nothing to say are left out.
func stackStallProbe(dir string) invariants.StallProbe {
	return func(ctx context.Context) ([]invariants.Stall, error) {
		file, err := stack.Load(dir)
		if err != nil {
			return nil, err
		}
		var stalls []invariants.Stall
		var problems []string
		for _, component := range file.Components {
			if component.Kind != stack.KindWorker && component.Kind != stack.KindGateway {
				continue
			}
			alive := component.Alive()
			stall := invariants.Stall{Component: component.Name, State: component.Status()}
			if !alive && component.State == stack.StateFailed {
				// A start that did not see it ready (it died first, or
				// was killed by the start's own timeout): dead either way.
				stall.State = "dead (its last start failed)"
			}
			if component.Kind == stack.KindWorker && alive {
				lag, stalled, err := workerProgress(ctx, component.Endpoint)
				if err != nil {
					problems = append(problems, component.Name+": "+err.Error())
				}
				for partition, records := range lag {
					if records > 0 {
						if stall.Partitions == nil {
							stall.Partitions = map[int32]int64{}
						}
						stall.Partitions[partition] = records
					}
				}
				stall.StalledSeconds = stalled
			}
			if alive && len(stall.Partitions) == 0 && stall.StalledSeconds == 0 {
				continue // up and behind on nothing
			}
			stall.LastError = lastErrorLine(component.LogFile)
			stalls = append(stalls, stall)
		}
		if len(problems) > 0 {
			return stalls, fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return stalls, nil
	}
}

// workerProgress scrapes a worker's lag per partition and the longest time
// one of its partitions has not advanced while lagging.
func workerProgress(ctx context.Context, metricsURL string) (map[int32]int64, float64, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, 0, err
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return nil, 0, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("metrics: %s", response.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(response.Body, 8<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("metrics: %w", err)
	}
	lag := map[int32]int64{}
	var stalled float64
	if family, ok := families["ledger_worker_consumer_lag_records"]; ok {
		for _, metric := range family.GetMetric() {
			for _, label := range metric.GetLabel() {
				if label.GetName() == "partition" {
					if partition, err := strconv.ParseInt(label.GetValue(), 10, 32); err == nil {
						lag[int32(partition)] = int64(metric.GetGauge().GetValue())
					}
				}
			}
		}
	}
	if family, ok := families["ledger_worker_partition_stalled_seconds"]; ok {
		for _, metric := range family.GetMetric() {
			stalled = max(stalled, metric.GetGauge().GetValue())
		}
	}
	return lag, stalled, nil
}

// lastErrorLine returns the last line of a log that reports an error or a
// panic (at most 300 bytes), or "".
func lastErrorLine(path string) string {
	file, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer file.Close()
	// The tail is enough: a log appended across restarts can be long.
	if info, err := file.Stat(); err == nil && info.Size() > 1<<20 {
		_, _ = file.Seek(info.Size()-1<<20, io.SeekStart)
	}
	var last string
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") ||
			strings.HasPrefix(line, "panic:") || strings.Contains(line, "fatal error:") {
			last = line
		}
	}
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return strings.ToValidUTF8(last, "?")
}
