package redis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

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

// Gateways decode the outcome records and the announcements with
// encoding/json; the worker writes them by hand.
func TestOutcomesMarshalAsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		outcomes := make([]ledger.OutcomeNotice, rng.IntN(4))
		values := make([][]byte, len(outcomes))
		for i := range outcomes {
			outcomes[i] = ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: jsonwiretest.String(rng),
				Status: ledger.Status(jsonwiretest.String(rng))}, Fingerprint: jsonwiretest.String(rng)}
			if rng.IntN(2) == 0 {
				outcomes[i].Reason = ledger.Code(jsonwiretest.String(rng))
			}
			want, _ := json.Marshal(outcomes[i])
			if values[i] = marshalOutcome(outcomes[i]); !bytes.Equal(values[i], want) {
				t.Fatalf("marshalOutcome = %s\nencoding/json  %s", values[i], want)
			}
		}
		want, _ := json.Marshal(outcomes)
		got := marshalOutcomes(values)
		if !bytes.Equal(got, want) {
			t.Fatalf("marshalOutcomes = %s\nencoding/json  %s", got, want)
		}
		// SubscribeOutcomes reads them with json/v2's decoder: every
		// field, the embedded Outcome's included, comes back as written
		// (strings with invalid UTF-8 come back as encoding/json wrote
		// them, each bad byte as U+FFFD).
		var decoded, viaV1 []ledger.OutcomeNotice
		if err := jsonv2.Unmarshal(got, &decoded); err != nil {
			t.Fatalf("json/v2 cannot read %s: %v", got, err)
		}
		if err := json.Unmarshal(got, &viaV1); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(decoded, viaV1) || len(decoded) != len(outcomes) {
			t.Fatalf("json/v2 read %+v\nencoding/json %+v", decoded, viaV1)
		}
		for i := range decoded {
			if decoded[i].TransactionID == "" && outcomes[i].TransactionID != "" {
				t.Fatalf("json/v2 lost the embedded outcome's transaction id: %+v", decoded[i])
			}
		}
	}
}

// The gateways decode every batch's announcement; SubscribeOutcomes uses
// encoding/json/v2's decoder for it. go test -bench DecodeOutcomes ./sut/redis
func BenchmarkDecodeOutcomes(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	values := make([][]byte, 64)
	for i := range values {
		values[i] = marshalOutcome(ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: fmt.Sprintf("%08x-0000-4000-8000-%012x", rng.Uint32(), rng.Uint64()>>16),
			Status: ledger.StatusSettled}, Fingerprint: fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())})
	}
	message := marshalOutcomes(values)
	for _, decoder := range []struct {
		name      string
		unmarshal func([]byte, any) error
	}{{"encoding-json", json.Unmarshal}, {"json-v2", func(data []byte, v any) error { return jsonv2.Unmarshal(data, v) }}} {
		b.Run(decoder.name, func(b *testing.B) {
			b.SetBytes(int64(len(message)))
			for b.Loop() {
				var outcomes []ledger.OutcomeNotice
				if err := decoder.unmarshal(message, &outcomes); err != nil || len(outcomes) != len(values) {
					b.Fatalf("decoded %d of %d outcomes: %v", len(outcomes), len(values), err)
				}
			}
		})
	}
}
