package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// downStore is a store of a shard that does not answer.
func downStore(t *testing.T) *postgres.Store {
	t.Helper()
	down, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://ledger@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	return down
}

// inFlight leaves the saga of a transfer of 100 from the payer to the payee
// debited (the destination shard down) at offset 0 of partition 3, and
// returns its command.
func (s twoShards) inFlight(t *testing.T, key string) ledger.Command {
	t.Helper()
	cut, err := postgres.NewShardedLedger([]*postgres.Store{s.source, downStore(t)}, 0, postgres.SagaRecovery{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	paid := transfer(s.payer, key, s.payee.AccountID, 100)
	result, err := cut.ApplyBatch(context.Background(), batchAt(3, 0, paid))
	if err != nil || result.Sagas[postgres.SagaDebited] != 1 {
		t.Fatalf("with the destination down: %+v %v", result, err)
	}
	return paid
}

// TestShardedLedgerSetsAsideAKeyReusedWhileItsSagaIsInFlight: a transfer's
// key resent with another amount while the first body's saga is in flight
// is a key collision: set aside, counted as a duplicate, and nothing moves
// for it (the in-flight saga was credited with the new amount). A copy of
// the first body resumes the saga from its logged fields.
func TestShardedLedgerSetsAsideAKeyReusedWhileItsSagaIsInFlight(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer, payee := shards.payer, shards.payee
	paid := shards.inFlight(t, "reused")
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	reused := transfer(payer, "reused", payee.AccountID, 500)
	reused.Fingerprint = "fp-reused-500"
	result, err := ledgers[0].ApplyBatch(ctx, batchAt(3, 1, reused))
	if err != nil {
		t.Fatal(err)
	}
	if result.Duplicates != 1 || result.DeadLettered != 0 || len(result.DeadLetters) != 1 || result.DeadLetters[0].Reason != ledger.DeadLetterKeyCollision ||
		len(result.Outcomes) != 0 || result.Applied != 0 {
		t.Fatalf("the key reused with another amount: %+v, want one key collision set aside", result)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 0 {
		t.Fatalf("payee %d, want 0: the in-flight saga was credited for another body", got)
	}
	if state, _ := sagaState(t, shards.source, paid.TransactionID); state != postgres.SagaDebited || storedOffset(t, shards.source, 3) != 2 {
		t.Fatalf("saga %s, offset %d: want debited, 2", state, storedOffset(t, shards.source, 3))
	}
	copied := paid
	copied.AcceptedAt = paid.AcceptedAt.Add(time.Minute)
	result, err = ledgers[0].ApplyBatch(ctx, batchAt(3, 2, copied))
	if err != nil {
		t.Fatal(err)
	}
	if result.Sagas[postgres.SagaCompleted] != 1 || len(result.Outcomes) != 1 || result.Outcomes[0].Fingerprint != paid.Fingerprint {
		t.Fatalf("a copy of the first body: %+v, want the saga completed", result)
	}
	if got := balance(t, shards.destination, payee.AccountID); got != 100 {
		t.Errorf("payee %d, want 100", got)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 900 {
		t.Errorf("payer %d, want 900", got)
	}
}

// TestBatchApplyOfAShardTreatsASagaInFlightAsStored: the key of a transfer
// whose saga is in flight, reused for a transfer within the source's shard,
// is a key collision (set aside, nothing moves); a copy of the saga's own
// command reaching the batch apply is its duplicate (no row of its own: the
// saga's end writes the transfer's row).
func TestBatchApplyOfAShardTreatsASagaInFlightAsStored(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer := shards.payer
	neighbour := newUser(t, shards.source, "neighbour@example.com")
	paid := shards.inFlight(t, "in-flight")
	local := transfer(payer, "in-flight", neighbour.AccountID, 500)
	local.Fingerprint = "fp-in-flight-local"
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	if route := ledgers[0].Route(postgres.Record{Command: local}); route != postgres.RouteLocal {
		t.Fatalf("route %d, want local", route)
	}
	result, err := ledgers[0].ApplyBatch(ctx, batchAt(3, 1, local))
	if err != nil {
		t.Fatal(err)
	}
	if result.Duplicates != 1 || result.Applied != 0 || len(result.DeadLetters) != 1 || result.DeadLetters[0].Reason != ledger.DeadLetterKeyCollision {
		t.Fatalf("a local transfer under an in-flight saga's key: %+v, want a key collision", result)
	}
	if got := balance(t, shards.source, neighbour.AccountID); got != 0 {
		t.Fatalf("neighbour %d, want 0: a local transfer was applied under the saga's key", got)
	}
	result, err = shards.source.ApplyBatch(ctx, batchAt(3, 2, paid))
	if err != nil {
		t.Fatal(err)
	}
	if result.Duplicates != 1 || result.Applied != 0 || len(result.DeadLetters) != 0 || len(result.Outcomes) != 0 {
		t.Fatalf("a copy of the saga's command in the batch apply: %+v, want a duplicate without an outcome yet", result)
	}
	recovered, err := shards.ledgers(t, postgres.SagaRecovery{OlderThan: 1})[0].RecoverSagas(ctx)
	if err != nil || recovered.Sagas[postgres.SagaCompleted] != 1 {
		t.Fatalf("recovery: %+v %v", recovered, err)
	}
	if status, _ := transactionRow(t, shards.source, paid.TransactionID); status != string(ledger.StatusSettled) {
		t.Errorf("the transfer's row is %s, want settled", status)
	}
	if got := balance(t, shards.source, payer.AccountID); got != 900 {
		t.Errorf("payer %d, want 900", got)
	}
}

// TestSagaEndWithItsKeyTakenIsAClearError: a row of the saga's user and key
// under another id (impossible with derived ids) makes the saga's end fail
// with an error naming that transaction, not a unique violation; and a saga
// is not started under such a key.
func TestSagaEndWithItsKeyTakenIsAClearError(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer, payee := shards.payer, shards.payee
	saga := shards.saga("taken", payee.AccountID, 100)
	if step, err := shards.source.SagaDebit(ctx, saga); err != nil || step.State != postgres.SagaDebited {
		t.Fatalf("debit: %+v %v", step, err)
	}
	other := ledger.TransactionIDFor(payer.ID, "another key")
	if _, err := shards.source.Pool().Exec(ctx, `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
		destination_account_id, amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at)
		VALUES ($1, $2, 'taken', 'deposit', 0, $3, 1, 'rejected', 'account_not_found', 'fp-legacy', -1, -1, now())`,
		other, payer.ID, payer.AccountID); err != nil {
		t.Fatal(err)
	}
	decision, err := shards.destination.SagaCredit(ctx, saga)
	if err != nil {
		t.Fatal(err)
	}
	_, err = shards.source.SagaFinish(ctx, saga.ID, decision)
	if err == nil || !strings.Contains(err.Error(), "already name transaction "+other) {
		t.Fatalf("finish with the key taken: %v, want an error naming %s", err, other)
	}
	if state, _ := sagaState(t, shards.source, saga.ID); state != postgres.SagaDebited {
		t.Errorf("saga %s, want debited", state)
	}
	// Another saga of a taken key is not started.
	legacy := ledger.TransactionIDFor(payer.ID, "legacy")
	if _, err := shards.source.Pool().Exec(ctx, `UPDATE transactions SET id = $1, idempotency_key = 'second' WHERE id = $2`, legacy, other); err != nil {
		t.Fatal(err)
	}
	if step, err := shards.source.SagaDebit(ctx, shards.saga("second", payee.AccountID, 100)); err != nil || step.State != postgres.SagaDuplicate {
		t.Errorf("a saga under a key naming another transaction: %+v %v, want duplicate", step, err)
	}
}

// TestRecoveryPostponesASagaItCannotResume: a saga whose destination does
// not answer goes to the back of the recovery scan, so a pass of Limit 1
// reaches the saga behind it.
func TestRecoveryPostponesASagaItCannotResume(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	first, second := shards.saga("first", shards.payee.AccountID, 100), shards.saga("second", shards.payee.AccountID, 100)
	for _, saga := range []postgres.Saga{first, second} {
		if step, err := shards.source.SagaDebit(ctx, saga); err != nil || step.State != postgres.SagaDebited {
			t.Fatalf("debit: %+v %v", step, err)
		}
	}
	config := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return nil }, OlderThan: 1, Limit: 1}
	for _, want := range []string{first.ID, second.ID, first.ID} {
		if _, err := postgres.RecoverSagas(ctx, shards.source, config); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("recovery pass: %v, want it to try saga %s", err, want)
		}
	}
}

// TestRecordRejectionOfTheDailyLimitOnlyWhenTheLedgerIsOver: a daily-limit
// refusal is stored only when the ledger's settled debits of the day leave
// no room for the amount (a cached total above the ledger's is not enough):
// otherwise nothing is stored and the worker decides. A store without a
// limit stores none.
func TestRecordRejectionOfTheDailyLimitOnlyWhenTheLedgerIsOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLimitedStore(t, 1000, nil)
	alice := newUser(t, store, "alice@example.com")
	if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "d", 5000), withdrawal(alice, "w", 900))); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RecordRejection(ctx, withdrawal(alice, "room", 100), ledger.CodeDailyLimitExceeded); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a refusal of 100 with 900 of 1000 debited: %v, want ErrRefusalNotJustified", err)
	}
	if stored, err := store.RecordRejection(ctx, withdrawal(alice, "over", 101), ledger.CodeDailyLimitExceeded); err != nil || stored.Reason != ledger.CodeDailyLimitExceeded {
		t.Fatalf("a refusal of 101 with 900 of 1000 debited: %+v %v, want it stored", stored, err)
	}
	tomorrow := acceptedOn(withdrawal(alice, "tomorrow", 500), time.Now().Add(24*time.Hour))
	if _, err := store.RecordRejection(ctx, tomorrow, ledger.CodeDailyLimitExceeded); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a refusal on a day without debits: %v, want ErrRefusalNotJustified", err)
	}
	if stored, err := store.RecordRejection(ctx, acceptedOn(withdrawal(alice, "huge", 1001), tomorrow.AcceptedAt), ledger.CodeDailyLimitExceeded); err != nil ||
		stored.Reason != ledger.CodeDailyLimitExceeded {
		t.Fatalf("a refusal of more than the limit: %+v %v, want it stored", stored, err)
	}
	unlimited := newStore(t)
	bob := newUser(t, unlimited, "bob@example.com")
	if _, err := unlimited.RecordRejection(ctx, withdrawal(bob, "no-limit", 10), ledger.CodeDailyLimitExceeded); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a daily-limit refusal in a store without a limit: %v, want ErrRefusalNotJustified", err)
	}
	checkLedger(t, store)
}

// TestRecordRejectionAfterACompensationLoweredTheDay: a compensated saga's
// debit no longer counts against the day, so a daily-limit refusal read
// from a total that still counts it is not stored.
func TestRecordRejectionAfterACompensationLoweredTheDay(t *testing.T) {
	ctx := context.Background()
	url := stacktest.PostgresURL(t)
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	source, err := postgres.Open(ctx, postgres.Config{URL: url, DailyDebitLimitMinor: 500, Shards: 2})
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
	payer, payee := newUser(t, source, "payer@example.com"), newUser(t, destination, "payee@example.com")
	fund(t, source, payer, 0, 1000)
	if step, err := postgres.RunSaga(ctx, source, destination, postgres.SagaFor(transfer(payer, "to-missing", payee.AccountID+2000, 400), 1, 0, 1)); err != nil ||
		step.State != postgres.SagaCompensated {
		t.Fatalf("saga to a missing account: %+v %v", step, err)
	}
	// A cache that still held 400 would refuse 200; the ledger holds 0.
	if _, err := source.RecordRejection(ctx, transfer(payer, "after", payee.AccountID, 200), ledger.CodeDailyLimitExceeded); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a daily-limit refusal after the compensation: %v, want ErrRefusalNotJustified", err)
	}
}

// TestRecordRejectionOnOneLedgerTakesNoLock: on a single ledger a soft
// refusal is one statement: it does not wait for the lock of the source
// account (a batch holding it), as it did before sagas.
func TestRecordRejectionOnOneLedgerTakesNoLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	alice := newUser(t, store, "alice@example.com")
	bob := newUser(t, store, "bob@example.com")
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, alice.AccountID); err != nil {
		t.Fatal(err)
	}
	// The deadline only ends the wait a lock would cause; it is no
	// measurement.
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if stored, err := store.RecordRejection(bounded, transfer(alice, "locked", bob.AccountID, 10), ledger.CodeInsufficientFunds); err != nil ||
		stored.Status != ledger.StatusRejected {
		t.Fatalf("a soft refusal while a batch holds the account: %+v %v, want it stored without waiting", stored, err)
	}
}

// TestShardedBatchFailingMidwayReturnsWhatItCommitted: a batch whose saga
// fails at its finish, after the run before it and the saga's debit and
// credit committed, returns with the error the outcomes and balances of
// what committed, for the worker to announce and cache.
func TestShardedBatchFailingMidwayReturnsWhatItCommitted(t *testing.T) {
	ctx := context.Background()
	shards := newTwoShards(t)
	payer, payee := shards.payer, shards.payee
	// A rule of this database the worker knows nothing of: no saga
	// completes.
	if _, err := shards.source.Pool().Exec(ctx, `ALTER TABLE sagas ADD CONSTRAINT test_no_completion CHECK (state <> 'completed')`); err != nil {
		t.Fatal(err)
	}
	ledgers := shards.ledgers(t, postgres.SagaRecovery{})
	funded := deposit(payer, "more", 50)
	result, err := ledgers[0].ApplyBatch(ctx, batchAt(3, 0, funded, transfer(payer, "across", payee.AccountID, 300)))
	if err == nil {
		t.Fatal("the saga's finish was refused, yet the batch succeeded")
	}
	if len(result.Outcomes) != 1 || result.Outcomes[0].TransactionID != funded.TransactionID || result.Outcomes[0].Status != ledger.StatusSettled {
		t.Errorf("outcomes %+v, want the committed deposit's", result.Outcomes)
	}
	if result.Balances[payer.AccountID] != 750 || result.Balances[payee.AccountID] != 300 || result.NextOffset != 1 {
		t.Errorf("balances %v, next offset %d: want payer 750 (debited), payee 300 (credited), 1", result.Balances, result.NextOffset)
	}
}
