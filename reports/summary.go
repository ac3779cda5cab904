package reports

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// Verdicts of a run (docs/run-directory.md), the same words run.json uses.
const (
	VerdictPassed            = "passed"
	VerdictInvariantViolated = "invariant-violated"
	VerdictCouldNotRun       = "could-not-run"
	VerdictThresholdFailed   = "threshold-failed"
	// VerdictWeak: no invariant failed, but the run did not exercise what
	// it was required to (no money operation, or a class its scenario
	// promised never happened): the audit's verdict weak.
	VerdictWeak = "weak"
)

// ExitCode is the exit code of `ledgerproof run` for a verdict: passed 0,
// invariant-violated 1, could-not-run 2, threshold-failed 3, weak 4.
func ExitCode(verdict string) int {
	switch verdict {
	case VerdictPassed:
		return 0
	case VerdictInvariantViolated:
		return 1
	case VerdictThresholdFailed:
		return 3
	case VerdictWeak:
		return 4
	}
	return 2
}

// verdictSeverity orders verdicts: an invariant violation wins over
// everything, then a run that could not run, then a weak audit (the money
// was not tested as the run claims, whatever the latency did), then
// crossed thresholds.
func verdictSeverity(verdict string) int {
	switch verdict {
	case VerdictPassed:
		return 0
	case VerdictThresholdFailed:
		return 1
	case VerdictWeak:
		return 2
	case VerdictCouldNotRun:
		return 3
	case VerdictInvariantViolated:
		return 4
	}
	return 3
}

// SummaryVersion is the version of summary.json's format.
const SummaryVersion = 1

// Summary is summary.json: the run's verdict and headline figures, for
// machines (CI, `ledgerproof report --compare`).
type Summary struct {
	Version int    `json:"version"`
	RunID   string `json:"run_id"`
	// Verdict is passed, invariant-violated, threshold-failed, weak or
	// could-not-run; ExitCode is `ledgerproof run`'s exit code for it.
	Verdict  string `json:"verdict"`
	ExitCode int    `json:"exit_code"`
	// Reasons say why, one sentence each.
	Reasons []string `json:"reasons"`
	// AuditVerdict is audit.json's (passed, violated, incomplete, weak),
	// empty when the run has no audit.
	AuditVerdict string            `json:"audit_verdict"`
	Invariants   []InvariantStatus `json:"invariants"`
	// Coverage is audit.json's: the operations by kind and outcome class,
	// the duplicates, the rejections, and the required classes with whether
	// each was met; absent when the run has no audit or its audit predates
	// coverage.
	Coverage *invariants.Coverage `json:"coverage,omitempty"`
	// WorkerDuplicates is how many records reached a worker whose key
	// already had an effect (the reference workers'
	// ledger_worker_commands_total{result="duplicate"}, its increase over
	// the run's scrapes in metrics.jsonl): what the ledger cannot show.
	// Absent when the run scraped no such metric.
	WorkerDuplicates *int64 `json:"worker_duplicates,omitempty"`
	// ThresholdsRecorded is false when the run has no load-summary.json.
	ThresholdsRecorded bool        `json:"thresholds_recorded"`
	Thresholds         []Threshold `json:"thresholds"`
	// Operations counts journal lines by kind, then outcome.
	Operations map[string]map[string]int64 `json:"operations"`
	Throughput Throughput                  `json:"throughput"`
	LatencyMs  Latency                     `json:"latency_ms"`
	// ErrorRate is the share of money operations that did not settle
	// (outcome fail or info); HTTPErrorRate the share of HTTP attempts
	// answered 5xx or not at all.
	ErrorRate     float64          `json:"error_rate"`
	HTTPErrorRate float64          `json:"http_error_rate"`
	HTTPStatuses  map[string]int64 `json:"http_statuses"`
	// Faults counts the fault windows (and markers) of the chaos log;
	// FaultsFailed the chaos actions that failed.
	Faults       int           `json:"faults"`
	FaultsFailed int           `json:"faults_failed"`
	FaultWindows []FaultWindow `json:"fault_windows"`
	// FaultsWithoutEffect counts the windows whose Effect shows nothing:
	// faults that did not bite (each also has a warning).
	FaultsWithoutEffect int `json:"faults_without_effect"`
	// Origin is the report's time zero (the load's start when known):
	// every offset in seconds counts from it.
	Origin time.Time `json:"origin"`
	// DeadLetters is audit.json's report of the records the system set
	// aside (count, by reason, the first ones); absent when the run has no
	// audit or its audit predates dead letters.
	DeadLetters *invariants.DeadLetters `json:"dead_letters,omitempty"`
	// Inputs says, per file of the run directory, whether it was read.
	Inputs   map[string]string `json:"inputs"`
	Warnings []string          `json:"warnings"`
}

// InvariantStatus is one invariant's verdict and counts: Status is passed,
// violated, skipped (cannot be checked here) or not-exercised (the run never
// produced what it is about); Note says why when it is not passed.
type InvariantStatus struct {
	Name           string           `json:"name"`
	Status         string           `json:"status"`
	ViolationCount int64            `json:"violation_count"`
	Checked        map[string]int64 `json:"checked"`
	Note           string           `json:"note,omitempty"`
}

// Throughput is the rate of money operations completed (signups
// excluded), whatever their outcome.
type Throughput struct {
	Operations int64 `json:"operations"`
	// DurationSeconds runs from the first operation's invoke to the last
	// one's completion.
	DurationSeconds float64 `json:"duration_seconds"`
	MeanPerSecond   float64 `json:"mean_per_second"`
	PeakPerSecond   float64 `json:"peak_per_second"`
	// SettledPerSecond counts only the operations that settled (ok).
	SettledPerSecond float64 `json:"settled_per_second"`
}

// Latency is the money operations' latency as the client saw it, from
// invoke to the known outcome (retries and the wait for settlement
// included), from a log-linear histogram (within 3 %).
type Latency struct {
	P50    float64 `json:"p50"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Source string  `json:"source"`
}

// analysis is everything the three outputs are rendered from.
type analysis struct {
	in       *inputs
	journal  *journalStats
	metrics  *metricsStats
	origin   time.Time
	timeline timeline
	summary  Summary
}

// Analyze reads a run directory and returns its summary without writing
// anything.
func Analyze(runDir string) (Summary, error) {
	a, err := analyze(runDir)
	if err != nil {
		return Summary{}, err
	}
	return a.summary, nil
}

func analyze(runDir string) (*analysis, error) {
	in, err := readInputs(runDir)
	if err != nil {
		return nil, err
	}
	journal, err := readJournals(runDir)
	if err != nil {
		return nil, err
	}
	if len(journal.files) == 0 {
		in.status["journal.jsonl"] = notRecorded
	} else {
		in.status["journal.jsonl"] = fmt.Sprintf("read (%s: %d line(s))", strings.Join(journal.files, ", "), journal.lines)
		if journal.invalidLines > 0 {
			in.warn("journal: %d invalid line(s) skipped", journal.invalidLines)
		}
	}
	metrics, err := readMetrics(runDir)
	if err != nil {
		in.status[MetricsFile] = "unreadable: " + err.Error()
		in.warn("%s: %v", MetricsFile, err)
		metrics = nil
	} else if metrics == nil {
		in.status[MetricsFile] = notRecorded
	} else {
		in.status[MetricsFile] = fmt.Sprintf("read (%d scrape(s) of %d target(s))", metrics.scrapes, len(metrics.targets))
		if metrics.invalid > 0 {
			in.warn("%s: %d invalid line(s) skipped", MetricsFile, metrics.invalid)
		}
	}

	a := &analysis{in: in, journal: journal, metrics: metrics}
	a.origin = a.chooseOrigin()
	a.timeline = buildTimeline(a)
	a.summary = a.summarize()
	return a, nil
}

// chooseOrigin picks the report's time zero: the load's start from
// run.json, else the chaos runner's start (the plan's offsets count from
// it, so a fault at "18s" shows at 18 s), else the first operation, else
// the first scrape, else the run's start.
func (a *analysis) chooseOrigin() time.Time {
	if a.in.run != nil && a.in.run.LoadStartedAt != nil && !a.in.run.LoadStartedAt.IsZero() {
		return *a.in.run.LoadStartedAt
	}
	for _, record := range a.in.chaos {
		if !record.Start.IsZero() {
			return record.Start
		}
	}
	if a.journal.moneyOperations > 0 {
		return time.UnixMicro(a.journal.firstInvoke).UTC()
	}
	if a.metrics != nil {
		if seconds := a.metrics.sortedSeconds(); len(seconds) > 0 {
			return time.Unix(seconds[0], 0).UTC()
		}
	}
	if a.in.run != nil {
		return a.in.run.StartedAt
	}
	return time.Time{}
}

// judge derives the verdict from the audit and the load's thresholds,
// then lets run.json's verdict raise it (ledgerproof run knows when the run
// could not run); the more severe of the two is the verdict.
func (a *analysis) judge(thresholds []Threshold) (verdict string, reasons []string) {
	audit := a.in.audit
	var failedNames, notObservedNames []string
	for _, threshold := range thresholds {
		switch {
		case threshold.NotObserved:
			notObservedNames = append(notObservedNames, threshold.Name())
			if !threshold.Passed {
				a.in.warn("%s: threshold %s is marked both failed and not observed; the report shows it as not exercised",
					LoadSummaryFile, threshold.Name())
			}
		case !threshold.Passed:
			failedNames = append(failedNames, threshold.Name())
		}
	}
	failed := len(failedNames)
	switch {
	case audit == nil:
		verdict = VerdictCouldNotRun
		reasons = append(reasons, "the run has no audit (audit.json not recorded): nothing says whether money was lost or duplicated")
	case audit.Verdict == invariants.VerdictViolated:
		verdict = VerdictInvariantViolated
		var names []string
		for _, invariant := range audit.Invariants {
			if invariant.Status == invariants.StatusViolated {
				names = append(names, fmt.Sprintf("%s (%d)", invariant.Name, invariant.ViolationCount))
			}
		}
		reasons = append(reasons, "the audit found violated invariants: "+strings.Join(names, ", "))
	case audit.Verdict == invariants.VerdictWeak:
		verdict = VerdictWeak
		missing := audit.Coverage.Missing()
		if len(missing) == 0 {
			missing = []string{"a required class was not exercised (see audit.txt)"}
		}
		reasons = append(reasons, "the audit is weak: no invariant failed, but "+strings.Join(missing, "; "))
	case audit.Verdict != invariants.VerdictPassed:
		verdict = VerdictCouldNotRun
		note := audit.DrainNote
		if note == "" {
			note = "see audit.txt"
		}
		reasons = append(reasons, fmt.Sprintf("the audit is %s: %s", audit.Verdict, note))
	default:
		verdict = VerdictPassed
		reasons = append(reasons, fmt.Sprintf("the audit passed: %d invariants held", countStatus(audit, invariants.StatusPassed)))
	}
	if audit != nil && audit.Verdict != invariants.VerdictViolated {
		var names []string
		for _, invariant := range audit.Invariants {
			if invariant.Status == invariants.StatusNotExercised {
				names = append(names, invariant.Name)
			}
		}
		if len(names) > 0 {
			reasons = append(reasons, fmt.Sprintf("%d invariant(s) not exercised, neither passed nor failed: %s", len(names), strings.Join(names, ", ")))
		}
	}
	exercised := len(thresholds) - len(notObservedNames)
	switch {
	case a.in.load == nil:
		if a.in.run != nil && a.in.run.ThresholdsPassed != nil && !*a.in.run.ThresholdsPassed {
			failed = 1
			reasons = append(reasons, "run.json says thresholds failed ("+LoadSummaryFile+" not recorded)")
		} else {
			reasons = append(reasons, "thresholds not recorded (no "+LoadSummaryFile+")")
		}
	case failed > 0:
		reasons = append(reasons, fmt.Sprintf("%d of %d threshold(s) crossed: %s", failed, len(thresholds), strings.Join(failedNames, "; ")))
	case exercised > 0:
		reasons = append(reasons, fmt.Sprintf("all %d threshold(s) held", exercised))
	case len(thresholds) == 0:
		reasons = append(reasons, "the scenario set no thresholds")
	}
	if len(notObservedNames) > 0 {
		reasons = append(reasons, fmt.Sprintf("%d threshold(s) not exercised (their metric had no samples): %s",
			len(notObservedNames), strings.Join(notObservedNames, "; ")))
	}
	if load := a.in.load; load != nil {
		if load.ThresholdsPassed != nil && !*load.ThresholdsPassed && failed == 0 {
			a.in.warn("%s says thresholds_passed false but lists no failed threshold", LoadSummaryFile)
		}
		if aborted := rawText(a.in.loadRaw["aborted"]); aborted != "" && aborted != "false" {
			reasons = append(reasons, "the load was aborted: "+aborted)
		}
	}
	// A weak audit stays weak with crossed thresholds too: a job that
	// tolerates threshold-failed must not take an untested run for a pass.
	if failed > 0 && verdict == VerdictPassed {
		verdict = VerdictThresholdFailed
	}
	if run := a.in.run; run != nil && run.Verdict != "" && run.Verdict != verdict {
		if verdictSeverity(run.Verdict) > verdictSeverity(verdict) {
			reason := "run.json's verdict is " + run.Verdict
			if run.Note != "" {
				reason += ": " + run.Note
			}
			reasons = append(reasons, reason)
			verdict = run.Verdict
		} else {
			a.in.warn("run.json says %q but the audit and the load say %q; the report shows the more severe", run.Verdict, verdict)
		}
	}
	return verdict, reasons
}

func countStatus(audit *invariants.Result, status string) int {
	n := 0
	for _, invariant := range audit.Invariants {
		if invariant.Status == status {
			n++
		}
	}
	return n
}

func (a *analysis) summarize() Summary {
	thresholds := a.in.load.thresholds()
	verdict, reasons := a.judge(thresholds)
	summary := Summary{
		Version:            SummaryVersion,
		Verdict:            verdict,
		ExitCode:           ExitCode(verdict),
		Reasons:            reasons,
		ThresholdsRecorded: a.in.load != nil,
		Thresholds:         thresholds,
		Operations:         a.journal.operations,
		HTTPStatuses:       map[string]int64{},
		FaultWindows:       a.timeline.faults,
		Faults:             len(a.timeline.faults),
		Origin:             a.origin,
		Inputs:             a.in.status,
	}
	if summary.Thresholds == nil {
		summary.Thresholds = []Threshold{}
	}
	if summary.FaultWindows == nil {
		summary.FaultWindows = []FaultWindow{}
	}
	for _, record := range a.in.chaos {
		if record.Result != "" && record.Result != "ok" {
			summary.FaultsFailed++
		}
	}
	if run := a.in.run; run != nil {
		summary.RunID = run.ID
	}
	if audit := a.in.audit; audit != nil {
		summary.AuditVerdict = audit.Verdict
		summary.DeadLetters = audit.DeadLetters
		for _, invariant := range audit.Invariants {
			checked := invariant.Checked
			if checked == nil {
				checked = map[string]int64{}
			}
			summary.Invariants = append(summary.Invariants, InvariantStatus{Name: invariant.Name, Status: invariant.Status,
				ViolationCount: invariant.ViolationCount, Checked: checked, Note: invariant.Note})
		}
		summary.Coverage = audit.Coverage
	}
	if a.metrics != nil && a.metrics.hasDuplicates {
		summary.WorkerDuplicates = &a.metrics.duplicates
	}
	if summary.Invariants == nil {
		summary.Invariants = []InvariantStatus{}
	}

	journal := a.journal
	if journal.moneyOperations > 0 {
		duration := float64(journal.lastComplete-journal.firstInvoke) / 1e6
		summary.Throughput = Throughput{Operations: journal.moneyOperations, DurationSeconds: round(duration, 3)}
		if duration > 0 {
			summary.Throughput.MeanPerSecond = round(float64(journal.moneyOperations)/duration, 3)
			summary.Throughput.SettledPerSecond = round(float64(journal.moneyOutcomes[outcomeOK])/duration, 3)
		}
		for _, second := range journal.seconds {
			total := second.outcomes[outcomeOK] + second.outcomes[outcomeFail] + second.outcomes[outcomeInfo]
			summary.Throughput.PeakPerSecond = max(summary.Throughput.PeakPerSecond, float64(total))
		}
		summary.LatencyMs = Latency{
			P50: round(journal.overall.quantile(0.50)/1000, 3), P95: round(journal.overall.quantile(0.95)/1000, 3),
			P99: round(journal.overall.quantile(0.99)/1000, 3), Max: round(float64(journal.overall.max)/1000, 3),
			Source: "journal: complete − invoke of money operations (log-linear histogram, within 3 %)",
		}
		summary.ErrorRate = round(float64(journal.moneyOutcomes[outcomeFail]+journal.moneyOutcomes[outcomeInfo])/float64(journal.moneyOperations), 6)
	}
	if journal.attempts > 0 {
		summary.HTTPErrorRate = round(float64(journal.httpErrors)/float64(journal.attempts), 6)
	}
	for _, byStatus := range journal.statuses {
		for status, n := range byStatus {
			summary.HTTPStatuses[statusName(status)] += n
		}
	}
	summary.Warnings = append([]string{}, a.in.warnings...)
	for i, window := range summary.FaultWindows {
		if window.Effect != nil && !window.Effect.Bit {
			summary.FaultsWithoutEffect++
			summary.Warnings = append(summary.Warnings, fmt.Sprintf("fault %d (%s, %.1f s): %s", i+1, window.Label, window.StartSeconds, window.Effect.Observed))
		}
	}
	return summary
}

func round(value float64, decimals int) float64 {
	scale := math.Pow(10, float64(decimals))
	return math.Round(value*scale) / scale
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
