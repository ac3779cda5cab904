package gateway

import (
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// BenchmarkDecodeMoneyRequest is the strict decode of one transfer body,
// which every money request pays.
func BenchmarkDecodeMoneyRequest(b *testing.B) {
	body := []byte(`{"from_account_id":1234,"to_account_id":5678,"amount":1234}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMoneyRequest(ledger.KindTransfer, body); err != nil {
			b.Fatal(err)
		}
	}
}
