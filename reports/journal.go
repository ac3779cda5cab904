package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/history"
)

// journalLine is a journal line (load/JOURNAL.md), as the load engine writes it.
type journalLine = history.Entry

// outcome indexes of journalSecond.outcomes.
const (
	outcomeOK = iota
	outcomeFail
	outcomeInfo
	outcomeCount
)

var outcomeNames = [outcomeCount]string{invariants.OutcomeOK, invariants.OutcomeFail, invariants.OutcomeInfo}

func outcomeIndex(outcome string) int {
	switch outcome {
	case invariants.OutcomeOK:
		return outcomeOK
	case invariants.OutcomeFail:
		return outcomeFail
	}
	// An outcome the format does not define is as good as unknown.
	return outcomeInfo
}

// journalSecond is one wall-clock second of the run: the money operations
// that completed in it, by outcome, and their latencies.
type journalSecond struct {
	outcomes   [outcomeCount]int64
	latency    histogram
	httpErrors int64
	// retried counts the operations sent more than once; failedOther the
	// failed ones whose reason is not a business answer (businessReasons).
	retried     int64
	failedOther int64
}

// businessReasons are the failures a system gives whatever its health: the
// ledger's rejections and the key contract's refusals. A fault shows in the
// other failures (unavailable, internal, connection errors...).
var businessReasons = map[string]bool{
	invariants.ReasonInsufficientFunds: true, invariants.ReasonAccountNotFound: true, invariants.ReasonForbidden: true,
	invariants.ReasonBalanceLimit: true, invariants.ReasonSameAccount: true, invariants.ReasonInvalidAmount: true,
	"idempotency_key_reused": true, "idempotency_key_missing": true, "invalid_request": true,
	invariants.ReasonDailyLimitExceeded: true,
}

// reasonKey groups operations that did not settle.
type reasonKey struct{ kind, outcome, reason string }

// journalStats is what the report keeps of the journal: per-second buckets
// and counters, never the entries, so a journal of millions of lines takes
// a few megabytes.
type journalStats struct {
	files        []string
	lines        int64
	invalidLines int64
	// seconds are keyed by the Unix second the operation completed in.
	seconds map[int64]*journalSecond
	// overall is every money operation's latency (complete − invoke).
	overall histogram
	// operations counts every line by kind, then outcome (signups too).
	operations map[string]map[string]int64
	// statuses counts the HTTP status of every attempt by kind (0: no
	// answer: connection error or timeout).
	statuses map[string]map[int]int64
	reasons  map[reasonKey]int64
	// moneyOperations excludes signups; firstInvoke and lastComplete are
	// their bounds in Unix microseconds.
	moneyOperations int64
	moneyOutcomes   [outcomeCount]int64
	attempts        int64
	httpErrors      int64
	firstInvoke     int64
	lastComplete    int64
}

// readJournals streams journal.jsonl and every journal*.jsonl of the run
// directory (with several generators each writes journal-<i>.jsonl).
func readJournals(dir string) (*journalStats, error) {
	stats := &journalStats{
		seconds:      map[int64]*journalSecond{},
		operations:   map[string]map[string]int64{},
		statuses:     map[string]map[int]int64{},
		reasons:      map[reasonKey]int64{},
		firstInvoke:  math.MaxInt64,
		lastComplete: math.MinInt64,
	}
	files, err := filepath.Glob(filepath.Join(dir, "journal*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, path := range files {
		invalid, err := eachLine(path, stats.add)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("journal: %w", err)
		}
		stats.invalidLines += invalid
		stats.files = append(stats.files, filepath.Base(path))
	}
	return stats, nil
}

func (s *journalStats) add(raw []byte) error {
	var line journalLine
	if err := json.Unmarshal(raw, &line); err != nil {
		return err
	}
	if line.Kind == "" {
		return errors.New("no kind")
	}
	s.lines++
	byOutcome := s.operations[line.Kind]
	if byOutcome == nil {
		byOutcome = map[string]int64{}
		s.operations[line.Kind] = byOutcome
	}
	byOutcome[line.Outcome]++
	byStatus := s.statuses[line.Kind]
	if byStatus == nil {
		byStatus = map[int]int64{}
		s.statuses[line.Kind] = byStatus
	}
	var httpErrors int64
	for _, list := range [][]int{line.Statuses, line.DupStatuses} {
		for _, status := range list {
			byStatus[status]++
			s.attempts++
			if status == 0 || status >= 500 {
				httpErrors++
			}
		}
	}
	s.httpErrors += httpErrors
	if line.Outcome != invariants.OutcomeOK {
		s.reasons[reasonKey{line.Kind, line.Outcome, line.Reason}]++
	}
	if line.Kind == invariants.KindSignup {
		return nil
	}

	s.moneyOperations++
	outcome := outcomeIndex(line.Outcome)
	s.moneyOutcomes[outcome]++
	second := floorDiv(line.Complete, 1_000_000)
	bucket := s.seconds[second]
	if bucket == nil {
		bucket = &journalSecond{}
		s.seconds[second] = bucket
	}
	bucket.outcomes[outcome]++
	bucket.httpErrors += httpErrors
	if len(line.Statuses) > 1 {
		bucket.retried++
	}
	if outcome == outcomeFail && !businessReasons[line.Reason] {
		bucket.failedOther++
	}
	latency := line.Complete - line.Invoke
	bucket.latency.add(latency)
	s.overall.add(latency)
	s.firstInvoke = min(s.firstInvoke, line.Invoke)
	s.lastComplete = max(s.lastComplete, line.Complete)
	return nil
}

// floorDiv divides rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// secondRange returns the first and last second with a completion.
func (s *journalStats) secondRange() (first, last int64, ok bool) {
	first, last = math.MaxInt64, math.MinInt64
	for second := range s.seconds {
		first = min(first, second)
		last = max(last, second)
	}
	return first, last, len(s.seconds) > 0
}

// statusName names an HTTP status for tables (0 has no status line).
func statusName(status int) string {
	if status == 0 {
		return "no answer"
	}
	return strconv.Itoa(status)
}
