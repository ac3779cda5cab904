package generator

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// draws is how many operations the statistical tests draw: enough that a share off by a few percent shows.
const draws = 20000

func mixedWorkload(mix scenario.Mix) scenario.Workload {
	return scenario.Workload{Kind: scenario.WorkloadMixed, Mix: mix, AmountMin: 1, AmountMax: 1000, Accounts: scenario.DistributionUniform}
}

func mustWorkload(t *testing.T, w scenario.Workload, accounts int, seed int64) *Workload {
	t.Helper()
	workload, err := NewWorkload(w, accounts, seed)
	if err != nil {
		t.Fatalf("NewWorkload: %v", err)
	}
	return workload
}

// drawOperations draws count operations of slot from a generator seeded with seed.
func drawOperations(workload *Workload, seed uint64, slot uint64, count int) []Operation {
	random := rand.New(rand.NewPCG(seed, 1))
	operations := make([]Operation, count)
	for i := range operations {
		operations[i] = workload.Next(random, slot)
	}
	return operations
}

func TestWorkloadMixWeights(t *testing.T) {
	tests := []struct {
		name string
		mix  scenario.Mix
	}{
		{name: "default 3:2:5", mix: scenario.Mix{Deposit: 3, Withdrawal: 2, Transfer: 5}},
		{name: "no withdrawals", mix: scenario.Mix{Deposit: 1, Withdrawal: 0, Transfer: 1}},
		{name: "no deposits", mix: scenario.Mix{Deposit: 0, Withdrawal: 1, Transfer: 3}},
		{name: "no transfers", mix: scenario.Mix{Deposit: 1, Withdrawal: 1, Transfer: 0}},
		{name: "only transfers", mix: scenario.Mix{Transfer: 0.5}},
		{name: "only deposits", mix: scenario.Mix{Deposit: 7}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			workload := mustWorkload(t, mixedWorkload(test.mix), 10, 1)
			counts := map[string]int{}
			for _, operation := range drawOperations(workload, 7, 1, draws) {
				counts[operation.Kind]++
			}
			total := test.mix.Deposit + test.mix.Withdrawal + test.mix.Transfer
			for kind, weight := range map[string]float64{
				client.KindDeposit: test.mix.Deposit, client.KindWithdrawal: test.mix.Withdrawal, client.KindTransfer: test.mix.Transfer,
			} {
				share := float64(counts[kind]) / draws
				if weight == 0 && counts[kind] > 0 {
					t.Errorf("%s has weight 0 but was drawn %d times", kind, counts[kind])
				}
				if want := weight / total; share < want-0.02 || share > want+0.02 {
					t.Errorf("%s drawn %.3f of the time, want %.3f", kind, share, want)
				}
			}
			if len(counts) > 3 {
				t.Errorf("kinds drawn %v: only deposit, withdrawal, transfer exist", counts)
			}
		})
	}
}

func TestWorkloadAmountsWithinBounds(t *testing.T) {
	tests := []struct {
		name     string
		min, max int64
	}{
		{name: "one amount", min: 42, max: 42},
		{name: "three amounts", min: 5, max: 7},
		{name: "default", min: 1, max: 1000},
		{name: "large", min: 1, max: 100_000_000_000},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Deposit: 1, Withdrawal: 1, Transfer: 1})
			w.AmountMin, w.AmountMax = test.min, test.max
			seen := map[int64]bool{}
			for _, operation := range drawOperations(mustWorkload(t, w, 10, 1), 3, 1, draws) {
				if operation.Amount < test.min || operation.Amount > test.max {
					t.Fatalf("amount %d outside [%d, %d]", operation.Amount, test.min, test.max)
				}
				seen[operation.Amount] = true
			}
			// Both bounds are reachable when the range is small enough to see them.
			if test.max-test.min < 10 && (!seen[test.min] || !seen[test.max]) {
				t.Errorf("amounts drawn %v: want both bounds %d and %d", seen, test.min, test.max)
			}
		})
	}
}

func TestWorkloadAccountsAndDestinations(t *testing.T) {
	tests := []struct {
		name     string
		accounts int
		zipf     bool
	}{
		{name: "two accounts, uniform", accounts: 2},
		{name: "many accounts, uniform", accounts: 50},
		{name: "two accounts, zipf", accounts: 2, zipf: true},
		{name: "many accounts, zipf", accounts: 50, zipf: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Deposit: 1, Withdrawal: 1, Transfer: 2})
			if test.zipf {
				w.Accounts, w.ZipfExponent = scenario.DistributionZipf, 1.1
			}
			transfers := 0
			for _, operation := range drawOperations(mustWorkload(t, w, test.accounts, 5), 11, 1, draws) {
				if operation.Source < 0 || operation.Source >= test.accounts {
					t.Fatalf("%+v: source outside the %d accounts", operation, test.accounts)
				}
				if operation.Kind != client.KindTransfer {
					if operation.Destination != -1 {
						t.Fatalf("%+v: a %s has a destination", operation, operation.Kind)
					}
					continue
				}
				transfers++
				if operation.Destination == operation.Source || operation.Destination < 0 || operation.Destination >= test.accounts {
					t.Fatalf("%+v: transfer destination must be another of the %d accounts", operation, test.accounts)
				}
			}
			if transfers == 0 {
				t.Fatalf("no transfer drawn: the test checked nothing")
			}
		})
	}
}

func TestWorkloadOwnership(t *testing.T) {
	tests := []struct {
		name       string
		accounts   int
		ownerSlots int
		// slots are the number of owner slots the workload uses.
		slots int
	}{
		{name: "3 slots over 10 accounts", accounts: 10, ownerSlots: 3, slots: 3},
		{name: "a slot per account", accounts: 4, ownerSlots: 4, slots: 4},
		{name: "more slots than accounts", accounts: 4, ownerSlots: 9, slots: 4},
		{name: "owner slots left at 0: one per account", accounts: 5, ownerSlots: 0, slots: 5},
		{name: "one slot owns everything", accounts: 6, ownerSlots: 1, slots: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Deposit: 1, Withdrawal: 1, Transfer: 1})
			w.Ownership, w.OwnerSlots = true, test.ownerSlots
			workload := mustWorkload(t, w, test.accounts, 1)
			// Generator slots beyond the owner slots wrap around.
			for slot := uint64(1); slot <= uint64(2*test.slots+1); slot++ {
				owner := int((slot - 1) % uint64(test.slots))
				picked := map[int]bool{}
				for _, operation := range drawOperations(workload, slot, slot, 500) {
					if operation.Source%test.slots != owner {
						t.Fatalf("slot %d picked source %d: want an account i with i %% %d == %d", slot, operation.Source, test.slots, owner)
					}
					picked[operation.Source] = true
				}
				// Every account the slot owns is used, not only the first.
				for index := owner; index < test.accounts; index += test.slots {
					if !picked[index] {
						t.Errorf("slot %d never picked its account %d (picked %v)", slot, index, picked)
					}
				}
			}
		})
	}
}

func TestWorkloadWithoutOwnershipUsesEveryAccountFromAnySlot(t *testing.T) {
	w := mixedWorkload(scenario.Mix{Deposit: 1})
	w.Ownership = false
	picked := map[int]bool{}
	for _, operation := range drawOperations(mustWorkload(t, w, 6, 1), 1, 1, 1000) {
		picked[operation.Source] = true
	}
	if len(picked) != 6 {
		t.Errorf("slot 1 picked %v without ownership, want all 6 accounts", picked)
	}
}

// hottestShare returns the share of picks that went to the n most picked accounts.
func hottestShare(sources []int, n int) float64 {
	counts := map[int]int{}
	for _, source := range sources {
		counts[source]++
	}
	ordered := make([]int, 0, len(counts))
	for _, count := range counts {
		ordered = append(ordered, count)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ordered)))
	top := 0
	for _, count := range ordered[:min(n, len(ordered))] {
		top += count
	}
	return float64(top) / float64(len(sources))
}

func TestWorkloadZipfPutsMostPicksOnTheHotAccounts(t *testing.T) {
	const accounts, hot = 100, 10
	tests := []struct {
		name         string
		distribution string
		// low and high bound the share of picks of the 10 hottest of 100 accounts.
		low, high float64
	}{
		{name: "uniform", distribution: scenario.DistributionUniform, low: 0.08, high: 0.2},
		{name: "zipf", distribution: scenario.DistributionZipf, low: 0.5, high: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Withdrawal: 1})
			w.Accounts, w.ZipfExponent, w.Ownership = test.distribution, 1.1, false
			workload := mustWorkload(t, w, accounts, 99)
			var sources []int
			for _, operation := range drawOperations(workload, 4, 1, draws) {
				sources = append(sources, operation.Source)
			}
			if share := hottestShare(sources, hot); share < test.low || share > test.high {
				t.Errorf("the %d most picked of %d accounts got %.3f of the picks, want %.2f to %.2f", hot, accounts, share, test.low, test.high)
			}
			if test.distribution != scenario.DistributionZipf {
				return
			}
			zipf, ok := workload.picker.(*zipfPicker)
			if !ok {
				t.Fatalf("zipf accounts picked by a %T", workload.picker)
			}
			// The accounts reported hot are the ones picked most.
			hotPicks := 0
			for _, source := range sources {
				if zipf.hot(source, hot) {
					hotPicks++
				}
			}
			if share := float64(hotPicks) / draws; share < test.low {
				t.Errorf("the %d accounts reported hot got %.3f of the picks, want at least %.2f", hot, share, test.low)
			}
		})
	}
}

func TestZipfHotSetDependsOnTheSeedOnly(t *testing.T) {
	hotSet := func(seed int64) []int {
		z := newZipfPicker(50, 1.1, seed)
		var hot []int
		for index := range 50 {
			if z.hot(index, 5) {
				hot = append(hot, index)
			}
		}
		return hot
	}
	if a, b := hotSet(3), hotSet(3); !slices.Equal(a, b) || len(a) != 5 {
		t.Errorf("seed 3 makes hot sets %v and %v: every slot and process must agree on 5 accounts", a, b)
	}
	if a, b := hotSet(3), hotSet(4); slices.Equal(a, b) {
		t.Errorf("seeds 3 and 4 make the same hot set %v: the seed should choose it", a)
	}
}

func TestWorkloadSameSeedSameOperations(t *testing.T) {
	tests := []struct {
		name      string
		ownership bool
		zipf      bool
	}{
		{name: "uniform, ownership", ownership: true},
		{name: "uniform, no ownership"},
		{name: "zipf", zipf: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Deposit: 3, Withdrawal: 2, Transfer: 5})
			w.Ownership, w.OwnerSlots = test.ownership, 4
			if test.zipf {
				w.Accounts, w.ZipfExponent = scenario.DistributionZipf, 1.3
			}
			first := drawOperations(mustWorkload(t, w, 20, 42), 42, 3, 200)
			again := drawOperations(mustWorkload(t, w, 20, 42), 42, 3, 200)
			if !slices.Equal(first, again) {
				t.Errorf("the same seed drew different operations")
			}
			other := drawOperations(mustWorkload(t, w, 20, 43), 43, 3, 200)
			if slices.Equal(first, other) {
				t.Errorf("seeds 42 and 43 drew the same operations: the seed is not used")
			}
		})
	}
}

func TestNewWorkloadRefuses(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*scenario.Workload)
		accounts int
		want     string
	}{
		{name: "one account", change: func(*scenario.Workload) {}, accounts: 1, want: "at least 2"},
		{name: "every weight 0", change: func(w *scenario.Workload) { w.Mix = scenario.Mix{} }, accounts: 2, want: "at least one weight"},
		{name: "amount 0", change: func(w *scenario.Workload) { w.AmountMin = 0 }, accounts: 2, want: "amounts"},
		{name: "min above max", change: func(w *scenario.Workload) { w.AmountMin, w.AmountMax = 10, 9 }, accounts: 2, want: "amounts"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			w := mixedWorkload(scenario.Mix{Deposit: 1})
			test.change(&w)
			if _, err := NewWorkload(w, test.accounts, 1); err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("NewWorkload: %v, want an error containing %q", err, test.want)
			}
		})
	}
}
