package generator

import (
	"fmt"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// resyncAfter is how long after its latest unknown outcome an account's balance is read again. An operation
// ends unknown when the client gave up on it (its attempts failed, or it was accepted and not final within
// client.wait and client.poll_for); by then a command the system queued has almost always been applied, and
// one it did not queue never will be. Reading sooner would often count a command still on its way twice.
const resyncAfter = 5 * time.Second

// maxEdgeAmountMinor is the largest amount an edge debit may ask for: the API's largest amount
// (sut/openapi.yaml). A source that may hold more gets an ordinary debit instead of an over-balance one.
const maxEdgeAmountMinor = scenario.MaxFundingMinor

// debitClass is what a debit's amount is aimed at.
type debitClass int

const (
	debitOrdinary debitClass = iota
	debitOverBalance
	debitWholeBalance
	// debitLimitEdge: a debit with a rival, aimed at the user's daily debit limit (limitEdgeAmount).
	debitLimitEdge
)

// accountBelief is what the generator believes of one account's balance: a value it is sure of (settled),
// and bounds for what is in flight or ended unknown. The account surely holds at least lower() and at most
// upper(); it knows the balance exactly when nothing is in flight or unknown.
type accountBelief struct {
	// settled is the opening balance plus the settled credits minus the settled debits the client was told of
	// (or the balance last read, see resync).
	settled int64
	// pendingDebits and pendingCredits sum the amounts of the operations in flight; unknownDebits and
	// unknownCredits those that ended unknown since the balance was last read.
	pendingDebits, pendingCredits, unknownDebits, unknownCredits int64
	// inFlight counts the operations in flight that debit or credit the account.
	inFlight int
	// probing counts the edge debits of the account in flight: the account is then not picked as a transfer's
	// destination, so that no credit lands between the belief and the debit it sized.
	probing int
	// lastUnknown is when the latest unknown outcome touching the account was known.
	lastUnknown time.Time
	// version changes whenever an operation of the account starts or ends, so a balance read while one did is
	// not taken (resync).
	version uint64
	// day is the UTC day that dayDebited and dayUnknown count (the account's user's debits, for the daily
	// limit: each prepared account is a user of its own); dayDebited sums the debits the client was told
	// settled, dayUnknown those that ended unknown (a balance read does not tell them apart: they stay for the
	// day).
	day                    time.Time
	dayDebited, dayUnknown int64
}

// onDay starts a new day's counts when day is not the one counted.
func (a *accountBelief) onDay(day time.Time) {
	if !a.day.Equal(day) {
		a.day, a.dayDebited, a.dayUnknown = day, 0, 0
	}
}

// utcDay is the UTC day of t, the day a debit counts against (the system's clock when it accepts it: close to
// the client's).
func utcDay(t time.Time) time.Time {
	year, month, day := t.UTC().Date()
	return time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
}

func (a *accountBelief) lower() int64 { return a.settled - a.pendingDebits - a.unknownDebits }
func (a *accountBelief) upper() int64 { return a.settled + a.pendingCredits + a.unknownCredits }
func (a *accountBelief) exact() bool {
	return a.pendingDebits == 0 && a.pendingCredits == 0 && a.unknownDebits == 0 && a.unknownCredits == 0
}

// balanceBook holds the beliefs of every prepared account of the process. One mutex for all: an operation
// touches two accounts, and the book is held for a few hundred nanoseconds per operation, never across I/O.
type balanceBook struct {
	mutex      sync.Mutex
	accounts   []accountBelief
	topUpMinor int64
	// dailyLimit is the users' daily debit limit that limit edges aim at (0: none).
	dailyLimit int64
	// now is the clock of the days (time.Now; tests set it).
	now func() time.Time
}

func newBalanceBook(openingMinor []int64, topUpMinor int64) *balanceBook {
	book := &balanceBook{accounts: make([]accountBelief, len(openingMinor)), topUpMinor: topUpMinor, now: time.Now}
	for i, opening := range openingMinor {
		book.accounts[i].settled = opening
	}
	return book
}

// decide sizes a drafted operation from the beliefs and registers it as in flight:
//   - an over-balance debit asks for upper + 1: whatever is in flight or unknown, the source holds one minor
//     unit less than the debit needs;
//   - a whole-balance debit asks for the balance when it is known exactly (and above 0), leaving the account at
//     zero; otherwise the debit is ordinary;
//   - an ordinary debit asks for at most lower, what the source surely holds; when that is below amountMin the
//     debit becomes a deposit of the top-up amount into the source;
//   - a limit edge (limitEdgeAmount) asks for an amount within what surely remains of the user's daily limit,
//     whose double passes the most that may remain; without one (limitEdgeAmount) the debit is sized as the
//     others;
//   - a transfer's destination that has an edge debit in flight is replaced by another account.
func (b *balanceBook) decide(operation Operation, class debitClass, amountMin int64) Operation {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	source := &b.accounts[operation.Source]
	if operation.Kind == client.KindTransfer {
		operation.Destination = b.notProbing(operation.Destination, operation.Source)
	}
	if class == debitLimitEdge && operation.Kind != client.KindDeposit {
		if amount, edge := b.limitEdgeAmount(source, amountMin); edge {
			operation.Amount, operation.Intent = amount, IntentLimitEdge
			return b.registerLocked(operation)
		}
	}
	if operation.Kind != client.KindDeposit {
		switch {
		case class == debitOverBalance && source.upper() < maxEdgeAmountMinor && source.upper() >= 0:
			// (An upper bound below zero is an account the system overdrew: no amount is one unit over it.)
			operation.Amount, operation.Intent = source.upper()+1, IntentOverBalance
		case class == debitWholeBalance && source.exact() && source.settled >= 1:
			operation.Amount, operation.Intent = source.settled, IntentWholeBalance
		case source.lower() < amountMin:
			operation.Kind, operation.Destination = client.KindDeposit, -1
			operation.Amount, operation.Intent = b.topUpMinor, IntentTopUp
		case operation.Amount > source.lower():
			operation.Amount, operation.Intent = source.lower(), ""
			if source.exact() {
				// What the source surely holds is all it holds: this debit takes the whole balance.
				operation.Intent = IntentWholeBalance
			}
		}
	}
	return b.registerLocked(operation)
}

// limitEdgeAmount is the amount of a limit edge of source, and whether it has one: the smallest amount whose
// double is above the most that may remain of its user's daily limit (the limit less the day's settled debits:
// together the two debits pass it), if it is within what surely remains (the limit less the day's settled,
// unknown and in-flight debits: each fits alone) and its double within what the source surely holds (the
// balance pays both, so the limit decides, not the funds). So a user has one when what remains of its limit is
// no more than its balance: near the limit, or with a large balance. The caller holds the mutex.
func (b *balanceBook) limitEdgeAmount(source *accountBelief, amountMin int64) (int64, bool) {
	if b.dailyLimit <= 0 {
		return 0, false
	}
	source.onDay(utcDay(b.now()))
	mayRemain := b.dailyLimit - source.dayDebited
	surelyRemains := mayRemain - source.dayUnknown - source.pendingDebits
	amount := max(mayRemain/2+1, amountMin)
	return amount, amount <= surelyRemains && 2*amount <= source.lower() && amount <= maxEdgeAmountMinor
}

// register registers an operation sized elsewhere (a rival) as in flight.
func (b *balanceBook) register(operation Operation) Operation {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.registerLocked(operation)
}

// registerLocked registers an operation as in flight; the caller holds the mutex.
func (b *balanceBook) registerLocked(operation Operation) Operation {
	operation.tracked = true
	debited, credited := b.sides(operation)
	if debited != nil {
		debited.pendingDebits += operation.Amount
		debited.inFlight++
		debited.version++
		if probes(operation) {
			debited.probing++
		}
	}
	if credited != nil {
		credited.pendingCredits += operation.Amount
		credited.inFlight++
		credited.version++
	}
	return operation
}

// probes reports whether a debit is aimed at an edge of the balance (over it, at it, or racing for it): while
// one is in flight, no transfer credits its account.
func probes(operation Operation) bool {
	return operation.Intent == IntentOverBalance || operation.Intent == IntentWholeBalance || operation.Intent == IntentRival
}

// notProbing returns candidate, or the next account after it that has no edge debit in flight and is not
// excluded; candidate itself when every other account has one.
func (b *balanceBook) notProbing(candidate, excluded int) int {
	for step := range len(b.accounts) {
		index := (candidate + step) % len(b.accounts)
		if index != excluded && b.accounts[index].probing == 0 {
			return index
		}
	}
	return candidate
}

// sides returns the beliefs of the account an operation debits and the one it credits (nil for none).
func (b *balanceBook) sides(operation Operation) (debited, credited *accountBelief) {
	switch operation.Kind {
	case client.KindDeposit:
		return nil, &b.accounts[operation.Source]
	case client.KindWithdrawal:
		return &b.accounts[operation.Source], nil
	case client.KindTransfer:
		return &b.accounts[operation.Source], &b.accounts[operation.Destination]
	}
	// The workload only decides these kinds: anything else is a bug in the generator.
	panic(fmt.Sprintf("generator: balance of an operation of kind %q", operation.Kind))
}

// finish takes an operation's outcome: ok moves the money, fail (never applied) nothing, info (unknown) keeps
// the amount within the bounds until the balance is read again.
func (b *balanceBook) finish(operation Operation, outcome string, now time.Time) {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	debited, credited := b.sides(operation)
	amount := operation.Amount
	if debited != nil {
		debited.pendingDebits -= amount
		debited.inFlight--
		debited.version++
		if probes(operation) {
			debited.probing--
		}
		debited.onDay(utcDay(now))
		switch outcome {
		case client.OutcomeOK:
			debited.settled -= amount
			debited.dayDebited += amount
		case client.OutcomeInfo:
			debited.unknownDebits += amount
			debited.dayUnknown += amount
			debited.lastUnknown = now
		}
	}
	if credited != nil {
		credited.pendingCredits -= amount
		credited.inFlight--
		credited.version++
		switch outcome {
		case client.OutcomeOK:
			credited.settled += amount
		case client.OutcomeInfo:
			credited.unknownCredits += amount
			credited.lastUnknown = now
		}
	}
	for _, belief := range []*accountBelief{debited, credited} {
		if belief != nil && (belief.inFlight < 0 || belief.pendingDebits < 0 || belief.pendingCredits < 0 || belief.probing < 0) {
			panic(fmt.Sprintf("generator: balance beliefs went negative (%+v): an operation was finished twice", *belief))
		}
	}
}

// resyncDue reports whether the account has unknown effects, the latest at least resyncAfter old, and
// nothing in flight.
func (b *balanceBook) resyncDue(index int, now time.Time) (uint64, bool) {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	belief := &b.accounts[index]
	due := belief.inFlight == 0 && (belief.unknownDebits != 0 || belief.unknownCredits != 0) &&
		now.Sub(belief.lastUnknown) >= resyncAfter
	return belief.version, due
}

// resync replaces the account's beliefs with a balance read from the system, if no operation of the account
// started or ended since version was taken.
func (b *balanceBook) resync(index int, version uint64, balanceMinor int64) bool {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	belief := &b.accounts[index]
	if belief.version != version || belief.inFlight != 0 {
		return false
	}
	belief.settled, belief.unknownDebits, belief.unknownCredits = balanceMinor, 0, 0
	belief.version++
	return true
}
