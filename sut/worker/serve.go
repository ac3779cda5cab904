package worker

import (
	"context"
	"errors"
	"net/http"
	"sort"
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
	// Default 127.0.0.1:58180.
	MetricsListen string
	// CrashBetweenCommits injects a crash between a batch's two commits
	// under the seeded bugs that split them. Default: none.
	CrashBetweenCommits BetweenCommitsCrash
	// Dedupe is the two-tier dedupe (a Bloom filter in front of the exact
	// lookup). Default off.
	Dedupe DedupeConfig
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
	bugs := connections.ActivateSeededBugs(ledger.ProcessWorker, logger)
	betweenCommits, err := process.CrashBetweenCommits.hook(bugs, logger)
	if err != nil {
		return err
	}
	crashRegistry, err := crash.Activate(connections.CrashPoints, ledger.ProcessWorker, logger)
	if err != nil {
		return err
	}
	config.Topic = connections.Topic
	storeBugs := storeBugs(bugs, connections.SeededBugs)
	if storeBugs.Has(ledger.BugNoIdempotency) {
		logger.Warn("SEEDED BUG no-idempotency: the worker's key checks are off too (ids not derived from their key, key collisions), as in a system without idempotency by key")
	}
	filter, err := newDedupeFilter(process.Dedupe, storeBugs)
	if err != nil {
		return err
	}
	store, cache, err := connections.OpenBackends(ctx, logger, postgres.Config{SeededBugs: storeBugs, BetweenCommits: betweenCommits, CustomPlans: true,
		Dedupe: filter})
	if err != nil {
		return err
	}
	defer store.Close()
	defer cache.Close()
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: connections.BrokerList(), Topic: connections.Topic, Group: process.Group,
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
	applier, err := New(config, store, cache, consumer, logger, NewMetrics(registry))
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
	group, groupContext := errgroup.WithContext(ctx)
	group.Go(func() error {
		return daemon.ServeHTTP(groupContext, process.MetricsListen, connections.InternalHandler(mux, crashRegistry), logger)
	})
	if filter != nil {
		group.Go(func() error {
			warmDedupe(groupContext, store, process.Dedupe.WarmTimeout, logger)
			return nil
		})
	}
	group.Go(func() error {
		logger.Info("worker started", "batch_size", config.BatchSize, "linger", config.Linger, "seeded_bugs", bugs.String(),
			"bloom_dedupe", filter != nil)
		return applier.Run(groupContext)
	})
	return group.Wait()
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
