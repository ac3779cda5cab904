// Package worker applies the commands topic to the ledger: it consumes as a
// member of a consumer group, applies each partition's records strictly in
// order in batches (one Postgres transaction per batch), then refreshes the
// Redis cache and wakes the gateways waiting on the outcomes.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// Config configures a Worker.
type Config struct {
	// Topic is the commands topic. Default kafka.DefaultTopic.
	Topic string
	// BatchSize is the most records applied in one Postgres transaction.
	// Default 512: large enough that the per-transaction cost (commit,
	// fsync, round trips) is spread thin, small enough that a batch holds
	// its row locks for a few milliseconds only.
	BatchSize int
	// Linger is how long after the previous batch was taken a poll that
	// returned less than BatchSize records keeps collecting more before
	// applying: batches are taken at most every Linger, and an apply that
	// took Linger or longer is followed by no linger at all (records piled
	// up meanwhile). Default 10ms: under load it
	// fills batches (measured at ~1,700 TPS on 2 cores with 4 partitions:
	// 13 records per batch, Postgres 0.19 CPU-seconds per 1,000 requests,
	// against 2-6 records and 0.44 with the earlier 2ms single re-poll on
	// 16 partitions); when idle it adds at most 10ms to settle latency, far
	// below the 250 ms a held step allows.
	Linger time.Duration
	// MaxConcurrentBatches caps how many partitions apply at once. Default
	// 8: measured on 2 cores, more concurrent batches cause lock convoys.
	MaxConcurrentBatches int
	// BalanceCacheTTL is how long a cached balance lives. Default 10m.
	BalanceCacheTTL time.Duration
	// RetryBackoffMax caps the wait between attempts to apply a batch that
	// failed (Postgres down): the worker never skips a batch, it waits.
	// Default 1s.
	RetryBackoffMax time.Duration
}

func (c *Config) applyDefaults() error {
	if c.Topic == "" {
		c.Topic = kafka.DefaultTopic
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
	if c.Linger == 0 {
		c.Linger = 10 * time.Millisecond
	}
	if c.MaxConcurrentBatches == 0 {
		c.MaxConcurrentBatches = 8
	}
	if c.BalanceCacheTTL == 0 {
		c.BalanceCacheTTL = 10 * time.Minute
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = time.Second
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return fmt.Errorf("worker: batch size %d must be between 1 and 100000", c.BatchSize)
	case c.Linger < 0 || c.Linger > 10*time.Second:
		return fmt.Errorf("worker: linger %s must be between 0 and 10s", c.Linger)
	case c.MaxConcurrentBatches < 1 || c.MaxConcurrentBatches > 1024:
		return fmt.Errorf("worker: max concurrent batches %d must be between 1 and 1024", c.MaxConcurrentBatches)
	}
	return nil
}

// Ledger is what the worker needs of the ledger store.
type Ledger interface {
	ApplyBatch(ctx context.Context, batch postgres.Batch) (postgres.BatchResult, error)
}

// Cache is what the worker needs of Redis; nil disables it.
type Cache interface {
	AfterCommit(ctx context.Context, balances, versions map[int64]int64, outcomes []ledger.OutcomeNotice, balanceTTL time.Duration) error
}

// Source is what the worker needs of the commands topic.
type Source interface {
	Poll(ctx context.Context, maxRecords int) ([]kafka.PartitionRecords, error)
	Done(ctx context.Context)
}

// Worker applies commands.
type Worker struct {
	config  Config
	ledger  Ledger
	cache   Cache
	source  Source
	logger  *slog.Logger
	metrics *Metrics

	// unsaved holds balances whose cache update failed, with their
	// versions, to be written with the next batch's (or when idle): without
	// it an account no later batch touches stays stale in Redis until its
	// TTL ends. Bounded by unsavedMaximum.
	unsavedMutex sync.Mutex
	unsaved      map[int64]versionedBalance

	// lastTaken is when poll last returned records (the run loop's
	// goroutine only): the linger counts from it.
	lastTaken time.Time
}

// versionedBalance is a balance and its version (postgres.BatchResult).
type versionedBalance struct{ balance, version int64 }

// unsavedMaximum bounds Worker.unsaved; beyond it balances are dropped and
// stay stale in the cache until their TTL ends (Redis down for long).
const unsavedMaximum = 100_000

// New builds a worker. metrics may be nil.
func New(config Config, ledgerStore Ledger, cache Cache, source Source, logger *slog.Logger, metrics *Metrics) (*Worker, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Worker{config: config, ledger: ledgerStore, cache: cache, source: source, logger: logger, metrics: metrics,
		unsaved: map[int64]versionedBalance{}}, nil
}

// Run consumes until ctx ends. It returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		partitions, err := w.poll(ctx)
		if err != nil && ctx.Err() == nil {
			// The broker is unreachable or restarting: say so, and do not
			// spin while the client reconnects.
			w.logger.Warn("poll", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if len(partitions) == 0 {
			w.source.Done(ctx)
			// Idle: a good moment to retry cache updates that failed.
			w.afterCommit(ctx, postgres.BatchResult{})
			continue
		}
		if err := w.applyAll(ctx, partitions); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		w.source.Done(ctx)
	}
	return nil
}

// poll reads up to BatchSize×MaxConcurrentBatches records. When the first
// poll comes back with less than BatchSize records it lingers: it keeps
// collecting what arrives until Linger has passed since the previous batch
// was taken (or BatchSize records are in), so that batches fill under load.
// Counting from the previous batch rather than from this poll keeps the
// linger out of the way when the apply itself took that long: records
// arrived meanwhile, and lingering again would only add to their latency
// (measured at 3,600 TPS with a 30 ms linger: a batch every linger + apply,
// about 60 ms, where the records of one apply already made a full batch).
// After an idle spell the first record goes at once. A single
// second poll would not do: a poll returns as soon as any record is
// buffered, so under a steady load it returns the next few records at once
// and every partition's batch stays a handful of records, each paying a
// whole Postgres transaction (measured: 2.3 records per batch at 1,000 TPS
// over 16 partitions, the worker's Postgres backends then using 0.43 cores).
func (w *Worker) poll(ctx context.Context) ([]kafka.PartitionRecords, error) {
	limit := w.config.BatchSize * w.config.MaxConcurrentBatches
	partitions, err := w.source.Poll(ctx, limit)
	if err != nil || len(partitions) == 0 {
		return partitions, err
	}
	defer func() { w.lastTaken = time.Now() }()
	if w.config.Linger <= 0 {
		return partitions, nil
	}
	count := 0
	for _, partition := range partitions {
		count += len(partition.Records)
	}
	deadline := w.lastTaken.Add(w.config.Linger)
	for count < w.config.BatchSize && ctx.Err() == nil {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		lingerContext, cancel := context.WithTimeout(ctx, remaining)
		more, _ := w.source.Poll(lingerContext, limit-count)
		cancel()
		for _, partition := range more {
			count += len(partition.Records)
		}
		partitions = mergePartitions(partitions, more)
	}
	return partitions, nil
}

func mergePartitions(first, second []kafka.PartitionRecords) []kafka.PartitionRecords {
	index := map[int32]int{}
	for i, partition := range first {
		index[partition.Partition] = i
	}
	for _, partition := range second {
		if i, ok := index[partition.Partition]; ok {
			first[i].Records = append(first[i].Records, partition.Records...)
			first[i].HighWatermark = max(first[i].HighWatermark, partition.HighWatermark)
			continue
		}
		index[partition.Partition] = len(first)
		first = append(first, partition)
	}
	return first
}

// applyAll applies every partition's records, partitions concurrently (up to
// MaxConcurrentBatches), each partition's batches strictly in order.
func (w *Worker) applyAll(ctx context.Context, partitions []kafka.PartitionRecords) error {
	group, groupContext := errgroup.WithContext(ctx)
	group.SetLimit(w.config.MaxConcurrentBatches)
	for _, partition := range partitions {
		group.Go(func() error {
			records := partition.Records
			for start := 0; start < len(records); start += w.config.BatchSize {
				end := min(start+w.config.BatchSize, len(records))
				if err := w.applyWithRetry(groupContext, partition.Partition, records[start:end], partition.HighWatermark); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return group.Wait()
}

// applyWithRetry applies one batch, retrying until it commits or ctx ends: a
// batch is never skipped, since that would lose or reorder money.
func (w *Worker) applyWithRetry(ctx context.Context, partition int32, records []kafka.Record, highWatermark int64) error {
	batch := postgres.Batch{Topic: w.config.Topic, Partition: partition, Records: make([]postgres.Record, 0, len(records))}
	for _, record := range records {
		var command ledger.Command
		if err := json.Unmarshal(record.Value, &command); err != nil {
			// A record that is not a command cannot be applied or
			// answered; it is counted and logged, and the offset moves
			// past it with the rest of the batch.
			w.metrics.poison.Inc()
			w.logger.Error("undecodable record", "partition", partition, "offset", record.Offset, "error", err)
			command = ledger.Command{}
		}
		batch.Records = append(batch.Records, postgres.Record{Partition: partition, Offset: record.Offset, Command: command})
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		started := time.Now()
		result, err := w.ledger.ApplyBatch(ctx, batch)
		if err == nil {
			w.metrics.observeBatch(result, time.Since(started))
			// Before the outcomes are announced, so whoever is told a
			// command settled also finds the lag it left.
			w.metrics.lag.WithLabelValues(fmt.Sprint(partition)).Set(float64(max(0, highWatermark-records[len(records)-1].Offset-1)))
			w.afterCommit(ctx, result)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.metrics.applyErrors.Inc()
		w.logger.Warn("apply batch failed; retrying", "partition", partition, "first_offset", records[0].Offset,
			"records", len(records), "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.config.RetryBackoffMax)
	}
}

func (w *Worker) afterCommit(ctx context.Context, result postgres.BatchResult) {
	if w.cache == nil {
		return
	}
	balances, versions := w.withUnsaved(result)
	if len(balances) == 0 && len(result.Outcomes) == 0 {
		return
	}
	// The batch is committed and the cache not yet told: a worker dying here
	// leaves the touched balances stale in Redis until a later batch touches
	// the accounts (or their TTL ends), and the waiters polling Postgres.
	crash.Hit(crash.AfterCommitBeforeCache)
	cacheContext, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := w.cache.AfterCommit(cacheContext, balances, versions, result.Outcomes, w.config.BalanceCacheTTL); err != nil {
		// Redis is not on the correctness path; the balances are written
		// again later and waiters fall back to polling Postgres.
		w.metrics.cacheErrors.Inc()
		w.keepUnsaved(balances, versions)
		if !errors.Is(err, context.Canceled) {
			w.logger.Debug("after-commit cache update failed", "error", err)
		}
	}
}

// withUnsaved returns the batch's balances and versions plus those whose
// cache update failed before (taking them out of unsaved).
func (w *Worker) withUnsaved(result postgres.BatchResult) (balances, versions map[int64]int64) {
	w.unsavedMutex.Lock()
	defer w.unsavedMutex.Unlock()
	if len(w.unsaved) == 0 {
		return result.Balances, result.BalanceVersions
	}
	balances = make(map[int64]int64, len(result.Balances)+len(w.unsaved))
	versions = make(map[int64]int64, len(result.Balances)+len(w.unsaved))
	for id, saved := range w.unsaved {
		balances[id], versions[id] = saved.balance, saved.version
	}
	for id, balance := range result.Balances {
		// The batch's balance is the newer unless the versions say
		// otherwise (another partition's batch may have touched it later).
		if version := result.BalanceVersions[id]; version == 0 || version >= versions[id] {
			balances[id], versions[id] = balance, version
		}
	}
	clear(w.unsaved)
	return balances, versions
}

// keepUnsaved remembers balances whose cache update failed, keeping the
// newer of two versions of an account.
func (w *Worker) keepUnsaved(balances, versions map[int64]int64) {
	w.unsavedMutex.Lock()
	defer w.unsavedMutex.Unlock()
	for id, balance := range balances {
		if len(w.unsaved) >= unsavedMaximum {
			return
		}
		if saved, ok := w.unsaved[id]; ok && saved.version > versions[id] {
			continue
		}
		w.unsaved[id] = versionedBalance{balance: balance, version: versions[id]}
	}
}

var _ Cache = (*redis.Client)(nil)
