package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// The two-tier dedupe (docs/two-tier-dedupe.md): a Bloom filter of recent
// ids in front of the exact lookup, the ledger's keys behind it.

func newFilter(t *testing.T) *dedupe.Filter {
	t.Helper()
	filter, err := dedupe.New(dedupe.Config{Capacity: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	return filter
}

// ledgerURL gives a test a migrated, empty database that several stores
// (workers, or one worker before and after a restart) can open.
func ledgerURL(t *testing.T) string {
	t.Helper()
	url := stacktest.PostgresURL(t)
	if err := postgres.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	return url
}

func openStore(t *testing.T, config postgres.Config) *postgres.Store {
	t.Helper()
	store, err := postgres.Open(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.PrepareSeededBugs(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

func applyBatch(t *testing.T, store *postgres.Store, batch postgres.Batch) postgres.BatchResult {
	t.Helper()
	result, err := store.ApplyBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	return result
}

// TestTwoTierDedupeBackstop: a worker whose filter never saw an id (it
// restarted, or another worker applied the id) takes a copy of an applied
// command for new. The ledger's keys refuse the insert and the batch is
// applied again with every id looked up: one effect, the stored outcome,
// no dead letter, and the batch's new command applied once. Without the
// backstop (the retry, or the keys) this test fails.
func TestTwoTierDedupeBackstop(t *testing.T) {
	t.Parallel()
	url := ledgerURL(t)
	ctx := context.Background()
	first := openStore(t, postgres.Config{URL: url, Dedupe: newFilter(t)})
	alice, bob := newUser(t, first, "alice@example.com"), newUser(t, first, "bob@example.com")
	applyBatch(t, first, batchAt(0, 0, deposit(alice, "d1", 100), deposit(bob, "b1", 7)))

	cold := newFilter(t)
	second := openStore(t, postgres.Config{URL: url, Dedupe: cold})
	// The copy of d1 at a new offset, a new command, and a misuse of b1's
	// key (same user and key, another amount: the same derived id) on
	// another partition.
	misuse := deposit(bob, "b1", 9)
	result := applyBatch(t, second, batchAt(0, 2, deposit(alice, "d1", 100), deposit(alice, "d2", 5)))
	misused := applyBatch(t, second, batchAt(1, 0, misuse))

	if result.Applied != 1 || result.Duplicates != 1 || result.DeadLettered != 0 || len(result.DeadLetters) != 0 {
		t.Errorf("result %+v, want d2 applied and d1 a duplicate", result)
	}
	if misused.Applied != 0 || misused.Duplicates != 1 || len(misused.DeadLetters) != 0 {
		t.Errorf("misuse result %+v, want a duplicate", misused)
	}
	for _, outcome := range append(result.Outcomes, misused.Outcomes...) {
		if outcome.Status != ledger.StatusSettled {
			t.Errorf("outcome %+v, want the stored settled one", outcome)
		}
	}
	for _, key := range []string{"d1", "d2"} {
		if got := effects(t, second, alice, key); got != 1 {
			t.Errorf("key %s has %d effects, want 1", key, got)
		}
	}
	if got := effects(t, second, bob, "b1"); got != 1 {
		t.Errorf("bob's key has %d effects, want 1", got)
	}
	if got, want := balance(t, second, alice.AccountID), int64(105); got != want {
		t.Errorf("alice has %d, want %d", got, want)
	}
	if got := balance(t, second, bob.AccountID); got != 7 {
		t.Errorf("bob has %d, want 7", got)
	}
	offsets, err := second.NextOffsets(ctx, topic, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if offsets[0] != 4 || offsets[1] != 1 {
		t.Errorf("offsets %v, want partition 0 at 4 and 1 at 1", offsets)
	}
	stats := cold.Stats()
	if stats.BackstopConflicts != 2 {
		t.Errorf("%d backstop conflicts, want 2 (one per batch)", stats.BackstopConflicts)
	}
	// Every id the batches named is in the filter now: a third copy is
	// looked up, not refused.
	third := applyBatch(t, second, batchAt(0, 4, deposit(alice, "d1", 100)))
	if third.Duplicates != 1 || cold.Stats().BackstopConflicts != 2 || cold.Stats().Positives != stats.Positives+1 {
		t.Errorf("third copy: result %+v, stats %+v: want a duplicate found by the lookup", third, cold.Stats())
	}
	checkLedger(t, second)
}

// TestTwoTierDedupeCountsLookups: the counters the worker's metrics read.
func TestTwoTierDedupeCountsLookups(t *testing.T) {
	t.Parallel()
	filter := newFilter(t)
	store := openStore(t, postgres.Config{URL: ledgerURL(t), Dedupe: filter})
	alice := newUser(t, store, "alice@example.com")

	// Three new commands: three lookups saved.
	applyBatch(t, store, batchAt(0, 0, deposit(alice, "a", 1), deposit(alice, "b", 1), deposit(alice, "c", 1)))
	if stats := filter.Stats(); stats.LookupsSaved != 3 || stats.Positives != 0 || stats.FalsePositives != 0 || stats.IDs != 3 {
		t.Fatalf("after three new commands: %+v", stats)
	}
	// Two copies (positives, found) and one command whose id the filter
	// holds although the ledger does not (a false positive, forced).
	forced := deposit(alice, "forced", 1)
	filter.Add(forced.TransactionID)
	result := applyBatch(t, store, batchAt(0, 3, deposit(alice, "a", 1), deposit(alice, "b", 1), forced, deposit(alice, "d", 1)))
	if result.Duplicates != 2 || result.Applied != 2 {
		t.Errorf("result %+v, want 2 duplicates and 2 applied", result)
	}
	stats := filter.Stats()
	want := dedupe.Stats{LookupsSaved: 4, Positives: 3, FalsePositives: 1, BackstopConflicts: 0, IDs: 5}
	if stats != want {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if rate := stats.ObservedFalsePositiveRate(); rate != 0.2 {
		t.Errorf("observed false-positive rate %v, want 1/(1+4)", rate)
	}
	checkLedger(t, store)
}

// TestWarmDedupe: a worker that starts fills its filter with the ledger's
// newest ids, so a copy of a recent command is found by the lookup instead
// of the backstop; at most the filter's capacity is loaded.
func TestWarmDedupe(t *testing.T) {
	t.Parallel()
	url := ledgerURL(t)
	ctx := context.Background()
	first := openStore(t, postgres.Config{URL: url})
	alice := newUser(t, first, "alice@example.com")
	applyBatch(t, first, batchAt(0, 0, deposit(alice, "old", 1)))
	var commands []ledger.Command
	for _, key := range []string{"k1", "k2", "k3"} {
		c := deposit(alice, key, 1)
		c.AcceptedAt = time.Now().Add(time.Hour) // newer than "old"
		commands = append(commands, c)
	}
	applyBatch(t, first, batchAt(0, 1, commands...))

	small, err := dedupe.New(dedupe.Config{Capacity: 3})
	if err != nil {
		t.Fatal(err)
	}
	restarted := openStore(t, postgres.Config{URL: url, Dedupe: small})
	loaded, err := restarted.WarmDedupe(ctx, 10*time.Second)
	if err != nil || loaded != 3 {
		t.Fatalf("warmed %d ids, error %v: want the 3 newest", loaded, err)
	}
	if !small.MightContain(commands[0].TransactionID) {
		t.Error("a newest id is not in the warmed filter")
	}
	result := applyBatch(t, restarted, batchAt(0, 4, commands[2]))
	if stats := small.Stats(); result.Duplicates != 1 || stats.BackstopConflicts != 0 || stats.Positives != 1 {
		t.Errorf("result %+v, stats %+v: want the copy found by the lookup", result, stats)
	}
	if _, err := restarted.WarmDedupe(ctx, 0); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Errorf("a zero timeout: error %v", err)
	}
	// Without a filter there is nothing to warm.
	if loaded, err := first.WarmDedupe(ctx, time.Second); loaded != 0 || err != nil {
		t.Errorf("store without a filter warmed %d, %v", loaded, err)
	}
}

// TestSeededBloomOnlyDedupe: a worker applies a command, restarts, and the
// command reaches it again at a new offset (a client replay after the
// gateway forgot the key). With the bug its filter starts empty, trusts the
// negative, and no key refuses the second effect; without it the filter is
// warmed (and the keys would refuse it anyway): one effect.
func TestSeededBloomOnlyDedupe(t *testing.T) {
	t.Parallel()
	bugCases(t, ledger.BugBloomOnlyDedupe, func(t *testing.T, bugs ledger.Bugs, active bool) {
		url := ledgerURL(t)
		ctx := context.Background()
		before := openStore(t, postgres.Config{URL: url, SeededBugs: bugs, Dedupe: newFilter(t)})
		alice := newUser(t, before, "alice@example.com")
		applyBatch(t, before, batchAt(0, 0, deposit(alice, "d1", 100)))
		// Within one process's life the filter remembers: a copy is a
		// positive, looked up, a duplicate, with or without the bug.
		if result := applyBatch(t, before, batchAt(0, 1, deposit(alice, "d1", 100))); result.Duplicates != 1 {
			t.Errorf("copy before the restart: %+v, want a duplicate", result)
		}

		filter := newFilter(t)
		after := openStore(t, postgres.Config{URL: url, SeededBugs: bugs, Dedupe: filter})
		loaded, err := after.WarmDedupe(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if (loaded == 0) != active {
			t.Errorf("warmed %d ids", loaded)
		}
		result := applyBatch(t, after, batchAt(0, 2, deposit(alice, "d1", 100)))

		wantEffects, wantBalance := 1, int64(100)
		if active {
			wantEffects, wantBalance = 2, 200
		}
		if got := effects(t, after, alice, "d1"); got != wantEffects {
			t.Errorf("%d settled effects of d1, want %d (result %+v)", got, wantEffects, result)
		}
		if got := balance(t, after, alice.AccountID); got != wantBalance {
			t.Errorf("alice has %d, want %d", got, wantBalance)
		}
		if stats := filter.Stats(); stats.BackstopConflicts != 0 {
			t.Errorf("%d backstop conflicts, want none (warmed, or no keys)", stats.BackstopConflicts)
		}
	})
	t.Run("needs a filter", func(t *testing.T) {
		t.Parallel()
		_, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://127.0.0.1:1/x", SeededBugs: ledger.Bugs{ledger.BugBloomOnlyDedupe}})
		if err == nil || !strings.Contains(err.Error(), "needs a Dedupe filter") {
			t.Errorf("error %v", err)
		}
	})
}
