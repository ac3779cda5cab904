// Package settlement is the downstream half of the reference pipeline
// (docs/settlement.md): the relay, which publishes the transactional
// outbox's settlement events to the settlements topic, and the settler, a
// settlement consumer that applies each event exactly once to its own table
// (settlement_history), its consumer offsets stored with its effects.
package settlement

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// Publisher appends records to the settlements topic and returns once the
// broker acknowledged every one of them (acks=all): *kafka.Producer.
type Publisher interface {
	ProduceAll(ctx context.Context, records []kafka.KeyValue) error
}

// RelayConfig configures a Relay. Zero values select the defaults.
type RelayConfig struct {
	// BatchSize is the most outbox rows claimed, published and marked in
	// one Postgres transaction. Default 256.
	BatchSize int
	// IdleInterval is the pause after a pass that found fewer rows than
	// BatchSize (the outbox is drained). Default 50ms: a settlement event
	// waits at most about that long for its relay.
	IdleInterval time.Duration
	// RetryMax is the longest pause after a failed pass (the pauses double
	// from 50ms). Default 2s.
	RetryMax time.Duration
	// AfterPublish, when set, is called once the broker acknowledged a
	// pass's events and before they are marked published; an error aborts
	// the pass as a relay dying at that instant would (the rows stay
	// unpublished and are published again). Tests hook in here. Default
	// none.
	AfterPublish func(events []ledger.SettlementEvent) error
}

func (c *RelayConfig) applyDefaults() error {
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.IdleInterval == 0 {
		c.IdleInterval = 50 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10_000:
		return fmt.Errorf("relay: batch size %d not in [1, 10000]", c.BatchSize)
	case c.IdleInterval < 0:
		return fmt.Errorf("relay: idle interval %s is negative", c.IdleInterval)
	case c.RetryMax < 0:
		return fmt.Errorf("relay: retry max %s is negative", c.RetryMax)
	}
	return nil
}

// Relay publishes the outbox. It is at least once: a relay that dies
// between the broker's acknowledgement and the commit that marks the rows
// published publishes them again; the settler dedupes by transaction id.
// Several relays may run: each claims rows the others have not locked.
type Relay struct {
	store     *postgres.Store
	publisher Publisher
	config    RelayConfig
	logger    *slog.Logger
	// published counts the events published (acknowledged and marked).
	published atomic.Int64
	// lastError is the last pass's error, nil after a good pass.
	lastError atomic.Pointer[error]
}

// NewRelay builds a relay of store's outbox to publisher.
func NewRelay(store *postgres.Store, publisher Publisher, config RelayConfig, logger *slog.Logger) (*Relay, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{store: store, publisher: publisher, config: config, logger: logger}, nil
}

// Published is how many events this relay published.
func (r *Relay) Published() int64 { return r.published.Load() }

// Ready is nil unless the last pass failed.
func (r *Relay) Ready() error {
	if err := r.lastError.Load(); err != nil {
		return *err
	}
	return nil
}

// Pass claims up to BatchSize unpublished rows, publishes them, waits for
// every acknowledgement and marks them published; it returns how many.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	n, err := r.store.RelayOutbox(ctx, r.config.BatchSize, r.publish)
	if err != nil {
		r.lastError.Store(&err)
		return 0, err
	}
	r.lastError.Store(nil)
	r.published.Add(int64(n))
	return n, nil
}

// publish produces every event at once (the producer batches them) and
// returns once all are acknowledged, or the first error.
func (r *Relay) publish(ctx context.Context, events []ledger.SettlementEvent) error {
	records := make([]kafka.KeyValue, len(events))
	for i, event := range events {
		value, err := json.Marshal(event)
		if err != nil {
			return fmt.Errorf("encode settlement event %d: %w", event.OutboxID, err)
		}
		records[i] = kafka.KeyValue{Key: []byte(event.TransactionID), Value: value}
	}
	if err := r.publisher.ProduceAll(ctx, records); err != nil {
		return err
	}
	if r.config.AfterPublish != nil {
		return r.config.AfterPublish(events)
	}
	return nil
}

// Run relays until ctx ends: passes back to back while the outbox has a
// backlog, IdleInterval apart when it is drained, backing off after a
// failure (Postgres or the broker away: retried for ever, logged).
func (r *Relay) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		n, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		pause := time.Duration(0)
		switch {
		case err != nil:
			backoff = min(max(2*backoff, 50*time.Millisecond), r.config.RetryMax)
			pause = backoff
			r.logger.Warn("relay pass failed; retrying", "error", err, "retry_in", pause)
		case n < r.config.BatchSize:
			backoff, pause = 0, r.config.IdleInterval
		default:
			backoff = 0
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
		}
	}
}
