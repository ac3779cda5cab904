package runner

import (
	"github.com/ledgerproof/ledgerproof/sut/stack"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// auditFixtureDeposits is how many money operations the fixture's run has.
const auditFixtureDeposits = 40

// auditFixture writes a run directory (one signup, settled deposits),
// its ledger export and a gate-like scenario with the given client lines.
func auditFixture(t *testing.T, client string) (runDir, exportDir, scenarioPath string) {
	t.Helper()
	root := t.TempDir()
	runDir, exportDir = filepath.Join(root, "run"), filepath.Join(root, "ledger")
	write := func(path string, lines ...any) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		for _, line := range lines {
			content, err := json.Marshal(line)
			if err != nil {
				t.Fatal(err)
			}
			text.Write(append(content, '\n'))
		}
		if err := os.WriteFile(path, []byte(text.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One signup, then auditFixtureDeposits settled deposits of 10.
	journal := []any{invariants.JournalEntry{Version: 1, Op: "op-0", Kind: invariants.KindSignup, User: 101, To: 1, Invoke: 1, Complete: 2,
		Attempts: 1, Outcome: invariants.OutcomeOK}}
	var transactions, postings []any
	for i := 1; i <= auditFixtureDeposits; i++ {
		key, tx := fmt.Sprintf("k-%d", i), fmt.Sprintf("tx-%d", i)
		journal = append(journal, invariants.JournalEntry{Version: 1, Op: fmt.Sprintf("op-%d", i), Kind: invariants.KindDeposit, Key: key,
			User: 101, To: 1, Amount: 10, VU: 1, Invoke: int64(10 * i), Complete: int64(10*i + 5), Attempts: 1, Statuses: []int{200},
			Outcome: invariants.OutcomeOK, Status: invariants.StatusSettled, Tx: tx})
		transactions = append(transactions, invariants.Transaction{ID: tx, UserID: 101, IdempotencyKey: key, Kind: invariants.KindDeposit,
			DestinationAccountID: 1, Amount: 10, Status: invariants.StatusSettled})
		postings = append(postings, invariants.Posting{ID: int64(2*i - 1), TransactionID: tx, AccountID: 0, Amount: -10},
			invariants.Posting{ID: int64(2 * i), TransactionID: tx, AccountID: 1, Amount: 10})
	}
	write(filepath.Join(runDir, "journal.jsonl"), journal...)
	write(filepath.Join(exportDir, invariants.AccountsFile), invariants.Account{ID: 0, Kind: "external"},
		invariants.Account{ID: 1, UserID: 101, Kind: "user", Balance: 10 * auditFixtureDeposits})
	write(filepath.Join(exportDir, invariants.TransactionsFile), transactions...)
	write(filepath.Join(exportDir, invariants.PostingsFile), postings...)
	scenarioPath = filepath.Join(root, "gate.yaml")
	scenario := "name: gate\nschedule:\n  executor: constant-arrival-rate\n  rate: 10\n  duration: 10s\nworkload:\n  kind: mixed\n" + client
	if err := os.WriteFile(scenarioPath, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	return runDir, exportDir, scenarioPath
}

// TestAuditWeakExitCode: the audit exits 4 (weak) when the run's scenario,
// read from run.json with its overrides, promised misuse that never
// happened (20 expected of 40 operations); 0 when it promised none, when an
// override took the promise back, or when too few were expected to be sure
// of one (2 of 40); --require adds a class.
func TestAuditWeakExitCode(t *testing.T) {
	cases := []struct {
		name    string
		client  string
		sets    []string
		require string
		want    int
	}{
		{"nothing promised", "", nil, "", AuditExitPassed},
		{"misuse promised, none happened", "client:\n  misuse: {rate: 0.5}\n", nil, "", AuditExitWeak},
		{"an override took the promise back", "client:\n  misuse: {rate: 0.5}\n", []string{"client.misuse.rate=0"}, "", AuditExitPassed},
		{"too few expected to require", "client:\n  misuse: {rate: 0.05}\n", nil, "", AuditExitPassed},
		{"duplicates required by flag", "", nil, invariants.ClassDuplicates, AuditExitWeak},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDir, exportDir, scenarioPath := auditFixture(t, c.client)
			record := &RunFile{Version: RunFileVersion, ID: "test", Scenario: scenarioPath, ScenarioSets: c.sets}
			if err := record.Write(runDir); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			code := RunAudit(context.Background(), AuditOptions{RunDir: runDir, LedgerExport: exportDir, Topic: invariants.DefaultTopic,
				DrainTimeout: 1, QuietPeriod: 1, MaxViolations: 20, Scope: invariants.ScopeRun, Require: c.require}, &stdout, &stderr)
			if code != c.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.want, stdout.String(), stderr.String())
			}
			if c.want == AuditExitWeak && (!strings.Contains(stdout.String(), "AUDIT WEAK") || !strings.Contains(stderr.String(), "weak:")) {
				t.Errorf("a weak audit must say so:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			}
		})
	}
	t.Run("unknown class", func(t *testing.T) {
		runDir, exportDir, _ := auditFixture(t, "")
		code := RunAudit(context.Background(), AuditOptions{RunDir: runDir, LedgerExport: exportDir, DrainTimeout: 1, QuietPeriod: 1,
			MaxViolations: 20, Require: "nonsense"}, io.Discard, io.Discard)
		if code != AuditExitCannotRun {
			t.Fatalf("exit %d, want %d", code, AuditExitCannotRun)
		}
	})
}

// TestStackWithoutSettlement: a stack with workers and no relay (up --settlement=false) has no settlement pipeline to
// wait for or judge; one with a relay, or without workers, is not called so.
func TestStackWithoutSettlement(t *testing.T) {
	components := func(names ...string) *stack.File {
		file := &stack.File{}
		for _, name := range names {
			file.Components = append(file.Components, &stack.Component{Name: name})
		}
		return file
	}
	if why := stackWithoutSettlement(components("postgres", "broker", "worker-0", "gateway-0")); !strings.Contains(why, "--settlement=false") {
		t.Errorf("workers without a relay: %q", why)
	}
	for _, file := range []*stack.File{components("postgres", "worker-0", "relay", "settler"), components("postgres", "gateway-0")} {
		if why := stackWithoutSettlement(file); why != "" {
			t.Errorf("%v: %q, want none", file.Components, why)
		}
	}
}
