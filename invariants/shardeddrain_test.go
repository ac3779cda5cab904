package invariants

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestShardsLagProbe: the commands of a sharded ledger are drained only
// when every shard's stored offsets reach the topic's high watermarks; one
// shard behind keeps the drain waiting and its lag is reported.
func TestShardsLagProbe(t *testing.T) {
	ctx := context.Background()
	ends := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 10, 1: 7}, nil }
	caughtUp := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 10, 1: 7}, nil }
	shard1 := map[int32]int64{0: 10, 1: 4}
	behind := func(context.Context) (map[int32]int64, error) { return shard1, nil }
	probe := ShardsLagProbe(ends, []func(context.Context) (map[int32]int64, error){caughtUp, behind})
	state, err := probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.Done || state.Lag[1] != 3 || !strings.Contains(state.Progress, "shard 1: lag 3") {
		t.Fatalf("shard 1 three records behind: %+v, want not done with partition 1's lag 3 named for shard 1", state)
	}
	shard1[1] = 7
	if state, err := probe(ctx); err != nil || !state.Done {
		t.Fatalf("every shard caught up: %+v %v, want done", state, err)
	}
	failing := func(context.Context) (map[int32]int64, error) { return nil, errors.New("down") }
	if _, err := ShardsLagProbe(ends, []func(context.Context) (map[int32]int64, error){caughtUp, failing})(ctx); err == nil || !strings.Contains(err.Error(), "shard 1") {
		t.Errorf("a shard that cannot be read: %v, want an error naming shard 1", err)
	}
	if _, err := ShardsLagProbe(failing, []func(context.Context) (map[int32]int64, error){caughtUp})(ctx); err == nil {
		t.Error("a broker that cannot answer was not reported")
	}
}

// TestShardedKafkaDrainProbeOnRealShards: against a real Kafka-protocol
// broker (kfake) and two real shards' consumer_offsets, shard 1's offsets
// behind the high watermark keep the drain waiting though shard 0 caught
// up (as after shard 1's worker was killed near the end); once shard 1
// stores the high watermark, it is done.
func TestShardedKafkaDrainProbeOnRealShards(t *testing.T) {
	stacktest.SkipIfShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var sources []*PostgresSource
	var stores []*postgres.Store
	for i := 0; i < 2; i++ {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		source, err := OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = source.Close() })
		sources, stores = append(sources, source), append(stores, store)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	for i := 0; i < 3; i++ {
		if err := producer.ProduceSync(ctx, &kgo.Record{Topic: DefaultTopic, Partition: 0, Value: []byte("command")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	store := func(shard int, next int64) {
		t.Helper()
		if _, err := stores[shard].Pool().Exec(ctx, `INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, 0, $2)
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, DefaultTopic, next); err != nil {
			t.Fatal(err)
		}
	}
	broker, err := OpenBrokerOffsets(cluster.ListenAddrs(), DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	probe := ShardedKafkaDrainProbe(broker, sources)
	store(0, 3)
	store(1, 1)
	state, err := probe(ctx)
	if err != nil || state.Done || !strings.Contains(state.Progress, "shard 1: lag 2") {
		t.Fatalf("shard 1 two records behind: %+v %v, want not done, naming shard 1", state, err)
	}
	store(1, 3)
	if state, err := probe(ctx); err != nil || !state.Done {
		t.Fatalf("both shards at the high watermark: %+v %v, want done", state, err)
	}
}
