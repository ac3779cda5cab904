package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// The files of a run directory the report reads (docs/run-directory.md).
const (
	RunFile       = "run.json"
	AuditFile     = invariants.ResultFile
	K6SummaryFile = "k6-summary.json"
	K6LogFile     = "k6.log"
	ChaosLogFile  = "chaos-log.jsonl"
	MetricsFile   = "metrics.jsonl"
)

// The files the report writes into the run directory.
const (
	IndexFile   = "index.html"
	JUnitFile   = "junit.xml"
	SummaryFile = "summary.json"
)

// notRecorded is what an input that the run did not write says, in the page
// and in summary.json's inputs.
const notRecorded = "not recorded"

// maxLineBytes bounds one line of a JSON Lines input; a longer line is
// counted as invalid rather than buffered without limit.
const maxLineBytes = 4 << 20

// runInfo is the part of run.json the report uses. The whole file is also
// kept as raw fields for the configuration table, so a field added later
// still shows.
type runInfo struct {
	Version       int               `json:"version"`
	ID            string            `json:"id"`
	StartedAt     time.Time         `json:"started_at"`
	FinishedAt    time.Time         `json:"finished_at"`
	Scenario      string            `json:"scenario"`
	ScenarioEnv   map[string]string `json:"scenario_env"`
	Plan          string            `json:"plan"`
	PlanName      string            `json:"plan_name"`
	PlanSeed      uint64            `json:"plan_seed"`
	SeededBugs    []string          `json:"seeded_bugs"`
	Seed          int64             `json:"seed"`
	Versions      map[string]string `json:"versions"`
	LoadStartedAt *time.Time        `json:"load_started_at"`
	K6ExitCode    *int              `json:"k6_exit_code"`
	// ThresholdsPassed is a pointer: absent is not false.
	ThresholdsPassed *bool  `json:"thresholds_passed"`
	AuditVerdict     string `json:"audit_verdict"`
	ExitCode         *int   `json:"exit_code"`
	Verdict          string `json:"verdict"`
	Note             string `json:"note"`
}

// chaosRecord is one line of chaos-log.jsonl (chaos.Record, docs/chaos.md):
// only the fields the report draws.
type chaosRecord struct {
	Plan       string            `json:"plan"`
	Seed       uint64            `json:"seed"`
	Source     string            `json:"source"`
	Start      time.Time         `json:"start"`
	Planned    string            `json:"planned"`
	Time       time.Time         `json:"time"`
	OffsetMs   int64             `json:"offset_ms"`
	Action     string            `json:"action"`
	Target     string            `json:"target"`
	Resolved   string            `json:"resolved"`
	Params     map[string]string `json:"params"`
	Result     string            `json:"result"`
	Error      string            `json:"error"`
	DurationMs int64             `json:"duration_ms"`
	Cleanup    bool              `json:"cleanup"`
}

// k6Summary is k6's --summary-export file: metrics by name, each with its
// figures and, when the script set thresholds on it, a map from the
// threshold's expression to true when the threshold was crossed (k6's
// legacy export writes !ok).
type k6Summary struct {
	Metrics map[string]map[string]json.RawMessage `json:"metrics"`
	// Options is not written by k6's export; a run that wraps k6 may add
	// it, and the report shows it when present.
	Options json.RawMessage `json:"options"`
}

// inputs is everything read from a run directory except the streamed
// journal and metrics.
type inputs struct {
	dir string
	// status says, per input file, "read", "not recorded", or the error.
	status map[string]string
	// runRaw is run.json as ordered fields for the configuration table.
	run      *runInfo
	runRaw   map[string]json.RawMessage
	audit    *invariants.Result
	k6       *k6Summary
	k6Header []string
	chaos    []chaosRecord
	warnings []string
}

func (in *inputs) warn(format string, args ...any) {
	in.warnings = append(in.warnings, fmt.Sprintf(format, args...))
}

// readInputs reads run.json, audit.json, k6-summary.json, the head of
// k6.log and chaos-log.jsonl. A missing file is "not recorded"; a file that
// exists but cannot be parsed is a warning (the report still renders).
func readInputs(dir string) (*inputs, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("run directory %s is not a directory", dir)
	}
	in := &inputs{dir: dir, status: map[string]string{}}

	readJSON := func(name string, target any) bool {
		content, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			in.status[name] = notRecorded
			return false
		}
		if err == nil {
			err = json.Unmarshal(content, target)
		}
		if err != nil {
			in.status[name] = "unreadable: " + err.Error()
			in.warn("%s: %v", name, err)
			return false
		}
		in.status[name] = "read"
		return true
	}

	var run runInfo
	if readJSON(RunFile, &run) {
		in.run = &run
		_ = readJSON(RunFile, &in.runRaw) // the same bytes; parsed once as a struct already
	}
	var audit invariants.Result
	if readJSON(AuditFile, &audit) {
		in.audit = &audit
	}
	var summary k6Summary
	if readJSON(K6SummaryFile, &summary) {
		in.k6 = &summary
	}
	in.k6Header = readK6Header(filepath.Join(dir, K6LogFile))
	if len(in.k6Header) > 0 {
		in.status[K6LogFile] = "read"
	} else if _, err := os.Stat(filepath.Join(dir, K6LogFile)); err != nil {
		in.status[K6LogFile] = notRecorded
	} else {
		in.status[K6LogFile] = "read (no execution header)"
	}

	chaosPath := filepath.Join(dir, ChaosLogFile)
	invalid, err := eachLine(chaosPath, func(line []byte) error {
		var record chaosRecord
		if err := json.Unmarshal(line, &record); err != nil {
			return err
		}
		in.chaos = append(in.chaos, record)
		return nil
	})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		in.status[ChaosLogFile] = notRecorded
	case err != nil:
		in.status[ChaosLogFile] = "unreadable: " + err.Error()
		in.warn("%s: %v", ChaosLogFile, err)
	default:
		in.status[ChaosLogFile] = "read"
		if invalid > 0 {
			in.warn("%s: %d invalid line(s) skipped", ChaosLogFile, invalid)
		}
	}
	sort.SliceStable(in.chaos, func(i, j int) bool { return in.chaos[i].Time.Before(in.chaos[j].Time) })
	return in, nil
}

// eachLine calls handle for every non-empty line of a JSON Lines file,
// streaming it; it returns how many lines handle refused or were too long.
func eachLine(path string, handle func(line []byte) error) (invalid int64, err error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	reader := bufio.NewReaderSize(file, 256<<10)
	for {
		line, tooLong, readErr := readLine(reader)
		if len(line) > 0 || tooLong {
			if tooLong {
				invalid++
			} else if handle(line) != nil {
				invalid++
			}
		}
		if readErr == io.EOF {
			return invalid, nil
		}
		if readErr != nil {
			return invalid, fmt.Errorf("read %s: %w", path, readErr)
		}
	}
}

// readLine returns the next line without its newline, trimmed; a line over
// maxLineBytes is skipped and reported as tooLong.
func readLine(reader *bufio.Reader) (line []byte, tooLong bool, err error) {
	var long []byte
	for {
		chunk, err := reader.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(chunk) <= maxLineBytes {
				long = append(long, chunk...)
			} else {
				tooLong = true
			}
			continue
		}
		if long != nil && !tooLong {
			long = append(long, chunk...)
			chunk = long
		}
		if tooLong {
			return nil, true, err
		}
		return trimLine(chunk), false, err
	}
}

func trimLine(line []byte) []byte {
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r' || line[len(line)-1] == ' ') {
		line = line[:len(line)-1]
	}
	return line
}

// readK6Header returns the execution lines k6 prints before the load
// (execution, script, output, scenarios and the scenario lines under them):
// the k6 options a replay needs, which the summary export does not keep.
func readK6Header(path string) []string {
	file, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer file.Close()
	var header []string
	scanner := bufio.NewScanner(io.LimitReader(file, 256<<10))
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	inScenarios := false
	for scanner.Scan() {
		line := strings.TrimRight(scanner.Text(), " ")
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "execution:"), strings.HasPrefix(trimmed, "script:"), strings.HasPrefix(trimmed, "output:"):
			header = append(header, trimmed)
			inScenarios = false
		case strings.HasPrefix(trimmed, "scenarios:"):
			header = append(header, trimmed)
			inScenarios = true
		case inScenarios && strings.HasPrefix(trimmed, "* "):
			header = append(header, "  "+trimmed)
		case inScenarios && trimmed != "":
			return header
		}
	}
	return header
}

// Threshold is one k6 threshold and whether it held.
type Threshold struct {
	// Metric is the k6 metric (with its tags, as k6 names it), Expression
	// the threshold on it (p(95)<250).
	Metric     string `json:"metric"`
	Expression string `json:"expression"`
	Passed     bool   `json:"passed"`
	// Observed is the metric's figure the expression tests, when the
	// summary has it (p(95), rate, count, value...).
	Observed *float64 `json:"observed,omitempty"`
}

// Name is how JUnit and the page name the threshold.
func (t Threshold) Name() string { return t.Metric + ": " + t.Expression }

// thresholds lists the k6 thresholds by metric and expression, in name
// order.
func (s *k6Summary) thresholds() []Threshold {
	if s == nil {
		return nil
	}
	var list []Threshold
	for metric, fields := range s.Metrics {
		raw, ok := fields["thresholds"]
		if !ok {
			continue
		}
		var crossed map[string]bool
		if json.Unmarshal(raw, &crossed) != nil {
			continue
		}
		for expression, failed := range crossed {
			threshold := Threshold{Metric: metric, Expression: expression, Passed: !failed}
			if value, ok := s.figure(metric, observedField(expression)); ok {
				threshold.Observed = &value
			}
			list = append(list, threshold)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	return list
}

// observedField is the summary field a threshold expression tests:
// p(95)<250 → p(95), rate<0.01 → rate (the export calls it value), count==0
// → count, avg/med/min/max likewise.
func observedField(expression string) string {
	name := expression
	if i := strings.IndexAny(name, "<>=!"); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimSpace(name)
	if name == "rate" {
		// Rate metrics keep their rate as "value"; counters keep it as
		// "rate".
		return "rate|value"
	}
	return name
}

// figure returns a metric's number field; alternatives separated by |.
func (s *k6Summary) figure(metric, field string) (float64, bool) {
	if s == nil {
		return 0, false
	}
	fields := s.Metrics[metric]
	for _, name := range strings.Split(field, "|") {
		raw, ok := fields[name]
		if !ok {
			continue
		}
		var value float64
		if json.Unmarshal(raw, &value) == nil && !math.IsNaN(value) {
			return value, true
		}
	}
	return 0, false
}

// latencyTrend is one k6 trend metric's figures in milliseconds.
type latencyTrend struct {
	Metric string   `json:"metric"`
	Count  *float64 `json:"count,omitempty"`
	Median *float64 `json:"p50,omitempty"`
	P90    *float64 `json:"p90,omitempty"`
	P95    *float64 `json:"p95,omitempty"`
	P99    *float64 `json:"p99,omitempty"`
	Max    *float64 `json:"max,omitempty"`
}

// trends lists the summary's latency trends that matter for a ledger:
// accept (the gateway's answer), settle (the final outcome), and the raw
// HTTP duration, when present.
func (s *k6Summary) trends() []latencyTrend {
	if s == nil {
		return nil
	}
	var list []latencyTrend
	for _, metric := range []string{"ledger_accept_duration", "ledger_settle_duration", "scenario_accept_duration", "scenario_settle_duration", "http_req_duration", "iteration_duration"} {
		if _, ok := s.Metrics[metric]; !ok {
			continue
		}
		pick := func(field string) *float64 {
			if value, ok := s.figure(metric, field); ok {
				return &value
			}
			return nil
		}
		list = append(list, latencyTrend{Metric: metric, Count: pick("count"), Median: pick("med"), P90: pick("p(90)"), P95: pick("p(95)"), P99: pick("p(99)"), Max: pick("max")})
	}
	return list
}
