package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// shardedLedgers are the ledgers of both shards' workers over twoShards.
func (s twoShards) ledgers(t *testing.T, recovery postgres.SagaRecovery) [2]*postgres.ShardedLedger {
	t.Helper()
	var ledgers [2]*postgres.ShardedLedger
	for i := range ledgers {
		l, err := postgres.NewShardedLedger([]*postgres.Store{s.source, s.destination}, i, recovery, nil)
		if err != nil {
			t.Fatal(err)
		}
		ledgers[i] = l
	}
	return ledgers
}

// TestShardedLedgerRoutesRecords: each record is exactly one shard's, by
// its account; records naming no account are shard 0's; a transfer to
// another shard's account is a saga of the source's shard unless the batch
// apply would refuse it on its face.
func TestShardedLedgerRoutesRecords(t *testing.T) {
	shards := newTwoShards(t)
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	payer, payee := shards.payer, shards.payee
	notDerived := transfer(payer, "not-derived", payee.AccountID, 1)
	notDerived.TransactionID = ledger.TransactionIDFor(payer.ID, "another key")
	cases := []struct {
		name   string
		record postgres.Record
		want   [2]postgres.Route
	}{
		{"deposit to shard 0", postgres.Record{Command: deposit(payer, "d0", 5)}, [2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
		{"deposit to shard 1", postgres.Record{Command: deposit(payee, "d1", 5)}, [2]postgres.Route{postgres.RouteForeign, postgres.RouteLocal}},
		{"transfer across shards", postgres.Record{Command: transfer(payer, "t", payee.AccountID, 5)}, [2]postgres.Route{postgres.RouteSaga, postgres.RouteForeign}},
		{"transfer to a missing account of shard 1", postgres.Record{Command: transfer(payer, "t-missing", payee.AccountID+2000, 5)},
			[2]postgres.Route{postgres.RouteSaga, postgres.RouteForeign}},
		{"transfer within shard 0", postgres.Record{Command: transfer(payer, "t0", payer.AccountID+2, 5)}, [2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
		{"transfer from shard 1", postgres.Record{Command: transfer(payee, "t1", payer.AccountID, 5)}, [2]postgres.Route{postgres.RouteForeign, postgres.RouteSaga}},
		{"transfer to itself", postgres.Record{Command: transfer(payee, "self", payee.AccountID, 5)}, [2]postgres.Route{postgres.RouteForeign, postgres.RouteLocal}},
		{"transfer with an id not derived from its key", postgres.Record{Command: notDerived}, [2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
		{"undecodable", postgres.Record{Raw: []byte("{"), DeadLetter: ledger.DeadLetterUndecodable}, [2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
		{"not storable", postgres.Record{Command: ledger.Command{TransactionID: "nope", Kind: ledger.KindDeposit, DestinationAccountID: payee.AccountID}},
			[2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
		{"withdrawal from no account", postgres.Record{Command: command(payee, ledger.KindWithdrawal, "w", 0, 0, 5)},
			[2]postgres.Route{postgres.RouteLocal, postgres.RouteForeign}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, l := range ledgers {
				if got := l.Route(c.record); got != c.want[i] {
					t.Errorf("shard %d routes it %d, want %d", i, got, c.want[i])
				}
			}
		})
	}
}

// TestShardedLedgerSkipsForeignRecordsAndRunsSagasInOrder: each shard's
// worker reads the same batch; each applies its own records in offset
// order (a saga between them), moves its own offset past every record, and
// a redelivered batch or a copy of a saga's command changes nothing.
func TestShardedLedgerSkipsForeignRecordsAndRunsSagasInOrder(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	payer, payee := shards.payer, shards.payee
	const partition = 5
	paid := transfer(payer, "across", payee.AccountID, 300)
	missing := transfer(payer, "to-missing", payee.AccountID+2000, 200)
	batch := batchAt(partition, 0,
		deposit(payee, "payee-deposit", 50), // shard 1's
		paid,                                // a saga of shard 0's, completed
		transfer(payer, "too-much", payee.AccountID, 900), // refused: 700 left
		missing, // compensated
		command(payer, ledger.KindWithdrawal, "withdraw", payer.AccountID, ledger.ExternalAccountID, 650), // after the refund: 700 - 650
		deposit(payee, "payee-deposit-2", 5), // shard 1's, last: the offset moves past it all the same
	)
	result, err := ledgers[0].ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if result.ForeignSkipped != 2 || result.Sagas[postgres.SagaCompleted] != 1 || result.Sagas[postgres.SagaCompensated] != 1 ||
		result.Sagas[postgres.SagaRefused] != 1 || result.Settled != 2 || result.NextOffset != 6 {
		t.Errorf("shard 0's result: %+v", result)
	}
	outcomes := map[string]ledger.Outcome{}
	for _, notice := range result.Outcomes {
		outcomes[notice.TransactionID] = notice.Outcome
	}
	if got := outcomes[paid.TransactionID]; got.Status != ledger.StatusSettled {
		t.Errorf("the completed saga's outcome: %+v", got)
	}
	if got := outcomes[missing.TransactionID]; got.Status != ledger.StatusRejected || got.Reason != ledger.CodeAccountNotFound {
		t.Errorf("the compensated saga's outcome: %+v", got)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 50 {
		t.Errorf("payer %d, want 50", got)
	}
	if got := result.Balances[payer.AccountID]; got != 50 {
		t.Errorf("the payer's balance reported %d, want 50", got)
	}
	if got := result.Balances[payee.AccountID]; got != 300 {
		t.Errorf("the payee's balance reported %d, want 300 (the saga's credit)", got)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 300 {
		t.Errorf("payee %d before shard 1 applied its records, want 300 (the credit only)", got)
	}
	if status, reason := transactionRow(t, shards.source, transfer(payer, "too-much", payee.AccountID, 900).TransactionID); status != "rejected" ||
		reason != string(ledger.CodeInsufficientFunds) {
		t.Errorf("the refused saga's row: %q %q", status, reason)
	}
	if got := storedOffset(t, shards.source, partition); got != 6 {
		t.Errorf("shard 0's offset %d, want 6", got)
	}

	result, err = ledgers[1].ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if result.ForeignSkipped != 4 || result.Applied != 2 || len(result.Sagas) != 0 || result.NextOffset != 6 {
		t.Errorf("shard 1's result: %+v", result)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 355 {
		t.Errorf("payee %d, want 355", got)
	}
	if got := storedOffset(t, shards.destination, partition); got != 6 {
		t.Errorf("shard 1's offset %d, want 6", got)
	}

	// Redelivered whole: nothing moves, in either shard.
	for i, l := range ledgers {
		again, err := l.ApplyBatch(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if again.Applied != 0 || again.Settled != 0 || len(again.Outcomes) != 0 {
			t.Errorf("shard %d applied a redelivered batch: %+v", i, again)
		}
	}
	// A cross-shard transfer without its acceptance time (a hand-made
	// record) runs as the batch apply would store it, not stalling the
	// partition.
	untimed := transfer(payer, "untimed", payee.AccountID, 10)
	untimed.AcceptedAt = time.Time{}
	if ran, err := ledgers[0].ApplyBatch(ctx, batchAt(partition+1, 0, untimed)); err != nil || ran.Sagas[postgres.SagaCompleted] != 1 {
		t.Fatalf("a saga without its acceptance time: %+v %v", ran, err)
	}
	// A copy of the completed saga's command at a later offset is answered
	// with its outcome.
	copied, err := ledgers[0].ApplyBatch(ctx, batchAt(partition, 6, paid))
	if err != nil {
		t.Fatal(err)
	}
	if copied.Duplicates != 1 || copied.Sagas["duplicate"] != 1 || len(copied.Outcomes) != 1 || copied.Outcomes[0].Status != ledger.StatusSettled {
		t.Errorf("a copy of a finished saga: %+v", copied)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 40 {
		t.Errorf("payer %d after the repeats, want 40", got)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 365 {
		t.Errorf("payee %d after the repeats, want 365", got)
	}
}

// TestShardedLedgerLeavesASagaInFlightForTheRecovery: a destination shard
// that does not answer leaves the saga debited and the partition goes on;
// a recovery pass finishes it, with its outcome and both balances.
func TestShardedLedgerLeavesASagaInFlightForTheRecovery(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer, payee := shards.payer, shards.payee
	down, err := postgres.Open(ctx, postgres.Config{URL: "postgres://ledger@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	cut, err := postgres.NewShardedLedger([]*postgres.Store{shards.source, down}, 0, postgres.SagaRecovery{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	paid := transfer(payer, "across", payee.AccountID, 300)
	result, err := cut.ApplyBatch(ctx, batchAt(3, 0, paid, command(payer, ledger.KindWithdrawal, "after", payer.AccountID, ledger.ExternalAccountID, 100)))
	if err != nil {
		t.Fatal(err)
	}
	if result.Sagas[postgres.SagaDebited] != 1 || result.Settled != 1 || len(result.Outcomes) != 1 || storedOffset(t, shards.source, 3) != 2 {
		t.Fatalf("with the destination down: %+v", result)
	}
	if state, _ := sagaState(t, shards.source, paid.TransactionID); state != postgres.SagaDebited {
		t.Fatalf("saga %s, want debited", state)
	}
	ledgers := shards.ledgers(t, postgres.SagaRecovery{OlderThan: 1})
	recovered, err := ledgers[0].RecoverSagas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if recovered.Sagas[postgres.SagaCompleted] != 1 || len(recovered.Outcomes) != 1 || recovered.Outcomes[0].Status != ledger.StatusSettled ||
		recovered.Balances[payee.AccountID] != 300 {
		t.Errorf("recovery: %+v", recovered)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 300 {
		t.Errorf("payee %d, want 300", got)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 600 {
		t.Errorf("payer %d, want 600", got)
	}
}

// TestSagaDebitChecksOwnershipAndTheDailyLimit: a saga's debit is refused
// as the batch apply refuses a debit (another user's account, the daily
// debit limit passed) and counts against the day's limit; a compensated
// saga's debit no longer does.
func TestSagaDebitChecksOwnershipAndTheDailyLimit(t *testing.T) {
	ctx := context.Background()
	url := stacktest.PostgresURL(t)
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	source, err := postgres.Open(ctx, postgres.Config{URL: url, DailyDebitLimitMinor: 500})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(source.Close)
	destination := newShardStore(t)
	layout, _ := shard.New(2)
	for i, store := range []*postgres.Store{source, destination} {
		if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
			t.Fatal(err)
		}
	}
	payer, other, payee := newUser(t, source, "payer@example.com"), newUser(t, source, "other@example.com"), newUser(t, destination, "payee@example.com")
	fund(t, source, payer, 0, 1000)
	run := func(command ledger.Command) postgres.SagaStep {
		t.Helper()
		step, err := postgres.RunSaga(ctx, source, destination, postgres.SagaFor(command, 1, 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		return step
	}
	if step := run(transfer(payer, "first", payee.AccountID, 300)); step.State != postgres.SagaCompleted {
		t.Fatalf("first saga: %+v", step)
	}
	if step := run(transfer(payer, "to-missing", payee.AccountID+2000, 150)); step.State != postgres.SagaCompensated {
		t.Fatalf("saga to a missing account: %+v", step)
	}
	if step := run(transfer(payer, "beyond", payee.AccountID, 300)); step.State != postgres.SagaRefused || step.Reason != ledger.CodeDailyLimitExceeded {
		t.Errorf("a saga passing the daily limit: %+v, want refused daily_limit_exceeded", step)
	}
	stolen := transfer(payer, "stolen", payee.AccountID, 10)
	stolen.UserID = other.ID
	if step := run(stolen); step.State != postgres.SagaRefused || step.Reason != ledger.CodeForbidden {
		t.Errorf("a saga from another user's account: %+v, want refused forbidden", step)
	}
	// 300 settled today: a withdrawal of 200 reaches the limit exactly,
	// which it would pass if the compensated 150 still counted.
	result, err := source.ApplyBatch(ctx, batchAt(0, 1, command(payer, ledger.KindWithdrawal, "withdraw", payer.AccountID, ledger.ExternalAccountID, 200)))
	if err != nil {
		t.Fatal(err)
	}
	if result.Settled != 1 {
		t.Errorf("a withdrawal within the limit after a compensated saga: %+v", result.Outcomes)
	}
	if got := balance(t, source, payer.AccountID); got != 500 {
		t.Errorf("payer %d, want 500", got)
	}
}

// TestShardedLedgerSetsAsideASagaPostgresRefuses: a cross-shard transfer
// whose saga log Postgres refuses for its data (a rule of this database the
// worker knows nothing of) is set aside as apply_error with its SQLSTATE,
// as the batch apply sets such a record aside, and the partition moves on.
func TestShardedLedgerSetsAsideASagaPostgresRefuses(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	if _, err := shards.source.Pool().Exec(ctx, `ALTER TABLE sagas ADD CONSTRAINT test_no_poison CHECK (idempotency_key NOT LIKE 'poison%')`); err != nil {
		t.Fatal(err)
	}
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	payer, payee := shards.payer, shards.payee
	poisoned := transfer(payer, "poison", payee.AccountID, 10)
	result, err := ledgers[0].ApplyBatch(ctx, batchAt(4, 0, poisoned, transfer(payer, "fine", payee.AccountID, 20)))
	if err != nil {
		t.Fatal(err)
	}
	if result.DeadLettered != 1 || len(result.DeadLetters) != 1 || result.DeadLetters[0].Reason != ledger.ApplyErrorReason("23514") ||
		result.DeadLetters[0].TransactionID != poisoned.TransactionID || result.Sagas[postgres.SagaCompleted] != 1 || result.NextOffset != 2 {
		t.Errorf("result: %+v", result)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 980 {
		t.Errorf("payer %d, want 980", got)
	}
}

// TestSoftRefusalAndSagaDebitExcludeEachOther: the gateway's soft refusal
// of a transfer (RecordRejection) and the transfer's saga debit never both
// happen: a refusal after the debit is not justified (the saga decides),
// and a debit after a stored refusal does not run (the refusal is the
// outcome).
func TestSoftRefusalAndSagaDebitExcludeEachOther(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer, payee := shards.payer, shards.payee
	debited := transfer(payer, "debited-first", payee.AccountID, 600)
	if step, err := shards.source.SagaDebit(ctx, postgres.SagaFor(debited, 1, 0, 1)); err != nil || step.State != postgres.SagaDebited {
		t.Fatalf("debit: %+v %v", step, err)
	}
	// 400 left: an overdraft refusal would look justified, but the saga is
	// logged.
	if _, err := shards.source.RecordRejection(ctx, debited, ledger.CodeInsufficientFunds); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a refusal of a transfer whose saga is logged: %v, want ErrRefusalNotJustified", err)
	}
	if step, err := postgres.RunSaga(ctx, shards.source, shards.destination, postgres.SagaFor(debited, 1, 0, 1)); err != nil ||
		step.State != postgres.SagaCompleted {
		t.Fatalf("the saga: %+v %v", step, err)
	}
	refused := transfer(payer, "refused-first", payee.AccountID, 700)
	if stored, err := shards.source.RecordRejection(ctx, refused, ledger.CodeInsufficientFunds); err != nil || stored.Status != ledger.StatusRejected {
		t.Fatalf("the soft refusal: %+v %v", stored, err)
	}
	if step, err := shards.source.SagaDebit(ctx, postgres.SagaFor(refused, 1, 0, 2)); err != nil || step.State != postgres.SagaDuplicate {
		t.Fatalf("a debit after a stored refusal: %+v %v, want duplicate", step, err)
	}
	var sagas int
	if err := shards.source.Pool().QueryRow(ctx, `SELECT count(*) FROM sagas WHERE id = $1`, refused.TransactionID).Scan(&sagas); err != nil || sagas != 0 {
		t.Errorf("%d saga rows (%v) for a refused transfer", sagas, err)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 400 {
		t.Errorf("payer %d, want 400", got)
	}
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	result, err := ledgers[0].ApplyBatch(ctx, batchAt(1, 0, refused))
	if err != nil {
		t.Fatal(err)
	}
	if result.Duplicates != 1 || len(result.Outcomes) != 1 || result.Outcomes[0].Status != ledger.StatusRejected ||
		result.Outcomes[0].Reason != ledger.CodeInsufficientFunds {
		t.Errorf("the refused transfer's command reaching the worker: %+v", result)
	}
}
