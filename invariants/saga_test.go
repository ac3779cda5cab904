package invariants

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// sagaShapes builds the rows of one saga of 100 from account 2 (shard 0)
// to account 3 (shard 1) in a given shape.
type sagaShape struct {
	state                     string
	decisions                 []string
	debits, credits, refunds  int
	extraRecordInDestination  bool
	recordMissing, strayOther bool
}

func buildSaga(id string, shape sagaShape) *SagaLedger {
	ledger := &SagaLedger{Shards: 2}
	if !shape.recordMissing {
		ledger.Sagas = append(ledger.Sagas, SagaRecord{ID: id, Shard: 0, SourceAccountID: 2, DestinationAccountID: 3,
			DestinationShard: 1, Amount: 100, State: shape.state})
	}
	if shape.extraRecordInDestination {
		ledger.Sagas = append(ledger.Sagas, SagaRecord{ID: id, Shard: 1, SourceAccountID: 2, DestinationAccountID: 3,
			DestinationShard: 1, Amount: 100, State: shape.state})
	}
	for _, outcome := range shape.decisions {
		ledger.Decisions = append(ledger.Decisions, SagaDecision{SagaID: id, Shard: 1, AccountID: 3, Amount: 100, Outcome: outcome})
	}
	next := int64(1)
	add := func(n, shard int, account, amount int64) {
		for i := 0; i < n; i++ {
			ledger.Postings = append(ledger.Postings, SagaPosting{ID: next, Shard: shard, TransactionID: id, AccountID: account, Amount: amount})
			next++
		}
	}
	add(shape.debits, 0, 2, -100)
	add(shape.credits, 1, 3, 100)
	add(shape.refunds, 0, 2, 100)
	if shape.strayOther {
		add(1, 0, 0, 100)
	}
	return ledger
}

func TestSagaAtomicityPassesOnGoodSagas(t *testing.T) {
	completed := buildSaga("a", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 1})
	compensated := buildSaga("b", sagaShape{state: sagaCompensated, decisions: []string{sagaCancelled}, debits: 1, refunds: 1})
	both := &SagaLedger{Shards: 2}
	for _, part := range []*SagaLedger{completed, compensated} {
		both.Sagas = append(both.Sagas, part.Sagas...)
		both.Decisions = append(both.Decisions, part.Decisions...)
		both.Postings = append(both.Postings, part.Postings...)
	}
	result := CheckSagas(both, 20)
	if result.Status != StatusPassed || result.Checked[unitSagas] != 2 || result.Checked[unitSagasCompensated] != 1 {
		t.Fatalf("good sagas: %s %v %+v", result.Status, result.Checked, result.Violations)
	}
	if result := CheckSagas(completed, 20); result.Status != StatusPassed || !strings.Contains(result.Note, "compensated") {
		t.Errorf("only completed sagas: %s, note %q: want passed and a note that compensation was not exercised", result.Status, result.Note)
	}
}

func TestSagaAtomicityNotExercised(t *testing.T) {
	for name, ledger := range map[string]*SagaLedger{"one shard (no source)": nil, "two shards, no saga": {Shards: 2}} {
		if result := CheckSagas(ledger, 20); result.Status != StatusNotExercised || result.Note == "" {
			t.Errorf("%s: %s (%q), want not exercised with a note", name, result.Status, result.Note)
		}
	}
}

func TestSagaAtomicityFailsOnEachBrokenShape(t *testing.T) {
	cases := []struct {
		name  string
		shape sagaShape
		want  string
	}{
		{"failed without refund (saga-no-compensation)", sagaShape{state: sagaFailed, decisions: []string{sagaCancelled}, debits: 1}, "without its credit or its refund"},
		{"refunded twice (saga-double-compensation)", sagaShape{state: sagaCompensated, decisions: []string{sagaCancelled}, debits: 1, refunds: 2}, "2 refund(s)"},
		{"left in flight", sagaShape{state: sagaDebited, debits: 1}, "in flight after drain"},
		{"credited and refunded", sagaShape{state: sagaCompensated, decisions: []string{sagaCredited}, debits: 1, credits: 1, refunds: 1}, "paid twice"},
		{"completed without credit", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1}, "0 credit(s)"},
		{"credited twice", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 2}, "2 credit(s)"},
		{"completed but cancelled", sagaShape{state: sagaCompleted, decisions: []string{sagaCancelled}, debits: 1, credits: 1}, `decision "cancelled"`},
		{"compensated without the fence", sagaShape{state: sagaCompensated, debits: 1, refunds: 1}, `decision ""`},
		{"debited twice", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 2, credits: 1}, "2 debit(s)"},
		{"no debit", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, credits: 1}, "0 debit(s)"},
		{"credit with no saga", sagaShape{recordMissing: true, decisions: []string{sagaCredited}, credits: 1}, "0 shard(s) log the saga"},
		{"logged in two shards", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 1, extraRecordInDestination: true}, "2 shard(s) log the saga"},
		{"stray posting", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 1, strayOther: true}, "neither its debit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result := CheckSagas(buildSaga("s", c.shape), 20)
			if result.Status != StatusViolated || result.ViolationCount != 1 || len(result.Violations) != 1 {
				t.Fatalf("%s with %d violation(s), want one violation", result.Status, result.ViolationCount)
			}
			v := result.Violations[0]
			if v.Invariant != SagaAtomicity || !strings.Contains(v.Summary, c.want) || len(v.Rows) == 0 {
				t.Errorf("violation %q (%d rows), want one of %s saying %q", v.Summary, len(v.Rows), SagaAtomicity, c.want)
			}
		})
	}
}

func TestSagaAtomicityListsAtMostMaxViolations(t *testing.T) {
	ledger := &SagaLedger{Shards: 2}
	for _, id := range []string{"a", "b", "c"} {
		part := buildSaga(id, sagaShape{state: sagaFailed, debits: 1})
		ledger.Sagas = append(ledger.Sagas, part.Sagas...)
		ledger.Postings = append(ledger.Postings, part.Postings...)
	}
	result := CheckSagas(ledger, 2)
	if result.ViolationCount != 3 || len(result.Violations) != 2 {
		t.Errorf("%d counted, %d listed, want 3 and 2", result.ViolationCount, len(result.Violations))
	}
}

// TestSagaAtomicityOnRealShards runs sagas through the reference executor
// on two real Postgres databases, correct and under each seeded bug, and
// reads them back with PostgresSagaSource.
func TestSagaAtomicityOnRealShards(t *testing.T) {
	stacktest.SkipIfShort(t)
	cases := []struct {
		name      string
		bug       ledger.Bug
		wantState string
	}{
		{"correct", "", StatusPassed},
		{"saga-no-compensation", ledger.BugSagaNoCompensation, StatusViolated},
		{"saga-double-compensation", ledger.BugSagaDoubleCompensation, StatusViolated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			layout, _ := shard.New(2)
			var urls []string
			var stores []*postgres.Store
			for i := 0; i < 2; i++ {
				url := stacktest.PostgresURL(t)
				if err := postgres.Migrate(ctx, url); err != nil {
					t.Fatal(err)
				}
				var bugs ledger.Bugs
				if c.bug != "" && i == 0 {
					bugs = ledger.Bugs{c.bug}
				}
				store, err := postgres.Open(ctx, postgres.Config{URL: url, SeededBugs: bugs})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(store.Close)
				if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
					t.Fatal(err)
				}
				urls, stores = append(urls, url), append(stores, store)
			}
			payer, err := stores[0].CreateUser(ctx, "payer@example.com", "hash")
			if err != nil {
				t.Fatal(err)
			}
			payee, err := stores[1].CreateUser(ctx, "payee@example.com", "hash")
			if err != nil {
				t.Fatal(err)
			}
			key := "fund"
			fund := postgres.Batch{Topic: "ledger.commands", Records: []postgres.Record{{Command: ledger.Command{
				TransactionID: ledger.TransactionIDFor(payer.ID, key), Kind: ledger.KindDeposit, UserID: payer.ID, IdempotencyKey: key,
				SourceAccountID: ledger.ExternalAccountID, DestinationAccountID: payer.AccountID, AmountMinor: 1000, Fingerprint: key}}}}
			if _, err := stores[0].ApplyBatch(ctx, fund); err != nil {
				t.Fatal(err)
			}
			sagas := []postgres.Saga{
				testSaga(payer, "ok", payee.AccountID, 100),
				testSaga(payer, "missing", payee.AccountID+2000, 50),
			}
			for _, saga := range sagas {
				if _, err := postgres.RunSaga(ctx, stores[0], stores[1], saga); err != nil {
					t.Fatal(err)
				}
			}
			recovery := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return stores[1] }, OlderThan: 1}
			if _, err := postgres.RecoverSagas(ctx, stores[0], recovery); err != nil {
				t.Fatal(err)
			}
			sagaLedger, err := PostgresSagaSource{URLs: urls}.ReadSagas(ctx)
			if err != nil {
				t.Fatal(err)
			}
			result := CheckSagas(sagaLedger, 20)
			if result.Status != c.wantState {
				t.Fatalf("%s: %v %+v, want %s", result.Status, result.Checked, result.Violations, c.wantState)
			}
			if c.wantState == StatusPassed && (result.Checked[unitSagasCompleted] != 1 || result.Checked[unitSagasCompensated] != 1) {
				t.Errorf("checked %v, want one completed and one compensated saga", result.Checked)
			}
		})
	}
}

// sagaLedgerSource is a SagaSource over rows already read (or a read
// error), for the audit's wiring.
type sagaLedgerSource struct {
	ledger *SagaLedger
	err    error
}

func (s sagaLedgerSource) ReadSagas(context.Context) (*SagaLedger, error) { return s.ledger, s.err }
func (s sagaLedgerSource) Describe() string                               { return "rows" }

// TestAuditChecksSagasItIsGiven: the audit runs saga-atomicity on its
// saga source, its violations fail the verdict, and an unreadable source
// skips the invariant with the reason.
func TestAuditChecksSagasItIsGiven(t *testing.T) {
	cases := []struct {
		name        string
		source      SagaSource
		wantStatus  string
		wantVerdict string
	}{
		{"a debit without refund", sagaLedgerSource{ledger: buildSaga("s", sagaShape{state: sagaFailed, debits: 1})}, StatusViolated, VerdictViolated},
		// The scenario's ledger has no row for "s": a completed saga whose
		// transfer has no transactions row (the right shapes pass in
		// TestShardedAuditChecksTheSagasTransferRows).
		{"a completed saga without its transfer row", sagaLedgerSource{ledger: buildSaga("s", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 1})}, StatusViolated, VerdictViolated},
		{"unreadable shards", sagaLedgerSource{err: context.DeadlineExceeded}, StatusSkipped, VerdictPassed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDir, exportDir, err := newScenario().writeIn(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}, Sagas: c.source})
			if err != nil {
				t.Fatal(err)
			}
			invariant := result.invariant(SagaAtomicity)
			if invariant.Status != c.wantStatus || result.Verdict != c.wantVerdict {
				t.Errorf("saga-atomicity %s (%q), verdict %s; want %s and %s", invariant.Status, invariant.Note, result.Verdict, c.wantStatus, c.wantVerdict)
			}
		})
	}
}

// TestSagasSurviveCrashesRetriesAndRacesProperty: sagas between two real
// shards, each interrupted after a random step (a crash), repeated by a
// random number of concurrent runners (a redelivery, a second worker) and
// resumed by concurrent recovery passes, all end completed or compensated
// with the money conserved, as saga-atomicity judges it.
func TestSagasSurviveCrashesRetriesAndRacesProperty(t *testing.T) {
	stacktest.SkipIfShort(t)
	ctx := context.Background()
	layout, _ := shard.New(2)
	var urls []string
	var stores []*postgres.Store
	for i := 0; i < 2; i++ {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
			t.Fatal(err)
		}
		urls, stores = append(urls, url), append(stores, store)
	}
	payer, err := stores[0].CreateUser(ctx, "payer@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	payee, err := stores[1].CreateUser(ctx, "payee@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	const funded = 1_000_000
	fund := postgres.Batch{Topic: "ledger.commands", Records: []postgres.Record{{Command: ledger.Command{
		TransactionID: ledger.TransactionIDFor(payer.ID, "fund"), Kind: ledger.KindDeposit, UserID: payer.ID, IdempotencyKey: "fund",
		SourceAccountID: ledger.ExternalAccountID, DestinationAccountID: payer.AccountID, AmountMinor: funded, Fingerprint: "fund"}}}}
	if _, err := stores[0].ApplyBatch(ctx, fund); err != nil {
		t.Fatal(err)
	}
	recovery := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return stores[1] }, OlderThan: 1}
	count := 0
	rapid.Check(t, func(rt *rapid.T) {
		count++
		toMissing := rapid.Bool().Draw(rt, "to a missing account")
		destination := payee.AccountID
		if toMissing {
			destination += 2 * int64(rapid.IntRange(1, 100).Draw(rt, "missing offset"))
		}
		saga := testSaga(payer, fmt.Sprintf("saga-%d", count), destination, int64(rapid.IntRange(1, 100).Draw(rt, "amount")))
		// The first runner crashes after step 0 (before the debit
		// commits, i.e. nothing), 1 (after the debit), 2 (after the
		// decision) or 3 (never).
		crashAfter := rapid.IntRange(0, 3).Draw(rt, "crash after step")
		if crashAfter >= 1 {
			if _, err := stores[0].SagaDebit(ctx, saga); err != nil {
				rt.Fatal(err)
			}
		}
		var decision postgres.SagaStep
		if crashAfter >= 2 {
			if decision, err = stores[1].SagaCredit(ctx, saga); err != nil {
				rt.Fatal(err)
			}
		}
		if crashAfter >= 3 {
			if _, err := stores[0].SagaFinish(ctx, saga.ID, decision); err != nil {
				rt.Fatal(err)
			}
		}
		// Then redeliveries and recovery passes, concurrently.
		runners := rapid.IntRange(1, 3).Draw(rt, "redeliveries")
		passes := rapid.IntRange(0, 2).Draw(rt, "recovery passes")
		errs := make(chan error, runners+passes)
		for i := 0; i < runners; i++ {
			go func() { _, err := postgres.RunSaga(ctx, stores[0], stores[1], saga); errs <- err }()
		}
		for i := 0; i < passes; i++ {
			go func() { _, err := postgres.RecoverSagas(ctx, stores[0], recovery); errs <- err }()
		}
		for i := 0; i < runners+passes; i++ {
			if err := <-errs; err != nil {
				rt.Fatal(err)
			}
		}
	})
	sagaLedger, err := PostgresSagaSource{URLs: urls}.ReadSagas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	result := CheckSagas(sagaLedger, 5)
	if result.Status != StatusPassed || result.Checked[unitSagas] != int64(count) {
		t.Fatalf("%s after %d sagas: %v %+v", result.Status, count, result.Checked, result.Violations)
	}
	var payerBalance, payeeBalance int64
	if err := stores[0].Pool().QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1`, payer.AccountID).Scan(&payerBalance); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Pool().QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1`, payee.AccountID).Scan(&payeeBalance); err != nil {
		t.Fatal(err)
	}
	if payerBalance+payeeBalance != funded {
		t.Errorf("balances %d + %d, want %d in all", payerBalance, payeeBalance, funded)
	}
	// Each saga's end wrote its transfer's one row: settled when completed,
	// rejected when compensated.
	var settled, rejected int64
	if err := stores[0].Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'settled'), count(*) FILTER (WHERE status = 'rejected')
		FROM transactions WHERE kind = 'transfer'`).Scan(&settled, &rejected); err != nil {
		t.Fatal(err)
	}
	if settled != result.Checked[unitSagasCompleted] || rejected != result.Checked[unitSagasCompensated] {
		t.Errorf("%d settled and %d rejected transfer rows for %d completed and %d compensated sagas", settled, rejected,
			result.Checked[unitSagasCompleted], result.Checked[unitSagasCompensated])
	}
}

// testSaga is the saga of a transfer of payer's, under key, to an account
// of shard 1.
func testSaga(payer ledger.User, key string, destination, amount int64) postgres.Saga {
	return postgres.SagaFor(ledger.Command{TransactionID: ledger.TransactionIDFor(payer.ID, key), Kind: ledger.KindTransfer, UserID: payer.ID,
		IdempotencyKey: key, SourceAccountID: payer.AccountID, DestinationAccountID: destination, AmountMinor: amount,
		Fingerprint: "fp-" + key, AcceptedAt: time.Now()}, 1, 0, 1)
}
