package postgres_test

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// TestEveryApplyHitsTheMidBatchCrashPoint: worker.mid-batch fires in every
// apply path, the seeded bugs' split and chunked commits included, so a
// plan's crash point reaches a buggy worker where it reaches a correct one.
// The crash loses the batch under offset-before-postings (its offset was
// committed first), may lose the chunk that crashed under
// concurrent-partition (a later chunk committed its higher offset), and
// loses nothing in the correct apply and under skip-dedupe: the retry
// applies the batch.
func TestEveryApplyHitsTheMidBatchCrashPoint(t *testing.T) {
	// Not parallel: the crash registry is the process's.
	for _, c := range []struct {
		name     string
		bugs     ledger.Bugs
		balances []int64 // alice's balance after the retry, any of these
	}{
		{"correct", nil, []int64{150}},
		{"offset-before-postings", ledger.Bugs{ledger.BugOffsetBeforePostings}, []int64{0}},
		{"skip-dedupe", ledger.Bugs{ledger.BugSkipDedupe}, []int64{150}},
		// Two records, two chunks: d1's crashed and d2's committed (d1
		// lost), or the other way round (d2 applied by the retry).
		{"concurrent-partition", ledger.Bugs{ledger.BugConcurrentPartition}, []int64{50, 150}},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := seededStore(t, postgres.Config{SeededBugs: c.bugs})
			ctx := context.Background()
			alice := newUser(t, store, "alice@example.com")
			batch := batchAt(0, 0, deposit(alice, "d1", 100), deposit(alice, "d2", 50))

			// The crash ends the goroutine that hits the point, its
			// deferred rollbacks run, as the process's death would.
			var crashed atomic.Bool
			registry, err := crash.NewRegistry(crash.Options{Process: ledger.ProcessWorker, Exit: func(int) {
				crashed.Store(true)
				runtime.Goexit()
			}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := registry.Arm(crash.Arming{Point: crash.MidBatch, After: 1}); err != nil {
				t.Fatal(err)
			}
			crash.Install(registry)
			defer crash.Install(nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = store.ApplyBatch(ctx, batch)
			}()
			<-done
			crash.Install(nil)
			if !crashed.Load() {
				t.Fatal("the apply never reached worker.mid-batch")
			}

			retry, err := store.ApplyBatch(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if got := balance(t, store, alice.AccountID); !slices.Contains(c.balances, got) {
				t.Errorf("after the crash and the retry alice has %d, want one of %v (retry: %+v)", got, c.balances, retry)
			}
		})
	}
}
