package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

var twoExpected = 2.0

// weaken turns the recorded run's audit into a weak one: no invariant
// failed, key-contract was not exercised, and key reuse, which the run was
// required to exercise, never happened.
func weaken(t *testing.T, runDir string) {
	t.Helper()
	result := readAudit(t, runDir)
	result.Verdict = invariants.VerdictWeak
	for i := range result.Invariants {
		if result.Invariants[i].Name == invariants.KeyContract {
			result.Invariants[i].Status = invariants.StatusNotExercised
			result.Invariants[i].Note = "not exercised: no key was reused with another body"
		}
	}
	result.Coverage = &invariants.Coverage{
		Kinds: map[string]*invariants.KindCoverage{
			invariants.KindWithdrawal: {Operations: 10, Settled: 7, Rejected: map[string]int64{"insufficient_funds": 2}, Unknown: 1, Retried: 1},
		},
		Duplicates: invariants.DuplicateCoverage{Sent: map[string]int64{}, Answers: map[string]int64{}},
		Rejections: invariants.RejectionCoverage{Ledger: map[string]int64{"insufficient_funds": 2}, BeforeLedger: map[string]int64{},
			Judged: 2, NotDecidable: map[string]int64{}, NotJudged: map[string]int64{}},
		Required: []invariants.RequiredClass{
			{Class: invariants.ClassMoneyOperations, Why: "always", Observed: 10, Met: true, Invariants: []string{invariants.Conservation}},
			{Class: invariants.ClassKeyReuse, Why: "scenario scenarios/gate.yaml: client.misuse.rate 0.01", Observed: 0,
				Invariants: []string{invariants.KeyContract}},
			{Class: invariants.ClassReplays, Why: "scenario scenarios/gate.yaml: client.replays.rate 0.2", Expected: &twoExpected,
				Waived: "2.0 expected (rate 0.2 of 10), fewer than 10: a run this short may draw none, so it is not required", Met: true,
				Invariants: []string{invariants.ExactlyOnce}},
		},
	}
	writeAudit(t, runDir, result)
}

// TestWeakAuditFailsTheReport: a weak audit is the run's verdict weak (exit
// 4) even with crossed thresholds; the page, summary.json and junit.xml say
// which required class was missing and which invariants were not exercised.
func TestWeakAuditFailsTheReport(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	weaken(t, runDir)
	summary, err := Generate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if summary.Verdict != VerdictWeak || summary.ExitCode != 4 {
		t.Fatalf("verdict %s exit %d, want weak exit 4", summary.Verdict, summary.ExitCode)
	}
	reasons := strings.Join(summary.Reasons, "\n")
	for _, want := range []string{"the audit is weak", "key-reuse required", "not exercised, neither passed nor failed: key-contract"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("reasons lack %q:\n%s", want, reasons)
		}
	}
	if summary.Coverage == nil || len(summary.Coverage.Required) != 3 {
		t.Fatalf("summary coverage %+v", summary.Coverage)
	}
	content, err := os.ReadFile(filepath.Join(runDir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var written map[string]json.RawMessage
	if err := json.Unmarshal(content, &written); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"coverage", "worker_duplicates"} {
		if _, ok := written[field]; !ok {
			t.Errorf("summary.json has no %q", field)
		}
	}

	suite := parseJUnit(t, runDir).Suites[0]
	var coverageCases, failedCoverage, waivedCoverage int
	for _, test := range suite.Cases {
		switch {
		case test.Classname == junitCoverageClass:
			coverageCases++
			if test.Skipped != nil {
				waivedCoverage++
			}
			if test.Failure != nil {
				failedCoverage++
				if test.Name != invariants.ClassKeyReuse || !strings.Contains(test.Failure.Message, "none happened") {
					t.Errorf("coverage failure %s: %s", test.Name, test.Failure.Message)
				}
			}
		case test.Classname == junitInvariantClass && test.Name == invariants.KeyContract:
			if test.Skipped == nil || test.Failure != nil {
				t.Errorf("key-contract not exercised must be skipped in JUnit, never passed")
			}
		}
	}
	if coverageCases != 3 || failedCoverage != 1 || waivedCoverage != 1 {
		t.Errorf("%d coverage cases, %d failed, %d skipped; want 3, 1 and 1 (the waived class)", coverageCases, failedCoverage, waivedCoverage)
	}

	page, err := os.ReadFile(filepath.Join(runDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"WEAK: NOT EXERCISED", `data-class="key-reuse" data-met="false"`, "not exercised</td>",
		`data-kind="withdrawal"`, "insufficient_funds 2", `data-worker-duplicates="0"`, "waived: 2.0 expected", "<td class=\"num\">2.0</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html does not show %q", want)
		}
	}
}

// TestWorkerDuplicatesFromMetrics: the workers' duplicate counters are
// summed by their increase, a restarted worker's from zero, its first
// scrape the baseline.
func TestWorkerDuplicatesFromMetrics(t *testing.T) {
	stats := &metricsStats{seconds: map[int64]*metricsSecond{}, previous: map[string]batchCounters{}, targets: map[string]bool{},
		previousDuplicates: map[string]float64{}}
	at := time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
	scrape := func(second int, target string, duplicates float64) {
		t.Helper()
		line, err := json.Marshal(metricsLine{Time: at.Add(time.Duration(second) * time.Second), Target: target, Up: true,
			Values: map[string]float64{`ledger_worker_commands_total{result="duplicate"}`: duplicates, `ledger_worker_commands_total{result="settled"}`: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		if err := stats.add(line); err != nil {
			t.Fatal(err)
		}
	}
	scrape(0, "worker-0", 5) // baseline: before the run
	scrape(0, "worker-1", 0)
	scrape(1, "worker-0", 12)
	scrape(1, "worker-1", 3)
	scrape(2, "worker-0", 2) // restarted: 2 since
	scrape(3, "worker-0", 9)
	if !stats.hasDuplicates || stats.duplicates != 7+3+2+7 {
		t.Fatalf("duplicates %d (reported %v), want 19", stats.duplicates, stats.hasDuplicates)
	}
}
