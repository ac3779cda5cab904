// Package worker applies the commands topic to the ledger: it consumes as a
// member of a consumer group, applies each partition's records strictly in
// order in batches (one Postgres transaction per batch), then refreshes the
// Redis cache and wakes the gateways waiting on the outcomes.
//
// Each partition the worker owns has an applier of its own (a goroutine and
// a bounded queue), so a partition whose batch keeps failing (Postgres
// refusing it, a lock held for long) holds only itself: the others go on
// being applied, and the stuck partition's fetching pauses once its queue is
// full. Records that can never be applied are set aside as dead letters by
// the ledger (postgres.Store.ApplyBatch), in the transaction that moves the
// offset past them. A partition that lags without advancing for longer than
// Config.StalledAfter makes the worker unready (Ready).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// StalledAfter is how long a partition may lag (the broker holds records
	// past the last one applied) without advancing before the worker calls
	// it stalled: Ready fails and ledger_worker_stalled_partitions counts
	// it. Default 30s: far above a healthy batch (milliseconds) and the
	// pauses the chaos drills inject (a few seconds of Postgres or broker
	// down), short enough for an orchestrator to notice a worker that will
	// not recover by itself.
	StalledAfter time.Duration
	// SagaRecoveryInterval is how often a worker whose ledger runs sagas
	// (SagaRecoverer: a sharded ledger) runs a recovery pass, finishing the
	// sagas left in flight past the saga timeout (a worker killed mid-saga,
	// a destination shard that was down); one pass runs at start. Default
	// 5s: half the saga timeout (postgres.SagaRecovery.OlderThan, 10s), so
	// an interrupted saga ends within about 15s of its debit. Unused on
	// one ledger.
	SagaRecoveryInterval time.Duration
	// CachedBalancesBeforeBatch is ledger.BugTrustCacheBalance's read of
	// the cache (redis.Client.CachedBalances): before it drops the cached
	// balances of a batch's accounts (invalidateBalances), the worker reads
	// them, and the store's overdraft check trusts what it read
	// (postgres.WithCachedBalances). nil: no such read (every worker
	// without the bug).
	CachedBalancesBeforeBatch func(ctx context.Context, accountIDs []int64) (map[int64]int64, error)
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
	if c.StalledAfter == 0 {
		c.StalledAfter = 30 * time.Second
	}
	if c.SagaRecoveryInterval == 0 {
		c.SagaRecoveryInterval = 5 * time.Second
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return fmt.Errorf("worker: batch size %d must be between 1 and 100000", c.BatchSize)
	case c.Linger < 0 || c.Linger > 10*time.Second:
		return fmt.Errorf("worker: linger %s must be between 0 and 10s", c.Linger)
	case c.MaxConcurrentBatches < 1 || c.MaxConcurrentBatches > 1024:
		return fmt.Errorf("worker: max concurrent batches %d must be between 1 and 1024", c.MaxConcurrentBatches)
	case c.StalledAfter < 0:
		return fmt.Errorf("worker: stalled-after %s must be positive", c.StalledAfter)
	case c.SagaRecoveryInterval < 0:
		return fmt.Errorf("worker: saga recovery interval %s must be positive", c.SagaRecoveryInterval)
	}
	return nil
}

// Ledger is what the worker needs of the ledger store.
type Ledger interface {
	// ApplyBatch applies a batch. With an error, the result is empty or,
	// for a batch that committed part of itself (a sharded ledger's),
	// what that part did.
	ApplyBatch(ctx context.Context, batch postgres.Batch) (postgres.BatchResult, error)
}

// Cache is what the worker needs of Redis; nil disables it.
type Cache interface {
	AfterCommit(ctx context.Context, balances, versions map[int64]int64, outcomes []ledger.OutcomeNotice, balanceTTL time.Duration) error
	// InvalidateBalances and SetDailyDebits keep what the gateway's soft
	// checks read (docs/limits.md; limits.go).
	InvalidateBalances(ctx context.Context, accountIDs []int64) error
	SetDailyDebits(ctx context.Context, totals []redis.DailyDebits, ttl time.Duration) error
}

// Source is what the worker needs of the commands topic (kafka.Consumer).
type Source interface {
	// Poll returns records; no rebalance happens until Done.
	Poll(ctx context.Context, maxRecords int) ([]kafka.PartitionRecords, error)
	Done(ctx context.Context)
	// Pause stops fetching a partition, Resume fetches it again.
	Pause(partition int32)
	Resume(partition int32)
	// SetReleaseHandler registers the function the source calls with the
	// partitions the worker stops owning, before another worker may get
	// them; it returns once nothing applies them any more.
	SetReleaseHandler(release func(partitions []int32))
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

	// slots bounds the batches being applied at once (MaxConcurrentBatches).
	slots chan struct{}
	// appliers holds the applier of each partition the worker owns.
	appliersMutex sync.Mutex
	appliers      map[int32]*partitionApplier
	// running counts the appliers' goroutines; Run waits for them.
	running sync.WaitGroup
	// now is the clock of the stall checks.
	now func() time.Time
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
	w := &Worker{config: config, ledger: ledgerStore, cache: cache, source: source, logger: logger, metrics: metrics,
		unsaved: map[int64]versionedBalance{}, slots: make(chan struct{}, config.MaxConcurrentBatches),
		appliers: map[int32]*partitionApplier{}, now: time.Now}
	metrics.progress.Store(&progressSource{partitions: w.progress, stalledAfter: config.StalledAfter})
	return w, nil
}

// Run consumes until ctx ends. It returns nil on a clean stop, once every
// partition's applier has stopped.
func (w *Worker) Run(ctx context.Context) error {
	w.source.SetReleaseHandler(w.release)
	defer func() {
		w.running.Wait()
		// Stopping: one last try at the cache updates that failed (the
		// idle loop's retry below will not come again). Without it a
		// balance this worker committed stays stale in Redis until another
		// batch touches the account or its TTL ends.
		w.afterCommit(ctx, postgres.BatchResult{})
	}()
	if recoverer, ok := w.ledger.(SagaRecoverer); ok {
		w.running.Add(1)
		go func() {
			defer w.running.Done()
			w.runSagaRecovery(ctx, recoverer, w.config.SagaRecoveryInterval)
		}()
	}
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
		for _, partition := range partitions {
			w.dispatch(ctx, partition)
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

// releaseGrace is how long a released partition's batch in flight may take
// to commit before it is cancelled: a rebalance waits for it, within the
// group's rebalance timeout (20s by default).
const releaseGrace = 5 * time.Second

// partitionApplier applies one partition's records, strictly in order, in
// batches taken from its queue. The run loop fills the queue; the applier's
// goroutine empties it.
type partitionApplier struct {
	partition int32
	// cancel ends the applier's context; stop (closed by release) makes it
	// take no new batch; done is closed when its goroutine has returned.
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	// wake tells the goroutine records were queued (capacity 1).
	wake chan struct{}

	mutex sync.Mutex
	// queue holds the records polled and not yet taken into a batch.
	queue []kafka.Record
	// paused is true while the partition's fetching is paused because the
	// queue is full.
	paused bool
	// highWatermark is the highest high watermark polled for the partition.
	highWatermark int64
	// nextOffset is the partition's position: the offset after the last
	// record applied, or before any batch committed the first record
	// polled. waitingSince is when it last advanced or, if later, when it
	// started lagging (an idle partition does not stall).
	nextOffset   int64
	waitingSince time.Time
}

// queueLimit is how many polled records may wait for one partition's applier
// before the partition's fetching pauses: two batches, so a full batch waits
// while one is applied.
func (w *Worker) queueLimit() int { return 2 * w.config.BatchSize }

// dispatch hands a poll's records of one partition to its applier, starting
// it when the partition has none. It runs on the run loop's goroutine,
// between Poll and Done, so no rebalance (and no release) runs meanwhile.
func (w *Worker) dispatch(ctx context.Context, polled kafka.PartitionRecords) {
	if len(polled.Records) == 0 {
		return
	}
	w.appliersMutex.Lock()
	applier, ok := w.appliers[polled.Partition]
	if !ok {
		applierContext, cancel := context.WithCancel(ctx)
		applier = &partitionApplier{partition: polled.Partition, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}),
			wake: make(chan struct{}, 1), nextOffset: polled.Records[0].Offset, waitingSince: w.now()}
		w.appliers[polled.Partition] = applier
		w.running.Add(1)
		go w.runApplier(applierContext, applier)
	}
	w.appliersMutex.Unlock()

	applier.mutex.Lock()
	applier.queue = append(applier.queue, polled.Records...)
	if applier.highWatermark <= applier.nextOffset && polled.HighWatermark > applier.nextOffset {
		// It starts lagging now: the stall clock starts now too.
		applier.waitingSince = w.now()
	}
	applier.highWatermark = max(applier.highWatermark, polled.HighWatermark)
	if len(applier.queue) >= w.queueLimit() && !applier.paused {
		// The applier is behind (or stuck retrying): fetch no more of this
		// partition until it catches up, so memory stays bounded.
		applier.paused = true
		w.source.Pause(applier.partition)
	}
	applier.mutex.Unlock()
	select {
	case applier.wake <- struct{}{}:
	default:
	}
}

// release stops the appliers of partitions the worker no longer owns and
// forgets them (the source resumes their fetching). A batch in flight gets
// releaseGrace to commit, then is cancelled; its transaction then commits
// or not as a whole, and the partition's next owner starts at the offset
// stored in Postgres either way.
func (w *Worker) release(partitions []int32) {
	w.appliersMutex.Lock()
	var released []*partitionApplier
	for _, partition := range partitions {
		if applier, ok := w.appliers[partition]; ok {
			released = append(released, applier)
			delete(w.appliers, partition)
		}
	}
	w.appliersMutex.Unlock()
	for _, applier := range released {
		close(applier.stop)
	}
	// One grace for all of them, not one after the other: the rebalance
	// waits for this, within the group's rebalance timeout.
	deadline := time.AfterFunc(releaseGrace, func() {
		for _, applier := range released {
			applier.cancel()
		}
	})
	for _, applier := range released {
		<-applier.done
		applier.cancel()
		w.metrics.lag.DeleteLabelValues(strconv.Itoa(int(applier.partition)))
	}
	deadline.Stop()
	if len(released) > 0 {
		w.logger.Info("partitions released", "partitions", partitions)
	}
}

// runApplier applies the partition's queue until ctx ends or the partition
// is released.
func (w *Worker) runApplier(ctx context.Context, applier *partitionApplier) {
	defer w.running.Done()
	defer close(applier.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-applier.stop:
			return
		case <-applier.wake:
		}
		for {
			records := w.take(applier)
			if len(records) == 0 {
				break
			}
			if err := w.applyWithRetry(ctx, applier, records); err != nil {
				return
			}
		}
	}
}

// take removes up to BatchSize records from the applier's queue, and
// resumes the partition's fetching once the queue has room again.
func (w *Worker) take(applier *partitionApplier) []kafka.Record {
	applier.mutex.Lock()
	defer applier.mutex.Unlock()
	count := min(len(applier.queue), w.config.BatchSize)
	records := append([]kafka.Record(nil), applier.queue[:count]...)
	applier.queue = applier.queue[count:]
	if len(applier.queue) == 0 {
		applier.queue = nil
	}
	if applier.paused && len(applier.queue) < w.config.BatchSize {
		applier.paused = false
		w.source.Resume(applier.partition)
	}
	return records
}

// errReleased ends an applier whose partition was released.
var errReleased = errors.New("partition released")

// applyWithRetry applies one batch, retrying until it commits, ctx ends or
// the partition is released: a batch is never skipped, since that would lose
// or reorder money. Records that can never be applied do not block it: the
// ledger sets them aside as dead letters. While it waits between attempts
// it holds no slot, so other partitions go on being applied.
func (w *Worker) applyWithRetry(ctx context.Context, applier *partitionApplier, records []kafka.Record) error {
	partition := applier.partition
	batch := postgres.Batch{Topic: w.config.Topic, Partition: partition, Records: make([]postgres.Record, 0, len(records))}
	for _, record := range records {
		batch.Records = append(batch.Records, decodeRecord(partition, record.Offset, record.Value))
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-applier.stop:
			return errReleased
		}
		applyContext := w.cachedBalancesBeforeBatch(ctx, batch)
		w.invalidateBalances(ctx, batch)
		started := time.Now()
		result, err := w.ledger.ApplyBatch(applyContext, batch)
		<-w.slots
		if err == nil {
			w.metrics.observeBatch(result, time.Since(started))
			w.reportDeadLetters(partition, result.DeadLetters)
			// Before the outcomes are announced, so whoever is told a
			// command settled also finds the lag it left.
			lag := applier.advanced(result.NextOffset, w.now())
			w.metrics.lag.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(lag))
			w.afterCommit(ctx, result)
			return nil
		}
		// A sharded batch may have committed part of itself before failing
		// (postgres.ShardedLedger.ApplyBatch): its outcomes and balances
		// are announced and cached now; the retry finds that part applied.
		if partial := len(result.Outcomes) > 0 || len(result.Balances) > 0 || len(result.DailyDebits) > 0 || len(result.DailyDebitsLowered) > 0 || len(result.DeadLetters) > 0; partial {
			// The retry skips the committed part, so its dead letters
			// (saga key collisions among them) are reported now or never.
			w.reportDeadLetters(partition, result.DeadLetters)
			w.afterCommit(ctx, result)
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
		case <-applier.stop:
			return errReleased
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.config.RetryBackoffMax)
	}
}

// advanced records that the partition's offset moved to nextOffset and
// returns the records still behind the high watermark.
func (a *partitionApplier) advanced(nextOffset int64, now time.Time) int64 {
	a.mutex.Lock()
	defer a.mutex.Unlock()
	if nextOffset > a.nextOffset {
		a.nextOffset, a.waitingSince = nextOffset, now
	}
	return max(0, a.highWatermark-a.nextOffset)
}

// reportDeadLetters logs and counts the records a committed batch set aside.
func (w *Worker) reportDeadLetters(partition int32, letters []postgres.DeadLetter) {
	for _, letter := range letters {
		w.metrics.deadLetters.WithLabelValues(string(letter.Reason)).Inc()
		w.logger.Warn("record set aside in dead_letters", "partition", partition, "offset", letter.Offset,
			"reason", letter.Reason, "transaction_id", letter.TransactionID, "detail", letter.Detail)
	}
}

// PartitionProgress is where a partition the worker owns stands.
type PartitionProgress struct {
	Partition int32
	// NextOffset is the offset after the last record applied; HighWatermark
	// the highest high watermark polled.
	NextOffset, HighWatermark int64
	// StalledFor is how long the partition has lagged (HighWatermark >
	// NextOffset) without advancing; 0 when it does not lag.
	StalledFor time.Duration
}

// progress returns where each partition the worker owns stands, in
// partition order.
func (w *Worker) progress() []PartitionProgress {
	now := w.now()
	w.appliersMutex.Lock()
	appliers := make([]*partitionApplier, 0, len(w.appliers))
	for _, applier := range w.appliers {
		appliers = append(appliers, applier)
	}
	w.appliersMutex.Unlock()
	progress := make([]PartitionProgress, 0, len(appliers))
	for _, applier := range appliers {
		applier.mutex.Lock()
		entry := PartitionProgress{Partition: applier.partition, NextOffset: applier.nextOffset, HighWatermark: applier.highWatermark}
		if applier.highWatermark > applier.nextOffset {
			entry.StalledFor = max(0, now.Sub(applier.waitingSince))
		}
		applier.mutex.Unlock()
		progress = append(progress, entry)
	}
	sort.Slice(progress, func(i, j int) bool { return progress[i].Partition < progress[j].Partition })
	return progress
}

// Ready reports whether every partition the worker owns advances: an error
// names each partition that has lagged without advancing for longer than
// Config.StalledAfter (a batch Postgres keeps failing, a lock held for long,
// Postgres down). The worker goes on retrying; readiness only tells the
// truth about it.
func (w *Worker) Ready() error {
	var stalled []string
	for _, entry := range w.progress() {
		if entry.StalledFor > w.config.StalledAfter {
			stalled = append(stalled, fmt.Sprintf("partition %d has lagged without advancing for %s (next offset %d, high watermark %d)",
				entry.Partition, entry.StalledFor.Round(time.Second), entry.NextOffset, entry.HighWatermark))
		}
	}
	if len(stalled) > 0 {
		return fmt.Errorf("stalled: %s", strings.Join(stalled, "; "))
	}
	return nil
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
	// The batch is committed, so telling the cache and the waiting gateways
	// is part of finishing it, even when the worker is being stopped: ctx's
	// end does not cut it short, the second's bound does.
	cacheContext, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
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
	w.publishDailyDebits(cacheContext, result)
	w.forgetDailyDebits(cacheContext, result)
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
