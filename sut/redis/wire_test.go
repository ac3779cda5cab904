package redis

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire/jsonwiretest"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Records already in Redis, and StoreResponse's script, read the bytes
// encoding/json wrote.
func TestRecordsMarshalAsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		record := IdempotencyRecord{Fingerprint: jsonwiretest.String(rng), TransactionID: jsonwiretest.String(rng),
			ReservedAt: jsonwiretest.Time(rng)}
		if rng.IntN(2) == 0 {
			record.ResponseStatus, record.ResponseBody = int(jsonwiretest.Int(rng)%600), []byte(jsonwiretest.String(rng))
		}
		want, _ := json.Marshal(record)
		if got := marshalRecord(record); !bytes.Equal(got, want) {
			t.Fatalf("marshalRecord = %s\nencoding/json  %s", got, want)
		}
		pending := PendingTransaction{UserID: jsonwiretest.Int(rng), Kind: ledger.Kind(jsonwiretest.String(rng)),
			SourceAccountID: jsonwiretest.Int(rng), DestinationAccountID: jsonwiretest.Int(rng), AmountMinor: jsonwiretest.Int(rng)}
		want, _ = json.Marshal(pending)
		if got := marshalPending(pending); !bytes.Equal(got, want) {
			t.Fatalf("marshalPending = %s\nencoding/json  %s", got, want)
		}
	}
}
