package invariants

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// applyOne applies commands one transaction each, as the reference system's
// naive apply mode does (postgres.Store.ApplyOne: no Kafka position, rows
// stored with partition and offset -1), and journals each.
func (r *referenceLedger) applyOne(commands ...ledger.Command) {
	r.t.Helper()
	for _, command := range commands {
		outcome, err := r.store.ApplyOne(context.Background(), command)
		if err != nil {
			r.t.Fatal(err)
		}
		r.settleDownstream()
		r.clock += 10
		entry := JournalEntry{Version: 1, Op: fmt.Sprintf("op-%d", len(r.journal)), Kind: string(command.Kind),
			Key: command.IdempotencyKey, User: command.UserID, From: command.SourceAccountID, To: command.DestinationAccountID,
			Amount: command.AmountMinor, Invoke: r.clock, Complete: r.clock + 5, Attempts: 1,
			Status: string(outcome.Status), Reason: string(outcome.Reason), Tx: outcome.TransactionID, Outcome: OutcomeOK}
		if outcome.Status == ledger.StatusRejected {
			entry.Outcome = OutcomeFail
		}
		r.journal = append(r.journal, entry)
	}
}

func (r *referenceLedger) writeJournal() string {
	r.t.Helper()
	runDir := r.t.TempDir()
	writeLines(r.t, filepath.Join(runDir, "journal.jsonl"), r.journal)
	return runDir
}

// TestNaiveApplyRowsWithoutPositions: a ledger written by the naive apply
// mode has no stream positions (partition and offset -1). The auditor reads
// them as absent, passes the clean ledger, and still catches a later debit
// applied before an earlier completed one, from the postings' order.
func TestNaiveApplyRowsWithoutPositions(t *testing.T) {
	r := newReferenceLedger(t)
	alice, bob := r.signup("alice@example.com"), r.signup("bob@example.com")
	r.applyOne(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100),
		referenceCommand(alice, ledger.KindTransfer, "a-2", alice.AccountID, bob.AccountID, 30),
		referenceCommand(alice, ledger.KindWithdrawal, "a-3", alice.AccountID, 0, 20),
		referenceCommand(bob, ledger.KindWithdrawal, "b-1", bob.AccountID, 0, 50))
	var positioned int
	if err := r.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE kafka_partition >= 0 OR kafka_offset >= 0`).Scan(&positioned); err != nil {
		t.Fatal(err)
	}
	if positioned != 0 {
		t.Fatalf("%d naive rows carry a stream position, want none", positioned)
	}
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })

	clean := r.audit(r.writeJournal(), source, nil)
	if violated := clean.violated(); len(violated) != 0 {
		t.Fatalf("clean naive ledger violated %v\n%s", violated, clean.summary())
	}
	// alice's two settled debits are ordered by their postings; bob's
	// withdrawal was rejected (he had 30), so without a stream position it
	// has nothing to be ordered by.
	if checked := clean.invariant(PerAccountOrder).Checked["debits"]; checked != 2 {
		t.Fatalf("per-account-order checked %d debits, want 2", checked)
	}

	// The journal now says a-3 was invoked (and completed) before a-2 was
	// invoked; the ledger applied a-2 first, which only the postings show.
	swapped := slices.Clone(r.journal)
	a2, a3 := -1, -1
	for i, entry := range swapped {
		switch entry.Key {
		case "a-2":
			a2 = i
		case "a-3":
			a3 = i
		}
	}
	swapped[a2].Invoke, swapped[a3].Invoke = swapped[a3].Invoke, swapped[a2].Invoke
	swapped[a2].Complete, swapped[a3].Complete = swapped[a3].Complete, swapped[a2].Complete
	r.journal = swapped
	reordered := r.audit(r.writeJournal(), source, nil)
	if violated := reordered.violated(); !slices.Equal(violated, []string{PerAccountOrder}) {
		t.Fatalf("violated %v, want only %s\n%s", violated, PerAccountOrder, reordered.summary())
	}
	if explanation := reordered.explanation(PerAccountOrder); !strings.Contains(explanation, "posting order") {
		t.Fatalf("the explanation does not say the postings' order decided:\n%s", explanation)
	}
}
