package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/worker"
)

// workerCommand runs a worker process (worker.Serve) until SIGINT or
// SIGTERM; its flags are bound to worker.ProcessConfig.
func workerCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	var process worker.ProcessConfig
	var common processFlags
	common.register(flags, &process.Daemon, ledger.ProcessWorker)
	flags.StringVar(&process.Group, "group", "ledger-workers", "consumer group")
	flags.StringVar(&process.InstanceID, "group-instance-id", "", "static group membership id, unique per worker: a restarted worker takes its partitions back at once (empty: dynamic)")
	flags.StringVar(&process.MetricsListen, "metrics-listen", "127.0.0.1:18180", "address of /metrics, /healthz and /readyz")
	config := &process.Worker
	flags.IntVar(&config.BatchSize, "batch-size", 512, "most records applied in one Postgres transaction")
	flags.DurationVar(&config.Linger, "linger", 10*time.Millisecond, "when a poll returns a short batch, keep collecting records until this long after the previous batch was taken (fills batches under load; no linger after an apply that took this long)")
	flags.IntVar(&config.MaxConcurrentBatches, "max-concurrent-batches", 8, "partitions applied at once")
	flags.DurationVar(&config.StalledAfter, "stalled-after", 30*time.Second, "a partition that lags (the broker holds records past the last one applied) without advancing for longer than this makes /readyz fail (503) and counts in ledger_worker_stalled_partitions; the worker keeps retrying")
	flags.BoolVar(&process.Daemon.Profiling, "pprof", false, "serve Go's profiles at /debug/pprof/ on the metrics listener, to loopback clients only")
	flags.Int64Var(&process.DailyDebitLimitMinor, "daily-debit-limit", 0, "most a user may debit (withdrawals and transfers out) per UTC day, in minor units, checked in the ledger under the user's account lock; give the gateways the same value (0: no limit; docs/limits.md)")
	flags.Float64Var(&process.CrashBetweenCommits.Probability, "crash-between-commits-probability", 0,
		"probability, per batch, that the worker exits (status 86, like a kill) between the two commits of a batch; only with --seeded-bug offset-before-postings or skip-dedupe")
	flags.Uint64Var(&process.CrashBetweenCommits.Seed, "crash-seed", 0, "seed of the crash draws (0: drawn at start and logged)")
	flags.BoolVar(&process.Dedupe.Enabled, "bloom-dedupe", false, "two-tier dedupe: a Bloom filter of recent transaction ids lets new commands skip the exact lookup; the ledger's keys stay the backstop (docs/two-tier-dedupe.md)")
	flags.IntVar(&process.Dedupe.Filter.Capacity, "bloom-capacity", dedupe.DefaultCapacity, "ids one generation of the Bloom filter holds at the target rate (two generations are kept); 1 to 100000000")
	flags.Float64Var(&process.Dedupe.Filter.FalsePositiveRate, "bloom-false-positive-rate", dedupe.DefaultFalsePositiveRate, "target share of new ids the Bloom filter calls maybe-seen (each costs a lookup); above 0, at most 0.5")
	flags.DurationVar(&process.Dedupe.WarmTimeout, "bloom-warm-timeout", worker.DefaultDedupeWarmTimeout, "bound of the filling of the Bloom filter with the ledger's newest ids at start (in the background)")
	flags.IntVar(&process.Shard, "shard", 0, "the shard whose commands this worker applies (those whose account lives in it; docs/sharding.md), 0 to the number of --shard-postgres-url flags; with shards, its consumer group is <group>-shard-<shard>")
	flags.Func("shard-postgres-url", "the database of the next shard (1, 2...) of a sharded ledger, --postgres-url being shard 0 (docs/sharding.md); repeatable, in shard order. The worker applies to its --shard's database and runs transfers to other shards as sagas. Default none: one ledger", func(value string) error {
		if value == "" {
			return errors.New("empty URL")
		}
		process.ShardPostgresURLs = append(process.ShardPostgresURLs, value)
		return nil
	})
	flags.DurationVar(&config.SagaRecoveryInterval, "saga-recovery-interval", 5*time.Second, "with shards, how often the worker finishes the sagas of its shard left in flight for more than 10s (a worker killed mid-saga, a destination shard down); one pass runs at start")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if err := common.complete(); err != nil {
			return err
		}
		return worker.Serve(ctx, process)
	}
}
