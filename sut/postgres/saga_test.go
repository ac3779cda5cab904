package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// newShardStore gives a test one migrated shard of two of its own (a
// database of the shared test cluster) with the seeded bugs given.
func newShardStore(t *testing.T, bugs ...ledger.Bug) *postgres.Store {
	t.Helper()
	url := stacktest.PostgresURL(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: url, SeededBugs: ledger.Bugs(bugs), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

// fund deposits amount into user's account (one batch at offset).
func fund(t *testing.T, store *postgres.Store, user ledger.User, offset int64, amount int64) {
	t.Helper()
	if _, err := store.ApplyBatch(context.Background(), batchAt(0, offset, deposit(user, fmt.Sprintf("fund-%d", offset), amount))); err != nil {
		t.Fatal(err)
	}
}

// sagaPostings sums the postings of a saga in one shard, by account.
func sagaPostings(t *testing.T, store *postgres.Store, sagaID string) map[int64]int64 {
	t.Helper()
	rows, err := store.Pool().Query(context.Background(), `SELECT account_id, amount FROM postings WHERE transaction_id = $1`, sagaID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sums := map[int64]int64{}
	for rows.Next() {
		var account, amount int64
		if err := rows.Scan(&account, &amount); err != nil {
			t.Fatal(err)
		}
		sums[account] += amount
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

func sagaState(t *testing.T, store *postgres.Store, sagaID string) (state string, refunds int) {
	t.Helper()
	if err := store.Pool().QueryRow(context.Background(), `SELECT state, refunds FROM sagas WHERE id = $1`, sagaID).Scan(&state, &refunds); err != nil {
		t.Fatal(err)
	}
	return state, refunds
}

// twoShards is a source shard holding a funded account and a destination
// shard holding another account.
type twoShards struct {
	source, destination *postgres.Store
	payer, payee        ledger.User
}

func newTwoShards(t *testing.T, sourceBugs ...ledger.Bug) twoShards {
	t.Helper()
	shards := twoShards{source: newShardStore(t, sourceBugs...), destination: newShardStore(t)}
	layout, err := shard.New(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := shards.source.NumberAccountsForShard(context.Background(), layout, 0); err != nil {
		t.Fatal(err)
	}
	if err := shards.destination.NumberAccountsForShard(context.Background(), layout, 1); err != nil {
		t.Fatal(err)
	}
	shards.payer = newUser(t, shards.source, "payer@example.com")
	shards.payee = newUser(t, shards.destination, "payee@example.com")
	fund(t, shards.source, shards.payer, 0, 1000)
	if layout.Of(shards.payer.AccountID) != 0 || layout.Of(shards.payee.AccountID) != 1 {
		t.Fatalf("accounts %d and %d do not route to their shards", shards.payer.AccountID, shards.payee.AccountID)
	}
	return shards
}

func (s twoShards) saga(key string, destination, amount int64) postgres.Saga {
	return postgres.SagaFor(transfer(s.payer, key, destination, amount), 1, 0, 7)
}

func TestSagaCompletesAndRepeatsAreNoOps(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	saga := shards.saga("k1", shards.payee.AccountID, 300)
	step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga)
	if err != nil || step.State != postgres.SagaCompleted {
		t.Fatalf("run: %+v %v, want completed", step, err)
	}
	// A redelivered command, a retry, the recovery loop: nothing moves.
	for i := 0; i < 2; i++ {
		if step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga); err != nil || step.State != postgres.SagaCompleted {
			t.Fatalf("repeat %d: %+v %v", i, step, err)
		}
		if step, err := shards.destination.SagaCredit(ctx, saga); err != nil || step.State != postgres.CreditCredited {
			t.Fatalf("repeated credit %d: %+v %v", i, step, err)
		}
	}
	if got := balance(t, shards.source, shards.payer.AccountID); got != 700 {
		t.Errorf("payer %d, want 700", got)
	}
	if got := balance(t, shards.destination, shards.payee.AccountID); got != 300 {
		t.Errorf("payee %d, want 300", got)
	}
	if got := sagaPostings(t, shards.source, saga.ID); len(got) != 1 || got[shards.payer.AccountID] != -300 {
		t.Errorf("source postings %v, want one debit of 300", got)
	}
	if got := sagaPostings(t, shards.destination, saga.ID); len(got) != 1 || got[shards.payee.AccountID] != 300 {
		t.Errorf("destination postings %v, want one credit of 300", got)
	}
	if status, reason := transactionRow(t, shards.source, saga.ID); status != "settled" || reason != "" {
		t.Errorf("the transfer's row: %q %q, want settled", status, reason)
	}
	var events int
	if err := shards.source.Pool().QueryRow(ctx, `SELECT count(*) FROM settlement_outbox WHERE transaction_id = $1`, saga.ID).Scan(&events); err != nil || events != 1 {
		t.Errorf("%d settlement events (%v), want 1", events, err)
	}
}

// transactionRow reads the status and reason of a transaction row, "" when
// there is none.
func transactionRow(t *testing.T, store *postgres.Store, id string) (status, reason string) {
	t.Helper()
	err := store.Pool().QueryRow(context.Background(), `SELECT status, reason FROM transactions WHERE id = $1`, id).Scan(&status, &reason)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return status, reason
}

func TestSagaDebitRefusalWritesNothing(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	saga := shards.saga("too-much", shards.payee.AccountID, 5000)
	step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga)
	if err != nil || step.State != postgres.SagaRefused || step.Reason != ledger.CodeInsufficientFunds {
		t.Fatalf("run: %+v %v, want refused insufficient_funds", step, err)
	}
	var sagas int
	if err := shards.source.Pool().QueryRow(ctx, `SELECT count(*) FROM sagas`).Scan(&sagas); err != nil || sagas != 0 {
		t.Fatalf("%d saga rows (%v) after a refused debit", sagas, err)
	}
	if got := sagaPostings(t, shards.source, saga.ID); len(got) != 0 {
		t.Errorf("postings %v after a refused debit", got)
	}
}

func TestSagaToAMissingAccountIsCompensatedOnce(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	saga := shards.saga("k-missing", shards.payee.AccountID+1000*2, 250)
	step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga)
	if err != nil || step.State != postgres.SagaCompensated || step.Reason != ledger.CodeAccountNotFound {
		t.Fatalf("run: %+v %v, want compensated account_not_found", step, err)
	}
	// A late retry and a recovery pass change nothing.
	if step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga); err != nil || step.State != postgres.SagaCompensated {
		t.Fatalf("repeat: %+v %v", step, err)
	}
	if _, err := shards.source.SagaFinish(ctx, saga.ID, postgres.SagaStep{State: postgres.CreditCancelled, Reason: ledger.CodeAccountNotFound}); err != nil {
		t.Fatal(err)
	}
	recover := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return shards.destination }, OlderThan: 1}
	if n, err := postgres.RecoverSagas(ctx, shards.source, recover); err != nil || n != 0 {
		t.Fatalf("recovery finished %d (%v), want none", n, err)
	}
	if got := balance(t, shards.source, shards.payer.AccountID); got != 1000 {
		t.Errorf("payer %d after compensation, want 1000", got)
	}
	if state, refunds := sagaState(t, shards.source, saga.ID); state != postgres.SagaCompensated || refunds != 1 {
		t.Errorf("saga %s with %d refunds, want compensated with 1", state, refunds)
	}
	if got := sagaPostings(t, shards.source, saga.ID); len(got) != 1 || got[shards.payer.AccountID] != 0 {
		t.Errorf("source postings %v, want a debit and its refund", got)
	}
	if status, reason := transactionRow(t, shards.source, saga.ID); status != "rejected" || reason != string(ledger.CodeAccountNotFound) {
		t.Errorf("the transfer's row: %q %q, want rejected account_not_found", status, reason)
	}
}

// TestSagaInterruptedAfterTheDebitIsRecovered: the worker died (or the
// destination shard was down) after the debit; the recovery loop credits
// and completes the saga, and a destination that cannot be reached leaves
// it in flight rather than compensating blind.
func TestSagaInterruptedAfterTheDebitIsRecovered(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	saga := shards.saga("k-interrupted", shards.payee.AccountID, 400)
	if step, err := shards.source.SagaDebit(ctx, saga); err != nil || step.State != postgres.SagaDebited {
		t.Fatalf("debit: %+v %v", step, err)
	}
	if status, _ := transactionRow(t, shards.source, saga.ID); status != "" {
		t.Errorf("a saga in flight has a transaction row %q: its client would learn an outcome before the saga ended", status)
	}
	unreachable := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return nil }, OlderThan: 1}
	if n, err := postgres.RecoverSagas(ctx, shards.source, unreachable); err == nil || n != 0 {
		t.Fatalf("recovery without the destination finished %d (%v), want an error", n, err)
	}
	if state, _ := sagaState(t, shards.source, saga.ID); state != postgres.SagaDebited {
		t.Fatalf("saga %s after a failed recovery, want debited", state)
	}
	young := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return shards.destination }, OlderThan: 1 << 40}
	if n, err := postgres.RecoverSagas(ctx, shards.source, young); err != nil || n != 0 {
		t.Fatalf("recovery of a saga younger than the timeout finished %d (%v)", n, err)
	}
	recover := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return shards.destination }, OlderThan: 1}
	if n, err := postgres.RecoverSagas(ctx, shards.source, recover); err != nil || n != 1 {
		t.Fatalf("recovery finished %d (%v), want 1", n, err)
	}
	if state, _ := sagaState(t, shards.source, saga.ID); state != postgres.SagaCompleted {
		t.Errorf("saga %s, want completed", state)
	}
	if got := balance(t, shards.destination, shards.payee.AccountID); got != 400 {
		t.Errorf("payee %d, want 400", got)
	}
}

func TestSagaSeededBugs(t *testing.T) {
	ctx := context.Background()
	t.Run("no compensation leaves the debit", func(t *testing.T) {
		shards := newTwoShards(t, ledger.BugSagaNoCompensation)
		saga := shards.saga("k", shards.payee.AccountID+1000*2, 250)
		step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga)
		if err != nil || step.State != postgres.SagaFailed {
			t.Fatalf("run: %+v %v, want failed", step, err)
		}
		if got := balance(t, shards.source, shards.payer.AccountID); got != 750 {
			t.Errorf("payer %d, want 750 (the debit kept)", got)
		}
	})
	t.Run("double compensation refunds at each recovery", func(t *testing.T) {
		shards := newTwoShards(t, ledger.BugSagaDoubleCompensation)
		saga := shards.saga("k", shards.payee.AccountID+1000*2, 250)
		if step, err := postgres.RunSaga(ctx, shards.source, shards.destination, saga); err != nil || step.State != postgres.SagaCompensated {
			t.Fatalf("run: %+v %v, want compensated", step, err)
		}
		recover := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return shards.destination }, OlderThan: 1}
		if _, err := postgres.RecoverSagas(ctx, shards.source, recover); err != nil {
			t.Fatal(err)
		}
		if got := balance(t, shards.source, shards.payer.AccountID); got != 1250 {
			t.Errorf("payer %d, want 1250 (refunded twice)", got)
		}
		if _, refunds := sagaState(t, shards.source, saga.ID); refunds != 2 {
			t.Errorf("%d refunds, want 2", refunds)
		}
	})
}

func TestSagaRefusesMalformedSagas(t *testing.T) {
	store := newShardStore(t)
	for _, saga := range []postgres.Saga{
		{},
		{ID: "x", SourceAccountID: 1, DestinationAccountID: 1, AmountMinor: 1},
		{ID: "x", SourceAccountID: 1, DestinationAccountID: 2, AmountMinor: 0},
	} {
		if _, err := store.SagaDebit(context.Background(), saga); err == nil {
			t.Errorf("saga %+v accepted", saga)
		}
	}
	if _, err := store.SagaFinish(context.Background(), "x", postgres.SagaStep{State: "maybe"}); err == nil {
		t.Error("a decision neither credited nor cancelled was accepted")
	}
}

func TestNumberAccountsForShard(t *testing.T) {
	ctx := context.Background()
	layout, _ := shard.New(3)
	store := newShardStore(t)
	if err := store.NumberAccountsForShard(ctx, layout, 2); err != nil {
		t.Fatal(err)
	}
	first := newUser(t, store, "a@example.com")
	// Again (a restart): the numbering goes on after the stored ids.
	if err := store.NumberAccountsForShard(ctx, layout, 2); err != nil {
		t.Fatal(err)
	}
	second := newUser(t, store, "b@example.com")
	if first.AccountID != 2 || second.AccountID != 5 {
		t.Errorf("shard 2 of 3 created accounts %d and %d, want 2 and 5", first.AccountID, second.AccountID)
	}
	if err := store.NumberAccountsForShard(ctx, layout, 1); err == nil {
		t.Error("a ledger holding shard 2's accounts was numbered for shard 1")
	}
	if err := store.NumberAccountsForShard(ctx, layout, 3); err == nil {
		t.Error("shard 3 of 3 accepted")
	}
}

// TestCreateShardAccountIsIdempotent: the account of a user of shard 0 is
// created once in its shard, however often the signup runs, with an id of
// that shard.
func TestCreateShardAccountIsIdempotent(t *testing.T) {
	ctx := context.Background()
	layout, _ := shard.New(2)
	users, accounts := newShardStore(t), newShardStore(t)
	for i, store := range []*postgres.Store{users, accounts} {
		if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
			t.Fatal(err)
		}
	}
	user := newUser(t, users, "someone@example.com")
	first, err := accounts.CreateShardAccount(ctx, user.ID)
	if err != nil {
		t.Fatal(err)
	}
	again, err := accounts.CreateShardAccount(ctx, user.ID)
	if err != nil || again != first {
		t.Fatalf("again: %d %v, want %d", again, err, first)
	}
	if layout.Of(first) != 1 {
		t.Errorf("account %d of shard 1 routes to shard %d", first, layout.Of(first))
	}
	if _, err := accounts.CreateShardAccount(ctx, 0); err == nil {
		t.Error("user 0 accepted")
	}
}
