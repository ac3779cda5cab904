package invariants

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// drawModel draws a valid history and its ledger from the pure model. A
// fixed prefix guarantees every mutation has a target: a funded account 1
// with two settled withdrawals, and a rejected withdrawal from account 2.
func drawModel(t *rapid.T) *model {
	users := rapid.IntRange(2, 5).Draw(t, "users")
	m := newModel(users)
	m.operate(KindDeposit, 0, 1, 1000, plain)
	m.operate(KindWithdrawal, 1, 0, 10, plain)
	m.operate(KindWithdrawal, 1, 0, 10, plain)
	m.operate(KindWithdrawal, 2, 0, 1_000_000, plain)
	kinds := []string{KindDeposit, KindDeposit, KindWithdrawal, KindTransfer, KindTransfer}
	operations := rapid.IntRange(0, 40).Draw(t, "operations")
	for i := 0; i < operations; i++ {
		kind := rapid.SampledFrom(kinds).Draw(t, "kind")
		account := int64(rapid.IntRange(1, users).Draw(t, "account"))
		amount := rapid.Int64Range(1, 300).Draw(t, "amount")
		how := variant(rapid.IntRange(0, int(variantCount)-1).Draw(t, "variant"))
		switch kind {
		case KindDeposit:
			m.operate(kind, 0, account, amount, how)
		case KindWithdrawal:
			m.operate(kind, account, 0, amount, how)
		case KindTransfer:
			other := (account+int64(rapid.IntRange(0, users-2).Draw(t, "other")))%int64(users) + 1
			m.operate(kind, account, other, amount, how)
		}
	}
	return m
}

// tempRoot gives a rapid check a fresh directory under the test's own.
func tempRoot(t *testing.T) func() string {
	root := t.TempDir()
	counter := 0
	return func() string {
		counter++
		dir := fmt.Sprintf("%s/%d", root, counter)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
}

// TestPropertyValidHistoriesPass: whatever the model does, a correct
// system's ledger passes every invariant, and unknown outcomes are
// resolved exactly as the model knows them.
func TestPropertyValidHistoriesPass(t *testing.T) {
	next := tempRoot(t)
	rapid.Check(t, func(t *rapid.T) {
		m := drawModel(t)
		cache := fakeCache{}
		for _, account := range m.accounts[1:] {
			cache[account.ID] = account.Balance
		}
		dir := next()
		defer os.RemoveAll(dir)
		result, err := m.auditIn(dir, cache)
		if err != nil {
			t.Fatal(err)
		}
		if result.Verdict != VerdictPassed {
			t.Fatalf("a valid history fails: %v\n%s", result.violated(), result.summary())
		}
		want := InfoResolution{Operations: m.infoSettled + m.infoRejected + m.infoAbsent, Settled: m.infoSettled,
			Rejected: m.infoRejected, Absent: m.infoAbsent}
		if result.InfoResolution != want {
			t.Fatalf("info resolution %+v, want %+v", result.InfoResolution, want)
		}
	})
}

// mutation breaks a valid fixture in one way and says which invariant must
// catch it and what its explanation must name.
type mutation struct {
	name      string
	invariant string
	apply     func(t *rapid.T, m *model) (mention string)
}

// known reports whether the client learned the ledger's decision.
func known(entry JournalEntry) bool {
	return entry.Outcome == OutcomeOK || entry.Status == StatusSettled || entry.Status == StatusRejected
}

// entriesWithRows lists the money entries (no misuse) that have a ledger row
// and satisfy keep.
func (m *model) entriesWithRows(keep func(JournalEntry) bool) []int {
	rows := map[string]bool{}
	for _, transaction := range m.transactions {
		rows[fmt.Sprint(transaction.UserID, "/", transaction.IdempotencyKey)] = true
	}
	var indices []int
	for i, entry := range m.journal {
		if entry.Kind != KindSignup && entry.Kind != KindMisuse && rows[fmt.Sprint(entry.User, "/", entry.Key)] && keep(entry) {
			indices = append(indices, i)
		}
	}
	return indices
}

var mutations = []mutation{
	{"drop a row", Durability, func(t *rapid.T, m *model) string {
		entry := rapid.SampledFrom(m.entriesWithRows(func(e JournalEntry) bool { return e.Outcome == OutcomeOK })).Draw(t, "entry")
		m.dropRow(m.row(entry))
		return fmt.Sprintf("%q", m.journal[entry].Key)
	}},
	{"duplicate a row", ExactlyOnce, func(t *rapid.T, m *model) string {
		entry := rapid.SampledFrom(m.entriesWithRows(func(JournalEntry) bool { return true })).Draw(t, "entry")
		m.duplicateRow(m.row(entry))
		return fmt.Sprintf("%q", m.journal[entry].Key)
	}},
	{"reorder two debits of one account", PerAccountOrder, func(t *rapid.T, m *model) string {
		debits := m.entriesWithRows(func(e JournalEntry) bool { return e.Kind == KindWithdrawal || e.Kind == KindTransfer })
		type pair struct{ earlier, later int }
		var pairs []pair
		for i, earlier := range debits {
			for _, later := range debits[i+1:] {
				a, b := m.journal[earlier], m.journal[later]
				if a.From == b.From && a.Key != b.Key && known(a) && a.Complete < b.Invoke {
					pairs = append(pairs, pair{earlier, later})
				}
			}
		}
		chosen := rapid.SampledFrom(pairs).Draw(t, "pair")
		first, second := m.row(chosen.earlier), m.row(chosen.later)
		m.transactions[first].AppliedOrder, m.transactions[second].AppliedOrder =
			m.transactions[second].AppliedOrder, m.transactions[first].AppliedOrder
		return fmt.Sprintf("account %d", m.journal[chosen.earlier].From)
	}},
	{"alter an amount", OutcomeAgreement, func(t *rapid.T, m *model) string {
		entry := rapid.SampledFrom(m.entriesWithRows(func(e JournalEntry) bool { return e.Outcome == OutcomeOK })).Draw(t, "entry")
		m.transactions[m.row(entry)].Amount += rapid.Int64Range(1, 5).Draw(t, "delta")
		return fmt.Sprintf("%q", m.journal[entry].Key)
	}},
	{"reject a debit the balance covers", JustifiedRejection, func(t *rapid.T, m *model) string {
		// A deposit in the account's own stream right before: the balance
		// the rejection was decided against is exactly the one after it
		// (a credit from another stream before the deposit may otherwise
		// have come after the rejection, which would explain it).
		account := int64(rapid.IntRange(1, len(m.accounts)-1).Draw(t, "account"))
		m.operate(KindDeposit, 0, account, rapid.Int64Range(1, 300).Draw(t, "deposit"), plain)
		amount := rapid.Int64Range(1, m.balances[account]).Draw(t, "amount")
		index := m.reject(KindWithdrawal, account, 0, amount, ReasonInsufficientFunds)
		return fmt.Sprintf("%q", m.journal[index].Key)
	}},
	{"reject a transfer between existing accounts as not found", JustifiedRejection, func(t *rapid.T, m *model) string {
		users := int64(len(m.accounts) - 1)
		from := int64(rapid.IntRange(1, int(users)).Draw(t, "from"))
		to := from%users + 1
		index := m.reject(KindTransfer, from, to, 1, ReasonAccountNotFound)
		return fmt.Sprintf("%q", m.journal[index].Key)
	}},
	{"flip an outcome", OutcomeAgreement, func(t *rapid.T, m *model) string {
		entry := rapid.SampledFrom(m.entriesWithRows(func(e JournalEntry) bool { return e.Outcome != OutcomeInfo })).Draw(t, "entry")
		flipped := &m.journal[entry]
		if flipped.Outcome == OutcomeOK {
			flipped.Outcome, flipped.Status, flipped.Reason = OutcomeFail, StatusRejected, "insufficient_funds"
		} else {
			flipped.Outcome, flipped.Status, flipped.Reason = OutcomeOK, StatusSettled, ""
		}
		return fmt.Sprintf("%q", flipped.Key)
	}},
}

// TestPropertyMutationsAreCaught: each kind of damage to a valid history or
// ledger is caught by the invariant that matches it, and the explanation
// names the damaged key or account.
func TestPropertyMutationsAreCaught(t *testing.T) {
	for _, mutation := range mutations {
		t.Run(strings.ReplaceAll(mutation.name, " ", "_"), func(t *testing.T) {
			next := tempRoot(t)
			rapid.Check(t, func(t *rapid.T) {
				m := drawModel(t)
				mention := mutation.apply(t, m)
				dir := next()
				defer os.RemoveAll(dir)
				result, err := m.auditIn(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				violated := result.violated()
				if !slices.Contains(violated, mutation.invariant) {
					t.Fatalf("%s: violated %v, want %s\n%s", mutation.name, violated, mutation.invariant, result.summary())
				}
				if explanation := result.explanation(mutation.invariant); !strings.Contains(explanation, mention) {
					t.Fatalf("%s: the explanation of %s does not name %q\n%s", mutation.name, mutation.invariant, mention, result.summary())
				}
			})
		})
	}
}
