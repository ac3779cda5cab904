package settlement

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// Source is where the settler reads settlement events: *kafka.Reader.
type Source interface {
	Poll(ctx context.Context, maxRecords int) ([]kafka.PartitionRecords, error)
}

// SettlerConfig configures a Settler. Zero values select the defaults.
type SettlerConfig struct {
	// Topic is the settlements topic; its offsets are stored under this
	// name in consumer_offsets. Default ledger.SettlementsTopic.
	Topic string
	// MaxRecords is the most records one poll returns. Default 512.
	MaxRecords int
	// PollMinBytes is how many bytes of events a fetch waits for, at most
	// PollMaxWait, before the broker answers it (ServeSettler's reader;
	// kafka.ReaderConfig.FetchMinBytes). Each poll's records of a partition
	// cost one Postgres transaction, so under load the settler applies
	// fewer, larger ones; an event of an idle topic waits up to
	// PollMaxWait. Default 16 KiB, about a hundred events.
	PollMinBytes int32
	// PollMaxWait bounds a fetch's wait for PollMinBytes. Default 200ms.
	PollMaxWait time.Duration
	// RetryMax is the longest pause between attempts at a partition's
	// records that failed to apply (they are retried, never skipped; the
	// pauses double from 50ms). Default 2s.
	RetryMax time.Duration
	// OffsetCommitInterval is how often ledger.BugSettlementNoDedupe's
	// settler commits its offsets, apart from its effects. Default 1s.
	OffsetCommitInterval time.Duration
}

func (c *SettlerConfig) applyDefaults() error {
	if c.Topic == "" {
		c.Topic = ledger.SettlementsTopic
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = 512
	}
	if c.PollMinBytes == 0 {
		c.PollMinBytes = 16 << 10
	}
	if c.PollMaxWait == 0 {
		c.PollMaxWait = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.OffsetCommitInterval == 0 {
		c.OffsetCommitInterval = time.Second
	}
	switch {
	case c.MaxRecords < 1 || c.MaxRecords > 100_000:
		return fmt.Errorf("settler: max records %d not in [1, 100000]", c.MaxRecords)
	case c.RetryMax < 0 || c.OffsetCommitInterval < 0:
		return fmt.Errorf("settler: negative retry max or offset commit interval")
	case c.PollMinBytes < 1 || c.PollMinBytes > MaxPollMinBytes:
		return fmt.Errorf("settler: poll min bytes %d not in [1, %d]", c.PollMinBytes, MaxPollMinBytes)
	case c.PollMaxWait < time.Millisecond || c.PollMaxWait > 10*time.Second:
		return fmt.Errorf("settler: poll max wait %s not in [1ms, 10s]", c.PollMaxWait)
	}
	return nil
}

// MaxPollMinBytes is the largest SettlerConfig.PollMinBytes: 64 MiB.
const MaxPollMinBytes = 64 << 20

// pollErrorPause is the pause after a poll that failed and returned nothing.
const pollErrorPause = 200 * time.Millisecond

// Settler applies settlement events to settlement_history, exactly once per
// transaction: each poll's records of a partition are applied in one
// Postgres transaction with the partition's next offset (postgres.Store.
// ApplySettlements), and a transaction that already has its row is not
// applied again.
type Settler struct {
	store  *postgres.Store
	source Source
	config SettlerConfig
	logger *slog.Logger
	// noDedupe is ledger.BugSettlementNoDedupe: the store applies without
	// dedupe or offset, and Run commits the offsets apart.
	noDedupe bool
	applied  atomic.Int64
	// stalled is the error of records that keep failing, nil when the
	// last apply succeeded.
	stalled atomic.Pointer[error]
	// pending are the offsets the seeded bug has yet to commit.
	mutex   sync.Mutex
	pending map[int32]int64
}

// NewSettler builds a settler of the events source reads into store; bugs
// are the settler's seeded bugs (the store must have been opened with them).
func NewSettler(store *postgres.Store, source Source, config SettlerConfig, bugs ledger.Bugs, logger *slog.Logger) (*Settler, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Settler{store: store, source: source, config: config, logger: logger,
		noDedupe: bugs.Has(ledger.BugSettlementNoDedupe), pending: map[int32]int64{}}, nil
}

// Applied is how many events made a settlement_history row.
func (s *Settler) Applied() int64 { return s.applied.Load() }

// Ready is nil unless a partition's records keep failing to apply.
func (s *Settler) Ready() error {
	if err := s.stalled.Load(); err != nil {
		return *err
	}
	return nil
}

// Run applies events until ctx ends.
func (s *Settler) Run(ctx context.Context) error {
	if s.noDedupe {
		var committer sync.WaitGroup
		committer.Add(1)
		go func() {
			defer committer.Done()
			s.commitOffsetsEvery(ctx)
		}()
		defer committer.Wait()
	}
	for {
		polled, err := s.source.Poll(ctx, s.config.MaxRecords)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The broker away: the client retries; a pause keeps a
			// failing poll from spinning.
			s.logger.Warn("poll settlements", "error", err)
			if len(polled) == 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(pollErrorPause):
				}
			}
		}
		for _, partition := range polled {
			if err := s.applyPartition(ctx, partition); err != nil {
				return err
			}
		}
	}
}

// applyPartition decodes a partition's records and applies them, retrying
// until they apply or ctx ends. A record that does not decode into a valid
// event was not written by the relay (the topic's only producer): the
// settler stops on it rather than skip it, and readiness says why.
func (s *Settler) applyPartition(ctx context.Context, polled kafka.PartitionRecords) error {
	records := make([]postgres.SettlementRecord, 0, len(polled.Records))
	for _, record := range polled.Records {
		var event ledger.SettlementEvent
		err := json.Unmarshal(record.Value, &event)
		if err == nil {
			err = event.Validate()
		}
		if err != nil {
			err = fmt.Errorf("settlement record %s/%d@%d is not a settlement event (the relay is the topic's only producer): %w",
				s.config.Topic, record.Partition, record.Offset, err)
			s.stalled.Store(&err)
			s.logger.Error("stopping on a record that is not a settlement event", "error", err)
			<-ctx.Done()
			return nil
		}
		records = append(records, postgres.SettlementRecord{Offset: record.Offset, Event: event})
	}
	backoff := time.Duration(0)
	for {
		result, err := s.store.ApplySettlements(ctx, s.config.Topic, polled.Partition, records)
		if err == nil {
			s.stalled.Store(nil)
			s.applied.Add(int64(result.Applied))
			if s.noDedupe {
				s.mutex.Lock()
				s.pending[polled.Partition] = result.NextOffset
				s.mutex.Unlock()
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		s.stalled.Store(&err)
		backoff = min(max(2*backoff, 50*time.Millisecond), s.config.RetryMax)
		s.logger.Warn("apply settlements failed; retrying", "partition", polled.Partition, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// commitOffsetsEvery is ledger.BugSettlementNoDedupe's offset commit: the
// offsets applied so far, every OffsetCommitInterval, apart from the
// effects. A settler killed in between reads the events since the last
// commit again, and applies them again.
func (s *Settler) commitOffsetsEvery(ctx context.Context) {
	ticker := time.NewTicker(s.config.OffsetCommitInterval)
	defer ticker.Stop()
	for {
		stopping := false
		commitContext := ctx
		select {
		case <-ctx.Done():
			// A clean stop commits what was applied, as Kafka clients do
			// on close; only a kill leaves the window open.
			stopping = true
			var cancel context.CancelFunc
			commitContext, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
		case <-ticker.C:
		}
		s.mutex.Lock()
		offsets := s.pending
		s.pending = map[int32]int64{}
		s.mutex.Unlock()
		if len(offsets) == 0 {
			if stopping {
				return
			}
			continue
		}
		if err := s.store.StoreOffsets(commitContext, s.config.Topic, offsets); err != nil {
			s.logger.Warn("commit settlement offsets", "error", err)
			s.mutex.Lock()
			for partition, next := range offsets {
				if _, newer := s.pending[partition]; !newer {
					s.pending[partition] = next
				}
			}
			s.mutex.Unlock()
		}
		if stopping {
			return
		}
	}
}
