package generator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// Operation is one money operation the workload decided on, before it is sent: indexes into the prepared
// accounts, never account ids, so the workload works for any system's ids.
type Operation struct {
	Kind string
	// Source is the account the operation is ordered by: the debited one, or the credited one for a deposit.
	Source int
	// Destination is the credited account of a transfer (-1 otherwise).
	Destination int
	Amount      int64
}

// weightedKinds picks an operation kind with the mix's weights (zero weights never).
type weightedKinds struct {
	kinds      []string
	cumulative []float64
	total      float64
}

func newWeightedKinds(mix scenario.Mix) (weightedKinds, error) {
	var w weightedKinds
	for _, pair := range []struct {
		kind   string
		weight float64
	}{{client.KindDeposit, mix.Deposit}, {client.KindWithdrawal, mix.Withdrawal}, {client.KindTransfer, mix.Transfer}} {
		if pair.weight > 0 {
			w.total += pair.weight
			w.kinds = append(w.kinds, pair.kind)
			w.cumulative = append(w.cumulative, w.total)
		}
	}
	if w.total <= 0 {
		return w, fmt.Errorf("operation mix: at least one weight must be positive")
	}
	return w, nil
}

func (w weightedKinds) pick(random *rand.Rand) string {
	target := random.Float64() * w.total
	index := sort.SearchFloat64s(w.cumulative, target)
	for index < len(w.cumulative)-1 && w.cumulative[index] <= target {
		index++
	}
	return w.kinds[min(index, len(w.kinds)-1)]
}

// picker picks an account index.
type picker interface {
	pick(random *rand.Rand) int
}

// uniformPicker picks any of count accounts with equal probability.
type uniformPicker struct{ count int }

func (u uniformPicker) pick(random *rand.Rand) int { return random.IntN(u.count) }

// zipfPicker picks accounts with probability ∝ 1/(rank+1)^exponent. Which accounts are hot is a permutation
// seeded by the run's seed alone, so every slot (and every generator process) agrees on the hot set.
type zipfPicker struct {
	cumulative    []float64
	accountOfRank []int
}

func newZipfPicker(count int, exponent float64, seed int64) *zipfPicker {
	z := &zipfPicker{cumulative: make([]float64, count)}
	total := 0.0
	for rank := range count {
		total += 1 / math.Pow(float64(rank+1), exponent)
		z.cumulative[rank] = total
	}
	for rank := range z.cumulative {
		z.cumulative[rank] /= total
	}
	z.accountOfRank = rand.New(rand.NewPCG(uint64(seed), 0x2f1b)).Perm(count)
	return z
}

func (z *zipfPicker) pick(random *rand.Rand) int {
	rank := sort.SearchFloat64s(z.cumulative, random.Float64())
	return z.accountOfRank[min(rank, len(z.accountOfRank)-1)]
}

// hot reports whether an account index is among the n hottest.
func (z *zipfPicker) hot(index, n int) bool {
	for rank := 0; rank < n && rank < len(z.accountOfRank); rank++ {
		if z.accountOfRank[rank] == index {
			return true
		}
	}
	return false
}

// Workload decides the money operations of the mixed workload. Ownership: the ledger promises that the debits
// of one account are applied in the order the client issued them (per-account-order), an order that is only
// strict for operations that did not overlap in time. So most debits of an account come from one owner slot:
// account index i is owned by slot i % slots, a generator slot s (from 1) acts for owner slot (s-1) % slots,
// and one generator slot runs one iteration at a time. Whatever the overlap, the journal's seq and invoke and
// complete times carry the issue order to the auditor; ownership only makes it strict for most pairs.
type Workload struct {
	accounts  int
	kinds     weightedKinds
	amountMin int64
	amountMax int64
	picker    picker
	ownership bool
	slots     int
}

// NewWorkload builds the mixed workload over accounts prepared accounts.
func NewWorkload(w scenario.Workload, accounts int, seed int64) (*Workload, error) {
	if accounts < 2 {
		return nil, fmt.Errorf("workload: %d accounts, at least 2 are needed", accounts)
	}
	kinds, err := newWeightedKinds(w.Mix)
	if err != nil {
		return nil, err
	}
	if w.AmountMin < 1 || w.AmountMax < w.AmountMin {
		return nil, fmt.Errorf("workload: amounts %d..%d: need 1 <= min <= max", w.AmountMin, w.AmountMax)
	}
	workload := &Workload{accounts: accounts, kinds: kinds, amountMin: w.AmountMin, amountMax: w.AmountMax,
		picker: uniformPicker{count: accounts}, ownership: w.Ownership, slots: max(1, min(accounts, w.OwnerSlots))}
	if w.OwnerSlots <= 0 {
		workload.slots = accounts
	}
	if w.Accounts == scenario.DistributionZipf {
		workload.picker = newZipfPicker(accounts, w.ZipfExponent, seed)
	}
	return workload, nil
}

// Next describes the next operation of generator slot (from 1), drawing from random.
func (w *Workload) Next(random *rand.Rand, slot uint64) Operation {
	kind := w.kinds.pick(random)
	operation := Operation{Kind: kind, Source: w.pickSource(random, slot), Destination: -1}
	operation.Amount = w.amountMin + random.Int64N(w.amountMax-w.amountMin+1)
	if kind == client.KindTransfer {
		operation.Destination = w.pickOther(random, operation.Source)
	}
	return operation
}

// pickSource picks among the accounts the slot owns (indexes ownerSlot, ownerSlot+slots, ...), or from the
// picker without ownership.
func (w *Workload) pickSource(random *rand.Rand, slot uint64) int {
	if !w.ownership {
		return w.picker.pick(random)
	}
	ownerSlot := int((max(slot, 1) - 1) % uint64(w.slots))
	if ownerSlot >= w.accounts {
		return w.picker.pick(random)
	}
	owned := (w.accounts-1-ownerSlot)/w.slots + 1
	return ownerSlot + w.slots*random.IntN(owned)
}

// pickOther returns an index other than excluded, walking to a neighbour on a collision.
func (w *Workload) pickOther(random *rand.Rand, excluded int) int {
	index := w.picker.pick(random)
	if index != excluded {
		return index
	}
	return (index + 1 + random.IntN(w.accounts-1)) % w.accounts
}
