package invariants

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// reject records a rejection the system decided whatever the balances: a
// ledger row rejected for reason at the next position of its stream, and
// the client told so. A system that refuses valid operations is this.
func (m *model) reject(kind string, from, to, amount int64, reason string) int {
	ordering, user := from, m.user(from)
	if kind == KindDeposit {
		ordering, user = to, m.user(to)
	}
	key := fmt.Sprintf("k-%d", m.nextOp+1)
	entry := m.entry(kind, key, user, from, to, amount, OutcomeFail)
	entry.Status, entry.Reason = StatusRejected, reason
	partition := int32(ordering % int64(m.partitions))
	offset := m.offsets[partition]
	m.offsets[partition]++
	transaction := Transaction{ID: fmt.Sprintf("tx-%s-%d", key, user), UserID: user, IdempotencyKey: key, Kind: kind,
		SourceAccountID: from, DestinationAccountID: to, Amount: amount, Status: StatusRejected, Reason: reason,
		Partition: ptr(partition), AppliedOrder: ptr(offset)}
	entry.Tx = transaction.ID
	m.transactions = append(m.transactions, transaction)
	m.journal = append(m.journal, entry)
	return len(m.journal) - 1
}

// refuse records an operation the system refused before its ledger (a
// gateway's 4xx): no row.
func (m *model) refuse(kind string, user, from, to, amount int64, reason string) int {
	key := fmt.Sprintf("k-%d", m.nextOp+1)
	entry := m.entry(kind, key, user, from, to, amount, OutcomeFail)
	entry.Reason = reason
	m.journal = append(m.journal, entry)
	return len(m.journal) - 1
}

// auditWith audits a model's fixture with a configuration's limits.
func (m *model) auditWith(t *testing.T, configure func(*Config)) *Result {
	t.Helper()
	runDir, exportDir := m.write(t)
	config := Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}}
	if configure != nil {
		configure(&config)
	}
	result, err := Audit(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	return result
}

// TestJustifiedRejection: a system that refuses valid operations (a wrong
// insufficient_funds, a wrong account_not_found, ...) fails
// justified-rejection with the culprit operation and ledger rows, and only
// it; the same refusals where the ledger explains them pass.
func TestJustifiedRejection(t *testing.T) {
	limits := func(c *Config) { c.MaxBalanceMinor, c.MaxAmountMinor = 1000, 500 }
	cases := []struct {
		name  string
		build func(m *model)
		// configure sets the audit's limits (nil: none known).
		configure func(*Config)
		// violated: justified-rejection must fail (and only it), its
		// explanation mentioning each of mention; else it must pass.
		violated bool
		mention  []string
	}{
		{"insufficient_funds with the balance short passes", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindWithdrawal, 1, 0, 101, ReasonInsufficientFunds)
		}, nil, false, nil},
		{"insufficient_funds with the balance enough fails", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.operate(KindWithdrawal, 1, 0, 30, plain)
			m.reject(KindWithdrawal, 1, 0, 70, ReasonInsufficientFunds)
		}, nil, true, []string{`"k-8"`, "account 1", "lowest balance there is 70", "insufficient_funds"}},
		{"insufficient_funds for a transfer of exactly the balance fails", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindTransfer, 1, 2, 100, ReasonInsufficientFunds)
		}, nil, true, []string{`"k-7"`, "lowest balance there is 100"}},
		{"insufficient_funds before the position's funding, with later credits, passes", func(m *model) {
			// Account 1 is funded at a higher position of its stream than
			// the rejection: the worker decided against the opening 0.
			m.reject(KindWithdrawal, 1, 0, 50, ReasonInsufficientFunds)
			m.operate(KindDeposit, 0, 1, 100, plain)
		}, nil, false, nil},
		{"insufficient_funds with another stream's credit that may have come after passes", func(m *model) {
			// Account 2's stream is not account 1's: its credit to account 1
			// may fall on either side of the rejection, so the lowest
			// balance of the window (10, before the credit) counts.
			m.operate(KindDeposit, 0, 1, 10, plain)
			m.operate(KindDeposit, 0, 2, 500, plain)
			m.operate(KindTransfer, 2, 1, 100, plain)
			m.reject(KindWithdrawal, 1, 0, 50, ReasonInsufficientFunds)
		}, nil, false, nil},
		{"insufficient_funds for a deposit fails", func(m *model) {
			m.reject(KindDeposit, 0, 1, 10, ReasonInsufficientFunds)
		}, nil, true, []string{"a deposit debits no user account"}},
		{"account_not_found for an account that does not exist passes", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindTransfer, 1, 99, 10, ReasonAccountNotFound)
		}, nil, false, nil},
		{"account_not_found for two accounts signed up before fails", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindTransfer, 1, 2, 10, ReasonAccountNotFound)
		}, nil, true, []string{`"k-7"`, "account(s) 1 and 2 exist", "signup"}},
		{"account_not_found refused before the ledger fails", func(m *model) {
			m.refuse(KindDeposit, m.user(3), 0, 3, 10, ReasonAccountNotFound)
		}, nil, true, []string{"refused before the ledger", "account(s) 3 exist"}},
		{"forbidden for another user's account passes", func(m *model) {
			m.refuse(KindWithdrawal, m.user(1), 2, 0, 10, ReasonForbidden)
		}, nil, false, nil},
		{"forbidden for the user's own account fails", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindWithdrawal, 1, 0, 10, ReasonForbidden)
		}, nil, true, []string{"account 1 belongs to user 101"}},
		{"same_account for two accounts fails", func(m *model) {
			m.refuse(KindTransfer, m.user(1), 1, 2, 10, ReasonSameAccount)
		}, nil, true, []string{"two different accounts"}},
		{"balance_limit past the limit passes", func(m *model) {
			m.operate(KindDeposit, 0, 1, 900, plain)
			m.reject(KindDeposit, 0, 1, 101, ReasonBalanceLimit)
		}, limits, false, nil},
		{"balance_limit far below the limit fails", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindDeposit, 0, 1, 100, ReasonBalanceLimit)
		}, limits, true, []string{"the limit is 1000", "highest balance there is 100"}},
		{"invalid_amount above the largest passes", func(m *model) {
			m.refuse(KindDeposit, m.user(1), 0, 1, 501, ReasonInvalidAmount)
		}, limits, false, nil},
		{"invalid_amount within bounds fails", func(m *model) {
			m.refuse(KindDeposit, m.user(1), 0, 1, 500, ReasonInvalidAmount)
		}, limits, true, []string{"the amount 500 is between 1 and the largest amount, 500"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newModel(5)
			c.build(m)
			result := m.auditWith(t, c.configure)
			invariant := result.invariant(JustifiedRejection)
			if !c.violated {
				if invariant.Status != StatusPassed || len(result.violated()) != 0 {
					t.Fatalf("justified-rejection %s (%s), violated %v\n%s", invariant.Status, invariant.Note, result.violated(), result.summary())
				}
				return
			}
			if violated := result.violated(); !slices.Equal(violated, []string{JustifiedRejection}) {
				t.Fatalf("violated %v, want only %s\n%s", violated, JustifiedRejection, result.summary())
			}
			explanation := result.explanation(JustifiedRejection)
			for _, want := range c.mention {
				if !strings.Contains(explanation, want) {
					t.Errorf("the explanation does not mention %q:\n%s", want, result.summary())
				}
			}
			if violation := invariant.Violations[0]; len(violation.Operations) == 0 || len(violation.Rows) == 0 && !strings.Contains(violation.Summary, "before the ledger") {
				t.Errorf("the violation quotes no operation or row: %+v", violation)
			}
		})
	}
}

// TestJustifiedRejectionQuotesTheWindow: a wrong insufficient_funds is
// explained with the rejected row and the postings that bound the moment
// it was decided.
func TestJustifiedRejectionQuotesTheWindow(t *testing.T) {
	m := newModel(2)
	m.operate(KindDeposit, 0, 1, 100, plain)
	m.reject(KindWithdrawal, 1, 0, 60, ReasonInsufficientFunds)
	m.operate(KindWithdrawal, 1, 0, 60, plain)
	result := m.auditWith(t, nil)
	violations := result.invariant(JustifiedRejection).Violations
	if len(violations) != 1 {
		t.Fatalf("%d violations, want 1\n%s", len(violations), result.summary())
	}
	var tables []string
	for _, row := range violations[0].Rows {
		tables = append(tables, row.Table+"="+row.ID)
	}
	want := []string{"transactions=tx-k-4-101", "postings=2", "postings=3", "accounts=1"}
	if !slices.Equal(tables, want) {
		t.Fatalf("rows %v, want %v\n%s", tables, want, result.summary())
	}
}

// TestJustifiedRejectionNotDecidable: when the ledger cannot place a
// rejection in its account's order, or does not know the system's limits,
// the rejection is counted as not decidable and the invariant is skipped
// with the reason, never passed.
func TestJustifiedRejectionNotDecidable(t *testing.T) {
	cases := []struct {
		name  string
		build func(m *model)
		why   string
	}{
		{"no positions", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			// 170, not 70: limits-respected judges an insufficient_funds
			// rejection without a position by the journal's times, and a
			// refusal of 70 while 100 was held would be a violation there.
			m.reject(KindWithdrawal, 1, 0, 170, ReasonInsufficientFunds)
			for i := range m.transactions {
				m.transactions[i].Partition, m.transactions[i].AppliedOrder = nil, nil
			}
		}, "no position"},
		{"positions not unique", func(m *model) {
			m.operate(KindDeposit, 0, 1, 100, plain)
			m.reject(KindWithdrawal, 1, 0, 70, ReasonInsufficientFunds)
			for i := range m.transactions {
				m.transactions[i].Partition, m.transactions[i].AppliedOrder = ptr(int32(1)), ptr(int64(7))
			}
		}, "not unique"},
		{"refused before the ledger", func(m *model) {
			m.refuse(KindWithdrawal, m.user(1), 1, 0, 70, ReasonInsufficientFunds)
		}, "refused before the ledger"},
		{"no balance limit known", func(m *model) {
			m.reject(KindDeposit, 0, 1, 70, ReasonBalanceLimit)
		}, "balance limit is not known"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newModel(2)
			c.build(m)
			result := m.auditWith(t, nil)
			invariant := result.invariant(JustifiedRejection)
			if invariant.Status != StatusSkipped || !strings.Contains(invariant.Note, c.why) {
				t.Fatalf("justified-rejection %s (%s), want skipped saying %q\n%s", invariant.Status, invariant.Note, c.why, result.summary())
			}
			if result.Verdict != VerdictPassed {
				t.Fatalf("verdict %s: a rejection that cannot be judged is no violation", result.Verdict)
			}
		})
	}
}

// TestJustifiedRejectionNotExercised: a run without rejections says so.
func TestJustifiedRejectionNotExercised(t *testing.T) {
	m := newModel(2)
	m.operate(KindDeposit, 0, 1, 100, plain)
	m.refuse(KindDeposit, m.user(1), 0, 1, 5, "rate_limited")
	result := m.auditWith(t, nil)
	invariant := result.invariant(JustifiedRejection)
	if invariant.Status != StatusNotExercised || !strings.Contains(invariant.Note, "rate_limited 1") {
		t.Fatalf("justified-rejection %s (%s), want not-exercised naming the refusal not judged", invariant.Status, invariant.Note)
	}
}

// TestReferenceJustifiedRejection: rejections decided by the reference
// system's real apply path (postgres.Store.ApplyBatch: in offset order,
// within a batch, with credits from another partition between) are all
// justified; a rejection whose reason the ledger cannot explain (tampered in
// SQL and in the journal alike, so nothing else disagrees) fails
// justified-rejection alone.
func TestReferenceJustifiedRejection(t *testing.T) {
	r := newReferenceLedger(t)
	alice, bob := r.signup("alice@example.com"), r.signup("bob@example.com")
	r.apply(referenceCommand(alice, "deposit", "a-1", 0, alice.AccountID, 100),
		referenceCommand(alice, "withdrawal", "a-2", alice.AccountID, 0, 150), // 100: insufficient
		referenceCommand(alice, "withdrawal", "a-3", alice.AccountID, 0, 60),
		referenceCommand(alice, "transfer", "a-4", alice.AccountID, bob.AccountID, 50)) // 40: insufficient
	r.apply(referenceCommand(bob, "deposit", "b-1", 0, bob.AccountID, 30),
		referenceCommand(bob, "transfer", "b-2", bob.AccountID, alice.AccountID, 30))
	r.apply(referenceCommand(alice, "withdrawal", "a-5", alice.AccountID, 0, 71), // 70: insufficient
		referenceCommand(alice, "withdrawal", "a-6", alice.AccountID, 0, 70))
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })

	result := r.audit(r.writeJournal(), source, nil)
	invariant := result.invariant(JustifiedRejection)
	if result.Verdict != VerdictPassed || invariant.Status != StatusPassed || invariant.Checked[unitRejectionsJudged] != 3 {
		t.Fatalf("verdict %s, justified-rejection %s checked %v\n%s", result.Verdict, invariant.Status, invariant.Checked, result.summary())
	}

	// a-4 was refused because alice had 40; say instead bob's account did
	// not exist.
	r.exec(`UPDATE transactions SET reason = 'account_not_found' WHERE id = $1`, referenceCommand(alice, "transfer", "a-4", 0, 0, 1).TransactionID)
	for i := range r.journal {
		if r.journal[i].Key == "a-4" {
			r.journal[i].Reason = ReasonAccountNotFound
		}
	}
	tampered := r.audit(r.writeJournal(), source, nil)
	if violated := tampered.violated(); !slices.Equal(violated, []string{JustifiedRejection}) {
		t.Fatalf("violated %v, want only %s\n%s", violated, JustifiedRejection, tampered.summary())
	}
	if explanation := tampered.explanation(JustifiedRejection); !strings.Contains(explanation, `\"a-4\"`) {
		t.Errorf("the explanation does not name a-4: %s", explanation)
	}
}
