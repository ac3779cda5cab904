package history

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// benchmarkEntry is a typical transfer line (~330 bytes), with a generated-looking key and transaction id.
func benchmarkEntry() Entry {
	return Entry{
		Op: "p4821-000000123456", Kind: "transfer", Key: "9f1c2a7e-4b3d-4e8a-b1f0-3c5d7e9a1b2c",
		User: 48213, From: 48213, To: 1177, Amount: 2500, VU: 117, Iter: 98231, Seq: 4412,
		Invoke: 1_760_000_000_000_000, Complete: 1_760_000_000_004_321,
		Attempts: 1, Statuses: []int{201},
		Outcome: "ok", Status: "settled", Tx: "0193a2b4-7c1d-7e2f-8a9b-0c1d2e3f4a5b",
	}
}

// BenchmarkJournalRecord measures Record from parallel goroutines into a real file, including the writer
// goroutine's encoding and writes (Close is timed so every recorded entry is on disk).
func BenchmarkJournalRecord(b *testing.B) {
	path := filepath.Join(b.TempDir(), "journal.jsonl")
	j, err := OpenJournal(path, 0)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e := benchmarkEntry()
		for pb.Next() {
			e.Iter = next.Add(1)
			j.Record(e)
		}
	})
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	stats := j.Stats()
	if stats.Operations != int64(b.N) {
		b.Fatalf("journaled %d operations, want %d", stats.Operations, b.N)
	}
	b.ReportMetric(float64(stats.BlockedNs)/float64(b.N), "blocked-ns/op")
	b.ReportMetric(float64(stats.Bytes)/float64(b.N), "bytes/line")
}

// BenchmarkJournalEncode measures the encoding of one line: the hand-rolled encoder the journal uses, and
// encoding/json's Encoder for comparison.
func BenchmarkJournalEncode(b *testing.B) {
	e := benchmarkEntry()
	b.Run("appendEntry", func(b *testing.B) {
		buffer := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := range b.N {
			e.Iter = int64(i)
			buffer = appendEntry(buffer[:0], &e)
		}
		b.SetBytes(int64(len(buffer)))
	})
	b.Run("appendEntry/escaping", func(b *testing.B) {
		e := e
		e.Key, e.Reason = `key "with" \quotes\ and ünïcödé`, "line\nbreak"
		buffer := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := range b.N {
			e.Iter = int64(i)
			buffer = appendEntry(buffer[:0], &e)
		}
		b.SetBytes(int64(len(buffer)))
	})
	b.Run("json.Encoder", func(b *testing.B) {
		var buffer bytes.Buffer
		encoder := json.NewEncoder(&buffer)
		encoder.SetEscapeHTML(false)
		b.ReportAllocs()
		for i := range b.N {
			buffer.Reset()
			e.Iter = int64(i)
			if err := encoder.Encode(&e); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(buffer.Len()))
	})
}
