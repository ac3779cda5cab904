package gateway

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire/jsonwiretest"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// A response rebuilt later, or replayed from Redis, must be the bytes sent.
func TestTransactionResponseBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5000 {
		response := transactionResponse{TransactionID: jsonwiretest.String(rng), Kind: ledger.Kind(jsonwiretest.String(rng)),
			Status: ledger.Status(jsonwiretest.String(rng)), AmountMinor: jsonwiretest.Int(rng),
			SourceAccountID: jsonwiretest.Int(rng), DestinationAccountID: jsonwiretest.Int(rng)}
		if rng.IntN(2) == 0 {
			response.Reason = ledger.Code(jsonwiretest.String(rng))
		}
		if got, want := response.body(), marshal(response); !bytes.Equal(got, want) {
			t.Fatalf("body() = %s\nmarshal  %s", got, want)
		}
	}
}

// The fingerprints the ledger and Redis keep were made from the bytes
// json.Marshal gave of these structs.
func TestCanonicalJSONIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 5000 {
		m := moneyRequest{AccountID: jsonwiretest.Int(rng), FromAccountID: jsonwiretest.Int(rng),
			ToAccountID: jsonwiretest.Int(rng), AmountMinor: jsonwiretest.Int(rng)}
		var want []byte
		switch m.Kind = []ledger.Kind{ledger.KindDeposit, ledger.KindWithdrawal, ledger.KindTransfer}[rng.IntN(3)]; m.Kind {
		case ledger.KindTransfer:
			want, _ = json.Marshal(struct {
				From   int64 `json:"from_account_id"`
				To     int64 `json:"to_account_id"`
				Amount int64 `json:"amount"`
			}{m.FromAccountID, m.ToAccountID, m.AmountMinor})
		default:
			want, _ = json.Marshal(struct {
				AccountID int64 `json:"account_id"`
				Amount    int64 `json:"amount"`
			}{m.AccountID, m.AmountMinor})
		}
		if got := m.canonicalJSON(); !bytes.Equal(got, want) {
			t.Fatalf("canonicalJSON = %s, encoding/json %s", got, want)
		}
	}
}
