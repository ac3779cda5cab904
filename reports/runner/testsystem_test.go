package runner_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
	"github.com/ledgerproof/ledgerproof/sut/testsystem"
)

// startTestSystem runs sut/testsystem on a loopback port of the test's,
// until the test ends, and returns it with its base URL.
func startTestSystem(t *testing.T, options testsystem.Options) (*testsystem.System, string) {
	t.Helper()
	system, err := testsystem.New(options)
	if err != nil {
		t.Fatal(err)
	}
	listener := stacktest.Listen(t)
	server := &http.Server{Handler: system.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() {
		server.Close()
		system.Close()
	})
	return system, "http://" + listener.Addr().String()
}

// serveTestSystem runs sut/testsystem (startTestSystem) and returns its base
// URL and an export command (this test binary, asking it to write its
// export into exportDir).
func serveTestSystem(t *testing.T, options testsystem.Options, exportDir string) (baseURL, exportCommand string) {
	t.Helper()
	_, baseURL = startTestSystem(t, options)
	binary, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	trigger := baseURL + "/admin/export?dir=" + url.QueryEscape(exportDir)
	return baseURL, "LEDGERPROOF_TEST_EXPORT_URL='" + trigger + "' '" + binary + "'"
}

// gateAgainst runs the default gate (scenarios/gate.yaml as it is: 60s at
// 200/s) against the test system through its export, and returns the exit
// code, the output and the run directory.
func gateAgainst(t *testing.T, options testsystem.Options, extra ...string) (int, string, string) {
	t.Helper()
	// Answers take up to 20ms, as a deployed system's do: the gate's early
	// timeouts (at most 50ms) then fire on some requests, and the retries
	// it promises happen (an in-memory answer in microseconds leaves the
	// audit weak: "retries required but none happened").
	options.Latency = 20 * time.Millisecond
	exportDir := filepath.Join(t.TempDir(), "export")
	baseURL, exportCommand := serveTestSystem(t, options, exportDir)
	out := filepath.Join(t.TempDir(), "run")
	args := append([]string{"--scenario", scenario, "--stack", "external", "--base-url", baseURL,
		"--ledger-export", exportDir, "--export-command", exportCommand, "--out", out}, untimed...)
	args = append(args, extra...)
	code, output := ledgerproofRun(t, 4*time.Minute, args...)
	t.Logf("ledgerproof run:\n%s", output)
	return code, output, out
}

// untimed takes the gate scenario's speed thresholds (p95 accept latency,
// dropped iterations) out of a test's run: they judge the machine as much as
// the system, and a test shares its machine with the rest of the suite (a
// busy moment failed the p95 once). Speed targets live in the benchmarks;
// these tests judge correctness, and keep the errors threshold.
var untimed = []string{"--set", "thresholds.accept_duration=", "--set", "thresholds.dropped_iterations="}

// TestAsynchronousSystemPassesTheGate: a correct system that answers 202
// and applies the money 3s later passes the default gate through an export
// command: the run exports again until the ledger stopped changing, so the
// operations still being applied when the load ended are not called lost.
func TestAsynchronousSystemPassesTheGate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for a minute")
	}
	code, output, out := gateAgainst(t, testsystem.Options{ApplyDelay: 3 * time.Second})
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0 (a correct system)", code)
	}
	if !strings.Contains(output, "export drained") {
		t.Errorf("the run does not say the export drained")
	}
	audit := readAudit(t, out)
	for _, invariant := range audit.Invariants {
		if invariant.Name == invariants.Durability && invariant.Checked["acknowledged keys"] == 0 {
			t.Errorf("durability checked nothing: %+v", invariant)
		}
	}
}

// otherSchema is the test system's ledger database as a team might have
// it: other table and column names, text ids, amounts in cents.
const otherSchema = `
CREATE TABLE wallets (wallet_no bigint PRIMARY KEY, owner bigint, balance_cents bigint NOT NULL);
CREATE TABLE payments (ref text PRIMARY KEY, owner bigint, client_key text, type text, debit_wallet bigint,
  credit_wallet bigint, cents bigint, state text, failure text, seq bigint);
CREATE TABLE entries (entry_id bigint PRIMARY KEY, payment_ref text, wallet_no bigint, cents bigint, running bigint);`

// otherSchemaQueries is the ledger query file a team writes for it.
const otherSchemaQueries = `driver: postgres
url_env: TEST_THEIR_LEDGER_URL
accounts: |
  SELECT wallet_no AS id, owner AS user_id, CASE WHEN wallet_no = 0 THEN 'external' ELSE 'user' END AS kind,
         balance_cents AS balance FROM wallets
transactions: |
  SELECT ref AS id, owner AS user_id, client_key AS idempotency_key, type AS kind, debit_wallet AS source_account_id,
         credit_wallet AS destination_account_id, cents AS amount, state AS status, failure AS reason, seq AS applied_order
  FROM payments
postings: |
  SELECT entry_id AS id, payment_ref AS transaction_id, wallet_no AS account_id, cents AS amount, running AS balance_after
  FROM entries ORDER BY entry_id
`

// mirror copies the system's ledger into their database, whole, in one
// transaction: the database a team's auditor would read. The old rows go
// with DELETE, not TRUNCATE: TRUNCATE is not MVCC-safe, so an audit's
// REPEATABLE READ snapshot taken before it commits sees the tables empty
// after it (a second read of the ledger found no postings, and the lost
// updates went unexplained).
func mirror(ctx context.Context, pool *pgxpool.Pool, ledger invariants.Source) error {
	var wallets, payments, entries [][]any
	err := ledger.Scan(ctx, invariants.Visitor{
		Account: func(a *invariants.Account) error {
			wallets = append(wallets, []any{a.ID, a.UserID, a.Balance})
			return nil
		},
		Transaction: func(x *invariants.Transaction) error {
			payments = append(payments, []any{x.ID, x.UserID, x.IdempotencyKey, x.Kind, x.SourceAccountID, x.DestinationAccountID,
				x.Amount, x.Status, x.Reason, x.AppliedOrder})
			return nil
		},
		Posting: func(p *invariants.Posting) error {
			entries = append(entries, []any{p.ID, p.TransactionID, p.AccountID, p.Amount, p.BalanceAfter})
			return nil
		},
	})
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, table := range []string{"entries", "payments", "wallets"} {
			if _, err := tx.Exec(ctx, "DELETE FROM "+table); err != nil {
				return err
			}
		}
		for _, table := range []struct {
			name    string
			columns []string
			rows    [][]any
		}{
			{"wallets", []string{"wallet_no", "owner", "balance_cents"}, wallets},
			{"payments", []string{"ref", "owner", "client_key", "type", "debit_wallet", "credit_wallet", "cents", "state", "failure", "seq"}, payments},
			{"entries", []string{"entry_id", "payment_ref", "wallet_no", "cents", "running"}, entries},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{table.name}, table.columns, pgx.CopyFromRows(table.rows)); err != nil {
				return err
			}
		}
		return nil
	})
}

// gateAgainstAnotherDialect runs the default gate's workload for 30s against
// the test system speaking the v2 dialect (sut/testsystem ShapeV2), through
// profiles/example-v2.yaml, auditing its ledger as a Postgres database of
// another schema (kept in step with the system every 200ms, as a replica
// would be) read through the team's queries (--ledger-sql). It returns the
// exit code and the run directory.
func gateAgainstAnotherDialect(t *testing.T, options testsystem.Options) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := stacktest.PostgresURL(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, otherSchema); err != nil {
		t.Fatal(err)
	}
	// Answers take up to 20ms, as in gateAgainst.
	options.Shape, options.Latency = testsystem.ShapeV2, 20*time.Millisecond
	system, baseURL := startTestSystem(t, options)
	mirrored := make(chan error, 1)
	go func() {
		var err error
		for ctx.Err() == nil && err == nil {
			if err = mirror(ctx, pool, system.Ledger()); err == nil {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
		if ctx.Err() != nil {
			err = nil
		}
		mirrored <- err
	}()

	t.Setenv("TEST_THEIR_LEDGER_URL", url)
	queries := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(queries, []byte(otherSchemaQueries), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	args := append([]string{"--scenario", scenario, "--stack", "external", "--base-url", baseURL,
		"--profile", "../../profiles/example-v2.yaml", "--ledger-sql", queries, "--duration", "30s", "--out", out}, untimed...)
	code, output := ledgerproofRun(t, 3*time.Minute, args...)
	t.Logf("ledgerproof run:\n%s", output)
	cancel()
	if err := <-mirrored; err != nil {
		t.Fatalf("mirroring the ledger: %v", err)
	}
	return code, out
}

// TestProfileOfAnotherDialect: the default gate against a correct system of
// another dialect, spoken through its profile, its ledger read through SQL
// queries of another schema: it passes, and the audit checked its money.
func TestProfileOfAnotherDialect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for 30s")
	}
	code, out := gateAgainstAnotherDialect(t, testsystem.Options{})
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0 (a correct system)", code)
	}
	audit := readAudit(t, out)
	checked := map[string]map[string]int64{}
	for _, invariant := range audit.Invariants {
		checked[invariant.Name] = invariant.Checked
	}
	if checked[invariants.ExactlyOnce]["keys"] == 0 || checked[invariants.JustifiedRejection]["rejections"] == 0 ||
		checked[invariants.KeyContract]["misuses"] == 0 {
		t.Errorf("the audit did not check keys, rejections and misuses: %v", checked)
	}
	if !strings.Contains(audit.Ledger, "your queries") {
		t.Errorf("the audit read %q, want the ledger through the queries", audit.Ledger)
	}
}

// TestDefaultGateCatchesBugsOfAnotherSystem: the default gate's workload,
// unchanged, catches a lost update and a double apply in a system nobody
// here wrote, of another dialect and another ledger schema, each by the
// invariant that names it, with the culprit operations named.
func TestDefaultGateCatchesBugsOfAnotherSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for 30s per bug")
	}
	for _, c := range []struct {
		bug, want, mention string
	}{
		{testsystem.BugLostUpdate, invariants.BalanceEqualsPostings, "lost update"},
		{testsystem.BugDoubleApply, invariants.ExactlyOnce, "one request took effect"},
	} {
		t.Run(c.bug, func(t *testing.T) {
			code, out := gateAgainstAnotherDialect(t, testsystem.Options{Bug: c.bug})
			if code != runner.ExitInvariantViolated {
				t.Fatalf("exit %d, want %d (violated)", code, runner.ExitInvariantViolated)
			}
			audit := readAudit(t, out)
			if violated := violatedInvariants(audit); !contains(violated, c.want) {
				t.Fatalf("violated %v, want %s among them", violated, c.want)
			}
			// The culprits are named: the journal operations behind the
			// first violation, not only a total.
			for _, invariant := range audit.Invariants {
				if invariant.Name != c.want {
					continue
				}
				first := invariant.Violations[0]
				if len(first.Operations) == 0 || !strings.Contains(first.Summary, c.mention) {
					t.Errorf("%s's first violation names no operation or lacks %q: %+v", c.want, c.mention, first)
				}
			}
		})
	}
}
