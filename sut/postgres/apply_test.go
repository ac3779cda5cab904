package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const topic = "ledger.commands"

// newStore gives a test a migrated, empty ledger of its own.
func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	url := stacktest.PostgresURL(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

func newUser(t *testing.T, store *postgres.Store, email string) ledger.User {
	t.Helper()
	user, err := store.CreateUser(context.Background(), email, "hash")
	if err != nil {
		t.Fatal(err)
	}
	return user
}

func command(user ledger.User, kind ledger.Kind, key string, source, destination, amount int64) ledger.Command {
	return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: kind, UserID: user.ID,
		IdempotencyKey: key, SourceAccountID: source, DestinationAccountID: destination, AmountMinor: amount,
		Fingerprint: "fp-" + key, AcceptedAt: time.Now()}
}

func deposit(user ledger.User, key string, amount int64) ledger.Command {
	return command(user, ledger.KindDeposit, key, ledger.ExternalAccountID, user.AccountID, amount)
}

func transfer(user ledger.User, key string, to, amount int64) ledger.Command {
	return command(user, ledger.KindTransfer, key, user.AccountID, to, amount)
}

// batchAt numbers commands with consecutive offsets from first.
func batchAt(partition int32, first int64, commands ...ledger.Command) postgres.Batch {
	batch := postgres.Batch{Topic: topic, Partition: partition}
	for i, c := range commands {
		batch.Records = append(batch.Records, postgres.Record{Partition: partition, Offset: first + int64(i), Command: c})
	}
	return batch
}

func balance(t *testing.T, store *postgres.Store, accountID int64) int64 {
	t.Helper()
	account, err := store.Account(context.Background(), accountID)
	if err != nil {
		t.Fatal(err)
	}
	return account.BalanceMinor
}

// checkLedger asserts the ledger's own invariants: each settled transaction
// has two postings summing to zero, each balance equals its postings, and
// the sum of user balances equals settled deposits minus withdrawals.
func checkLedger(t *testing.T, store *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	var unbalanced, wrongBalances int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT transaction_id FROM postings
		GROUP BY transaction_id HAVING sum(amount) <> 0 OR count(*) <> 2) x`).Scan(&unbalanced); err != nil {
		t.Fatal(err)
	}
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM accounts a WHERE kind = 'user' AND balance <>
		COALESCE((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`).Scan(&wrongBalances); err != nil {
		t.Fatal(err)
	}
	var balances, net int64
	if err := store.Pool().QueryRow(ctx, `SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind = 'user'`).Scan(&balances); err != nil {
		t.Fatal(err)
	}
	if err := store.Pool().QueryRow(ctx, `SELECT COALESCE(sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount END), 0)
		FROM transactions WHERE status = 'settled' AND kind <> 'transfer'`).Scan(&net); err != nil {
		t.Fatal(err)
	}
	if unbalanced != 0 || wrongBalances != 0 || balances != net {
		t.Fatalf("ledger broken: %d unbalanced transactions, %d balances differ from postings, balances %d vs net deposits %d",
			unbalanced, wrongBalances, balances, net)
	}
}

func TestApplyBatch(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")

	result, err := store.ApplyBatch(ctx, batchAt(3, 0,
		deposit(alice, "d1", 1000),
		transfer(alice, "t1", bob.AccountID, 600),
		transfer(alice, "t2", bob.AccountID, 600),                                                // overdraft: 400 left
		command(alice, ledger.KindWithdrawal, "w1", bob.AccountID, ledger.ExternalAccountID, 10), // not alice's
		transfer(alice, "t3", 999999, 10),                                                        // unknown account
		transfer(alice, "t1", bob.AccountID, 600),                                                // duplicate key in batch
	))
	if err != nil {
		t.Fatal(err)
	}
	wantStatuses := []struct {
		status ledger.Status
		reason ledger.Code
	}{
		{ledger.StatusSettled, ""}, {ledger.StatusSettled, ""}, {ledger.StatusRejected, ledger.CodeInsufficientFunds},
		{ledger.StatusRejected, ledger.CodeForbidden}, {ledger.StatusRejected, ledger.CodeAccountNotFound}, {ledger.StatusSettled, ""},
	}
	if len(result.Outcomes) != len(wantStatuses) {
		t.Fatalf("got %d outcomes, want %d", len(result.Outcomes), len(wantStatuses))
	}
	for i, want := range wantStatuses {
		if got := result.Outcomes[i]; got.Status != want.status || got.Reason != want.reason {
			t.Errorf("outcome %d = %s/%s, want %s/%s", i, got.Status, got.Reason, want.status, want.reason)
		}
	}
	if result.Applied != 5 || result.Duplicates != 1 || result.Settled != 2 || result.NextOffset != 6 {
		t.Errorf("result = %+v", result)
	}
	if got := balance(t, store, alice.AccountID); got != 400 {
		t.Errorf("alice has %d, want 400", got)
	}
	if got := balance(t, store, bob.AccountID); got != 600 {
		t.Errorf("bob has %d, want 600", got)
	}
	if result.Balances[alice.AccountID] != 400 || result.Balances[bob.AccountID] != 600 {
		t.Errorf("reported balances %v", result.Balances)
	}

	// Redelivery of the same records (a worker crashed after commit): the
	// stored offset makes the whole batch a no-op.
	again, err := store.ApplyBatch(ctx, batchAt(3, 0, deposit(alice, "d1", 1000), transfer(alice, "t1", bob.AccountID, 600)))
	if err != nil {
		t.Fatal(err)
	}
	if again.AlreadyApplied != 2 || again.Applied != 0 || again.NextOffset != 6 {
		t.Errorf("redelivery result = %+v", again)
	}
	// The same key at a new offset (a client retry queued twice): no effect.
	retry, err := store.ApplyBatch(ctx, batchAt(3, 6, deposit(alice, "d1", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	if retry.Duplicates != 1 || retry.Applied != 0 || retry.NextOffset != 7 {
		t.Errorf("retry result = %+v", retry)
	}
	if got := balance(t, store, alice.AccountID); got != 400 {
		t.Errorf("after redelivery alice has %d, want 400", got)
	}
	offsets, err := store.NextOffsets(ctx, topic, []int32{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if offsets[3] != 7 || offsets[4] != 0 {
		t.Errorf("offsets = %v, want 3:7 4:0", offsets)
	}
	stored, err := store.Transaction(ctx, ledger.TransactionIDFor(alice.ID, "t2"))
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != ledger.StatusRejected || stored.Reason != ledger.CodeInsufficientFunds || stored.Offset != 2 || stored.Partition != 3 {
		t.Errorf("stored t2 = %+v", stored)
	}
	checkLedger(t, store)
}

func TestApplyBatchRejectsMalformedBatches(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	alice := newUser(t, store, "alice@example.com")
	cases := []struct {
		name  string
		batch postgres.Batch
	}{
		{"empty", postgres.Batch{Topic: topic, Partition: 1}},
		{"offsets out of order", postgres.Batch{Topic: topic, Partition: 1, Records: []postgres.Record{
			{Partition: 1, Offset: 5, Command: deposit(alice, "a", 1)}, {Partition: 1, Offset: 4, Command: deposit(alice, "b", 1)}}}},
		{"mixed partitions", postgres.Batch{Topic: topic, Partition: 1, Records: []postgres.Record{
			{Partition: 2, Offset: 0, Command: deposit(alice, "a", 1)}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := store.ApplyBatch(context.Background(), c.batch); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestCreateUserRejectsTakenEmail(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	newUser(t, store, "carol@example.com")
	_, err := store.CreateUser(context.Background(), "carol@example.com", "hash")
	if ledger.ErrorCode(err) != ledger.CodeEmailTaken {
		t.Fatalf("err = %v, want email_taken", err)
	}
}

// TestConcurrentTransfersBothWays runs transfers in both directions among 10
// accounts from several partitions at once, batched and naive together: no
// deadlock (every call returns within its deadline) and the total is
// conserved.
func TestConcurrentTransfersBothWays(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	users := make([]ledger.User, 10)
	var deposits []ledger.Command
	for i := range users {
		users[i] = newUser(t, store, fmt.Sprintf("user%d@example.com", i))
		deposits = append(deposits, deposit(users[i], "funding", 10_000))
	}
	if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposits...)); err != nil {
		t.Fatal(err)
	}
	var group sync.WaitGroup
	errs := make(chan error, 20)
	for worker := range 10 {
		group.Add(1)
		go func() {
			defer group.Done()
			random := rand.New(rand.NewPCG(uint64(worker), 7))
			offset := int64(0)
			for round := range 30 {
				var commands []ledger.Command
				for i := range 16 {
					from := users[random.IntN(len(users))]
					to := users[random.IntN(len(users))]
					if from.ID == to.ID {
						continue
					}
					commands = append(commands, transfer(from, fmt.Sprintf("w%d-r%d-%d", worker, round, i), to.AccountID, int64(1+random.IntN(900))))
				}
				if worker%2 == 0 {
					// Batched, one partition per goroutine.
					if _, err := store.ApplyBatch(ctx, batchAt(int32(worker+1), offset, commands...)); err != nil {
						errs <- err
						return
					}
					offset += int64(len(commands))
					continue
				}
				for _, c := range commands {
					if _, err := store.ApplyOne(ctx, c); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	group.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int64
	for _, user := range users {
		total += balance(t, store, user.AccountID)
	}
	if total != 100_000 {
		t.Fatalf("total is %d, want 100000", total)
	}
	checkLedger(t, store)
}

func TestApplyOneMatchesBatchSemantics(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")
	steps := []struct {
		command ledger.Command
		status  ledger.Status
	}{
		{deposit(alice, "d", 100), ledger.StatusSettled},
		{transfer(alice, "t", bob.AccountID, 150), ledger.StatusRejected},
		{transfer(alice, "u", bob.AccountID, 100), ledger.StatusSettled},
		{transfer(alice, "u", bob.AccountID, 100), ledger.StatusSettled}, // duplicate: stored outcome, no effect
	}
	for i, step := range steps {
		outcome, err := store.ApplyOne(ctx, step.command)
		if err != nil {
			t.Fatal(err)
		}
		if outcome.Status != step.status {
			t.Errorf("step %d: %s, want %s", i, outcome.Status, step.status)
		}
	}
	if a, b := balance(t, store, alice.AccountID), balance(t, store, bob.AccountID); a != 0 || b != 100 {
		t.Errorf("balances %d/%d, want 0/100", a, b)
	}
	checkLedger(t, store)
}

// TestConcurrentTransactionLookups: lookups running at once share queries
// (the store coalesces them); each gets its own transaction, or not found.
func TestConcurrentTransactionLookups(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	carol := newUser(t, store, "carol@example.com")
	var commands []ledger.Command
	for i := range 20 {
		commands = append(commands, deposit(carol, fmt.Sprintf("lookup-%d", i), int64(i+1)))
	}
	if result, err := store.ApplyBatch(ctx, batchAt(5, 0, commands...)); err != nil || result.Settled != 20 {
		t.Fatalf("apply: %+v, %v", result, err)
	}
	errs := make(chan error, 200)
	for i := range 200 {
		go func() {
			key := fmt.Sprintf("lookup-%d", i%40) // half of them were never applied
			stored, err := store.Transaction(ctx, ledger.TransactionIDFor(carol.ID, key))
			switch {
			case i%40 >= 20 && ledger.ErrorCode(err) == ledger.CodeNotFound:
				err = nil
			case i%40 >= 20:
				err = fmt.Errorf("%s: got %+v, %v; want not found", key, stored, err)
			case i%40 < 20 && err != nil:
				err = fmt.Errorf("%s: %w", key, err)
			case i%40 < 20 && (stored.IdempotencyKey != key || stored.AmountMinor != int64(i%40+1)):
				err = fmt.Errorf("%s: got the transaction of %s, amount %d", key, stored.IdempotencyKey, stored.AmountMinor)
			}
			errs <- err
		}()
	}
	for range 200 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// An id that is not in canonical form is still read, alone.
	upper := strings.ToUpper(ledger.TransactionIDFor(carol.ID, "lookup-3"))
	if stored, err := store.Transaction(ctx, upper); err != nil || stored.AmountMinor != 4 {
		t.Fatalf("upper-case id: %+v, %v", stored, err)
	}
}
