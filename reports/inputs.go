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
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// The files of a run directory the report reads (docs/run-directory.md).
const (
	RunFile         = "run.json"
	AuditFile       = invariants.ResultFile
	LoadSummaryFile = "load-summary.json"
	// LoadLogFile is the load generator's log; with several generators each
	// writes load-<i>.log instead.
	LoadLogFile  = "load.log"
	ChaosLogFile = "chaos-log.jsonl"
	MetricsFile  = "metrics.jsonl"
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
	Version    int       `json:"version"`
	ID         string    `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Scenario is the scenario file; ScenarioSets its overrides
	// (key=value, as --set took them, in order).
	Scenario     string   `json:"scenario"`
	ScenarioSets []string `json:"scenario_sets"`
	// Generators is how many load processes ran (0: not recorded).
	Generators    int               `json:"generators"`
	Plan          string            `json:"plan"`
	PlanName      string            `json:"plan_name"`
	PlanSeed      uint64            `json:"plan_seed"`
	SeededBugs    []string          `json:"seeded_bugs"`
	Seed          int64             `json:"seed"`
	Versions      map[string]string `json:"versions"`
	LoadStartedAt *time.Time        `json:"load_started_at"`
	// LoadExitCode is a pointer: absent is not 0.
	LoadExitCode *int `json:"load_exit_code"`
	// ThresholdsPassed is a pointer: absent is not false.
	ThresholdsPassed *bool  `json:"thresholds_passed"`
	AuditVerdict     string `json:"audit_verdict"`
	ExitCode         *int   `json:"exit_code"`
	Verdict          string `json:"verdict"`
	Note             string `json:"note"`
	// Replay holds the run's own flags with its seed (runner.Replay).
	Replay *struct {
		Args []string `json:"args"`
	} `json:"replay"`
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

// loadSummary is load-summary.json, written by `ledgerproof load`
// (docs/load-summary.md): metrics by name (a submetric as
// metric{tag:value}), each with its figures and, when the scenario set
// thresholds on it, a map from the threshold's expression to true when the
// threshold failed; and the thresholds again as a list, which alone says
// which ones had no samples to judge.
type loadSummary struct {
	Metrics map[string]map[string]json.RawMessage `json:"metrics"`
	// Thresholds is nil when the file has no list: the metrics' maps are
	// read instead.
	Thresholds []Threshold `json:"thresholds"`
	// ThresholdsPassed is a pointer: absent is not false.
	ThresholdsPassed *bool `json:"thresholds_passed"`
}

// inputs is everything read from a run directory except the streamed
// journal and metrics.
type inputs struct {
	dir string
	// status says, per input file, "read", "not recorded", or the error.
	status map[string]string
	// runRaw is run.json as ordered fields for the configuration table.
	run    *runInfo
	runRaw map[string]json.RawMessage
	audit  *invariants.Result
	load   *loadSummary
	// loadRaw is load-summary.json's top-level fields, for the load's
	// table (scenario, seed, segment, times, aborted...).
	loadRaw     map[string]json.RawMessage
	loadHeaders []loadHeader
	chaos       []chaosRecord
	warnings    []string
}

func (in *inputs) warn(format string, args ...any) {
	in.warnings = append(in.warnings, fmt.Sprintf(format, args...))
}

// readInputs reads run.json, audit.json, load-summary.json, the head of
// each load log and chaos-log.jsonl. A missing file is "not recorded"; a file that
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
	var summary loadSummary
	if readJSON(LoadSummaryFile, &summary) {
		in.load = &summary
		_ = readJSON(LoadSummaryFile, &in.loadRaw) // the same bytes; parsed once as a struct already
	}
	in.readLoadLogs()

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

// rawText is a JSON value as a table shows it: a string without its
// quotes, null as "", anything else as compact JSON.
func rawText(raw json.RawMessage) string {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return text
	}
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	return compactJSON(raw)
}

// maxLoadLogs bounds how many generators' logs the report reads a header
// from; maxHeaderLines bounds one header.
const (
	maxLoadLogs    = 64
	maxHeaderLines = 32
)

// loadHeader is what one generator printed before its load started.
type loadHeader struct {
	File  string
	Lines []string
}

// loadLogNames lists the run directory's load logs: load.log, and
// load-<i>.log per generator in index order.
func loadLogNames(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type indexed struct {
		name  string
		index int
	}
	var logs []indexed
	for _, entry := range entries {
		name := entry.Name()
		if name == LoadLogFile {
			logs = append(logs, indexed{name, -1})
			continue
		}
		digits, ok := strings.CutPrefix(name, "load-")
		if !ok {
			continue
		}
		if digits, ok = strings.CutSuffix(digits, ".log"); !ok {
			continue
		}
		if index, err := strconv.Atoi(digits); err == nil && index >= 0 && strconv.Itoa(index) == digits {
			logs = append(logs, indexed{name, index})
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].index < logs[j].index })
	names := make([]string, 0, len(logs))
	for _, log := range logs {
		names = append(names, log.name)
	}
	return names
}

// readLoadLogs reads the header of every load log into in.loadHeaders and
// says in in.status[LoadLogFile] which logs were read.
func (in *inputs) readLoadLogs() {
	names := loadLogNames(in.dir)
	if len(names) == 0 {
		in.status[LoadLogFile] = notRecorded
		return
	}
	if len(names) > maxLoadLogs {
		in.warn("%d load logs; the report reads the headers of the first %d", len(names), maxLoadLogs)
		names = names[:maxLoadLogs]
	}
	var withoutHeader []string
	for _, name := range names {
		lines, err := readLoadHeader(filepath.Join(in.dir, name))
		if err != nil {
			in.warn("%s: %v", name, err)
		}
		if len(lines) == 0 {
			withoutHeader = append(withoutHeader, name)
			continue
		}
		in.loadHeaders = append(in.loadHeaders, loadHeader{File: name, Lines: lines})
	}
	status := "read"
	if len(names) > 1 || names[0] != LoadLogFile {
		status = "read (" + strings.Join(names, ", ") + ")"
	}
	if len(withoutHeader) > 0 {
		status += "; no load header in " + strings.Join(withoutHeader, ", ")
	}
	in.status[LoadLogFile] = status
}

// readLoadHeader returns the lines a load log starts with, up to the
// schedule's start: the command line the run gave the generator
// (`$ ledgerproof load --scenario ... --seed N --set ...`) and the load's
// own lines (`load: scenario gate (scenarios/gate.yaml), seed 42 ...`, the
// setup's outcome, then the schedule: `load: constant-arrival-rate, 12000
// iterations over 1m0s, at most 2000 in flight`). They say how to replay
// the load, which load-summary.json does not all keep. Setup progress
// lines are skipped, indented lines continue the line before; any other
// line (the progress of the running load, the final summary) ends the
// header.
func readLoadHeader(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var header []string
	scanner := bufio.NewScanner(io.LimitReader(file, 256<<10))
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() && len(header) < maxHeaderLines {
		line := strings.TrimRight(scanner.Text(), " \r")
		switch {
		case strings.HasPrefix(line, "$ "), strings.HasPrefix(line, "load: "):
			header = append(header, line)
			if isScheduleLine(line) {
				return header, nil
			}
		case strings.HasPrefix(line, "  ") && len(header) > 0:
			// The rest of a message over several lines (the accounts
			// setup could not prepare).
			header = append(header, line)
		case line == "", strings.HasPrefix(line, "[setup"):
		default:
			return header, nil
		}
	}
	if err := scanner.Err(); err != nil {
		return header, fmt.Errorf("read %s: %w", path, err)
	}
	return header, nil
}

// isScheduleLine recognises the line load/generator prints as its schedule
// starts (an open model's "load: <executor>, N iterations over D, at most M
// in flight", the closed model's "load: closed model, ..."): the last line
// of the header.
func isScheduleLine(line string) bool {
	return strings.HasPrefix(line, "load: closed model,") ||
		(strings.Contains(line, " iterations over ") && strings.HasSuffix(line, " in flight"))
}

// Threshold is one threshold of the load (k6's syntax: docs/scenarios.md)
// and whether it held.
type Threshold struct {
	// Metric is the metric, a submetric with its tags
	// (accept_duration{kind:transfer}); Expression the threshold on it
	// (p(95)<250).
	Metric     string `json:"metric"`
	Expression string `json:"expression"`
	// Passed is false when the threshold failed. A threshold that was not
	// observed has Passed true: it did not fail, but it did not hold
	// either.
	Passed bool `json:"passed"`
	// Observed is the metric's figure the expression tests, when the
	// summary has it (p(95), rate, count, value...).
	Observed *float64 `json:"observed,omitempty"`
	// NotObserved is true when the metric had no samples (a kind the mix
	// never drew, a step never reached): the threshold was not exercised.
	NotObserved bool `json:"not_observed,omitempty"`
}

// Name is how JUnit and the page name the threshold.
func (t Threshold) Name() string { return t.Metric + ": " + t.Expression }

// thresholds lists the load's thresholds: the summary's list in its order
// (the scenario's) when it has one, else those of the metrics' maps in
// name order. A threshold whose figure the map lacks had nothing to judge
// and is not observed.
func (s *loadSummary) thresholds() []Threshold {
	if s == nil {
		return nil
	}
	if s.Thresholds != nil {
		list := make([]Threshold, len(s.Thresholds))
		copy(list, s.Thresholds)
		for i := range list {
			if list[i].NotObserved {
				list[i].Observed = nil
			}
		}
		return list
	}
	var list []Threshold
	for metric, fields := range s.Metrics {
		raw, ok := fields["thresholds"]
		if !ok {
			continue
		}
		var failedByExpression map[string]bool
		if json.Unmarshal(raw, &failedByExpression) != nil {
			continue
		}
		for expression, failed := range failedByExpression {
			threshold := Threshold{Metric: metric, Expression: expression, Passed: !failed}
			if value, ok := s.figure(metric, observedField(expression)); ok {
				threshold.Observed = &value
			} else if !failed {
				threshold.NotObserved = true
			}
			list = append(list, threshold)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	return list
}

// observedField is the summary field a threshold expression tests:
// p(95)<250 → p(95), rate<0.01 → rate (or value), count==0 → count,
// avg/med/min/max likewise.
func observedField(expression string) string {
	name := expression
	if i := strings.IndexAny(name, "<>=!"); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimSpace(name)
	if name == "rate" {
		// A rate metric's fraction may be kept as "value" as well as
		// "rate".
		return "rate|value"
	}
	return name
}

// figure returns a metric's number field; alternatives separated by |.
func (s *loadSummary) figure(metric, field string) (float64, bool) {
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

// latencyTrend is one trend metric's figures in milliseconds.
type latencyTrend struct {
	Metric string   `json:"metric"`
	Count  *float64 `json:"count,omitempty"`
	Median *float64 `json:"p50,omitempty"`
	P90    *float64 `json:"p90,omitempty"`
	P95    *float64 `json:"p95,omitempty"`
	P99    *float64 `json:"p99,omitempty"`
	Max    *float64 `json:"max,omitempty"`
}

// trendMetrics are the latency trends the page shows: accept (until the
// system accepted the operation), settle (until its final outcome), and
// one HTTP exchange.
var trendMetrics = []string{"accept_duration", "settle_duration", "http_req_duration"}

// trends lists the summary's latency trends, each followed by its
// submetrics (accept_duration{kind:transfer}...) in name order, when
// present.
func (s *loadSummary) trends() []latencyTrend {
	if s == nil {
		return nil
	}
	var list []latencyTrend
	for _, name := range trendMetrics {
		var metrics []string
		if _, ok := s.Metrics[name]; ok {
			metrics = append(metrics, name)
		}
		var submetrics []string
		for metric := range s.Metrics {
			if strings.HasPrefix(metric, name+"{") {
				submetrics = append(submetrics, metric)
			}
		}
		sort.Strings(submetrics)
		for _, metric := range append(metrics, submetrics...) {
			pick := func(field string) *float64 {
				if value, ok := s.figure(metric, field); ok {
					return &value
				}
				return nil
			}
			list = append(list, latencyTrend{Metric: metric, Count: pick("count"), Median: pick("med"), P90: pick("p(90)"),
				P95: pick("p(95)"), P99: pick("p(99)"), Max: pick("max")})
		}
	}
	return list
}
