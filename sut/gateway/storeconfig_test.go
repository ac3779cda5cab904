package gateway

import (
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestStoreConfigCarriesTheDailyLimit: the gateway's store gets the daily debit limit, which it enforces itself in the
// naive apply mode (ApplyOne), and the gateway's seeded bugs.
func TestStoreConfigCarriesTheDailyLimit(t *testing.T) {
	config := Config{DailyDebitLimitMinor: 100_000, SeededBugs: ledger.Bugs{ledger.BugNoIdempotency}}
	got := storeConfig(config)
	if got.DailyDebitLimitMinor != 100_000 || len(got.SeededBugs) != 1 || got.SeededBugs[0] != ledger.BugNoIdempotency {
		t.Errorf("store config %+v; want the limit 100000 and the bug no-idempotency", got)
	}
}
