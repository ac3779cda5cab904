package invariants

import (
	"slices"
	"strings"
	"testing"
)

// TestPerAccountOrderSeesPostingsOutOfStreamOrder: a system that queues an
// account's debits in the right order but applies them out of order (the
// seeded bug concurrent-partition: one partition's batch applied by parallel
// transactions) keeps correct stream positions; only the debit postings show
// the later debit applied first. Balances chain and add up, so
// per-account-order is the only invariant violated.
func TestPerAccountOrderSeesPostingsOutOfStreamOrder(t *testing.T) {
	m := newModel(2)
	m.operate(KindDeposit, 0, 1, 100, plain)
	first := m.operate(KindWithdrawal, 1, 0, 30, plain)
	second := m.operate(KindWithdrawal, 1, 0, 20, plain)
	if m.journal[first].Complete >= m.journal[second].Invoke {
		t.Fatal("the model must complete the first withdrawal before it invokes the second")
	}
	firstID, secondID := m.transactions[m.row(first)].ID, m.transactions[m.row(second)].ID
	// Rewrite the postings as the second withdrawal applied first: same rows,
	// same positions, postings renumbered in the new order with their
	// balance_after replayed.
	var reordered, firstLegs, secondLegs []Posting
	for _, p := range m.postings {
		switch p.TransactionID {
		case firstID:
			firstLegs = append(firstLegs, p)
		case secondID:
			secondLegs = append(secondLegs, p)
		default:
			reordered = append(reordered, p)
		}
	}
	reordered = append(append(reordered, secondLegs...), firstLegs...)
	balance := map[int64]int64{}
	for i := range reordered {
		p := &reordered[i]
		p.ID = int64(i + 1)
		if p.AccountID != 0 {
			balance[p.AccountID] += p.Amount
			p.BalanceAfter = ptr(balance[p.AccountID])
		}
	}
	m.postings = reordered

	result := m.audit(t, nil)
	if violated := result.violated(); !slices.Equal(violated, []string{PerAccountOrder}) {
		t.Fatalf("violated %v, want only %s\n%s", violated, PerAccountOrder, result.summary())
	}
	explanation := result.explanation(PerAccountOrder)
	for _, want := range []string{"account 1", m.journal[first].Key, m.journal[second].Key, "debit posting", "although queued"} {
		if !strings.Contains(explanation, want) {
			t.Errorf("the explanation does not mention %q:\n%s", want, explanation)
		}
	}
	if count := result.invariant(PerAccountOrder).ViolationCount; count != 1 {
		t.Errorf("%d violations, want 1 (one pair)", count)
	}
}
