// Package scenarios_test runs the scenarios with `ledgerproof load` against a
// real local stack and checks the load's summary and the journal against the
// ledger.
package scenarios_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerproof/ledgerproof/load/history"
	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func readJournal(t *testing.T, path string) []history.Entry {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	defer file.Close()
	var entries []history.Entry
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		var entry history.Entry
		if err := json.Unmarshal(scanner.Bytes(), &entry); err != nil {
			t.Fatalf("journal line %q: %v", scanner.Text(), err)
		}
		entries = append(entries, entry)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

type ledgerRow struct {
	userID                      int64
	key, kind, status, reason   string
	source, destination, amount int64
}

// TestSmokeScenario runs scenarios/smoke.yaml (the walk: every operation of
// the API, each answer checked) with two walkers against a local stack, then
// checks: the load passed its thresholds (every check held, no error); every
// operation in the journal is there once; every ok operation settled in the
// ledger as journaled; every fail operation is rejected or absent; no ledger
// transaction lacks a journaled operation (no phantoms).
func TestSmokeScenario(t *testing.T) {
	binary := stacktest.Binary(t)
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 2, Workers: 2})
	runDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	command := exec.CommandContext(ctx, binary, "load", "--scenario", "smoke.yaml",
		"--base-url", file.Endpoints.Gateways[0]+","+file.Endpoints.Gateways[1], "--out", runDir,
		"--set", "schedule.vus=2", "--set", "schedule.iterations=2", "--set", "setup.accounts=4")
	command.Dir = "."
	output, err := command.CombinedOutput()
	if err != nil {
		t.Fatalf("ledgerproof load smoke.yaml: %v\n%s", err, output)
	}

	summary, err := metrics.ReadSummary(filepath.Join(runDir, "load-summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !summary.ThresholdsPassed {
		t.Fatalf("thresholds: %+v\n%s", summary.Thresholds, output)
	}
	checks := 0
	for name, check := range summary.Checks {
		if check.Fails != 0 {
			t.Errorf("check %q failed %d times", name, check.Fails)
		}
		checks += int(check.Passes)
	}
	if checks < 4*20 {
		t.Fatalf("%d checks held; two walkers of two iterations each check over 20 answers each\n%s", checks, output)
	}

	entries := readJournal(t, filepath.Join(runDir, "journal.jsonl"))
	db, err := pgxpool.New(ctx, file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]ledgerRow{}
	result, err := db.Query(ctx, `SELECT id::text, user_id, idempotency_key, kind, status, reason, source_account_id, destination_account_id, amount FROM transactions`)
	if err != nil {
		t.Fatal(err)
	}
	for result.Next() {
		var id string
		var row ledgerRow
		if err := result.Scan(&id, &row.userID, &row.key, &row.kind, &row.status, &row.reason, &row.source, &row.destination, &row.amount); err != nil {
			t.Fatal(err)
		}
		rows[id] = row
	}
	if err := result.Err(); err != nil {
		t.Fatal(err)
	}

	seenOps := map[string]bool{}
	journaled := map[string]bool{}
	counts := map[string]int{}
	for _, entry := range entries {
		if seenOps[entry.Op] {
			t.Errorf("operation %s is in the journal twice", entry.Op)
		}
		seenOps[entry.Op] = true
		if entry.Invoke <= 0 || entry.Complete < entry.Invoke {
			t.Errorf("operation %s: invoke %d, complete %d", entry.Op, entry.Invoke, entry.Complete)
		}
		switch entry.Kind {
		case "deposit", "withdrawal", "transfer", "misuse":
		default:
			continue
		}
		counts[entry.Kind+"/"+entry.Outcome]++
		id := ledger.TransactionIDFor(entry.User, entry.Key)
		row, applied := rows[id]
		if entry.Kind != "misuse" {
			journaled[id] = true
		}
		switch {
		case entry.Kind == "misuse":
			if entry.Outcome != "fail" || entry.Reason != "idempotency_key_reused" {
				t.Errorf("misuse %s: outcome %s/%s, want fail/idempotency_key_reused", entry.Op, entry.Outcome, entry.Reason)
			}
			if applied && row.amount == entry.Amount {
				t.Errorf("misuse %s was applied: the ledger holds its amount %d", entry.Op, entry.Amount)
			}
		case entry.Outcome == "ok":
			if !applied || row.status != "settled" || row.kind != entry.Kind || row.amount != entry.Amount ||
				row.source != entry.From || row.destination != entry.To {
				t.Errorf("ok operation %s (%s %d %d→%d) is not settled as journaled: %+v (found %v)", entry.Op, entry.Kind, entry.Amount, entry.From, entry.To, row, applied)
			}
		case entry.Outcome == "fail":
			if applied && (row.status != "rejected" || row.reason != entry.Reason) && row.amount == entry.Amount {
				t.Errorf("fail operation %s (%s) has an effect in the ledger: %+v", entry.Op, entry.Reason, row)
			}
		case entry.Outcome == "info":
			// Unknown outcomes are allowed; with a healthy stack there
			// should be none, so report them.
			t.Logf("operation %s ended info (status %q, reason %q); in the ledger: %v", entry.Op, entry.Status, entry.Reason, applied)
		default:
			t.Errorf("operation %s has outcome %q", entry.Op, entry.Outcome)
		}
	}
	for id, row := range rows {
		if !journaled[id] {
			t.Errorf("ledger transaction %s (%s %d, key %q) has no journaled operation: a phantom", id, row.kind, row.amount, row.key)
		}
	}
	for _, kind := range []string{"deposit/ok", "withdrawal/ok", "transfer/ok"} {
		if counts[kind] == 0 {
			t.Errorf("the smoke run journaled no %s operation (counts %v)", kind, counts)
		}
	}
	t.Logf("%d journal lines, %d ledger transactions, money operations by outcome: %v", len(entries), len(rows), counts)
}
