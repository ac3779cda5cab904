package generator

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// edgeWorkload is the mixed workload with every edge of the money path asked for, over accounts funded with
// fundingMinor each (also the top-up).
func edgeWorkload(t *testing.T, accounts int, fundingMinor int64) *Workload {
	t.Helper()
	w := mixedWorkload(scenario.Mix{Deposit: 3, Withdrawal: 2, Transfer: 5})
	w.Ownership, w.OwnerSlots = true, accounts
	w.OverdraftRate, w.DrainRate, w.MinimumRate, w.PairRate = 0.15, 0.05, 0.02, 0.3
	workload := mustWorkload(t, w, accounts, 1)
	opening := make([]int64, accounts)
	for i := range opening {
		opening[i] = fundingMinor
	}
	if err := workload.TrackBalances(opening, fundingMinor); err != nil {
		t.Fatal(err)
	}
	return workload
}

// TestWorkloadEdgesAgainstAModelLedger runs the edge workload one operation at a time against a model ledger
// that rejects a debit larger than the balance: every over-balance debit is rejected, every whole-balance one
// settles and leaves zero, no other debit is ever rejected, and each edge comes in the share asked for.
func TestWorkloadEdgesAgainstAModelLedger(t *testing.T) {
	const accounts, funding = 10, 5000
	workload := edgeWorkload(t, accounts, funding)
	balances := make([]int64, accounts)
	for i := range balances {
		balances[i] = funding
	}
	random := rand.New(rand.NewPCG(5, 1))
	counts := map[string]int{}
	debits, transfers, toPartner, zeroed := 0, 0, 0, 0
	directions := map[[2]int]bool{}
	now := time.Unix(1_700_000_000, 0)
	for i := range draws {
		operation := workload.Next(random, uint64(i%accounts)+1)
		counts[operation.Intent]++
		outcome := client.OutcomeOK
		switch operation.Kind {
		case client.KindDeposit:
			balances[operation.Source] += operation.Amount
		default:
			debits++
			if operation.Amount > balances[operation.Source] {
				outcome = client.OutcomeFail
				break
			}
			balances[operation.Source] -= operation.Amount
			if operation.Kind == client.KindTransfer {
				balances[operation.Destination] += operation.Amount
			}
		}
		if operation.Kind == client.KindTransfer {
			transfers++
			if operation.Destination == operation.Source^1 {
				toPartner++
				directions[[2]int{operation.Source, operation.Destination}] = true
			}
		}
		switch {
		case operation.Intent == IntentOverBalance && outcome != client.OutcomeFail:
			t.Fatalf("over-balance debit %+v settled: the source held %d", operation, balances[operation.Source]+operation.Amount)
		case operation.Intent == IntentOverBalance && operation.Amount != balances[operation.Source]+1:
			t.Fatalf("over-balance debit %+v: the source holds %d, want exactly one minor unit short", operation, balances[operation.Source])
		case operation.Intent == IntentWholeBalance && (outcome != client.OutcomeOK || balances[operation.Source] != 0):
			t.Fatalf("whole-balance debit %+v: outcome %s, the source left with %d; want settled, zero", operation, outcome, balances[operation.Source])
		case operation.Intent != IntentOverBalance && outcome == client.OutcomeFail:
			t.Fatalf("%+v rejected for insufficient funds: only over-balance debits may be", operation)
		case operation.Intent == IntentMinimum && operation.Amount != 1:
			t.Fatalf("minimum operation %+v: amount %d, want amount_min 1", operation, operation.Amount)
		case operation.Intent == IntentTopUp && (operation.Kind != client.KindDeposit || operation.Amount != funding):
			t.Fatalf("top-up %+v: want a deposit of the funding %d", operation, funding)
		case operation.Kind != client.KindDeposit && operation.Intent == "" && (operation.Amount < 1 || operation.Amount > 1000):
			t.Fatalf("ordinary debit %+v outside the amounts 1..1000", operation)
		}
		if operation.Intent == IntentWholeBalance {
			zeroed++
		}
		workload.Finish(operation, outcome, now)
	}
	if share := float64(counts[IntentOverBalance]) / float64(debits); share < 0.13 || share > 0.19 {
		t.Errorf("over-balance debits are %.3f of the debits, want about 0.15", share)
	}
	if zeroed < draws/200 {
		t.Errorf("%d debits drove an account to zero in %d operations, want a steady share", zeroed, draws)
	}
	if share := float64(counts[IntentMinimum]) / draws; share < 0.01 || share > 0.03 {
		t.Errorf("minimum amounts are %.3f of the operations, want about 0.02", share)
	}
	if share := float64(toPartner) / float64(transfers); share < 0.28 {
		t.Errorf("%.3f of the transfers went to the partner, want at least 0.3", share)
	}
	for pair := range accounts / 2 {
		if !directions[[2]int{2 * pair, 2*pair + 1}] || !directions[[2]int{2*pair + 1, 2 * pair}] {
			t.Errorf("accounts %d and %d: transfers %v, want both directions", 2*pair, 2*pair+1, directions)
		}
	}
}

func TestBalanceBookBoundsInFlightAndUnknown(t *testing.T) {
	book := newBalanceBook([]int64{1000, 1000, 1000}, 500)
	t0 := time.Unix(1_700_000_000, 0)
	withdrawal := func(amount int64, class debitClass) Operation {
		return book.decide(Operation{Kind: client.KindWithdrawal, Source: 0, Destination: -1, Amount: amount}, class, 1)
	}

	first := withdrawal(300, debitOrdinary)
	if first.Amount != 300 || first.Intent != "" {
		t.Fatalf("ordinary debit %+v: want 300 as drawn", first)
	}
	// In flight, the 300 may or may not be gone: at most 1000, at least 700.
	if over := withdrawal(1, debitOverBalance); over.Amount != 1001 || over.Intent != IntentOverBalance {
		t.Errorf("over-balance debit with 300 in flight %+v: want 1001", over)
	} else {
		book.finish(over, client.OutcomeFail, t0)
	}
	if whole := withdrawal(5, debitWholeBalance); whole.Amount != 5 || whole.Intent != "" {
		t.Errorf("whole-balance debit with a debit in flight %+v: want an ordinary one (the balance is not known)", whole)
	} else {
		book.finish(whole, client.OutcomeOK, t0)
	}
	book.finish(first, client.OutcomeInfo, t0)

	// Unknown: the account holds 695 or 995.
	if capped := withdrawal(900, debitOrdinary); capped.Amount != 695 || capped.Intent != "" {
		t.Errorf("ordinary debit of 900 with 695..995 possible %+v: want 695, what the source surely holds", capped)
	} else {
		book.finish(capped, client.OutcomeFail, t0)
	}
	if _, due := book.resyncDue(0, t0.Add(resyncAfter-time.Millisecond)); due {
		t.Errorf("a resync is due before resyncAfter")
	}
	version, due := book.resyncDue(0, t0.Add(resyncAfter))
	if !due {
		t.Fatalf("no resync due resyncAfter after an unknown outcome")
	}
	// An operation of the account meanwhile: the balance read cannot be taken.
	meanwhile := withdrawal(10, debitOrdinary)
	book.finish(meanwhile, client.OutcomeOK, t0)
	if book.resync(0, version, 685) {
		t.Errorf("a resync was taken although an operation of the account started after its version")
	}
	version, _ = book.resyncDue(0, t0.Add(resyncAfter))
	if !book.resync(0, version, 685) {
		t.Fatalf("resync refused")
	}
	if whole := withdrawal(5, debitWholeBalance); whole.Amount != 685 || whole.Intent != IntentWholeBalance {
		t.Errorf("whole-balance debit after the resync %+v: want the balance read, 685", whole)
	} else {
		book.finish(whole, client.OutcomeOK, t0)
	}
	if topUp := withdrawal(5, debitOrdinary); topUp.Kind != client.KindDeposit || topUp.Amount != 500 || topUp.Intent != IntentTopUp {
		t.Errorf("debit of an empty account %+v: want a top-up deposit of 500", topUp)
	} else {
		book.finish(topUp, client.OutcomeOK, t0)
	}

	// A credit in flight raises what the account may hold.
	deposit := book.decide(Operation{Kind: client.KindDeposit, Source: 1, Destination: -1, Amount: 200}, debitOrdinary, 1)
	over := book.decide(Operation{Kind: client.KindWithdrawal, Source: 1, Destination: -1, Amount: 7}, debitOverBalance, 1)
	if over.Amount != 1201 {
		t.Errorf("over-balance debit with a 200 credit in flight %+v: want 1201", over)
	}
	// While account 1 has an edge debit in flight, no transfer credits it.
	transfer := book.decide(Operation{Kind: client.KindTransfer, Source: 2, Destination: 1, Amount: 3}, debitOrdinary, 1)
	if transfer.Destination != 0 {
		t.Errorf("transfer %+v to an account with an edge debit in flight: want another destination, 0", transfer)
	}
	book.finish(transfer, client.OutcomeOK, t0)
	book.finish(over, client.OutcomeFail, t0)
	book.finish(deposit, client.OutcomeOK, t0)
	if lower, upper := book.accounts[1].lower(), book.accounts[1].upper(); lower != 1200 || upper != 1200 {
		t.Errorf("account 1 believed %d..%d, want exactly 1200", lower, upper)
	}
	defer func() {
		if recovered := recover(); recovered == nil || !strings.Contains(recovered.(string), "finished twice") {
			t.Errorf("finishing an operation twice: %v, want a panic", recovered)
		}
	}()
	book.finish(deposit, client.OutcomeOK, t0)
}

func TestWorkloadWithoutBalancesDrawsAsBefore(t *testing.T) {
	w := mixedWorkload(scenario.Mix{Withdrawal: 1})
	w.OverdraftRate, w.DrainRate = 0.5, 0.5
	workload := mustWorkload(t, w, 4, 1)
	for _, operation := range drawOperations(workload, 3, 1, 1000) {
		if operation.Intent != "" || operation.Amount < 1 || operation.Amount > 1000 || operation.tracked {
			t.Fatalf("%+v: without TrackBalances no edge can be aimed at", operation)
		}
	}
	if err := workload.TrackBalances([]int64{1, 2}, 1); err == nil {
		t.Errorf("TrackBalances took 2 balances for 4 accounts")
	}
}

func TestReplayQueue(t *testing.T) {
	var queue replayQueue
	t0 := time.Unix(1_700_000_000, 0)
	for i, of := range []string{"a", "b", "c"} {
		if !queue.add(replay{due: t0.Add(time.Duration(i) * time.Second), of: of}) {
			t.Fatalf("replay %s refused", of)
		}
	}
	if _, ok := queue.take(t0.Add(-time.Millisecond)); ok {
		t.Errorf("a replay was taken before it was due")
	}
	var taken []string
	for {
		next, ok := queue.take(t0.Add(time.Second))
		if !ok {
			break
		}
		taken = append(taken, next.of)
	}
	if strings.Join(taken, ",") != "a,b" {
		t.Errorf("taken %v at t0+1s, want a,b in order", taken)
	}
	if waiting, _ := queue.pending(); waiting != 1 {
		t.Errorf("%d waiting, want 1", waiting)
	}
	for range maxPendingReplays - 1 {
		queue.add(replay{due: t0})
	}
	if queue.add(replay{due: t0}) {
		t.Errorf("the queue took more than %d replays", maxPendingReplays)
	}
	if waiting, refused := queue.pending(); waiting != maxPendingReplays || refused != 1 {
		t.Errorf("%d waiting, %d refused; want %d and 1", waiting, refused, maxPendingReplays)
	}
}

// TestWorkloadLimitRacesAgainstAModelLedger runs a workload with limit races against a model ledger that checks
// each debit against the balance and against its user's debits of the day under a lock, one debit after the
// other: every limit edge and its rival fit the limit alone and pass it together, so the model settles exactly
// one of the two and rejects the other for the limit; a check of both against the day's total before either
// (a lagging check) would have settled both past the limit. Each race halves what remains: a user sees several
// a day.
func TestWorkloadLimitRacesAgainstAModelLedger(t *testing.T) {
	const accounts, funding, limit = 6, 50_000, 20_000
	w := mixedWorkload(scenario.Mix{Deposit: 1, Withdrawal: 2, Transfer: 2})
	w.LimitRaceRate, w.DailyLimit = 0.5, limit
	workload := mustWorkload(t, w, accounts, 1)
	opening := make([]int64, accounts)
	for i := range opening {
		opening[i] = funding
	}
	if err := workload.TrackBalances(opening, funding); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	workload.balances.now = func() time.Time { return now }
	balances, debited := append([]int64(nil), opening...), make([]int64, accounts)
	// apply is the model ledger: a debit must fit the balance and the day's limit.
	apply := func(operation Operation) (string, string) {
		if operation.Kind == client.KindDeposit {
			balances[operation.Source] += operation.Amount
			return client.OutcomeOK, ""
		}
		switch {
		case operation.Amount > balances[operation.Source]:
			return client.OutcomeFail, "insufficient_funds"
		case debited[operation.Source]+operation.Amount > limit:
			return client.OutcomeFail, "daily_limit_exceeded"
		}
		balances[operation.Source] -= operation.Amount
		debited[operation.Source] += operation.Amount
		if operation.Kind == client.KindTransfer {
			balances[operation.Destination] += operation.Amount
		}
		return client.OutcomeOK, ""
	}
	random := rand.New(rand.NewPCG(9, 1))
	races := 0
	for i := range 4000 {
		operation := workload.Next(random, uint64(i%accounts)+1)
		rival, raced := workload.Rival(operation)
		if operation.Intent == IntentLimitEdge {
			if !raced || rival.Intent != IntentLimitRival || rival.Amount != operation.Amount || rival.Source != operation.Source || rival.Kind != client.KindWithdrawal {
				t.Fatalf("limit edge %+v: rival %+v (raced %v), want a withdrawal of the same amount from the same account", operation, rival, raced)
			}
			remains := limit - debited[operation.Source]
			if operation.Amount > remains || 2*operation.Amount <= remains || 2*operation.Amount > balances[operation.Source] {
				t.Fatalf("limit edge %+v: %d of the limit remains, the balance is %d: want each alone within it, both above it, both paid by the balance",
					operation, remains, balances[operation.Source])
			}
			races++
		} else if raced {
			t.Fatalf("%+v has a rival %+v but is no limit edge (no race_rate asked for)", operation, rival)
		}
		outcome, reason := apply(operation)
		if operation.Intent == IntentLimitEdge {
			rivalOutcome, rivalReason := apply(rival)
			if outcome != client.OutcomeOK || rivalOutcome != client.OutcomeFail || rivalReason != "daily_limit_exceeded" {
				t.Fatalf("limit edge %+v: %s %s, its rival %s %s; want the first settled, the rival rejected for the limit",
					operation, outcome, reason, rivalOutcome, rivalReason)
			}
			workload.Finish(rival, rivalOutcome, now)
		}
		workload.Finish(operation, outcome, now)
		if i%1000 == 999 {
			// A new day: the users' limits start again.
			now = now.Add(24 * time.Hour)
			clear(debited)
		}
	}
	if races < 8 {
		t.Errorf("%d limit races in 4 days of 6 users, want several a day", races)
	}
}

// TestLimitEdgeWithUnknownDebits: a limit edge asks for the smallest amount whose double passes what may
// remain of the day's limit, only while that amount is within what surely remains (a debit of the day that
// ended unknown may have settled) and the balance pays both; a new day starts the limit again.
func TestLimitEdgeWithUnknownDebits(t *testing.T) {
	book := newBalanceBook([]int64{50_000}, 1000)
	book.dailyLimit = 100_000
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	book.now = func() time.Time { return now }
	settle := func(operation Operation, outcome string) {
		book.finish(book.decide(operation, debitOrdinary, 1), outcome, now)
	}
	debit := func(amount int64, outcome string) {
		settle(Operation{Kind: client.KindWithdrawal, Source: 0, Destination: -1, Amount: amount}, outcome)
	}
	edge := func() Operation {
		operation := book.decide(Operation{Kind: client.KindWithdrawal, Source: 0, Destination: -1, Amount: 7}, debitLimitEdge, 1)
		book.finish(operation, client.OutcomeFail, now)
		return operation
	}
	if operation := edge(); operation.Intent != "" || operation.Amount != 7 {
		t.Fatalf("100,000 of the limit left, 50,000 held: %+v, want the ordinary debit of 7", operation)
	}
	debit(48_000, client.OutcomeOK)
	settle(Operation{Kind: client.KindDeposit, Source: 0, Destination: -1, Amount: 60_000}, client.OutcomeOK)
	if operation := edge(); operation.Intent != IntentLimitEdge || operation.Amount != 26_001 {
		t.Fatalf("52,000 of the limit left, 62,000 held: %+v, want a limit edge of 26,001", operation)
	}
	debit(1_000, client.OutcomeInfo) // may have settled: 51,000 to 52,000 left
	if operation := edge(); operation.Intent != IntentLimitEdge || operation.Amount != 26_001 {
		t.Fatalf("51,000 to 52,000 left: %+v, want a limit edge of 26,001 (alone within the least, twice above the most)", operation)
	}
	debit(26_000, client.OutcomeInfo) // 25,000 to 52,000 left: 26,001 may not fit alone
	if operation := edge(); operation.Intent == IntentLimitEdge {
		t.Fatalf("25,000 to 52,000 left: %+v, want no limit edge", operation)
	}
	now = now.Add(24 * time.Hour)
	if operation := edge(); operation.Intent == IntentLimitEdge {
		t.Fatalf("a new day, 100,000 left, 35,000 held at most: %+v, want no limit edge", operation)
	}
}
