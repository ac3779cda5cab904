package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// storedDeadLetter is a row of dead_letters.
type storedDeadLetter struct {
	offset        int64
	raw           []byte
	reason        string
	transactionID string
}

func deadLetters(t *testing.T, store *postgres.Store, partition int32) []storedDeadLetter {
	t.Helper()
	rows, err := store.Pool().Query(context.Background(), `SELECT kafka_offset, raw, reason, COALESCE(transaction_id::text, '')
		FROM dead_letters WHERE topic = $1 AND kafka_partition = $2 ORDER BY kafka_offset`, topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var letters []storedDeadLetter
	for rows.Next() {
		var letter storedDeadLetter
		if err := rows.Scan(&letter.offset, &letter.raw, &letter.reason, &letter.transactionID); err != nil {
			t.Fatal(err)
		}
		letters = append(letters, letter)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return letters
}

func storedOffset(t *testing.T, store *postgres.Store, partition int32) int64 {
	t.Helper()
	offsets, err := store.NextOffsets(context.Background(), topic, []int32{partition})
	if err != nil {
		t.Fatal(err)
	}
	return offsets[partition]
}

// TestApplyBatchSetsPoisonAside: every kind of record that cannot name a
// storable transaction, and every key collision, is set aside in
// dead_letters in the batch's own transaction, with its reason and the
// transaction it named; the rest of the batch applies and the offset moves
// past all of it. A command whose body breaks a rule the ledger can store is
// still a rejected transaction.
func TestApplyBatchSetsPoisonAside(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	if _, err := store.ApplyBatch(ctx, batchAt(4, 0, deposit(alice, "d0", 100))); err != nil {
		t.Fatal(err)
	}
	// A transaction stored under an id not derived from its key (a ledger
	// written before the worker checked ids): a command with its key
	// collides with it even though the command's own id is derived.
	legacyID := ledger.TransactionIDFor(alice.ID, "legacy-elsewhere")
	if _, err := store.Pool().Exec(ctx, `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
		destination_account_id, amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at)
		VALUES ($1, $2, 'legacy', 'deposit', 0, $3, 5, 'rejected', 'forbidden', 'fp', -1, -1, now())`,
		legacyID, alice.ID, alice.AccountID); err != nil {
		t.Fatal(err)
	}

	with := func(change func(*ledger.Command)) ledger.Command {
		command := deposit(alice, "poison", 1)
		change(&command)
		return command
	}
	otherID := ledger.TransactionIDFor(alice.ID, "someone-else")
	garbage := []byte("this is not json")
	type want struct {
		reason        ledger.DeadLetterReason
		transactionID string
	}
	records := []struct {
		record postgres.Record
		want   want // zero: applied
	}{
		{postgres.Record{Raw: garbage, DeadLetter: ledger.DeadLetterUndecodable, DeadLetterDetail: "invalid character"}, want{ledger.DeadLetterUndecodable, ""}},
		{postgres.Record{Command: deposit(alice, "d1", 10)}, want{}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.TransactionID = "not-a-uuid" })}, want{ledger.DeadLetterInvalidTransactionID, ""}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.UserID = 0 })}, want{ledger.DeadLetterInvalidUser, ledger.TransactionIDFor(alice.ID, "poison")}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.IdempotencyKey = "" })}, want{ledger.DeadLetterInvalidIdempotencyKey, ledger.TransactionIDFor(alice.ID, "poison")}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.Kind = "refund" })}, want{ledger.DeadLetterUnknownKind, ledger.TransactionIDFor(alice.ID, "poison")}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.AmountMinor = -5 })}, want{ledger.DeadLetterNonPositiveAmount, ledger.TransactionIDFor(alice.ID, "poison")}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.Fingerprint = "a\x00b" })}, want{ledger.DeadLetterInvalidFingerprint, ledger.TransactionIDFor(alice.ID, "poison")}},
		{postgres.Record{Command: with(func(c *ledger.Command) { c.TransactionID = otherID })}, want{ledger.DeadLetterTransactionIDMismatch, otherID}},
		// The key of a stored transaction under another id: a collision
		// (it wins over the id mismatch).
		{postgres.Record{Command: with(func(c *ledger.Command) { c.IdempotencyKey, c.TransactionID = "d0", otherID })}, want{ledger.DeadLetterKeyCollision, otherID}},
		// The key of an earlier record of the same batch under another id.
		{postgres.Record{Command: with(func(c *ledger.Command) { c.IdempotencyKey, c.TransactionID = "d1", otherID })}, want{ledger.DeadLetterKeyCollision, otherID}},
		// A derived id whose key a stored, non-derived transaction holds.
		{postgres.Record{Command: deposit(alice, "legacy", 7)}, want{ledger.DeadLetterKeyCollision, ledger.TransactionIDFor(alice.ID, "legacy")}},
		// Storable but invalid: a rejected transaction, as before.
		{postgres.Record{Command: deposit(alice, "too-much", ledger.MaxAmountMinor+1)}, want{}},
		{postgres.Record{Command: deposit(alice, "d2", 20)}, want{}},
	}
	batch := postgres.Batch{Topic: topic, Partition: 4}
	for i, r := range records {
		r.record.Partition, r.record.Offset = 4, int64(10+i)
		batch.Records = append(batch.Records, r.record)
	}
	result, err := store.ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if result.Applied != 3 || result.Settled != 2 || result.Duplicates != 3 || result.DeadLettered != 8 || result.AlreadyApplied != 0 {
		t.Errorf("counters: applied %d, settled %d, duplicates %d, dead-lettered %d, already applied %d; want 3, 2, 3, 8, 0",
			result.Applied, result.Settled, result.Duplicates, result.DeadLettered, result.AlreadyApplied)
	}
	if result.NextOffset != int64(10+len(records)) {
		t.Errorf("next offset %d, want %d", result.NextOffset, 10+len(records))
	}
	if got := storedOffset(t, store, 4); got != int64(10+len(records)) {
		t.Errorf("stored offset %d, want %d", got, 10+len(records))
	}
	stored := deadLetters(t, store, 4)
	var wantLetters []storedDeadLetter
	for i, r := range records {
		if r.want.reason != "" {
			wantLetters = append(wantLetters, storedDeadLetter{offset: int64(10 + i), reason: string(r.want.reason), transactionID: r.want.transactionID})
		}
	}
	if len(stored) != len(wantLetters) || len(result.DeadLetters) != len(wantLetters) {
		t.Fatalf("%d dead letters stored, %d reported, want %d: %+v", len(stored), len(result.DeadLetters), len(wantLetters), stored)
	}
	for i, want := range wantLetters {
		got, reported := stored[i], result.DeadLetters[i]
		if got.offset != want.offset || got.reason != want.reason || got.transactionID != want.transactionID {
			t.Errorf("dead letter %d: offset %d, reason %q, transaction %q; want %d, %q, %q", i, got.offset, got.reason, got.transactionID,
				want.offset, want.reason, want.transactionID)
		}
		if reported.Offset != want.offset || string(reported.Reason) != want.reason || reported.TransactionID != want.transactionID || reported.Detail == "" {
			t.Errorf("reported dead letter %d: %+v, want offset %d, reason %q, transaction %q and a detail", i, reported, want.offset, want.reason, want.transactionID)
		}
	}
	// The raw record is kept as read; a command given without one is kept
	// as its JSON.
	if string(stored[0].raw) != string(garbage) {
		t.Errorf("raw %q, want %q", stored[0].raw, garbage)
	}
	var kept ledger.Command
	if err := json.Unmarshal(stored[1].raw, &kept); err != nil || kept.TransactionID != "not-a-uuid" {
		t.Errorf("raw %q: %v, want the command's JSON", stored[1].raw, err)
	}
	// The valid deposits settled; the colliding ones had no effect.
	if got := balance(t, store, alice.AccountID); got != 130 {
		t.Errorf("alice has %d, want 130", got)
	}
	rejected, err := store.Transaction(ctx, ledger.TransactionIDFor(alice.ID, "too-much"))
	if err != nil || rejected.Status != ledger.StatusRejected || rejected.Reason != ledger.CodeInvalidAmount {
		t.Errorf("the over-maximum deposit: %+v, %v; want rejected with invalid_amount", rejected, err)
	}
	// Delivered again (a crash after the commit): nothing new.
	again, err := store.ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if again.AlreadyApplied != len(records) || len(again.DeadLetters) != 0 || len(deadLetters(t, store, 4)) != len(wantLetters) {
		t.Errorf("redelivery: %+v", again)
	}
	checkLedger(t, store)
}

// TestApplyBatchIsolatesRecordsPostgresRefuses: a record Postgres refuses
// with a data or constraint error nothing foresaw is found by bisection and
// set aside as apply_error with its SQLSTATE; every other record applies.
func TestApplyBatchIsolatesRecordsPostgresRefuses(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	// A rule of this test's database that the worker knows nothing of.
	if _, err := store.Pool().Exec(ctx, `ALTER TABLE transactions ADD CONSTRAINT test_no_poison CHECK (idempotency_key NOT LIKE 'poison%')`); err != nil {
		t.Fatal(err)
	}
	var commands []ledger.Command
	poisoned := map[int64]bool{}
	for i := range 11 {
		key := fmt.Sprintf("d%d", i)
		if i == 3 || i == 8 {
			key = fmt.Sprintf("poison%d", i)
			poisoned[int64(i)] = true
		}
		commands = append(commands, deposit(alice, key, 1))
	}
	result, err := store.ApplyBatch(ctx, batchAt(2, 0, commands...))
	if err != nil {
		t.Fatal(err)
	}
	if result.Applied != 9 || result.Settled != 9 || result.DeadLettered != 2 || result.NextOffset != 11 || len(result.Outcomes) != 9 {
		t.Errorf("result: %+v", result)
	}
	stored := deadLetters(t, store, 2)
	if len(stored) != 2 {
		t.Fatalf("dead letters %+v, want offsets 3 and 8", stored)
	}
	for _, letter := range stored {
		want := ledger.TransactionIDFor(alice.ID, fmt.Sprintf("poison%d", letter.offset))
		if !poisoned[letter.offset] || letter.reason != "apply_error: 23514" || letter.transactionID != want {
			t.Errorf("dead letter %+v, want reason apply_error: 23514 and transaction %s", letter, want)
		}
	}
	if got := balance(t, store, alice.AccountID); got != 9 {
		t.Errorf("alice has %d, want 9", got)
	}
	if got := storedOffset(t, store, 2); got != 11 {
		t.Errorf("stored offset %d, want 11", got)
	}
	checkLedger(t, store)
}

// TestApplyBatchStopsSettingAsideWhenManyAreRefused: when more records of
// one batch are refused than postgres.MaxApplyErrorsPerBatch, the system is at fault,
// not each record: ApplyBatch returns the error (the partition stalls) and
// sets no more aside.
func TestApplyBatchStopsSettingAsideWhenManyAreRefused(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	if _, err := store.Pool().Exec(ctx, `ALTER TABLE transactions ADD CONSTRAINT test_no_poison CHECK (idempotency_key NOT LIKE 'poison%')`); err != nil {
		t.Fatal(err)
	}
	var commands []ledger.Command
	for i := range 8 {
		commands = append(commands, deposit(alice, fmt.Sprintf("poison%d", i), 1))
	}
	if _, err := store.ApplyBatch(ctx, batchAt(4, 0, commands...)); err == nil || !strings.Contains(err.Error(), "not setting more aside") {
		t.Fatalf("error %v, want the batch refused once %d records were set aside", err, postgres.MaxApplyErrorsPerBatch)
	}
	if stored := deadLetters(t, store, 4); len(stored) != postgres.MaxApplyErrorsPerBatch {
		t.Errorf("%d dead letters, want %d", len(stored), postgres.MaxApplyErrorsPerBatch)
	}
	if got := storedOffset(t, store, 4); got >= 8 {
		t.Errorf("stored offset %d: the partition moved past records it never applied nor set aside", got)
	}
}

// TestApplyBatchDoesNotSetAsideForTransientErrors: an error retrying may fix
// (a timeout behind a lock; a table missing after a bad deployment) fails
// the batch and sets nothing aside: the partition waits, nothing is lost.
func TestApplyBatchDoesNotSetAsideForTransientErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	if _, err := store.ApplyBatch(ctx, batchAt(1, 0, deposit(alice, "d0", 1))); err != nil {
		t.Fatal(err)
	}
	poisoned := postgres.Batch{Topic: topic, Partition: 1, Records: []postgres.Record{
		{Partition: 1, Offset: 1, Raw: []byte("{"), DeadLetter: ledger.DeadLetterUndecodable},
		{Partition: 1, Offset: 2, Command: deposit(alice, "d1", 1)},
	}}

	t.Run("timeout behind a lock", func(t *testing.T) {
		tx, err := store.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT * FROM consumer_offsets WHERE topic = $1 AND partition = 1 FOR UPDATE`, topic); err != nil {
			t.Fatal(err)
		}
		attempt, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err = store.ApplyBatch(attempt, poisoned)
		cancel()
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err == nil {
			t.Fatal("the batch applied behind a held lock")
		}
	})
	t.Run("missing table", func(t *testing.T) {
		if _, err := store.Pool().Exec(ctx, `ALTER TABLE dead_letters RENAME TO dead_letters_elsewhere`); err != nil {
			t.Fatal(err)
		}
		_, err := store.ApplyBatch(ctx, poisoned)
		if _, renameError := store.Pool().Exec(ctx, `ALTER TABLE dead_letters_elsewhere RENAME TO dead_letters`); renameError != nil {
			t.Fatal(renameError)
		}
		if err == nil || !strings.Contains(err.Error(), "42P01") {
			t.Fatalf("error %v, want undefined_table (42P01)", err)
		}
	})
	if got := storedOffset(t, store, 1); got != 1 {
		t.Fatalf("stored offset %d, want 1: the failed attempts moved it", got)
	}
	if letters := deadLetters(t, store, 1); len(letters) != 0 {
		t.Fatalf("dead letters %+v after transient failures", letters)
	}
	// Once the fault is gone the same batch applies.
	result, err := store.ApplyBatch(ctx, poisoned)
	if err != nil {
		t.Fatal(err)
	}
	if result.DeadLettered != 1 || result.Settled != 1 || storedOffset(t, store, 1) != 3 {
		t.Fatalf("result %+v", result)
	}
}

// TestBalanceLimit: a credit that would take a balance above
// ledger.MaxBalanceMinor is rejected with balance_limit, by the batch and by
// the naive apply, and moves nothing; no worker assertion fires.
func TestBalanceLimit(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")
	var fill []ledger.Command
	for i := range int(ledger.MaxBalanceMinor / ledger.MaxAmountMinor) {
		fill = append(fill, deposit(alice, fmt.Sprintf("fill%d", i), ledger.MaxAmountMinor))
	}
	fill = append(fill, deposit(bob, "bob", 5))
	result, err := store.ApplyBatch(ctx, batchAt(0, 0, fill...))
	if err != nil {
		t.Fatal(err)
	}
	if result.Settled != len(fill) || balance(t, store, alice.AccountID) != ledger.MaxBalanceMinor {
		t.Fatalf("filling: %+v, alice has %d", result, balance(t, store, alice.AccountID))
	}
	result, err = store.ApplyBatch(ctx, batchAt(0, len64(fill),
		deposit(alice, "one-more", 1),
		transfer(bob, "to-alice", alice.AccountID, 1),
		command(alice, ledger.KindWithdrawal, "w", alice.AccountID, ledger.ExternalAccountID, 3),
		deposit(alice, "refill", 3),
		deposit(alice, "beyond-again", 1),
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Code{ledger.CodeBalanceLimit, ledger.CodeBalanceLimit, "", "", ledger.CodeBalanceLimit}
	for i, code := range want {
		if got := result.Outcomes[i]; got.Reason != code || (code == "") != (got.Status == ledger.StatusSettled) {
			t.Errorf("outcome %d: %s %s, want reason %q", i, got.Status, got.Reason, code)
		}
	}
	outcome, err := store.ApplyOne(ctx, deposit(alice, "naive", 1))
	if err != nil || outcome.Reason != ledger.CodeBalanceLimit {
		t.Errorf("naive deposit: %+v, %v; want balance_limit", outcome, err)
	}
	if a, b := balance(t, store, alice.AccountID), balance(t, store, bob.AccountID); a != ledger.MaxBalanceMinor || b != 5 {
		t.Errorf("balances %d/%d, want %d/5", a, b, ledger.MaxBalanceMinor)
	}
	// A balance already beyond the limit (set by hand, or by an older
	// version) takes no credit, and does not overflow: the panic the
	// worker used to hit at math.MaxInt64.
	if _, err := store.Pool().Exec(ctx, `UPDATE accounts SET balance = $1 WHERE id = $2`, int64(math.MaxInt64-10), bob.AccountID); err != nil {
		t.Fatal(err)
	}
	result, err = store.ApplyBatch(ctx, batchAt(0, len64(fill)+5, deposit(bob, "overflow", 50)))
	if err != nil {
		t.Fatal(err)
	}
	if result.Outcomes[0].Reason != ledger.CodeBalanceLimit || balance(t, store, bob.AccountID) != math.MaxInt64-10 {
		t.Errorf("deposit to a balance near int64's maximum: %+v, balance %d", result.Outcomes[0], balance(t, store, bob.AccountID))
	}
}

func len64[T any](items []T) int64 { return int64(len(items)) }

// TestCreateUserAccountLimit: beyond ledger.MaxUserAccounts account ids,
// signup is refused and nothing is stored, so the sum of every balance (the
// external account's) cannot overflow.
func TestCreateUserAccountLimit(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	if _, err := store.Pool().Exec(ctx, `SELECT setval('accounts_id_seq', $1 - 1)`, ledger.MaxUserAccounts); err != nil {
		t.Fatal(err)
	}
	last := newUser(t, store, "last@example.com")
	if last.AccountID != ledger.MaxUserAccounts {
		t.Fatalf("account id %d, want %d", last.AccountID, ledger.MaxUserAccounts)
	}
	_, err := store.CreateUser(ctx, "one-too-many@example.com", "hash")
	if ledger.ErrorCode(err) != ledger.CodeUnavailable {
		t.Fatalf("error %v, want unavailable", err)
	}
	if _, err := store.UserByEmail(ctx, "one-too-many@example.com"); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("the refused user was stored: %v", err)
	}
}

// TestSeededNoIdempotencyKeepsFreshIDs: a system without idempotency by key
// has no key checks in the worker either: a retry under a fresh id is
// applied (the duplicate the auditor must catch), where the correct worker
// sets aside an id not derived from its key.
func TestSeededNoIdempotencyKeepsFreshIDs(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugNoIdempotency, func(t *testing.T, bugs ledger.Bugs, active bool) {
		store := seededStore(t, postgres.Config{SeededBugs: bugs})
		ctx := context.Background()
		alice := newUser(t, store, "alice@example.com")
		first, retry := deposit(alice, "d", 10), deposit(alice, "d", 10)
		first.TransactionID = ledger.TransactionIDFor(alice.ID, "d\x00fresh-1")
		retry.TransactionID = ledger.TransactionIDFor(alice.ID, "d\x00fresh-2")
		result, err := store.ApplyBatch(ctx, batchAt(0, 0, first, retry))
		if err != nil {
			t.Fatal(err)
		}
		wantEffects, wantDeadLetters := 0, 2
		if active {
			wantEffects, wantDeadLetters = 2, 0
		}
		if got := effects(t, store, alice, "d"); got != wantEffects {
			t.Errorf("%d effects, want %d", got, wantEffects)
		}
		if got := len(result.DeadLetters); got != wantDeadLetters {
			t.Errorf("%d dead letters (%+v), want %d", got, result.DeadLetters, wantDeadLetters)
		}
		for _, letter := range result.DeadLetters {
			if letter.Reason != ledger.DeadLetterTransactionIDMismatch {
				t.Errorf("dead letter %+v, want transaction_id_mismatch", letter)
			}
		}
	})
}
