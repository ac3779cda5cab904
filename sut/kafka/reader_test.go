package kafka

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestReaderConfigValidation(t *testing.T) {
	base := ReaderConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t", StartOffsets: map[int32]int64{0: 0}}
	for _, tc := range []struct {
		name   string
		change func(*ReaderConfig)
		want   string
	}{
		{"negative min bytes", func(c *ReaderConfig) { c.FetchMinBytes = -1 }, "fetch min bytes -1"},
		{"max wait below a millisecond", func(c *ReaderConfig) { c.FetchMaxWait = time.Microsecond }, "fetch max wait 1µs"},
		{"no partition", func(c *ReaderConfig) { c.StartOffsets = nil }, "no partition"},
	} {
		config := base
		tc.change(&config)
		if _, err := NewReader(config); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	reader, err := NewReader(base)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	reader.Close()
}

// TestReaderWaitsForMinBytes: a reader with FetchMinBytes above what is
// produced gets, in one poll, every record produced while its fetch waited,
// rather than a poll per record or two (the settler's fewer, larger
// Postgres transactions). The fetch in flight when the records are produced
// is the one issued right after the first poll returned; a broker that
// answered it at the first record would give the second poll one record.
func TestReaderWaitsForMinBytes(t *testing.T) {
	t.Parallel()
	broker := startBroker(t, false)
	const topic, records = "reader-min-bytes", 20
	// The wait is long beside producing 20 records on loopback (a few
	// milliseconds), so the records are all in before the broker answers.
	const maxWait = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopic(ctx, []string{broker.address}, topic, 1, 1); err != nil {
		t.Fatal(err)
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(broker.address), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce := func(i int) {
		t.Helper()
		if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("record " + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	reader, err := NewReader(ReaderConfig{Brokers: []string{broker.address}, Topic: topic, StartOffsets: map[int32]int64{0: 0},
		FetchMinBytes: 1 << 20, FetchMaxWait: maxWait})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	poll := func() []Record {
		t.Helper()
		for ctx.Err() == nil {
			polled, err := reader.Poll(ctx, 1000)
			if err != nil {
				t.Fatalf("poll: %v", err)
			}
			var got []Record
			for _, partition := range polled {
				got = append(got, partition.Records...)
			}
			if len(got) > 0 {
				return got
			}
		}
		t.Fatal("no records within the test's minute")
		return nil
	}
	produce(0)
	if first := poll(); len(first) != 1 || first[0].Offset != 0 {
		t.Fatalf("first poll: %d records, want record 0 alone", len(first))
	}
	for i := 1; i < records; i++ {
		produce(i)
	}
	second := poll()
	if len(second) != records-1 {
		t.Fatalf("second poll: %d records, want the %d produced while its fetch waited for 1 MiB", len(second), records-1)
	}
	for i, record := range second {
		if record.Offset != int64(i+1) {
			t.Fatalf("second poll's record %d has offset %d, want %d", i, record.Offset, i+1)
		}
	}
}
