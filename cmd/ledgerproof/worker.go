package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/worker"
)

func workerCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	var connections connectionFlags
	connections.register(flags, "worker", "postgres", "redis", "kafka")
	group := flags.String("group", "ledger-workers", "consumer group")
	instanceID := flags.String("group-instance-id", "", "static group membership id, unique per worker: a restarted worker takes its partitions back at once (empty: dynamic)")
	metricsListen := flags.String("metrics-listen", "127.0.0.1:58180", "address of /metrics, /healthz and /readyz")
	var config worker.Config
	flags.IntVar(&config.BatchSize, "batch-size", 512, "most records applied in one Postgres transaction")
	flags.DurationVar(&config.Linger, "linger", 10*time.Millisecond, "when a poll returns a short batch, keep collecting records until this long after the previous batch was taken (fills batches under load; no linger after an apply that took this long)")
	flags.IntVar(&config.MaxConcurrentBatches, "max-concurrent-batches", 8, "partitions applied at once")
	flags.DurationVar(&config.StalledAfter, "stalled-after", 30*time.Second, "a partition that lags (the broker holds records past the last one applied) without advancing for longer than this makes /readyz fail (503) and counts in ledger_worker_stalled_partitions; the worker keeps retrying")
	profiling := flags.Bool("pprof", false, "serve Go's profiles at /debug/pprof/ on the metrics listener, to loopback clients only")
	var seededBugs seededBugFlags
	seededBugs.register(flags)
	var betweenCommitsCrash crashFlags
	betweenCommitsCrash.register(flags)
	var crashPoints crashPointFlags
	crashPoints.register(flags, ledger.ProcessWorker)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		logger, err := connections.logger()
		if err != nil {
			return err
		}
		bugs, err := seededBugs.activate(ledger.ProcessWorker, logger)
		if err != nil {
			return err
		}
		betweenCommits, err := betweenCommitsCrash.hook(bugs, logger)
		if err != nil {
			return err
		}
		crashRegistry, err := crashPoints.activate(ledger.ProcessWorker, logger)
		if err != nil {
			return err
		}
		config.Topic = connections.topic
		storeBugs, err := workerStoreBugs(bugs, &seededBugs)
		if err != nil {
			return err
		}
		if storeBugs.Has(ledger.BugNoIdempotency) {
			logger.Warn("SEEDED BUG no-idempotency: the worker's key checks are off too (ids not derived from their key, key collisions), as in a system without idempotency by key")
		}
		store, cache, err := connections.openBackends(ctx, logger, postgres.Config{SeededBugs: storeBugs, BetweenCommits: betweenCommits, CustomPlans: true})
		if err != nil {
			return err
		}
		defer store.Close()
		defer cache.Close()
		brokers := connections.brokerList()
		consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: connections.topic, Group: *group,
			ClientID: connections.name, InstanceID: *instanceID, BrokerAddressMap: connections.brokerAddressMap.addresses, StartOffsets: func(ctx context.Context, partitions []int32) (map[int32]int64, error) {
				offsets, err := store.NextOffsets(ctx, connections.topic, partitions)
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
		applier, err := worker.New(config, store, cache, consumer, logger, worker.NewMetrics(registry))
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
			return serveHTTP(groupContext, *metricsListen, withProfiling(withCrashPoints(mux, crashRegistry), *profiling), logger)
		})
		group.Go(func() error {
			logger.Info("worker started", "batch_size", config.BatchSize, "linger", config.Linger, "seeded_bugs", bugs.String())
			return applier.Run(groupContext)
		})
		return group.Wait()
	}
}

// workerStoreBugs are the seeded bugs the worker's store runs: the worker's
// own, plus no-idempotency when the stack runs it. That bug lives in the
// gateway (fresh transaction ids for every retry), but the system it seeds
// has no idempotency by key anywhere: a worker that still set aside ids not
// derived from their key would hide the duplicates the auditor must find.
func workerStoreBugs(workerBugs ledger.Bugs, flags *seededBugFlags) (ledger.Bugs, error) {
	all, err := flags.parse()
	if err != nil {
		return nil, err
	}
	if !all.Has(ledger.BugNoIdempotency) || workerBugs.Has(ledger.BugNoIdempotency) {
		return workerBugs, nil
	}
	bugs := append(append(ledger.Bugs(nil), workerBugs...), ledger.BugNoIdempotency)
	sort.Slice(bugs, func(i, j int) bool { return bugs[i] < bugs[j] })
	return bugs, nil
}

// crashExitCode is the exit status of a seeded crash, distinct from a
// failure (1) and a usage error (2).
const crashExitCode = 86

// crashFlags inject a crash between the two commits a seeded bug splits a
// batch's commit into (offset-before-postings: offset then postings;
// skip-dedupe: postings then offset), so the bug's window is hit on purpose
// rather than by the luck of a kill.
type crashFlags struct {
	probability float64
	seed        uint64
}

func (c *crashFlags) register(flags *flag.FlagSet) {
	flags.Float64Var(&c.probability, "crash-between-commits-probability", 0,
		"probability, per batch, that the worker exits (status 86, like a kill) between the two commits of a batch; only with --seeded-bug offset-before-postings or skip-dedupe")
	flags.Uint64Var(&c.seed, "crash-seed", 0, "seed of the crash draws (0: drawn at start and logged)")
}

// splitCommitBugs are the bugs under which a batch commits in two steps.
var splitCommitBugs = []ledger.Bug{ledger.BugOffsetBeforePostings, ledger.BugSkipDedupe}

// hook returns the postgres BetweenCommits hook, or nil when no crash is
// asked for.
func (c *crashFlags) hook(bugs ledger.Bugs, logger *slog.Logger) (func(partition int32), error) {
	if c.probability < 0 || c.probability > 1 || math.IsNaN(c.probability) {
		return nil, fmt.Errorf("--crash-between-commits-probability %g is not in [0, 1]", c.probability)
	}
	if c.probability == 0 {
		return nil, nil
	}
	split := false
	for _, bug := range splitCommitBugs {
		split = split || bugs.Has(bug)
	}
	if !split {
		return nil, fmt.Errorf("--crash-between-commits-probability needs --seeded-bug %s or %s: without them a batch commits once and there is no between", ledger.BugOffsetBeforePostings, ledger.BugSkipDedupe)
	}
	seed := c.seed
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	logger.Warn("SEEDED CRASH ACTIVE: the worker exits between a batch's two commits", "probability", c.probability, "crash_seed", seed)
	random := rand.New(rand.NewPCG(seed, seed))
	var mutex sync.Mutex
	return func(partition int32) {
		mutex.Lock()
		crash := random.Float64() < c.probability
		mutex.Unlock()
		if crash {
			logger.Error("SEEDED CRASH between a batch's two commits", "partition", partition, "crash_seed", seed, "exit_status", crashExitCode)
			os.Exit(crashExitCode)
		}
	}, nil
}
