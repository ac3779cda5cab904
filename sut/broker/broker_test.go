package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		config  Config
		wantErr string
	}{
		{"defaults", Config{DataDir: "/tmp/x"}, ""},
		{"no data dir", Config{}, "data directory is required"},
		{"wildcard address", Config{DataDir: "/tmp/x", Listen: "0.0.0.0:9092"}, "loopback"},
		{"empty host", Config{DataDir: "/tmp/x", Listen: ":9092"}, "loopback"},
		{"remote host", Config{DataDir: "/tmp/x", Listen: "10.0.0.1:9092"}, "loopback"},
		{"no port", Config{DataDir: "/tmp/x", Listen: "127.0.0.1"}, "listen address"},
		{"bad port", Config{DataDir: "/tmp/x", Listen: "127.0.0.1:99999"}, "listen address"},
		{"ipv6 loopback", Config{DataDir: "/tmp/x", Listen: "[::1]:9092"}, ""},
		{"localhost", Config{DataDir: "/tmp/x", Listen: "localhost:0"}, ""},
		{"negative partitions", Config{DataDir: "/tmp/x", Partitions: -1}, "partitions -1 out of range"},
		{"too many partitions", Config{DataDir: "/tmp/x", Partitions: maxPartitions + 1}, "out of range"},
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
	defaults := Config{DataDir: "/tmp/x"}.withDefaults()
	if defaults.Listen != "127.0.0.1:19092" || defaults.Topic != "ledger.commands" || defaults.Partitions != 16 || defaults.Sync || defaults.Logger == nil {
		t.Errorf("defaults %+v", defaults)
	}
}

func freeAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	address := listener.Addr().String()
	listener.Close()
	return address
}

// runningBroker is a Run call in a goroutine.
type runningBroker struct {
	cancel context.CancelFunc
	done   chan error
}

// startRun calls Run in the background and stops it when the test ends.
func startRun(t *testing.T, cfg Config) *runningBroker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	running := &runningBroker{cancel: cancel, done: make(chan error, 1)}
	go func() { running.done <- Run(ctx, cfg) }()
	t.Cleanup(func() { running.stop(t) })
	return running
}

// stop cancels Run and returns its error; a second call returns nil.
func (r *runningBroker) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return nil
		}
		close(r.done)
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of its context ending")
		return nil
	}
}

// waitReady polls until the broker at address lists topic, failing the test
// if Run returns first or the deadline passes.
func waitReady(t *testing.T, running *runningBroker, address, topic string) kadm.TopicDetail {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var lastError error
	for time.Now().Before(deadline) {
		select {
		case err := <-running.done:
			close(running.done)
			t.Fatalf("Run returned before the broker was ready: %v", err)
		default:
		}
		detail, err := describeTopic(address, topic)
		if err == nil {
			return detail
		}
		lastError = err
		time.Sleep(20 * time.Millisecond) // bounded by the deadline above
	}
	t.Fatalf("broker at %s not ready after 15s: %v", address, lastError)
	return kadm.TopicDetail{}
}

func describeTopic(address, topic string) (kadm.TopicDetail, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.RetryTimeout(time.Second))
	if err != nil {
		return kadm.TopicDetail{}, err
	}
	defer client.Close()
	details, err := kadm.NewClient(client).ListTopics(ctx, topic)
	if err != nil {
		return kadm.TopicDetail{}, err
	}
	return details[topic], details[topic].Err
}

// runError runs the broker expecting Run to fail on its own, and returns the
// error.
func runError(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := Run(ctx, cfg)
	if ctx.Err() != nil {
		t.Fatalf("Run served until its deadline instead of failing (returned %v)", err)
	}
	return err
}

type storedRecord struct {
	partition int32
	offset    int64
	value     string
}

func produce(t *testing.T, address, topic string, count int, prefix string) []storedRecord {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	records := make([]*kgo.Record, count)
	for i := range records {
		records[i] = &kgo.Record{Key: fmt.Appendf(nil, "acct-%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	results := client.ProduceSync(ctx, records...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	stored := make([]storedRecord, 0, count)
	for _, result := range results {
		stored = append(stored, storedRecord{result.Record.Partition, result.Record.Offset, string(result.Record.Value)})
	}
	return stored
}

func consumeAll(t *testing.T, address, topic string, want int) map[string]storedRecord {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]storedRecord{}
	for len(got) < want {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records in 30s", len(got), want)
		}
		fetches.EachRecord(func(record *kgo.Record) {
			got[string(record.Value)] = storedRecord{record.Partition, record.Offset, string(record.Value)}
		})
	}
	return got
}

// TestRunRestartKeepsTopicAndRecords stops the broker in order and starts it
// again on the same data directory: the topic is reloaded once with its
// partition count, every record is at its offset, and new records follow the
// old ones.
func TestRunRestartKeepsTopicAndRecords(t *testing.T) {
	t.Parallel()
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			t.Parallel()
			address, dataDir := freeAddress(t), t.TempDir()
			cfg := Config{Listen: address, DataDir: dataDir, Sync: sync}

			first := startRun(t, cfg)
			if detail := waitReady(t, first, address, DefaultTopic); len(detail.Partitions) != 16 {
				t.Fatalf("fresh broker: %d partitions, want 16", len(detail.Partitions))
			}
			before := produce(t, address, DefaultTopic, 300, "before")
			if err := first.stop(t); err != nil {
				t.Fatalf("first Run: %v", err)
			}

			second := startRun(t, cfg)
			detail := waitReady(t, second, address, DefaultTopic)
			if len(detail.Partitions) != 16 {
				t.Fatalf("restarted broker: %d partitions, want 16", len(detail.Partitions))
			}
			highWatermarks := map[int32]int64{}
			for _, record := range before {
				highWatermarks[record.partition] = max(highWatermarks[record.partition], record.offset+1)
			}
			after := produce(t, address, DefaultTopic, 300, "after")
			for _, record := range after {
				if record.offset < highWatermarks[record.partition] {
					t.Fatalf("record %s got offset %d/%d, below the pre-restart high watermark %d: old records were overwritten",
						record.value, record.partition, record.offset, highWatermarks[record.partition])
				}
			}
			got := consumeAll(t, address, DefaultTopic, len(before)+len(after))
			for _, record := range append(before, after...) {
				if got[record.value] != record {
					t.Errorf("record %s stored as %+v, acknowledged as %+v", record.value, got[record.value], record)
				}
			}
			if len(got) != len(before)+len(after) {
				t.Errorf("consumed %d distinct records, want %d", len(got), len(before)+len(after))
			}
		})
	}
}

func TestRunCustomTopic(t *testing.T) {
	t.Parallel()
	address := freeAddress(t)
	running := startRun(t, Config{Listen: address, DataDir: t.TempDir(), Topic: "custom.commands", Partitions: 3})
	if detail := waitReady(t, running, address, "custom.commands"); len(detail.Partitions) != 3 {
		t.Fatalf("custom topic has %d partitions, want 3", len(detail.Partitions))
	}
	if _, err := describeTopic(address, DefaultTopic); err == nil {
		t.Errorf("the default topic exists although another topic was configured")
	}
}

// TestRunAddsTopicToExistingDataDir restarts on a data directory with
// another topic configured: the new topic is created next to the old one.
func TestRunAddsTopicToExistingDataDir(t *testing.T) {
	t.Parallel()
	address, dataDir := freeAddress(t), t.TempDir()
	first := startRun(t, Config{Listen: address, DataDir: dataDir})
	waitReady(t, first, address, DefaultTopic)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	second := startRun(t, Config{Listen: address, DataDir: dataDir, Topic: "second.topic", Partitions: 2})
	if detail := waitReady(t, second, address, "second.topic"); len(detail.Partitions) != 2 {
		t.Errorf("second topic has %d partitions, want 2", len(detail.Partitions))
	}
	if detail, err := describeTopic(address, DefaultTopic); err != nil || len(detail.Partitions) != 16 {
		t.Errorf("first topic after restart: %d partitions, %v", len(detail.Partitions), err)
	}
}

func TestRunFailures(t *testing.T) {
	t.Parallel()
	t.Run("partition count differs from the data directory", func(t *testing.T) {
		t.Parallel()
		address, dataDir := freeAddress(t), t.TempDir()
		first := startRun(t, Config{Listen: address, DataDir: dataDir})
		waitReady(t, first, address, DefaultTopic)
		if err := first.stop(t); err != nil {
			t.Fatal(err)
		}
		err := runError(t, Config{Listen: address, DataDir: dataDir, Partitions: 8})
		if err == nil || !strings.Contains(err.Error(), "exists with 16 partitions, configured 8") {
			t.Fatalf("error %v, want a partition count mismatch", err)
		}
		// The failed start must leave the data directory usable.
		again := startRun(t, Config{Listen: address, DataDir: dataDir})
		waitReady(t, again, address, DefaultTopic)
	})
	t.Run("data directory in use", func(t *testing.T) {
		t.Parallel()
		address, dataDir := freeAddress(t), t.TempDir()
		running := startRun(t, Config{Listen: address, DataDir: dataDir})
		waitReady(t, running, address, DefaultTopic)
		err := runError(t, Config{Listen: freeAddress(t), DataDir: dataDir})
		if err == nil || !strings.Contains(err.Error(), "in use by another broker") {
			t.Fatalf("error %v, want data directory in use", err)
		}
	})
	t.Run("address in use", func(t *testing.T) {
		t.Parallel()
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Close()
		err = runError(t, Config{Listen: listener.Addr().String(), DataDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "listen on") {
			t.Fatalf("error %v, want listen failure", err)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		t.Parallel()
		if err := runError(t, Config{}); err == nil || !strings.Contains(err.Error(), "data directory is required") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestRunLogsListenAddress checks the address clients need is logged, also
// when the port was chosen by the system.
func TestRunLogsListenAddress(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logs strings.Builder
	handler := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)
	running := startRun(t, Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(handler)})
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		text := logs.String()
		mu.Unlock()
		if _, after, ok := strings.Cut(text, "address="); ok {
			address := strings.Fields(after)[0]
			if strings.HasSuffix(address, ":0") {
				t.Fatalf("logged the requested port 0, not the bound one: %s", text)
			}
			waitReady(t, running, address, DefaultTopic)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address logged after 15s: %q", text)
		}
		time.Sleep(10 * time.Millisecond) // bounded by the deadline above
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
