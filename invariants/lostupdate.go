package invariants

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// A stored balance that is not the sum of its account's postings is what a
// lost update leaves behind: two operations read the balance, each wrote
// "what it read + its amount", and the second write erased the first's
// effect, while both postings were written. The total alone does not tell a
// person where to look, so the audit reads the ledger a second time for the
// accounts it found wrong (only then, and only for the first MaxViolations
// of them) and names the postings whose effect is missing:
//
//   - where the account's recorded balance_after stops chaining (the first
//     posting whose balance_after is not the previous one plus its amount:
//     the write that did not see an earlier one);
//   - the postings whose amount is exactly what is missing (one lost
//     update leaves out one operation's amount);
//
// each with its ledger transaction and the journal operations of its key.

// maxLostCandidates bounds the postings named per account.
const maxLostCandidates = 3

// lostUpdateEvidence is what the second read found for one account.
type lostUpdateEvidence struct {
	missing int64
	// replay is the balance replayed so far; chainBreak the first posting
	// whose balance_after did not chain (nil: recorded and intact, or not
	// recorded).
	replay     int64
	chainBreak *Posting
	expected   int64
	candidates []Posting
}

// collectLostUpdateEvidence reads the ledger again for the accounts whose
// stored balance is not the sum of their postings. An error leaves the
// explanations at the totals (the violation stands either way).
func (a *auditor) collectLostUpdateEvidence(ctx context.Context) map[int64]*lostUpdateEvidence {
	var ids []int64
	for id, account := range a.accounts {
		if !account.external && account.listed && account.balance != account.postingSum {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if len(ids) > a.config.MaxViolations {
		ids = ids[:a.config.MaxViolations]
	}
	evidence := make(map[int64]*lostUpdateEvidence, len(ids))
	for _, id := range ids {
		account := a.accounts[id]
		evidence[id] = &lostUpdateEvidence{missing: account.postingSum - account.balance}
	}
	err := a.config.Ledger.Scan(ctx, Visitor{Account: func(*Account) error { return nil }, Transaction: func(*Transaction) error { return nil },
		DeadLetters: func(bool, string) error { return nil }, DeadLetter: func(*DeadLetter) error { return nil }, Posting: func(p *Posting) error {
			found := evidence[p.AccountID]
			if found == nil {
				return nil
			}
			found.replay += p.Amount
			if p.BalanceAfter != nil && found.chainBreak == nil && *p.BalanceAfter != found.replay {
				posting := *p
				found.chainBreak, found.expected = &posting, found.replay
			}
			if p.Amount == found.missing && len(found.candidates) < maxLostCandidates {
				found.candidates = append(found.candidates, *p)
			}
			return nil
		}})
	if err != nil {
		a.warn("the second read of the ledger, to name the operations behind wrong balances, failed: %v", err)
		return nil
	}
	return evidence
}

// balanceViolation explains an account whose stored balance is not the sum
// of its postings, with the evidence of the second read when there is some.
func (a *auditor) balanceViolation(id int64, account *accountState, evidence *lostUpdateEvidence) Violation {
	difference := account.balance - account.postingSum
	violation := Violation{Summary: fmt.Sprintf("account %d (user %d) stores balance %d, but its %d posting(s) sum to %d (difference %d)",
		id, account.userID, account.balance, account.postings, account.postingSum, difference),
		Accounts: []int64{id}, Rows: []RowRef{accountRef(id, account)}}
	if evidence == nil {
		return violation
	}
	var named []string
	seenTransactions := map[string]bool{}
	name := func(p *Posting, note string) {
		violation.Rows = append(violation.Rows, postingRef(p, note))
		if seenTransactions[p.TransactionID] {
			return
		}
		seenTransactions[p.TransactionID] = true
		if rowIndex, ok := a.rowIndex[a.hash.id(p.TransactionID)]; ok {
			row := &a.rows[rowIndex]
			violation.Rows = append(violation.Rows, a.rowRef(rowIndex))
			violation.Operations = append(violation.Operations, a.operationsOfRow(row, 2)...)
			if row.key >= 0 {
				violation.Keys = append(violation.Keys, a.keyString(row.key))
			}
		}
	}
	if p := evidence.chainBreak; p != nil {
		name(p, fmt.Sprintf("balance_after %d where the postings before it give %d: this write did not see an earlier one", *p.BalanceAfter, evidence.expected))
		named = append(named, fmt.Sprintf("its balance_after stops chaining at posting %d (transaction %s: records %d, the postings give %d)",
			p.ID, p.TransactionID, *p.BalanceAfter, evidence.expected))
	}
	if len(evidence.candidates) > 0 {
		var ids []string
		for index := range evidence.candidates {
			p := &evidence.candidates[index]
			name(p, fmt.Sprintf("moves exactly the %d missing from the stored balance", evidence.missing))
			ids = append(ids, fmt.Sprintf("%d (transaction %s)", p.ID, p.TransactionID))
		}
		named = append(named, fmt.Sprintf("the effect of %d is missing, exactly the amount of posting(s) %s", evidence.missing, strings.Join(ids, ", ")))
	}
	if len(named) > 0 {
		violation.Summary += ": a lost update (a write of the balance that erased another's effect) looks likely — " + strings.Join(named, "; ")
	}
	return violation
}
