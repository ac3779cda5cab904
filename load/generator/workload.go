package generator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// Intents: what the workload aimed an amount at (the journal's intent). They are aims, from what the generator
// believed of the balance when it decided; the auditor judges the operation by the ledger alone.
const (
	// IntentOverBalance is a debit of one minor unit more than the most the generator believed the source could
	// hold: the source is one minor unit short of what the debit needs, so it must be rejected for insufficient
	// funds (if the belief was right).
	IntentOverBalance = "over-balance"
	// IntentWholeBalance is a debit of exactly the balance the generator knew the source had: it must settle and
	// leave the account at zero.
	IntentWholeBalance = "whole-balance"
	// IntentRival is a withdrawal of the same amount from the same account as a whole-balance debit, sent at the
	// same moment with a key of its own (race_rate): of the two, one must be rejected for insufficient funds.
	IntentRival = "rival"
	// IntentLimitEdge is a debit (withdrawal or transfer) within what surely remains of its user's daily debit
	// limit, sent at the
	// same moment as its IntentLimitRival, a withdrawal of the same amount from the same account with a key of its
	// own (limit_race_rate): together they ask for more than may remain, so one of the two must be rejected with
	// daily_limit_exceeded (the balance pays both).
	IntentLimitEdge  = "limit-edge"
	IntentLimitRival = "limit-rival"
	// IntentMinimum is an amount of amount_min, the smallest the scenario allows (1 by default).
	IntentMinimum = "minimum"
	// IntentTopUp is a deposit of setup.funding that replaced a debit the source surely could not cover even
	// with amount_min.
	IntentTopUp = "top-up"
	// IntentMissingDestination is a transfer to an account that does not exist (missing_rate): it must be
	// rejected with account_not_found, and on a sharded system its saga compensated.
	IntentMissingDestination = "missing-destination"
)

// MissingDestination is Operation.Destination of a transfer to an account that does not exist
// (IntentMissingDestination); MissingAccountID gives its id.
const MissingDestination = -2

// missingAccountBase is far above any account id a test run creates (and below the largest id a gateway
// accepts), so an account there does not exist.
const missingAccountBase int64 = 1 << 40

// MissingAccountID is the id a transfer from sourceAccountID to a missing account names: missingAccountBase +
// sourceAccountID + 1, which for 2, 4, 8 or 16 shards (account id mod N) is in another shard than the source's,
// so on a sharded system the transfer is a saga whose credit is cancelled and whose debit is refunded.
func MissingAccountID(sourceAccountID int64) int64 {
	return missingAccountBase + sourceAccountID + 1
}

// Operation is one money operation the workload decided on, before it is sent: indexes into the prepared
// accounts, never account ids, so the workload works for any system's ids.
type Operation struct {
	Kind string
	// Source is the account the operation is ordered by: the debited one, or the credited one for a deposit.
	Source int
	// Destination is the credited account of a transfer (-1 otherwise).
	Destination int
	Amount      int64
	// Intent is what the amount was aimed at (the Intent constants), "" for an ordinary amount.
	Intent string
	// tracked says the operation is registered in the workload's balance beliefs: Finish must be called.
	tracked bool
	// raced says the operation has a rival: a whole-balance debit that drew one (race_rate), or a limit edge
	// (limit_race_rate). Rival makes it.
	raced bool
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
//
// Amounts at the edges (TrackBalances): the workload believes each account holds what it was funded with plus
// the effects the client was told of, within bounds for what is in flight or unknown, and aims a share of
// debits one minor unit over the most the source can hold (overdraft_rate), a share at exactly its balance
// when it knows it exactly (drain_rate), and never lets an ordinary debit ask for more than the source surely
// holds, so that the rejections for insufficient funds are the ones asked for.
type Workload struct {
	accounts  int
	kinds     weightedKinds
	amountMin int64
	amountMax int64
	picker    picker
	ownership bool
	slots     int

	overdraftRate, drainRate, minimumRate, pairRate, raceRate, missingRate, limitRaceRate float64
	// dailyLimit is the system's daily debit limit per user that limit races aim at (0: none).
	dailyLimit int64
	// balances is nil until TrackBalances: then amounts are sized from the beliefs.
	balances *balanceBook
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
	for _, rate := range []float64{w.OverdraftRate, w.DrainRate, w.MinimumRate, w.PairRate, w.RaceRate, w.MissingRate, w.LimitRaceRate} {
		if rate < 0 || rate > 1 {
			return nil, fmt.Errorf("workload: rate %v: want a fraction between 0 and 1", rate)
		}
	}
	if w.LimitRaceRate > 0 && w.DailyLimit <= 0 {
		return nil, fmt.Errorf("workload: limit race rate %v without a daily limit to aim at", w.LimitRaceRate)
	}
	if w.OverdraftRate+w.DrainRate > 1 {
		return nil, fmt.Errorf("workload: overdraft rate %v and drain rate %v add up to more than every debit", w.OverdraftRate, w.DrainRate)
	}
	workload := &Workload{accounts: accounts, kinds: kinds, amountMin: w.AmountMin, amountMax: w.AmountMax,
		picker: uniformPicker{count: accounts}, ownership: w.Ownership, slots: max(1, min(accounts, w.OwnerSlots)),
		overdraftRate: w.OverdraftRate, drainRate: w.DrainRate, minimumRate: w.MinimumRate, pairRate: w.PairRate,
		raceRate: w.RaceRate, missingRate: w.MissingRate, limitRaceRate: w.LimitRaceRate, dailyLimit: w.DailyLimit}
	if w.OwnerSlots <= 0 {
		workload.slots = accounts
	}
	if w.Accounts == scenario.DistributionZipf {
		workload.picker = newZipfPicker(accounts, w.ZipfExponent, seed)
	}
	return workload, nil
}

// TrackBalances makes the workload size amounts from what it believes of each account's balance, starting
// from openingMinor[i] for account i; topUpMinor is the deposit that replaces a debit an account surely cannot
// cover. Every operation Next returns from then on must be handed back to Finish with its outcome.
func (w *Workload) TrackBalances(openingMinor []int64, topUpMinor int64) error {
	if len(openingMinor) != w.accounts {
		return fmt.Errorf("workload: %d opening balances for %d accounts", len(openingMinor), w.accounts)
	}
	if topUpMinor < 1 {
		return fmt.Errorf("workload: top-up of %d: want at least 1", topUpMinor)
	}
	w.balances = newBalanceBook(openingMinor, topUpMinor)
	w.balances.dailyLimit = w.dailyLimit
	return nil
}

// Next describes the next operation of generator slot (from 1), drawing from random. The draws are the same
// whatever the balances; with TrackBalances, the amount (and a debit turned into a top-up) also depends on
// what the workload believes of the source's balance at this moment, and the operation is registered as in
// flight until Finish.
func (w *Workload) Next(random *rand.Rand, slot uint64) Operation {
	kind := w.kinds.pick(random)
	operation := Operation{Kind: kind, Source: w.pickSource(random, slot), Destination: -1}
	uniform := w.amountMin + random.Int64N(w.amountMax-w.amountMin+1)
	minimum := random.Float64() < w.minimumRate
	edge := random.Float64()
	toPartner := random.Float64() < w.pairRate
	// Drawn only when races are asked for, so that scenarios without them keep their seeds' sequences.
	raced := w.raceRate > 0 && random.Float64() < w.raceRate
	// Drawn only when asked for, as races are.
	missing := w.missingRate > 0 && random.Float64() < w.missingRate
	limitRaced := w.limitRaceRate > 0 && random.Float64() < w.limitRaceRate
	destination := w.pickOther(random, operation.Source)
	operation.Amount = uniform
	if minimum {
		operation.Amount, operation.Intent = w.amountMin, IntentMinimum
	}
	if kind == client.KindTransfer {
		operation.Destination = destination
		if toPartner {
			operation.Destination = w.partner(operation.Source)
		}
		if missing {
			// Not registered in the balance beliefs: it must have no effect on the source once its
			// rejection (or its saga's compensation) is final.
			operation.Destination, operation.Intent = MissingDestination, IntentMissingDestination
			return operation
		}
	}
	if w.balances == nil {
		return operation
	}
	var class debitClass
	switch {
	case edge < w.overdraftRate:
		class = debitOverBalance
	case edge < w.overdraftRate+w.drainRate:
		class = debitWholeBalance
	case limitRaced:
		class = debitLimitEdge
	}
	operation = w.balances.decide(operation, class, w.amountMin)
	operation.raced = (raced && operation.Intent == IntentWholeBalance) || operation.Intent == IntentLimitEdge
	return operation
}

// Rival returns the rival of an operation Next returned, when it drew one (race_rate) and is a whole-balance
// debit, or is a limit edge (limit_race_rate): a withdrawal of the same amount from the same account,
// registered in flight like any operation (hand it to Finish too). Sent at the same moment, the two debits of a
// whole balance ask for twice what the account holds: a correct system settles one and rejects the other for
// insufficient funds; one that checks both against the same balance (a cache, a read without a lock) settles
// both and overdraws the account. The two of a limit edge ask for more than remains of the user's daily limit:
// a correct system rejects one with daily_limit_exceeded; one that checks the limit against a total neither
// has joined yet settles both, past the limit.
func (w *Workload) Rival(operation Operation) (Operation, bool) {
	if !operation.raced || w.balances == nil {
		return Operation{}, false
	}
	intent := IntentRival
	if operation.Intent == IntentLimitEdge {
		intent = IntentLimitRival
	}
	rival := Operation{Kind: client.KindWithdrawal, Source: operation.Source, Destination: -1, Amount: operation.Amount,
		Intent: intent}
	return w.balances.register(rival), true
}

// Finish hands back an operation Next returned, with its outcome (client.OutcomeOK, OutcomeFail, OutcomeInfo)
// and when it was known: the beliefs take its effect, none, or an unknown one.
func (w *Workload) Finish(operation Operation, outcome string, now time.Time) {
	if operation.tracked {
		w.balances.finish(operation, outcome, now)
	}
}

// ResyncDue reports whether the account's balance should be read again to replace the beliefs: some of its
// operations ended unknown at least resyncAfter ago and none is in flight. version goes to Resync.
func (w *Workload) ResyncDue(index int, now time.Time) (version uint64, due bool) {
	if w.balances == nil {
		return 0, false
	}
	return w.balances.resyncDue(index, now)
}

// Resync replaces the beliefs of an account with the balance the system reported, unless an operation of the
// account started since ResyncDue returned version.
func (w *Workload) Resync(index int, version uint64, balanceMinor int64) bool {
	return w.balances != nil && w.balances.resync(index, version, balanceMinor)
}

// partner is the account a pair transfer goes to: accounts 0 and 1, 2 and 3, ... are pairs; with an odd count
// the last account's partner is the one before it.
func (w *Workload) partner(index int) int {
	if other := index ^ 1; other < w.accounts {
		return other
	}
	return index - 1
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
