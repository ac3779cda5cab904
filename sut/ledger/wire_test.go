package ledger_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire/jsonwiretest"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// The topic's records must not change with the encoder that wrote them.
func TestCommandAppendJSONIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		command := ledger.Command{TransactionID: jsonwiretest.String(rng), Kind: ledger.Kind(jsonwiretest.String(rng)),
			UserID: jsonwiretest.Int(rng), IdempotencyKey: jsonwiretest.String(rng), SourceAccountID: jsonwiretest.Int(rng),
			DestinationAccountID: jsonwiretest.Int(rng), AmountMinor: jsonwiretest.Int(rng), Fingerprint: jsonwiretest.String(rng),
			AcceptedAt: jsonwiretest.Time(rng)}
		want, err := json.Marshal(command)
		if err != nil {
			t.Fatal(err)
		}
		got, err := command.AppendJSON([]byte("prefix"))
		if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("AppendJSON = %s, %v\nencoding/json  %s", got, err, want)
		}
	}
	if _, err := (ledger.Command{AcceptedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).AppendJSON(nil); err == nil {
		t.Error("AppendJSON encoded the year 10000, which json.Marshal refuses")
	}
}

// BenchmarkCommandJSON compares the hand-written encoder with
// encoding/json on a gateway's command (docs/performance.md, sixth pass).
func BenchmarkCommandJSON(b *testing.B) {
	command := ledger.Command{TransactionID: "0b9a5f3e-7c1d-5e2a-9f4b-3c2d1e0f9a8b", Kind: ledger.KindTransfer, UserID: 1234,
		IdempotencyKey: "load-7-000123456", SourceAccountID: 1234, DestinationAccountID: 987, AmountMinor: 1500,
		Fingerprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", AcceptedAt: time.Now().UTC()}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(command); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := command.AppendJSON(make([]byte, 0, 384)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
