package reports

import (
	"encoding/json"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// The JUnit document as a CI system reads it, declared here independently
// of the writer's types.
type parsedSuites struct {
	XMLName  xml.Name      `xml:"testsuites"`
	Tests    int           `xml:"tests,attr"`
	Failures int           `xml:"failures,attr"`
	Errors   int           `xml:"errors,attr"`
	Skipped  int           `xml:"skipped,attr"`
	Suites   []parsedSuite `xml:"testsuite"`
}

type parsedSuite struct {
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Cases    []parsedCase `xml:"testcase"`
}

type parsedCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

func parseJUnit(t *testing.T, runDir string) parsedSuites {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(runDir, JUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	var suites parsedSuites
	if err := xml.Unmarshal(content, &suites); err != nil {
		t.Fatalf("junit.xml is not valid XML: %v", err)
	}
	if len(suites.Suites) != 1 {
		t.Fatalf("junit.xml has %d test suites, want 1", len(suites.Suites))
	}
	suite := suites.Suites[0]
	failures, errors, skipped := 0, 0, 0
	for _, test := range suite.Cases {
		switch {
		case test.Failure != nil:
			failures++
		case test.Error != nil:
			errors++
		case test.Skipped != nil:
			skipped++
		}
	}
	if suite.Tests != len(suite.Cases) || suite.Failures != failures || suite.Errors != errors || suite.Skipped != skipped {
		t.Errorf("suite counts tests=%d failures=%d errors=%d skipped=%d, but its cases are %d with %d failures, %d errors, %d skipped",
			suite.Tests, suite.Failures, suite.Errors, suite.Skipped, len(suite.Cases), failures, errors, skipped)
	}
	if suites.Tests != suite.Tests || suites.Failures != suite.Failures || suites.Errors != suite.Errors || suites.Skipped != suite.Skipped {
		t.Errorf("testsuites counts %d/%d/%d/%d differ from the suite's %d/%d/%d/%d", suites.Tests, suites.Failures, suites.Errors,
			suites.Skipped, suite.Tests, suite.Failures, suite.Errors, suite.Skipped)
	}
	return suites
}

// recordedThresholds reads the thresholds list of the run's load summary on
// its own: how many, how many failed, how many were not exercised.
func recordedThresholds(t *testing.T, runDir string) (total, failed, notExercised int) {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(runDir, LoadSummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var summary struct {
		Thresholds []struct {
			Passed      bool `json:"passed"`
			NotObserved bool `json:"not_observed"`
		} `json:"thresholds"`
	}
	if err := json.Unmarshal(content, &summary); err != nil {
		t.Fatal(err)
	}
	for _, threshold := range summary.Thresholds {
		total++
		switch {
		case threshold.NotObserved:
			notExercised++
		case !threshold.Passed:
			failed++
		}
	}
	return total, failed, notExercised
}

func TestJUnitCountsMatchTheAuditAndThresholds(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	summary, err := Generate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	audit := readAudit(t, runDir)
	thresholds, crossed, notExercised := recordedThresholds(t, runDir)
	if crossed == 0 || notExercised == 0 {
		t.Fatalf("the recorded run should have failed and not exercised thresholds, has %d failed, %d not exercised", crossed, notExercised)
	}
	violated := countStatus(audit, invariants.StatusViolated)
	if violated != 0 {
		t.Fatalf("the recorded run's audit should pass, has %d violated invariants", violated)
	}

	suite := parseJUnit(t, runDir).Suites[0]
	var requiredClasses int
	if audit.Coverage != nil {
		requiredClasses = len(audit.Coverage.Required)
	}
	if suite.Tests != len(audit.Invariants)+thresholds+requiredClasses {
		t.Errorf("tests = %d, want %d invariants + %d thresholds + %d required classes", suite.Tests, len(audit.Invariants), thresholds, requiredClasses)
	}
	if suite.Failures != violated+crossed {
		t.Errorf("failures = %d, want %d violated invariants + %d crossed thresholds", suite.Failures, violated, crossed)
	}
	skippedInvariants := countStatus(audit, invariants.StatusSkipped) + countStatus(audit, invariants.StatusNotExercised)
	if suite.Skipped != skippedInvariants+notExercised {
		t.Errorf("skipped = %d, want %d skipped or not exercised invariants + %d thresholds not exercised", suite.Skipped,
			skippedInvariants, notExercised)
	}
	names := map[string]bool{}
	for _, test := range suite.Cases {
		names[test.Classname+" "+test.Name] = true
	}
	for _, invariant := range audit.Invariants {
		if !names[junitInvariantClass+" "+invariant.Name] {
			t.Errorf("no test case for invariant %s", invariant.Name)
		}
	}
	if summary.Verdict != VerdictThresholdFailed || summary.ExitCode != 3 {
		t.Errorf("verdict %s exit %d, want threshold-failed exit 3", summary.Verdict, summary.ExitCode)
	}
	if summary.Faults != recordedFaultWindows {
		t.Errorf("summary faults = %d, want %d", summary.Faults, recordedFaultWindows)
	}
}

func TestJUnitExplainsAViolation(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	violate(t, runDir)
	summary, err := Generate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if summary.Verdict != VerdictInvariantViolated || summary.ExitCode != 1 {
		t.Errorf("verdict %s exit %d, want invariant-violated exit 1", summary.Verdict, summary.ExitCode)
	}
	_, crossed, _ := recordedThresholds(t, runDir)
	suite := parseJUnit(t, runDir).Suites[0]
	if suite.Failures != 1+crossed {
		t.Errorf("failures = %d, want 1 violated invariant + %d crossed thresholds", suite.Failures, crossed)
	}
	var found bool
	for _, test := range suite.Cases {
		if test.Name != invariants.ExactlyOnce {
			continue
		}
		found = true
		if test.Failure == nil {
			t.Fatalf("exactly-once has no failure element")
		}
		for _, want := range []string{seededViolation.Summary, "k-dup-1", "tx-dup-a", "tx-dup-b", "journal.jsonl@4242"} {
			if !strings.Contains(test.Failure.Text, want) && !strings.Contains(test.Failure.Message, want) {
				t.Errorf("the failure does not mention %q:\n%s", want, test.Failure.Text)
			}
		}
	}
	if !found {
		t.Fatal("no exactly-once test case")
	}
	page, err := os.ReadFile(filepath.Join(runDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"INVARIANT VIOLATED", "k-dup-1", "tx-dup-b", "journal.jsonl@4242"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html does not show %q", want)
		}
	}
}

func TestJUnitSkippedInvariant(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	result := readAudit(t, runDir)
	for i := range result.Invariants {
		if result.Invariants[i].Name == invariants.CacheCoherence {
			result.Invariants[i].Status = invariants.StatusSkipped
			result.Invariants[i].Note = "no Redis reachable"
		}
	}
	writeAudit(t, runDir, result)
	if _, err := Generate(runDir); err != nil {
		t.Fatal(err)
	}
	_, _, notExercised := recordedThresholds(t, runDir)
	suite := parseJUnit(t, runDir).Suites[0]
	if suite.Skipped != 1+notExercised {
		t.Errorf("skipped = %d, want 1 invariant + %d thresholds not exercised", suite.Skipped, notExercised)
	}
}

func TestMissingInputsAreNotRecorded(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	for _, name := range []string{RunFile, MetricsFile, ChaosLogFile, AuditFile, LoadSummaryFile, LoadLogFile} {
		if err := os.Remove(filepath.Join(runDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	summary, err := Generate(runDir)
	if err != nil {
		t.Fatalf("a run with only a journal must still render: %v", err)
	}
	if summary.Verdict != VerdictCouldNotRun || summary.ExitCode != 2 {
		t.Errorf("verdict %s exit %d, want could-not-run 2 without an audit", summary.Verdict, summary.ExitCode)
	}
	for _, name := range []string{RunFile, MetricsFile, ChaosLogFile, AuditFile, LoadSummaryFile, LoadLogFile} {
		if summary.Inputs[name] != notRecorded {
			t.Errorf("inputs[%s] = %q, want %q", name, summary.Inputs[name], notRecorded)
		}
	}
	page, err := os.ReadFile(filepath.Join(runDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Metrics not recorded", "Chaos log not recorded", "run.json not recorded", "Audit not recorded", "Load summary not recorded",
		"The load's command line and schedule not recorded", "cannot be replayed"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html does not say %q", want)
		}
	}
	suite := parseJUnit(t, runDir).Suites[0]
	if suite.Errors != 1 {
		t.Errorf("junit errors = %d, want 1 (no audit)", suite.Errors)
	}

	empty := t.TempDir()
	if _, err := Generate(empty); err != nil {
		t.Fatalf("an empty run directory must still render: %v", err)
	}
	if _, err := Generate(filepath.Join(empty, "missing")); err == nil {
		t.Error("a run directory that does not exist must be an error")
	}
}

func TestSummaryFigures(t *testing.T) {
	summary, err := Analyze(recordedRun)
	if err != nil {
		t.Fatal(err)
	}
	// 1807 money operations (1847 lines − 40 signups) over about 45 s.
	if summary.Throughput.Operations != 1807 {
		t.Errorf("operations = %d, want 1807", summary.Throughput.Operations)
	}
	if summary.Throughput.MeanPerSecond < 35 || summary.Throughput.MeanPerSecond > 45 {
		t.Errorf("mean throughput %.1f ops/s, want about 40", summary.Throughput.MeanPerSecond)
	}
	latency := summary.LatencyMs
	if !(latency.P50 > 0 && latency.P50 <= latency.P95 && latency.P95 <= latency.P99 && latency.P99 <= latency.Max) {
		t.Errorf("latency percentiles out of order: %+v", latency)
	}
	// 199 info out of 1807: the error rate is the share not settled.
	if math.Abs(summary.ErrorRate-199.0/1807) > 1e-4 {
		t.Errorf("error rate %.4f, want %.4f", summary.ErrorRate, 199.0/1807)
	}
	if summary.HTTPStatuses["503"] != 520 {
		t.Errorf("503s = %d, want 520", summary.HTTPStatuses["503"])
	}
	if len(summary.Thresholds) != 5 {
		t.Errorf("thresholds = %d, want 5", len(summary.Thresholds))
	}
	// The origin is the chaos runner's start, so faults sit at the plan's
	// offsets: 8 s, 18 s, 28 s.
	for i, want := range []float64{8, 18, 28} {
		if got := summary.FaultWindows[i].StartSeconds; math.Abs(got-want) > 0.1 {
			t.Errorf("fault %d starts at %.3f s, want %.0f s", i+1, got, want)
		}
	}
}

func TestFaultWindows(t *testing.T) {
	origin := time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
	at := func(seconds float64) time.Time { return origin.Add(time.Duration(seconds * float64(time.Second))) }
	record := func(seconds float64, action, target string, params map[string]string) chaosRecord {
		return chaosRecord{Time: at(seconds), Action: action, Target: target, Params: params, Result: "ok"}
	}
	tests := []struct {
		name    string
		records []chaosRecord
		want    []FaultWindow
	}{
		{"kill then start", []chaosRecord{record(5, "kill", "broker", nil), record(8, "start", "broker", nil)},
			[]FaultWindow{{Target: "broker", Action: "kill", Recovery: "start", StartSeconds: 5, EndSeconds: 8}}},
		{"pause then resume, resolved target", []chaosRecord{
			{Time: at(2), Action: "pause", Target: "worker:partition=0", Resolved: "worker-1", Result: "ok"},
			{Time: at(4), Action: "resume", Target: "worker:partition=0", Resolved: "worker-1", Result: "ok"}},
			[]FaultWindow{{Target: "worker-1", Action: "pause", Recovery: "resume", StartSeconds: 2, EndSeconds: 4}}},
		{"link latency then heal", []chaosRecord{
			record(1, "link", "worker->postgres", map[string]string{"fault": "latency", "latency": "200ms"}),
			record(6, "link", "worker->postgres", map[string]string{"fault": "heal"})},
			[]FaultWindow{{Target: "worker->postgres", Action: "link:latency", Recovery: "heal", StartSeconds: 1, EndSeconds: 6}}},
		{"failover without start is a marker", []chaosRecord{record(3, "failover", "postgres", nil)},
			[]FaultWindow{{Target: "postgres", Action: "failover", StartSeconds: 3, EndSeconds: 3, Marker: true}}},
		{"kill never undone runs to the end", []chaosRecord{record(3, "kill", "redis", nil)},
			[]FaultWindow{{Target: "redis", Action: "kill", StartSeconds: 3, EndSeconds: 50, OpenEnded: true}}},
		{"a failed kill opens nothing", []chaosRecord{{Time: at(3), Action: "kill", Target: "redis", Result: "error", Error: "no such process"}}, nil},
		{"restart is its own window", []chaosRecord{{Time: at(3), Action: "restart", Target: "gateway-0", Result: "ok", DurationMs: 1500}},
			[]FaultWindow{{Target: "gateway-0", Action: "restart", Recovery: "restart", StartSeconds: 3, EndSeconds: 4.5}}},
		{"command closed by its recovery", []chaosRecord{
			{Time: at(2), Action: "command", Target: "db", Source: "steps[0]", Params: map[string]string{"run": "docker stop db", "recover": "docker start db"}, Result: "ok"},
			{Time: at(3), Action: "command", Target: "cache", Source: "steps[1]", Params: map[string]string{"run": "docker restart cache"}, Result: "ok", DurationMs: 2000},
			{Time: at(9), Action: "command", Target: "db", Source: "steps[0] recovery", Params: map[string]string{"run": "docker start db"}, Result: "ok", DurationMs: 1000}},
			[]FaultWindow{{Target: "db", Action: "command", Recovery: "command", StartSeconds: 2, EndSeconds: 10},
				{Target: "cache", Action: "command", Recovery: "command", StartSeconds: 3, EndSeconds: 5}}},
		{"command recovered by the cleanup", []chaosRecord{
			{Time: at(2), Action: "command", Target: "db", Source: "steps[0]", Params: map[string]string{"run": "docker stop db", "recover": "docker start db"}, Result: "ok"},
			{Time: at(20), Action: "command", Target: "db", Source: "cleanup of steps[0]", Params: map[string]string{"run": "docker start db"}, Result: "ok", Cleanup: true}},
			[]FaultWindow{{Target: "db", Action: "command", Recovery: "command", StartSeconds: 2, EndSeconds: 20}}},
		{"command never recovered runs to the end", []chaosRecord{
			{Time: at(2), Action: "command", Target: "db", Source: "steps[0]", Params: map[string]string{"run": "docker stop db", "recover": "docker start db"}, Result: "ok"}},
			[]FaultWindow{{Target: "db", Action: "command", StartSeconds: 2, EndSeconds: 50, OpenEnded: true}}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := faultWindows(test.records, origin, 50)
			if len(got) != len(test.want) {
				t.Fatalf("got %d windows %+v, want %d", len(got), got, len(test.want))
			}
			for i := range got {
				got[i].Label = ""
				if got[i] != test.want[i] {
					t.Errorf("window %d = %+v, want %+v", i, got[i], test.want[i])
				}
			}
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for micros := int64(1); micros <= 100_000; micros++ {
		h.add(micros)
	}
	for _, q := range []float64{0.5, 0.95, 0.99} {
		want := q * 100_000
		if got := h.quantile(q); math.Abs(got-want)/want > 1.0/32 {
			t.Errorf("q%.2f = %.0f, want %.0f within 3 %%", q, got, want)
		}
	}
	if got := h.quantile(1); got != 100_000 {
		t.Errorf("max = %.0f, want 100000", got)
	}
}
