package ledger_test

import (
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestSettlementEventValidate(t *testing.T) {
	good := ledger.SettlementEvent{OutboxID: 1, TransactionID: ledger.TransactionIDFor(1, "k"), Kind: ledger.KindDeposit,
		DestinationAccountID: 1, AmountMinor: 5}
	tests := []struct {
		name   string
		change func(*ledger.SettlementEvent)
		want   string
	}{
		{"valid", func(*ledger.SettlementEvent) {}, ""},
		{"bad id", func(e *ledger.SettlementEvent) { e.TransactionID = "x" }, "not a valid id"},
		{"bad kind", func(e *ledger.SettlementEvent) { e.Kind = "refund" }, `kind "refund" unknown`},
		{"zero amount", func(e *ledger.SettlementEvent) { e.AmountMinor = 0 }, "amount must be positive"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			event := good
			test.change(&event)
			err := event.Validate()
			if (err == nil) != (test.want == "") || (err != nil && !strings.Contains(err.Error(), test.want)) {
				t.Fatalf("error %v, want %q", err, test.want)
			}
		})
	}
}
