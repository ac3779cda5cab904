package generator

import (
	"math"
	"testing"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// TestWorkloadMissingDestinations: about missing_rate of the transfers go
// to a missing account, marked so and never registered in the balance
// beliefs; other kinds never do; without the rate none does and the draws
// are those of a workload without it.
func TestWorkloadMissingDestinations(t *testing.T) {
	w := mixedWorkload(scenario.Mix{Deposit: 1, Withdrawal: 1, Transfer: 2})
	w.MissingRate = 0.2
	workload := mustWorkload(t, w, 20, 5)
	opening := make([]int64, 20)
	for i := range opening {
		opening[i] = 1 << 40 // enough that no debit becomes a top-up
	}
	if err := workload.TrackBalances(opening, 100); err != nil {
		t.Fatal(err)
	}
	transfers, missing := 0, 0
	for _, operation := range drawOperations(workload, 11, 1, draws) {
		if operation.Destination == MissingDestination {
			missing++
			if operation.Kind != client.KindTransfer || operation.Intent != IntentMissingDestination || operation.tracked {
				t.Fatalf("%+v: a missing destination must be an untracked transfer marked %s", operation, IntentMissingDestination)
			}
		}
		if operation.Kind == client.KindTransfer {
			transfers++
		}
	}
	if share := float64(missing) / float64(transfers); math.Abs(share-0.2) > 0.02 {
		t.Errorf("%d of %d transfers to a missing account (%.3f), want about 0.2", missing, transfers, share)
	}
	w.MissingRate = 0
	for _, operation := range drawOperations(mustWorkload(t, w, 20, 5), 11, 1, draws) {
		if operation.Destination == MissingDestination {
			t.Fatalf("%+v: a missing destination without missing_rate", operation)
		}
	}
	w.MissingRate = 1.5
	if _, err := NewWorkload(w, 20, 5); err == nil {
		t.Error("missing rate 1.5 accepted")
	}
}

// TestMissingAccountIDIsInAnotherShard: for 2, 4, 8 and 16 shards the
// missing id routes to another shard than the source's, so the transfer is
// a saga, and it is far above the ids a run creates.
func TestMissingAccountIDIsInAnotherShard(t *testing.T) {
	for _, shards := range []int{2, 4, 8, 16} {
		layout, _ := shard.New(shards)
		for source := int64(1); source < 200; source++ {
			missing := MissingAccountID(source)
			if missing < 1<<40 || !layout.CrossShard(source, missing) {
				t.Fatalf("%d shards: source %d, missing %d: want an id above 2^40 in another shard", shards, source, missing)
			}
		}
	}
}
