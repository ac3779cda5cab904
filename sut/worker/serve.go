package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// ProcessConfig is a worker process: the Worker's own Config, what every
// SUT process shares, its consumer group and metrics listener, and the
// seeded crash between a batch's commits. The defaults are those of
// `ledgerproof worker`'s flags.
type ProcessConfig struct {
	// Worker configures the Worker. Serve sets its Topic to Daemon.Topic.
	Worker Config
	// Daemon holds the connections, seeded bugs and crash points.
	Daemon daemon.Config
	// Group is the consumer group. Default ledger-workers.
	Group string
	// InstanceID is the static group membership id, unique per worker: a
	// restarted worker takes its partitions back at once. Default empty:
	// dynamic membership.
	InstanceID string
	// MetricsListen is the address of /metrics, /healthz and /readyz.
	// Default 127.0.0.1:18180.
	MetricsListen string
	// CrashBetweenCommits injects a crash between a batch's two commits
	// under the seeded bugs that split them. Default: none.
	CrashBetweenCommits BetweenCommitsCrash
	// Dedupe is the two-tier dedupe (a Bloom filter in front of the exact
	// lookup). Default off.
	Dedupe DedupeConfig
	// DailyDebitLimitMinor is the most a user may debit per UTC day, in
	// minor units, checked by the worker under the lock of the user's
	// account (postgres.Config.DailyDebitLimitMinor, docs/limits.md).
	// Default 0: no limit. The gateways' soft check must be given the same
	// value (`ledgerproof up` passes one value to both).
	DailyDebitLimitMinor int64
	// Shard is the shard whose commands this worker applies: those whose
	// account (ledger.Command.PartitionKey) lives in it (docs/sharding.md).
	// Default 0.
	Shard int
	// ShardPostgresURLs are the Postgres URLs of shards 1..N-1, in order
	// (shard 0 is Daemon.PostgresURL), so N = 1 + len(ShardPostgresURLs).
	// Default none: one ledger, no sagas. With shards, the worker applies
	// to shard Shard's database, joins the consumer group
	// "<Group>-shard-<Shard>", and runs transfers to other shards as sagas.
	ShardPostgresURLs []string
}

// shards returns the number of shards and validates Shard and the URLs.
func (p ProcessConfig) shards() (int, error) {
	n := 1 + len(p.ShardPostgresURLs)
	if n > shard.MaxShards {
		return 0, fmt.Errorf("worker: %d shards (%d --shard-postgres-url), at most %d", n, len(p.ShardPostgresURLs), shard.MaxShards)
	}
	if p.Shard < 0 || p.Shard >= n {
		return 0, fmt.Errorf("worker: --shard %d is not a shard of %d (0 to %d; shard i > 0 needs i --shard-postgres-url flags)", p.Shard, n, n-1)
	}
	seen := map[string]int{p.Daemon.PostgresURL: 0}
	for i, url := range p.ShardPostgresURLs {
		if strings.TrimSpace(url) == "" {
			return 0, fmt.Errorf("worker: --shard-postgres-url of shard %d is empty", i+1)
		}
		if other, ok := seen[url]; ok {
			return 0, fmt.Errorf("worker: shards %d and %d have the same Postgres URL %q: each shard is its own database", other, i+1, url)
		}
		seen[url] = i + 1
	}
	return n, nil
}

// shardURL is shard i's Postgres URL.
func (p ProcessConfig) shardURL(i int) string {
	if i == 0 {
		return p.Daemon.PostgresURL
	}
	return p.ShardPostgresURLs[i-1]
}

// Serve runs a worker process until ctx ends: it activates the seeded bugs
// and crash points asked for, connects to Postgres, Redis and the broker,
// applies the commands topic, and serves /metrics, /healthz and /readyz on
// MetricsListen.
func Serve(ctx context.Context, process ProcessConfig) error {
	connections, config := process.Daemon, process.Worker
	logger, err := connections.Logger()
	if err != nil {
		return err
	}
	if err := process.Dedupe.validate(); err != nil {
		return err
	}
	shards, err := process.shards()
	if err != nil {
		return err
	}
	bugs := connections.ActivateSeededBugs(ledger.ProcessWorker, logger)
	for _, bug := range ledger.SagaBugs() {
		if bugs.Has(bug) && shards == 1 {
			return fmt.Errorf("worker: seeded bug %s lives in cross-shard sagas, which one ledger never runs: give the other shards with --shard-postgres-url", bug)
		}
	}
	betweenCommits, err := process.CrashBetweenCommits.hook(bugs, logger)
	if err != nil {
		return err
	}
	crashRegistry, err := crash.Activate(connections.CrashPoints, ledger.ProcessWorker, logger)
	if err != nil {
		return err
	}
	config.Topic = connections.Topic
	if process.DailyDebitLimitMinor < 0 {
		return fmt.Errorf("worker: daily debit limit %d must not be negative (0: no limit)", process.DailyDebitLimitMinor)
	}
	if bugs.Has(ledger.BugLimitRace) && process.DailyDebitLimitMinor == 0 {
		return fmt.Errorf("worker: seeded bug %s needs a daily debit limit (--daily-debit-limit): without one there is nothing to race", ledger.BugLimitRace)
	}
	storeBugs := storeBugs(bugs, connections.SeededBugs)
	if storeBugs.Has(ledger.BugNoIdempotency) {
		logger.Warn("SEEDED BUG no-idempotency: the worker's key checks are off too (ids not derived from their key, key collisions), as in a system without idempotency by key")
	}
	filter, err := newDedupeFilter(process.Dedupe, storeBugs)
	if err != nil {
		return err
	}
	// The worker's own ledger is its shard's (shard 0's, on one ledger).
	connections.PostgresURL = process.shardURL(process.Shard)
	store, cache, err := connections.OpenBackends(ctx, logger, postgres.Config{SeededBugs: storeBugs, BetweenCommits: betweenCommits,
		Dedupe: filter, DailyDebitLimitMinor: process.DailyDebitLimitMinor, Shards: shards})
	if err != nil {
		return err
	}
	defer store.Close()
	defer cache.Close()
	var ledgerStore Ledger = store
	group := process.Group
	if shards > 1 {
		sharded, closeShards, err := openShards(ctx, process, store, shards, logger)
		if err != nil {
			return err
		}
		defer closeShards()
		ledgerStore = sharded
		group = shard.Group(process.Group, process.Shard)
		logger.Info("sharded worker", "shard", process.Shard, "shards", shards, "group", group)
	}
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: connections.BrokerList(), Topic: connections.Topic, Group: group,
		ClientID: connections.Name, InstanceID: process.InstanceID, BrokerAddressMap: connections.BrokerAddressMap, StartOffsets: func(ctx context.Context, partitions []int32) (map[int32]int64, error) {
			offsets, err := store.NextOffsets(ctx, connections.Topic, partitions)
			if err == nil {
				logger.Info("partitions assigned", "offsets", offsets)
			}
			return offsets, err
		}})
	if err != nil {
		return err
	}
	defer consumer.Close()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerDedupeMetrics(registry, filter)
	if storeBugs.Has(ledger.BugTrustCacheBalance) {
		config.CachedBalancesBeforeBatch = cache.CachedBalances
	}
	applier, err := New(config, ledgerStore, cache, consumer, logger, NewMetrics(registry))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := errors.Join(store.Ping(ctx), consumer.Ping(ctx), applier.Ready()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	running, groupContext := errgroup.WithContext(ctx)
	running.Go(func() error {
		return daemon.ServeHTTP(groupContext, process.MetricsListen, connections.InternalHandler(mux, crashRegistry), logger)
	})
	if filter != nil {
		running.Go(func() error {
			warmDedupe(groupContext, store, process.Dedupe.WarmTimeout, logger)
			return nil
		})
	}
	running.Go(func() error {
		logger.Info("worker started", "batch_size", config.BatchSize, "linger", config.Linger, "seeded_bugs", bugs.String(),
			"bloom_dedupe", filter != nil)
		return applier.Run(groupContext)
	})
	return running.Wait()
}

// storeBugs are the seeded bugs the worker's store runs: the worker's own,
// plus no-idempotency when the stack runs it. That bug lives in the gateway
// (fresh transaction ids for every retry), but the system it seeds has no
// idempotency by key anywhere: a worker that still set aside ids not derived
// from their key would hide the duplicates the auditor must find.
func storeBugs(workerBugs, all ledger.Bugs) ledger.Bugs {
	if !all.Has(ledger.BugNoIdempotency) || workerBugs.Has(ledger.BugNoIdempotency) {
		return workerBugs
	}
	bugs := append(append(ledger.Bugs(nil), workerBugs...), ledger.BugNoIdempotency)
	sort.Slice(bugs, func(i, j int) bool { return bugs[i] < bugs[j] })
	return bugs
}

// openShards opens the other shards' ledgers (each a small pool: a worker
// writes there only the credits or cancellations of its sagas) and returns
// the sharded ledger of the worker's shard, whose store is local, and a
// function closing what it opened.
func openShards(ctx context.Context, process ProcessConfig, local *postgres.Store, shards int, logger *slog.Logger) (*postgres.ShardedLedger, func(), error) {
	stores := make([]*postgres.Store, shards)
	var opened []*postgres.Store
	closeAll := func() {
		for _, store := range opened {
			store.Close()
		}
	}
	for i := range stores {
		if i == process.Shard {
			stores[i] = local
			continue
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: process.shardURL(i), MaxConnections: otherShardConnections,
			ApplicationName: process.Daemon.Name, Shards: shards})
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("worker: shard %d: %w", i, err)
		}
		opened = append(opened, store)
		stores[i] = store
	}
	sharded, err := postgres.NewShardedLedger(stores, process.Shard, postgres.SagaRecovery{}, logger)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return sharded, closeAll, nil
}

// otherShardConnections is the pool of each other shard's ledger: a saga's
// credit is one short transaction, run by at most MaxConcurrentBatches
// appliers and the recovery loop at once.
const otherShardConnections = 4
