package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRetentionValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		config  Config
		wantErr string
	}{
		{"keep everything", Config{DataDir: "/tmp/x"}, ""},
		{"a minute", Config{DataDir: "/tmp/x", Retention: time.Minute}, ""},
		{"the minimum", Config{DataDir: "/tmp/x", Retention: MinimumRetention}, ""},
		{"negative", Config{DataDir: "/tmp/x", Retention: -time.Second}, "retention -1s is negative"},
		{"below the minimum", Config{DataDir: "/tmp/x", Retention: 500 * time.Millisecond}, "below the minimum"},
		{"small segments", Config{DataDir: "/tmp/x", SegmentBytes: 1 << 10}, "segment size 1024 bytes is below"},
		{"negative segments", Config{DataDir: "/tmp/x", SegmentBytes: -1}, "segment size -1 bytes"},
		{"huge segments", Config{DataDir: "/tmp/x", SegmentBytes: 2 << 30}, "above 1 GiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.config.withDefaults().validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if got := (Config{DataDir: "/tmp/x"}).withDefaults().SegmentBytes; got != 0 {
		t.Errorf("segment size without retention defaults to %d, want 0 (kfake's own)", got)
	}
	if got := (Config{DataDir: "/tmp/x", Retention: time.Minute}).withDefaults().SegmentBytes; got != RetentionSegmentBytes {
		t.Errorf("segment size with retention defaults to %d, want %d", got, RetentionSegmentBytes)
	}
	for _, tc := range []struct{ retention, want time.Duration }{
		{time.Second, 100 * time.Millisecond},
		{time.Minute, 6 * time.Second},
		{24 * time.Hour, 5 * time.Minute},
	} {
		if got := retentionCheckInterval(tc.retention); got != tc.want {
			t.Errorf("retention %s is checked every %s, want %s", tc.retention, got, tc.want)
		}
	}
}

// produceAt produces count records of about valueBytes each to partition 0
// with the given timestamp, in one batch per call of ProduceSync.
func produceAt(t *testing.T, address, topic string, count, valueBytes int, at time.Time, prefix string) {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Random padding: the producer compresses batches, and the test needs
	// bytes on disk.
	padding := make([]byte, valueBytes)
	random := rand.New(rand.NewPCG(uint64(count), uint64(valueBytes)))
	records := make([]*kgo.Record, count)
	for i := range records {
		for j := range padding {
			padding[j] = byte('a' + random.IntN(26))
		}
		records[i] = &kgo.Record{Partition: 0, Timestamp: at, Value: fmt.Appendf(nil, "%s-%d-%s", prefix, i, padding)}
	}
	if err := client.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// partitionZeroOffsets are partition 0's log start offset and high
// watermark, as a client sees them.
func partitionZeroOffsets(t *testing.T, address, topic string) (start, end int64) {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(address))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin := kadm.NewClient(client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	starts, err := admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatalf("list start offsets: %v", err)
	}
	ends, err := admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	startOffset, _ := starts.Lookup(topic, 0)
	endOffset, _ := ends.Lookup(topic, 0)
	return startOffset.Offset, endOffset.Offset
}

func segmentFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dataDir, func(path string, entry os.DirEntry, err error) error {
		if err == nil && !entry.IsDir() && strings.HasSuffix(path, ".dat") && strings.Contains(path, DefaultTopic+"-0") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestRetentionDeletesOnlyExpiredRecords produces records timestamped two
// hours ago, enough of them to fill several segments, then records
// timestamped now, to a broker keeping records for an hour: the old records
// go (the log start offset moves past them and their segment files leave
// the disk) while the new ones stay and are still consumed. Timestamps in
// the past make the test independent of the machine's speed. Without a
// retention, the same old records stay.
func TestRetentionDeletesOnlyExpiredRecords(t *testing.T) {
	t.Parallel()
	const oldRecords, newRecords, valueBytes = 3000, 50, 1000
	old := time.Now().Add(-2 * time.Hour)
	for _, retention := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("retention=%s", retention), func(t *testing.T) {
			t.Parallel()
			address, dataDir := freeAddress(t), t.TempDir()
			running := startRun(t, Config{Listen: address, DataDir: dataDir, Partitions: 2, Retention: retention, SegmentBytes: MinimumSegmentBytes,
				retentionCheck: 50 * time.Millisecond})
			waitReady(t, running, address, DefaultTopic)
			// Several batches, so the old records span several segments.
			for i := range 6 {
				produceAt(t, address, DefaultTopic, oldRecords/6, valueBytes, old, fmt.Sprintf("old%d", i))
			}
			produceAt(t, address, DefaultTopic, newRecords, 10, time.Now(), "new")

			if retention == 0 {
				// The broker never deletes: give a pass the time to run, had
				// one been started, then look.
				time.Sleep(300 * time.Millisecond) // no event to wait for: the assertion is that nothing happens
				if start, end := partitionZeroOffsets(t, address, DefaultTopic); start != 0 || end != oldRecords+newRecords {
					t.Fatalf("without retention: offsets [%d, %d), want [0, %d)", start, end, oldRecords+newRecords)
				}
				// The same records with a retention fill as many segments.
				if segments := len(segmentFiles(t, dataDir)); segments < 2 {
					t.Fatalf("%d segment files after %d records of %d bytes in 1 MiB segments, want several", segments, oldRecords, valueBytes)
				}
				return
			}
			deadline := time.Now().Add(15 * time.Second)
			start, end := partitionZeroOffsets(t, address, DefaultTopic)
			for start < oldRecords && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond) // polled until the deadline
				start, end = partitionZeroOffsets(t, address, DefaultTopic)
			}
			if start != oldRecords || end != oldRecords+newRecords {
				t.Fatalf("after retention: offsets [%d, %d), want [%d, %d): the expired records gone, the new ones kept",
					start, end, oldRecords, oldRecords+newRecords)
			}
			// The old records filled several segments (the case without a
			// retention shows it); only the active one, holding the new
			// records, is left.
			if segments := segmentFiles(t, dataDir); len(segments) != 1 {
				t.Errorf("segment files after retention: %v, want only the active one: expired segments stayed on disk", segments)
			}
			got := consumeAll(t, address, DefaultTopic, newRecords)
			for value := range got {
				if !strings.HasPrefix(value, "new-") {
					t.Errorf("consumed %.20s..., an expired record", value)
				}
			}
		})
	}
}

// TestRetentionAppliesAfterRestart stops a broker that kept everything and
// starts it again on the same data directory with a retention: the records
// that expired while it was down go at once.
func TestRetentionAppliesAfterRestart(t *testing.T) {
	t.Parallel()
	address, dataDir := freeAddress(t), t.TempDir()
	first := startRun(t, Config{Listen: address, DataDir: dataDir, Partitions: 1})
	waitReady(t, first, address, DefaultTopic)
	produceAt(t, address, DefaultTopic, 100, 10, time.Now().Add(-time.Hour), "old")
	produceAt(t, address, DefaultTopic, 10, 10, time.Now(), "new")
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	second := startRun(t, Config{Listen: address, DataDir: dataDir, Partitions: 1, Retention: 10 * time.Minute})
	waitReady(t, second, address, DefaultTopic)
	deadline := time.Now().Add(15 * time.Second)
	start, end := partitionZeroOffsets(t, address, DefaultTopic)
	for start < 100 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polled until the deadline
		start, end = partitionZeroOffsets(t, address, DefaultTopic)
	}
	if start != 100 || end != 110 {
		t.Fatalf("restarted with a retention: offsets [%d, %d), want [100, 110)", start, end)
	}
}

// TestRetentionMemory measures (it asserts nothing about the figures) the
// heap the broker holds for records it keeps, with and without a retention:
// it produces rounds of records timestamped in the past, so each round is
// expired at once, and reads the heap after a collection. It runs the
// broker in this process, so it runs alone, only when asked:
// LEDGERPROOF_MEASURE_BROKER_MEMORY=1 go test ./sut/broker -run TestRetentionMemory -v
func TestRetentionMemory(t *testing.T) {
	if os.Getenv("LEDGERPROOF_MEASURE_BROKER_MEMORY") == "" {
		t.Skip("a measurement: set LEDGERPROOF_MEASURE_BROKER_MEMORY=1 to run it")
	}
	const rounds, perRound, producers = 6, 12000, 8
	for _, retention := range []time.Duration{0, time.Hour} {
		address := freeAddress(t)
		running := startRun(t, Config{Listen: address, DataDir: t.TempDir(), Partitions: producers, Retention: retention, retentionCheck: 100 * time.Millisecond})
		waitReady(t, running, address, DefaultTopic)
		client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.DefaultProduceTopic(DefaultTopic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		heapBefore := heapInUse()
		for round := range rounds {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			at := time.Now().Add(-2 * time.Hour)
			// One record a batch, as a gateway at a modest rate sends them:
			// each producer waits for its record's acknowledgement.
			var group sync.WaitGroup
			for producer := range producers {
				group.Add(1)
				go func() {
					defer group.Done()
					for range perRound / producers {
						record := &kgo.Record{Partition: int32(producer), Timestamp: at, Value: make([]byte, 300)}
						if err := client.ProduceSync(ctx, record).FirstErr(); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			group.Wait()
			cancel()
			time.Sleep(300 * time.Millisecond) // a retention pass or more
			t.Logf("retention %s: after round %d (%d one-record batches): heap in use %+.1f MiB", retention, round+1, (round+1)*perRound,
				float64(heapInUse()-heapBefore)/(1<<20))
		}
		client.Close()
		if err := running.stop(t); err != nil {
			t.Fatal(err)
		}
	}
}

func heapInUse() int64 {
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return int64(stats.HeapInuse)
}
