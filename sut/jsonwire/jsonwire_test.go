package jsonwire_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire"
	"github.com/ledgerproof/ledgerproof/sut/jsonwire/jsonwiretest"
)

func TestEncodersWriteWhatEncodingJSONWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		s := jsonwiretest.String(rng)
		want, _ := json.Marshal(s)
		if got := jsonwire.String([]byte("x"), s); !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Fatalf("String(%q) = %s, encoding/json %s", s, got[1:], want)
		}
		n := jsonwiretest.Int(rng)
		want, _ = json.Marshal(n)
		if got := jsonwire.Int(nil, n); !bytes.Equal(got, want) {
			t.Fatalf("Int(%d) = %s, encoding/json %s", n, got, want)
		}
		b := []byte(s)
		if rng.IntN(10) == 0 {
			b = nil
		}
		want, _ = json.Marshal(b)
		if got := jsonwire.Bytes(nil, b); !bytes.Equal(got, want) {
			t.Fatalf("Bytes(%q) = %s, encoding/json %s", b, got, want)
		}
		tm := jsonwiretest.Time(rng)
		want, wantErr := json.Marshal(tm)
		got, err := jsonwire.Time(nil, tm)
		if (err != nil) != (wantErr != nil) || (err == nil && !bytes.Equal(got, want)) {
			t.Fatalf("Time(%v) = %s, %v; encoding/json %s, %v", tm, got, err, want, wantErr)
		}
	}
}

func TestTimeRefusesWhatMarshalJSONRefuses(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600)),
	} {
		if _, err := json.Marshal(tm); err == nil {
			t.Fatalf("encoding/json encodes %v; this case tests nothing", tm)
		}
		if got, err := jsonwire.Time(nil, tm); err == nil {
			t.Errorf("Time(%v) = %s, want an error", tm, got)
		}
	}
	// The edges it still encodes.
	for _, tm := range []time.Time{time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("near", 23*3600+59*60))} {
		want, _ := json.Marshal(tm)
		if got, err := jsonwire.Time(nil, tm); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Time(%v) = %s, %v; encoding/json %s", tm, got, err, want)
		}
	}
}
