package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// Each seeded bug is shown twice on the same steps: with the bug its effect
// happens, without it it does not. Nothing here asserts a bug is harmless;
// these tests prove the bug does what docs/seeded-bugs.md says, so the
// auditor has something to catch.

// seededStore gives a test a migrated, empty ledger whose store runs with
// bugs, after the schema changes those bugs need.
func seededStore(t *testing.T, config postgres.Config) *postgres.Store {
	t.Helper()
	config.URL = stacktest.PostgresURL(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, config.URL); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	// Twice: the changes are idempotent (several processes start at once).
	for range 2 {
		if err := store.PrepareSeededBugs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// bugCases runs check once with the bug and once without.
func bugCases(t *testing.T, bug ledger.Bug, check func(t *testing.T, bugs ledger.Bugs, active bool)) {
	t.Helper()
	for _, active := range []bool{true, false} {
		name := "without " + string(bug)
		var bugs ledger.Bugs
		if active {
			name, bugs = "with "+string(bug), ledger.Bugs{bug}
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check(t, bugs, active)
		})
	}
}

// effects counts the settled transactions of one client key.
func effects(t *testing.T, store *postgres.Store, user ledger.User, key string) int {
	t.Helper()
	var count int
	if err := store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM transactions
		WHERE user_id = $1 AND idempotency_key = $2 AND status = 'settled'`, user.ID, key).Scan(&count); err != nil {
		t.Fatal(err)
	}
	return count
}

// failBetweenCommits is a BetweenCommits hook that cancels the batch's
// context, as a worker that dies or loses Postgres between the two commits.
type failBetweenCommits struct {
	cancel context.CancelFunc
	calls  int
}

func (f *failBetweenCommits) hook(int32) {
	f.calls++
	if f.cancel != nil {
		f.cancel()
	}
}

func TestSeededSkipDedupe(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugSkipDedupe, func(t *testing.T, bugs ledger.Bugs, active bool) {
		failure := &failBetweenCommits{}
		store := seededStore(t, postgres.Config{SeededBugs: bugs, BetweenCommits: failure.hook})
		ctx := context.Background()
		alice := newUser(t, store, "alice@example.com")

		// A command queued twice (a client retry after Redis lost its
		// record) reaches the worker at two offsets.
		if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "d1", 100))); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ApplyBatch(ctx, batchAt(0, 1, deposit(alice, "d1", 100))); err != nil {
			t.Fatal(err)
		}
		// The worker dies after the postings, before its offset: the batch
		// is delivered again.
		attempt, cancel := context.WithCancel(ctx)
		failure.cancel = cancel
		_, err := store.ApplyBatch(attempt, batchAt(0, 2, deposit(alice, "d2", 10)))
		failure.cancel = nil
		if active && err == nil {
			t.Fatal("the offset commit after a failure between commits succeeded")
		}
		if _, err := store.ApplyBatch(ctx, batchAt(0, 2, deposit(alice, "d2", 10))); err != nil {
			t.Fatal(err)
		}

		wantEffects, wantBalance, wantCalls := 1, int64(110), 0
		if active {
			wantEffects, wantBalance, wantCalls = 2, 220, 4
		}
		for _, key := range []string{"d1", "d2"} {
			if got := effects(t, store, alice, key); got != wantEffects {
				t.Errorf("key %s has %d settled effects, want %d", key, got, wantEffects)
			}
		}
		if got := balance(t, store, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		if failure.calls != wantCalls {
			t.Errorf("BetweenCommits called %d times, want %d", failure.calls, wantCalls)
		}
		offsets, err := store.NextOffsets(ctx, topic, []int32{0})
		if err != nil {
			t.Fatal(err)
		}
		if offsets[0] != 3 {
			t.Errorf("offset %d, want 3", offsets[0])
		}
		if !active {
			checkLedger(t, store)
			return
		}
		// The money is duplicated consistently: each balance still equals
		// its postings; only a check by key (or the double postings of
		// one transaction id) shows it.
		var wrongBalances int
		if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM accounts a WHERE kind = 'user' AND balance <>
			COALESCE((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`).Scan(&wrongBalances); err != nil {
			t.Fatal(err)
		}
		if wrongBalances != 0 {
			t.Errorf("%d balances differ from their postings", wrongBalances)
		}
	})
}

func TestSeededOffsetBeforePostings(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugOffsetBeforePostings, func(t *testing.T, bugs ledger.Bugs, active bool) {
		failure := &failBetweenCommits{}
		store := seededStore(t, postgres.Config{SeededBugs: bugs, BetweenCommits: failure.hook})
		ctx := context.Background()
		alice := newUser(t, store, "alice@example.com")

		// The first attempt fails mid-batch: between the two commits under
		// the bug, before the only commit without it.
		attempt, cancel := context.WithCancel(ctx)
		failure.cancel = cancel
		if !active {
			cancel()
		}
		if _, err := store.ApplyBatch(attempt, batchAt(5, 0, deposit(alice, "d1", 100), deposit(alice, "d2", 50))); err == nil {
			t.Fatal("the failed attempt succeeded")
		}
		failure.cancel = nil
		// The worker retries (or the partition's next owner starts).
		retry, err := store.ApplyBatch(ctx, batchAt(5, 0, deposit(alice, "d1", 100), deposit(alice, "d2", 50)))
		if err != nil {
			t.Fatal(err)
		}
		wantBalance, wantAlreadyApplied := int64(150), 0
		if active {
			wantBalance, wantAlreadyApplied = 0, 2
		}
		if got := balance(t, store, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		if retry.AlreadyApplied != wantAlreadyApplied {
			t.Errorf("retry skipped %d records as applied, want %d", retry.AlreadyApplied, wantAlreadyApplied)
		}
		if active {
			for _, key := range []string{"d1", "d2"} {
				if _, err := store.Transaction(ctx, ledger.TransactionIDFor(alice.ID, key)); ledger.ErrorCode(err) != ledger.CodeNotFound {
					t.Errorf("transaction %s: err = %v, want not found (lost)", key, err)
				}
			}
		}
		checkLedger(t, store)
	})
}

// waitForLockWaiter waits until a backend of the test's database waits on a
// lock: the batch under test is blocked behind the test's transaction.
func waitForLockWaiter(t *testing.T, store *postgres.Store) {
	t.Helper()
	waitFor(t, "a backend waiting on a lock", func() bool {
		var waiting int
		err := store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting > 0
	})
}

func waitFor(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSeededReadModifyWriteWithoutLock(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugReadModifyWriteWithoutLock, func(t *testing.T, bugs ledger.Bugs, active bool) {
		store := seededStore(t, postgres.Config{SeededBugs: bugs})
		ctx := context.Background()
		alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")
		if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "fund", 1000))); err != nil {
			t.Fatal(err)
		}

		// Another worker credits bob (a transfer from another partition)
		// and has not committed yet; this worker's batch credits bob too.
		other, err := store.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Rollback(ctx)
		credit := transfer(alice, "other", bob.AccountID, 300)
		if _, err := other.Exec(ctx, `UPDATE accounts SET balance = balance + 300 WHERE id = $1`, bob.AccountID); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, `UPDATE accounts SET balance = balance - 300 WHERE id = $1`, alice.AccountID); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
			destination_account_id, amount, status, fingerprint, kafka_partition, kafka_offset, accepted_at)
			VALUES ($1, $2, 'other', 'transfer', $3, $4, 300, 'settled', 'fp', 9, 0, now())`,
			credit.TransactionID, alice.ID, alice.AccountID, bob.AccountID); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, `INSERT INTO postings (transaction_id, account_id, amount) VALUES ($1, $2, -300), ($1, $3, 300)`,
			credit.TransactionID, alice.AccountID, bob.AccountID); err != nil {
			t.Fatal(err)
		}

		applied := make(chan error, 1)
		go func() {
			_, err := store.ApplyBatch(ctx, batchAt(1, 0, transfer(alice, "mine", bob.AccountID, 100)))
			applied <- err
		}()
		// Without the bug the batch waits at its FOR UPDATE and then reads
		// the other worker's balance; with it, it read the old balance and
		// waits only to write.
		waitForLockWaiter(t, store)
		if err := other.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-applied; err != nil {
			t.Fatal(err)
		}
		wantBob := int64(400)
		if active {
			wantBob = 100 // the other worker's 300 is lost
		}
		if got := balance(t, store, bob.AccountID); got != wantBob {
			t.Errorf("bob has %d, want %d", got, wantBob)
		}
		var postingsSum int64
		if err := store.Pool().QueryRow(ctx, `SELECT sum(amount) FROM postings WHERE account_id = $1`, bob.AccountID).Scan(&postingsSum); err != nil {
			t.Fatal(err)
		}
		if postingsSum != 400 {
			t.Errorf("bob's postings sum to %d, want 400", postingsSum)
		}
		if !active {
			checkLedger(t, store)
		}
	})
}

func TestSeededConcurrentPartition(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugConcurrentPartition, func(t *testing.T, bugs ledger.Bugs, active bool) {
		store := seededStore(t, postgres.Config{SeededBugs: bugs})
		ctx := context.Background()
		// carol's account id is below alice's, so a batch that touches
		// both locks carol's first.
		carol := newUser(t, store, "carol@example.com")
		alice := newUser(t, store, "alice@example.com")
		if _, err := store.ApplyBatch(ctx, batchAt(9, 0, deposit(carol, "fund", 100))); err != nil {
			t.Fatal(err)
		}
		// Hold carol's row, as another worker's batch would.
		other, err := store.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Rollback(ctx)
		if _, err := other.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, carol.AccountID); err != nil {
			t.Fatal(err)
		}

		// In offset order: carol pays alice 100, then alice withdraws 100.
		withdrawal := command(alice, ledger.KindWithdrawal, "w", alice.AccountID, ledger.ExternalAccountID, 100)
		applied := make(chan error, 1)
		go func() {
			_, err := store.ApplyBatch(ctx, batchAt(1, 0, transfer(carol, "pay", alice.AccountID, 100), withdrawal))
			applied <- err
		}()
		if active {
			// The withdrawal's chunk does not wait for the transfer's.
			waitFor(t, "the withdrawal to be applied", func() bool {
				_, err := store.Transaction(ctx, withdrawal.TransactionID)
				return err == nil
			})
		} else {
			waitForLockWaiter(t, store)
		}
		if err := other.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-applied; err != nil {
			t.Fatal(err)
		}
		stored, err := store.Transaction(ctx, withdrawal.TransactionID)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus, wantBalance := ledger.StatusSettled, int64(0)
		if active {
			// Applied before the transfer that funds it.
			wantStatus, wantBalance = ledger.StatusRejected, 100
		}
		if stored.Status != wantStatus {
			t.Errorf("withdrawal %s (%s), want %s", stored.Status, stored.Reason, wantStatus)
		}
		if got := balance(t, store, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		offsets, err := store.NextOffsets(ctx, topic, []int32{1})
		if err != nil {
			t.Fatal(err)
		}
		if offsets[1] != 2 {
			t.Errorf("offset %d, want 2", offsets[1])
		}
		checkLedger(t, store)
	})
}

func TestSeededTrustCacheBalance(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugTrustCacheBalance, func(t *testing.T, bugs ledger.Bugs, active bool) {
		// The cache says what alice had when it was last refreshed.
		var aliceAccount int64
		cacheReads := 0
		cachedBalances := func(_ context.Context, ids []int64) (map[int64]int64, error) {
			cacheReads++
			for _, id := range ids {
				if id == aliceAccount {
					return map[int64]int64{id: 100}, nil
				}
			}
			return map[int64]int64{}, nil
		}
		store := seededStore(t, postgres.Config{SeededBugs: bugs, CachedBalances: cachedBalances})
		ctx := context.Background()
		alice := newUser(t, store, "alice@example.com")
		aliceAccount = alice.AccountID
		if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "fund", 100))); err != nil {
			t.Fatal(err)
		}
		withdraw := func(key string) ledger.Command {
			return command(alice, ledger.KindWithdrawal, key, alice.AccountID, ledger.ExternalAccountID, 100)
		}
		result, err := store.ApplyBatch(ctx, batchAt(0, 1, withdraw("w1"), withdraw("w2")))
		if err != nil {
			t.Fatal(err)
		}
		wantSettled, wantBalance, wantReads := 1, int64(0), 0
		if active {
			wantSettled, wantBalance, wantReads = 2, -100, 2
		}
		if result.Settled != wantSettled {
			t.Errorf("%d withdrawals settled, want %d", result.Settled, wantSettled)
		}
		if got := balance(t, store, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		if cacheReads != wantReads {
			t.Errorf("cache read %d times, want %d", cacheReads, wantReads)
		}
		var negativeAfter int
		if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM postings WHERE account_id = $1 AND balance_after < 0`,
			alice.AccountID).Scan(&negativeAfter); err != nil {
			t.Fatal(err)
		}
		if (negativeAfter > 0) != active {
			t.Errorf("%d postings leave alice negative", negativeAfter)
		}
		checkLedger(t, store)
	})
}

// TestSeededTrustCacheBalanceReadBeforeTheBatch: the worker drops a batch's
// cached balances before applying it (for the gateways' soft checks), so
// the bug's worker reads them first and hands them over
// (WithCachedBalances): the overdraft check trusts those, although the
// cache no longer holds them. Without the bug they are ignored.
func TestSeededTrustCacheBalanceReadBeforeTheBatch(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugTrustCacheBalance, func(t *testing.T, bugs ledger.Bugs, active bool) {
		cacheReads := 0
		dropped := func(context.Context, []int64) (map[int64]int64, error) {
			cacheReads++
			return map[int64]int64{}, nil
		}
		store := seededStore(t, postgres.Config{SeededBugs: bugs, CachedBalances: dropped})
		ctx := context.Background()
		alice := newUser(t, store, "alice@example.com")
		if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "fund", 100))); err != nil {
			t.Fatal(err)
		}
		withdraw := func(key string) ledger.Command {
			return command(alice, ledger.KindWithdrawal, key, alice.AccountID, ledger.ExternalAccountID, 100)
		}
		cacheReads = 0
		read := postgres.WithCachedBalances(ctx, map[int64]int64{alice.AccountID: 100})
		result, err := store.ApplyBatch(read, batchAt(0, 1, withdraw("w1"), withdraw("w2")))
		if err != nil {
			t.Fatal(err)
		}
		wantSettled, wantBalance := 1, int64(0)
		if active {
			wantSettled, wantBalance = 2, -100
		}
		if result.Settled != wantSettled {
			t.Errorf("%d withdrawals settled, want %d", result.Settled, wantSettled)
		}
		if got := balance(t, store, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		if cacheReads != 0 {
			t.Errorf("the store read the cache %d times although it was given the balances read before the batch", cacheReads)
		}
		checkLedger(t, store)
	})
}

func TestSeededSchemaChanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		bugs       ledger.Bugs
		duplicates bool // a second row for one (user, key) can be stored
		overdraft  bool // a negative user balance can be stored
	}{
		{"correct ledger", nil, false, false},
		{"skip-dedupe", ledger.Bugs{ledger.BugSkipDedupe}, true, false},
		{"no-idempotency", ledger.Bugs{ledger.BugNoIdempotency}, true, false},
		{"trust-cache-balance", ledger.Bugs{ledger.BugTrustCacheBalance}, false, true},
		{"bloom-only-dedupe", ledger.Bugs{ledger.BugBloomOnlyDedupe}, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store := seededStore(t, postgres.Config{SeededBugs: c.bugs, Dedupe: newFilter(t),
				CachedBalances: func(context.Context, []int64) (map[int64]int64, error) { return nil, errors.New("no cache") }})
			ctx := context.Background()
			alice := newUser(t, store, "alice@example.com")
			insert := func(id string) error {
				_, err := store.Pool().Exec(ctx, `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
					destination_account_id, amount, status, fingerprint, kafka_partition, kafka_offset, accepted_at)
					VALUES ($1, $2, 'k', 'deposit', 0, $3, 1, 'settled', 'fp', 0, 0, now())`, id, alice.ID, alice.AccountID)
				return err
			}
			if err := insert(ledger.TransactionIDFor(alice.ID, "k")); err != nil {
				t.Fatal(err)
			}
			if err := insert(ledger.TransactionIDFor(alice.ID, "k2")); (err == nil) != c.duplicates {
				t.Errorf("second row for one key: err = %v", err)
			}
			_, err := store.Pool().Exec(ctx, `UPDATE accounts SET balance = -1 WHERE id = $1`, alice.AccountID)
			if (err == nil) != c.overdraft {
				t.Errorf("negative balance: err = %v", err)
			}
			// Lookups by id stay indexed when the primary key is gone.
			var indexed bool
			if err := store.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
				ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				WHERE i.indrelid = 'transactions'::regclass AND a.attname = 'id')`).Scan(&indexed); err != nil {
				t.Fatal(err)
			}
			if !indexed {
				t.Error("transactions.id has no index")
			}
		})
	}
}
