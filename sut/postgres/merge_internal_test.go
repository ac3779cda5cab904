package postgres

import (
	"testing"
	"time"
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
