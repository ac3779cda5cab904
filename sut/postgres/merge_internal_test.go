package postgres

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestMergeResultsKeepsTheDailyTotals: a batch split around a poison record publishes the day's totals of both
// halves, the later (larger) total of a user-day both touched.
func TestMergeResultsKeepsTheDailyTotals(t *testing.T) {
	day := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	alice, bob := DailyDebitKey{UserID: 1, Day: day}, DailyDebitKey{UserID: 2, Day: day}
	first := BatchResult{DailyDebits: map[DailyDebitKey]int64{alice: 300}}
	second := BatchResult{DailyDebits: map[DailyDebitKey]int64{alice: 900, bob: 50}}
	merged := mergeResults(first, second)
	if merged.DailyDebits[alice] != 900 || merged.DailyDebits[bob] != 50 || len(merged.DailyDebits) != 2 {
		t.Errorf("merged daily totals %v; want alice 900, bob 50", merged.DailyDebits)
	}
	if merged := mergeResults(BatchResult{}, second); merged.DailyDebits[bob] != 50 {
		t.Errorf("a first half without debits: %v", merged.DailyDebits)
	}
}

// TestLookUpEverything: a batch refused by the primary key of transactions (a row stored since its lookup, such as a
// gateway's soft refusal, or an id the Bloom filter called new) or by the unique key is applied again with every id
// and key looked up; not under the bugs that removed those keys or trust the filter alone.
func TestLookUpEverything(t *testing.T) {
	idTaken := &pgconn.PgError{Code: "23505", ConstraintName: idConstraint}
	keyTaken := &pgconn.PgError{Code: "23505", ConstraintName: keyConstraint}
	other := &pgconn.PgError{Code: "23514", ConstraintName: "accounts_balance_check"}
	cases := []struct {
		name               string
		bugs               ledger.Bugs
		id, key, unrelated bool
	}{
		{"clean", nil, true, true, false},
		{"skip-dedupe", ledger.Bugs{ledger.BugSkipDedupe}, false, false, false},
		{"no-idempotency: ids not derived, keys not checked", ledger.Bugs{ledger.BugNoIdempotency}, true, false, false},
		{"bloom-only-dedupe", ledger.Bugs{ledger.BugBloomOnlyDedupe}, false, false, false},
	}
	for _, c := range cases {
		s := &Store{plan: newApplyPlan(c.bugs)}
		if got := [3]bool{s.lookUpEverything(idTaken), s.lookUpEverything(keyTaken), s.lookUpEverything(other)}; got != [3]bool{c.id, c.key, c.unrelated} {
			t.Errorf("%s: id, key, other conflicts -> %v, want %v", c.name, got, [3]bool{c.id, c.key, c.unrelated})
		}
	}
}
