package reports

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// recordedRun is a real run directory (the gate scenario at 40/s for 45 s,
// the broker, Postgres and worker-0 killed and restarted; four thresholds
// crossed and one not exercised; the audit passed). It was recorded with
// the earlier load generator: its load-summary.json, load.log and run.json
// were rewritten in the load engine's formats with the recording's
// figures. Tests work on copies of it and never change it.
const recordedRun = "testdata/recorded-run"

// recordedFaultWindows is how many fault windows its chaos log has: three
// kill → start pairs.
const recordedFaultWindows = 3

// copyRun copies the recorded run into a new directory under dir.
func copyRun(t *testing.T, dir string) string {
	t.Helper()
	target := filepath.Join(dir, "run")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(recordedRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		source, err := os.Open(filepath.Join(recordedRun, entry.Name()))
		if err != nil {
			t.Fatal(err)
		}
		destination, err := os.Create(filepath.Join(target, entry.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(destination, source); err != nil {
			t.Fatal(err)
		}
		source.Close()
		if err := destination.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return target
}

func readAudit(t *testing.T, runDir string) *invariants.Result {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(runDir, AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	var result invariants.Result
	if err := json.Unmarshal(content, &result); err != nil {
		t.Fatal(err)
	}
	return &result
}

func writeAudit(t *testing.T, runDir string, result *invariants.Result) {
	t.Helper()
	content, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runDir, AuditFile), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// seededViolation is the counterexample the mutated audits carry.
var seededViolation = invariants.Violation{
	Invariant:  invariants.ExactlyOnce,
	Summary:    `key "k-dup-1" (user 7) has 2 settled transactions: applied twice`,
	Keys:       []string{"k-dup-1"},
	Accounts:   []int64{7},
	Operations: []invariants.OperationRef{{Journal: "journal.jsonl", Offset: 4242, Entry: json.RawMessage(`{"v":1,"op":"op-9","kind":"deposit","key":"k-dup-1","user":7,"outcome":"ok"}`)}},
	Rows:       []invariants.RowRef{{Table: "transactions", ID: "tx-dup-a", IdempotencyKey: "k-dup-1", Status: "settled"}, {Table: "transactions", ID: "tx-dup-b", IdempotencyKey: "k-dup-1", Status: "settled"}},
}

// violate turns the run's audit into one where exactly-once failed.
func violate(t *testing.T, runDir string) {
	t.Helper()
	result := readAudit(t, runDir)
	result.Verdict = invariants.VerdictViolated
	for i := range result.Invariants {
		if result.Invariants[i].Name == invariants.ExactlyOnce {
			result.Invariants[i].Status = invariants.StatusViolated
			result.Invariants[i].ViolationCount = 1
			result.Invariants[i].Violations = []invariants.Violation{seededViolation}
		}
	}
	writeAudit(t, runDir, result)
}
