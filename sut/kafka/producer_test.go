package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	localbroker "github.com/ledgerproof/ledgerproof/sut/broker"
)

func newTestProducer(t *testing.T, cfg ProducerConfig) *Producer {
	t.Helper()
	producer, err := NewProducer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(producer.Close)
	return producer
}

func TestProducerConfigValidation(t *testing.T) {
	t.Parallel()
	brokers := []string{"127.0.0.1:1"}
	cases := []struct {
		name    string
		config  ProducerConfig
		wantErr string
	}{
		{"defaults", ProducerConfig{Brokers: brokers}, ""},
		{"no brokers", ProducerConfig{}, "no brokers"},
		{"empty broker", ProducerConfig{Brokers: []string{"127.0.0.1:1", ""}}, "broker 2 of 2 is empty"},
		{"negative linger", ProducerConfig{Brokers: brokers, Linger: -time.Millisecond}, "linger"},
		{"negative buffer", ProducerConfig{Brokers: brokers, MaxBufferedRecords: -1}, "max buffered records"},
		{"negative request timeout", ProducerConfig{Brokers: brokers, RequestTimeout: -time.Second}, "request timeout"},
		{"delivery shorter than request", ProducerConfig{Brokers: brokers, RequestTimeout: 5 * time.Second, DeliveryTimeout: time.Second}, "delivery timeout"},
		{"long request timeout raises default delivery timeout", ProducerConfig{Brokers: brokers, RequestTimeout: time.Minute}, ""},
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

	defaults := ProducerConfig{Brokers: brokers}.withDefaults()
	want := ProducerConfig{Brokers: brokers, Topic: DefaultTopic, MaxBufferedRecords: 10_000,
		RequestTimeout: 10 * time.Second, DeliveryTimeout: 30 * time.Second, ClientID: "ledgerproof-producer"}
	if fmt.Sprint(defaults) != fmt.Sprint(want) {
		t.Errorf("defaults %+v, want %+v", defaults, want)
	}
}

// TestProducerPartitionsLikeFranzGoAndJava checks that the partition the
// broker stored each keyed record in (chosen by franz-go's
// StickyKeyPartitioner inside the Producer) is PartitionFor's.
func TestProducerPartitionsLikeFranzGo(t *testing.T) {
	t.Parallel()
	broker := startBroker(t, false)
	producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	seen := map[int32]bool{}
	for i := range 200 {
		key := fmt.Sprintf("acct-%d", i)
		partition, offset, err := producer.Produce(ctx, []byte(key), []byte("v"))
		if err != nil {
			t.Fatalf("produce %s: %v", key, err)
		}
		if want := PartitionFor([]byte(key), DefaultPartitions); partition != want {
			t.Errorf("key %q stored in partition %d (offset %d), PartitionFor says %d", key, partition, offset, want)
		}
		seen[partition] = true
	}
	// 200 keys over 16 partitions: a partitioner that ignored the key (or a
	// PartitionFor that returned a constant) would not spread them.
	if len(seen) != int(DefaultPartitions) {
		t.Errorf("200 keys landed in %d partitions, want all %d", len(seen), DefaultPartitions)
	}
}

// brokerFault is what the durability test does to the broker once the
// producer has collected afterAcks acknowledgements; the broker is restarted
// on the same address right after.
type brokerFault struct {
	afterAcks int
	// orderly stops the broker with SIGTERM instead of SIGKILL.
	orderly bool
	// wipeDataDir restarts the broker on an empty data directory.
	wipeDataDir bool
}

// TestProducerDurabilityAcrossBrokerKill produces while the broker is
// SIGKILLed and restarted, then checks every acknowledged record is stored
// at the partition and offset it was acknowledged at. The control case
// restarts the broker on an empty data directory, which must lose records:
// it proves the check can fail.
func TestProducerDurabilityAcrossBrokerKill(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		sync         bool
		faults       []brokerFault
		wantLostAcks bool
	}{
		{name: "page cache", faults: []brokerFault{{afterAcks: 1000}}},
		{name: "fsync", sync: true, faults: []brokerFault{{afterAcks: 1000}}},
		// An orderly stop saves producer sequence state that is stale by the
		// time of the later kill; the restart after the kill loads it.
		{name: "orderly stop then kill", faults: []brokerFault{{afterAcks: 500, orderly: true}, {afterAcks: 1000}}},
		{name: "control: restart on an empty data directory loses acks",
			faults: []brokerFault{{afterAcks: 1000, wipeDataDir: true}}, wantLostAcks: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const (
				total   = 2000
				callers = 32
			)
			broker := startBroker(t, tc.sync)
			producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}, DeliveryTimeout: time.Minute})

			type ack struct {
				partition  int32
				offset     int64
				key, value string
				afterFault bool
			}
			var (
				mu          sync.Mutex
				acks        []ack
				failures    []error
				ackCount    atomic.Int64
				faultsDone  atomic.Int64
				faultReady  = make([]chan struct{}, len(tc.faults))
				allRestored = make(chan struct{})
			)
			for i := range faultReady {
				faultReady[i] = make(chan struct{})
			}
			go func() {
				defer close(allRestored)
				for i, fault := range tc.faults {
					<-faultReady[i]
					if fault.orderly {
						broker.stop()
					} else {
						broker.kill()
					}
					faultsDone.Add(1)
					if fault.wipeDataDir {
						broker.dataDir = t.TempDir()
					}
					broker.start()
				}
			}()

			jobs := make(chan int)
			var workers sync.WaitGroup
			start := time.Now()
			for range callers {
				workers.Go(func() {
					for i := range jobs {
						key := fmt.Sprintf("acct-%d", i%97)
						value := fmt.Sprintf("record-%d", i)
						ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
						// Read before producing: true only if the whole
						// produce happened after the last fault.
						afterFault := faultsDone.Load() == int64(len(tc.faults))
						partition, offset, err := producer.Produce(ctx, []byte(key), []byte(value))
						cancel()
						mu.Lock()
						if err != nil {
							failures = append(failures, fmt.Errorf("%s: %w", value, err))
						} else {
							acks = append(acks, ack{partition, offset, key, value, afterFault})
						}
						mu.Unlock()
						if err != nil {
							continue
						}
						count := ackCount.Add(1)
						for i, fault := range tc.faults {
							if count == int64(fault.afterAcks) {
								close(faultReady[i])
							}
						}
					}
				})
			}
			for i := range total {
				jobs <- i
			}
			close(jobs)
			workers.Wait()
			if int(faultsDone.Load()) < len(tc.faults) && !tc.wantLostAcks {
				t.Fatalf("only %d of %d faults were injected before producing ended", faultsDone.Load(), len(tc.faults))
			}
			select {
			case <-allRestored:
			case <-time.After(30 * time.Second):
				t.Fatal("broker was not restarted within 30s of the last produce")
			}
			produceTime := time.Since(start)

			var afterFault int
			for _, a := range acks {
				if a.afterFault {
					afterFault++
				}
			}
			// In the control case the restarted broker has a new topic ID,
			// so the client rightly fails records with UNKNOWN_TOPIC_ID.
			if len(failures) > 0 && !tc.wantLostAcks {
				t.Errorf("%d of %d produces failed, first: %v", len(failures), total, failures[0])
			}
			if afterFault == 0 && !tc.wantLostAcks {
				t.Errorf("no record was produced entirely after the last fault; the faults did not happen mid-run")
			}

			records := readTopic(t, broker.address, DefaultTopic)
			stored := 0
			byValue := map[string]int{}
			for _, partition := range records {
				stored += len(partition)
				for _, record := range partition {
					byValue[string(record.Value)]++
				}
			}
			var lost []ack
			for _, a := range acks {
				record := records[a.partition][a.offset]
				if record == nil || string(record.Key) != a.key || string(record.Value) != a.value {
					lost = append(lost, a)
				}
			}
			duplicates := 0
			for _, count := range byValue {
				duplicates += count - 1
			}
			t.Logf("acks=%d (after last fault %d) failures=%d stored=%d duplicates=%d lost=%d produce_time=%v",
				len(acks), afterFault, len(failures), stored, duplicates, len(lost), produceTime.Round(time.Millisecond))

			if tc.wantLostAcks {
				if len(lost) == 0 {
					t.Fatalf("control: the broker restarted on an empty data directory yet no acknowledged record is missing; the check is blind")
				}
				return
			}
			for i, a := range lost {
				if i == 10 {
					t.Errorf("... and %d more", len(lost)-10)
					break
				}
				t.Errorf("acknowledged record %s (key %s) at %d/%d is missing or different after the restart", a.value, a.key, a.partition, a.offset)
			}
		})
	}
}

// TestProduceFailsWhenBrokerIsDown checks Produce returns an error, not a
// hang, when no broker answers: bounded by the caller's context, or without
// one by the delivery timeout.
func TestProduceFailsWhenBrokerIsDown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// setup returns the broker address; the broker is down by then.
		setup           func(t *testing.T) string
		callerTimeout   time.Duration // 0: no caller deadline
		deliveryTimeout time.Duration
		wantWithin      time.Duration
		wantErr         error
	}{
		{
			name:          "never started, caller deadline",
			setup:         freeAddress,
			callerTimeout: 2 * time.Second, deliveryTimeout: time.Minute,
			wantWithin: 4 * time.Second, wantErr: context.DeadlineExceeded,
		},
		{
			name:          "never started, delivery timeout",
			setup:         freeAddress,
			callerTimeout: 0, deliveryTimeout: 2 * time.Second,
			wantWithin: 8 * time.Second,
		},
		{
			name: "killed after the producer connected, caller deadline",
			setup: func(t *testing.T) string {
				broker := startBroker(t, false)
				producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, _, err := producer.Produce(ctx, []byte("k"), []byte("v")); err != nil {
					t.Fatalf("produce while the broker is up: %v", err)
				}
				broker.kill()
				return broker.address
			},
			callerTimeout: 2 * time.Second, deliveryTimeout: time.Minute,
			wantWithin: 4 * time.Second, wantErr: context.DeadlineExceeded,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			address := tc.setup(t)
			producer := newTestProducer(t, ProducerConfig{
				Brokers:         []string{address},
				RequestTimeout:  min(tc.deliveryTimeout, 10*time.Second),
				DeliveryTimeout: tc.deliveryTimeout,
			})
			ctx := context.Background()
			if tc.callerTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.callerTimeout)
				defer cancel()
			}
			type result struct {
				err     error
				elapsed time.Duration
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				_, _, err := producer.Produce(ctx, []byte("acct-1"), []byte("value"))
				done <- result{err, time.Since(start)}
			}()
			select {
			case r := <-done:
				if r.err == nil {
					t.Fatal("Produce succeeded with the broker down")
				}
				if tc.wantErr != nil && !errors.Is(r.err, tc.wantErr) {
					t.Errorf("error %v, want one wrapping %v", r.err, tc.wantErr)
				}
				if r.elapsed > tc.wantWithin {
					t.Errorf("Produce returned after %v, want within %v", r.elapsed, tc.wantWithin)
				}
				t.Logf("Produce failed after %v: %v", r.elapsed.Round(time.Millisecond), r.err)
			case <-time.After(tc.wantWithin + 10*time.Second):
				t.Fatalf("Produce still blocked after %v", tc.wantWithin+10*time.Second)
			}
		})
	}
}

// TestProduceConcurrentCallersShareBatches checks that many concurrent
// callers are not serialised: with the default linger of 0, records from
// concurrent callers must share produce requests, so the number of batches
// the broker stored is well below the number of records.
func TestProduceConcurrentCallersShareBatches(t *testing.T) {
	t.Parallel()
	broker := startBroker(t, false)
	producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}})
	const callers, perCaller = 200, 10
	var workers sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		workers.Go(func() {
			for i := range perCaller {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, _, err := producer.Produce(ctx, []byte(fmt.Sprintf("acct-%d", c)), []byte(fmt.Sprintf("%d-%d", c, i)))
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	workers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("produce: %v", err)
	}

	records := readTopic(t, broker.address, DefaultTopic)
	total := 0
	for _, byOffset := range records {
		total += len(byOffset)
	}
	if total != callers*perCaller {
		t.Fatalf("stored %d records, want %d", total, callers*perCaller)
	}
	// kfake writes one 15-byte index entry per stored batch next to each
	// segment (persist.go, indexEntrySize); a producer that serialised its
	// callers would store one batch per record.
	batches := storedBatches(t, broker.dataDir)
	t.Logf("%d records stored in %d batches", total, batches)
	if batches > total/2 {
		t.Errorf("%d records stored in %d batches: concurrent callers are not batched together", total, batches)
	}
}

func storedBatches(t *testing.T, dataDir string) int {
	t.Helper()
	indexes, err := filepath.Glob(filepath.Join(dataDir, "partitions", DefaultTopic+"-*", "*.idx"))
	if err != nil || len(indexes) == 0 {
		t.Fatalf("find kfake index files in %s: %v (found %d)", dataDir, err, len(indexes))
	}
	var bytes int64
	for _, index := range indexes {
		info, err := os.Stat(index)
		if err != nil {
			t.Fatal(err)
		}
		bytes += info.Size()
	}
	const indexEntrySize = 15
	if bytes%indexEntrySize != 0 {
		t.Fatalf("index files hold %d bytes, not a multiple of kfake's %d-byte entry; its format changed", bytes, indexEntrySize)
	}
	return int(bytes / indexEntrySize)
}

func TestDefaultsAgreeWithBroker(t *testing.T) {
	t.Parallel()
	// The broker repeats these constants instead of importing this package.
	if localbroker.DefaultTopic != DefaultTopic {
		t.Errorf("broker.DefaultTopic %q, kafka.DefaultTopic %q", localbroker.DefaultTopic, DefaultTopic)
	}
	if localbroker.DefaultPartitions != DefaultPartitions {
		t.Errorf("broker.DefaultPartitions %d, kafka.DefaultPartitions %d", localbroker.DefaultPartitions, DefaultPartitions)
	}
}

// TestProduceAllStoresEveryRecordOnce checks ProduceAll against a real
// broker: it returns once every record is stored, each exactly once with
// its key and value, in shared batches, and an empty set is a no-op.
func TestProduceAllStoresEveryRecordOnce(t *testing.T) {
	t.Parallel()
	broker := startBroker(t, false)
	producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := producer.ProduceAll(ctx, nil); err != nil {
		t.Fatalf("produce no record: %v", err)
	}
	const count = 500
	records := make([]KeyValue, count)
	for i := range records {
		records[i] = KeyValue{Key: []byte(fmt.Sprintf("acct-%d", i%37)), Value: []byte(fmt.Sprintf("event-%d", i))}
	}
	if err := producer.ProduceAll(ctx, records); err != nil {
		t.Fatalf("produce all: %v", err)
	}
	stored := map[string]string{}
	for partition, byOffset := range readTopic(t, broker.address, DefaultTopic) {
		for _, record := range byOffset {
			if _, twice := stored[string(record.Value)]; twice {
				t.Errorf("%s stored twice", record.Value)
			}
			stored[string(record.Value)] = string(record.Key)
			if want := PartitionFor(record.Key, DefaultPartitions); partition != want {
				t.Errorf("%s (key %s) in partition %d, want %d", record.Value, record.Key, partition, want)
			}
		}
	}
	if len(stored) != count {
		t.Fatalf("stored %d distinct records, want %d", len(stored), count)
	}
	for i, record := range records {
		if key, ok := stored[string(record.Value)]; !ok || key != string(record.Key) {
			t.Errorf("record %d (%s): stored with key %q (present %v), want %q", i, record.Value, key, ok, record.Key)
		}
	}
	if batches := storedBatches(t, broker.dataDir); batches > count/2 {
		t.Errorf("%d records stored in %d batches: a set is not batched together", count, batches)
	}
}

// TestProduceAllFailsWhenBrokerIsDown: with no broker, ProduceAll returns
// the caller's deadline as an unknown outcome instead of blocking.
func TestProduceAllFailsWhenBrokerIsDown(t *testing.T) {
	t.Parallel()
	producer := newTestProducer(t, ProducerConfig{Brokers: []string{freeAddress(t)}, DeliveryTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- producer.ProduceAll(ctx, []KeyValue{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}})
	}()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "outcome unknown") {
			t.Fatalf("ProduceAll with the broker down: %v, want an unknown outcome wrapping the deadline", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ProduceAll still blocked 28s after its deadline")
	}
}
