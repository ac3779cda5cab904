package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// The transactional outbox (migration 006, docs/settlement.md): every
// settled transaction gets one row of settlement_outbox, written by the
// statement queueOutbox adds to the batch's pipeline, so it commits with
// the postings or not at all. The relay (RelayOutbox) publishes the rows,
// the settler (ApplySettlements) applies the events to settlement_history.

// outboxInsert writes the settled transactions of a batch's rows, in the
// batch's (offset) order.
const outboxInsert = `INSERT INTO settlement_outbox (transaction_id, kind, source_account_id, destination_account_id, amount)
	SELECT id, kind, source, destination, amount
	FROM unnest($1::text[]::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) WITH ORDINALITY
		AS t(id, kind, source, destination, amount, status, position)
	WHERE status = 'settled' ORDER BY position`

// queueOutbox adds the outbox rows of the batch's settled transactions.
func (w *batchWrites) queueOutbox(pipeline *pgx.Batch) {
	pipeline.Queue(outboxInsert, w.ids, w.kinds, w.sources, w.destinations, w.amounts, w.statuses)
}

// outboxRows are the columns of outboxInsert, kept for a later write
// (ledger.BugOutboxOutsideTx).
type outboxRows struct {
	ids, kinds, statuses           []string
	sources, destinations, amounts []int64
}

func (r *outboxRows) add(w *batchWrites) {
	r.addRows(outboxRows{ids: w.ids, kinds: w.kinds, statuses: w.statuses, sources: w.sources, destinations: w.destinations, amounts: w.amounts})
}

func (r *outboxRows) addRows(other outboxRows) {
	r.ids = append(r.ids, other.ids...)
	r.kinds = append(r.kinds, other.kinds...)
	r.statuses = append(r.statuses, other.statuses...)
	r.sources = append(r.sources, other.sources...)
	r.destinations = append(r.destinations, other.destinations...)
	r.amounts = append(r.amounts, other.amounts...)
}

// outboxFlushInterval is how long ledger.BugOutboxOutsideTx keeps a
// committed batch's outbox rows in memory before writing them.
const outboxFlushInterval = 500 * time.Millisecond

// deferredOutbox is ledger.BugOutboxOutsideTx's queue: the outbox rows of
// committed batches, written by a flusher after the commit. Rows still
// queued when the process dies are lost: their transactions settled and
// nothing downstream ever hears of them.
type deferredOutbox struct {
	mutex   sync.Mutex
	pending outboxRows
	stop    chan struct{}
	done    chan struct{}
}

// writeOutboxAfterCommit is the seeded bug's write: the rows go to the
// queue, after the batch committed.
func (s *Store) writeOutboxAfterCommit(_ context.Context, partition int32, w *batchWrites) error {
	s.between(partition)
	s.outbox.mutex.Lock()
	defer s.outbox.mutex.Unlock()
	s.outbox.pending.add(w)
	return nil
}

// startOutboxFlusher starts the seeded bug's flusher.
func (s *Store) startOutboxFlusher() {
	s.outbox = &deferredOutbox{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.outbox.done)
		ticker := time.NewTicker(outboxFlushInterval)
		defer ticker.Stop()
		for {
			select {
			case <-s.outbox.stop:
				_ = s.flushOutbox()
				return
			case <-ticker.C:
				_ = s.flushOutbox()
			}
		}
	}()
}

// stopOutboxFlusher writes what is queued (a clean stop loses nothing; a
// kill does) and stops the flusher.
func (s *Store) stopOutboxFlusher() {
	if s.outbox == nil {
		return
	}
	close(s.outbox.stop)
	<-s.outbox.done
}

// flushOutbox writes the queued rows in one transaction; on failure they
// stay queued for the next flush.
func (s *Store) flushOutbox() error {
	s.outbox.mutex.Lock()
	rows := s.outbox.pending
	s.outbox.pending = outboxRows{}
	s.outbox.mutex.Unlock()
	if len(rows.ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
	defer cancel()
	_, err := s.pool.Exec(ctx, outboxInsert, rows.ids, rows.kinds, rows.sources, rows.destinations, rows.amounts, rows.statuses)
	if err != nil {
		// Back to the front of the queue, before what came meanwhile.
		s.outbox.mutex.Lock()
		later := s.outbox.pending
		s.outbox.pending = rows
		s.outbox.pending.addRows(later)
		s.outbox.mutex.Unlock()
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}

// RelayOutbox publishes up to limit unpublished outbox rows, oldest first,
// and marks them published, in one Postgres transaction that holds their
// rows locked (FOR UPDATE SKIP LOCKED: several relays take disjoint rows).
// publish must return only once the broker acknowledged every event
// (acks=all). A relay that dies or fails after publish and before the
// commit leaves the rows unpublished: they are published again (at least
// once; the settler dedupes by transaction id). It returns how many rows it
// published.
func (s *Store) RelayOutbox(ctx context.Context, limit int, publish func(ctx context.Context, events []ledger.SettlementEvent) error) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("relay outbox: limit %d must be at least 1", limit)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	published := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, transaction_id::text, kind, source_account_id, destination_account_id, amount
			FROM settlement_outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("claim outbox rows: %w", err)
		}
		var events []ledger.SettlementEvent
		var event ledger.SettlementEvent
		var kind string
		if _, err := pgx.ForEachRow(rows, []any{&event.OutboxID, &event.TransactionID, &kind, &event.SourceAccountID,
			&event.DestinationAccountID, &event.AmountMinor}, func() error {
			event.Kind = ledger.Kind(kind)
			events = append(events, event)
			return nil
		}); err != nil {
			return fmt.Errorf("claim outbox rows: %w", err)
		}
		if len(events) == 0 {
			return nil
		}
		if err := publish(ctx, events); err != nil {
			return fmt.Errorf("publish %d settlement event(s): %w", len(events), err)
		}
		ids := make([]int64, len(events))
		for i, event := range events {
			ids[i] = event.OutboxID
		}
		if _, err := tx.Exec(ctx, `UPDATE settlement_outbox SET published_at = now() WHERE id = ANY($1::bigint[])`, ids); err != nil {
			return fmt.Errorf("mark outbox rows published: %w", err)
		}
		published = len(events)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return published, nil
}

// UnpublishedOutbox counts the outbox rows not yet published.
func (s *Store) UnpublishedOutbox(ctx context.Context) (int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var count int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM settlement_outbox WHERE published_at IS NULL`).Scan(&count); err != nil {
		return 0, fmt.Errorf("count unpublished outbox rows: %w", err)
	}
	return count, nil
}

// SettlementRecord is one settlement event read from a partition of the
// settlements topic.
type SettlementRecord struct {
	Offset int64
	Event  ledger.SettlementEvent
}

// SettlementResult says what ApplySettlements did.
type SettlementResult struct {
	// Applied counts the events that made a settlement_history row;
	// Duplicates those whose transaction had one already (a republished
	// event); AlreadyApplied the records below the stored offset.
	Applied, Duplicates, AlreadyApplied int
	// NextOffset is the partition's next offset after the records.
	NextOffset int64
}

// ApplySettlements applies one partition's settlement events in ONE
// Postgres transaction: it locks the partition's offset row of topic
// (consumer_offsets), skips records below the stored offset, writes a
// settlement_history row for each transaction that has none (the unique
// transaction id absorbs a republished event), and stores the next offset.
// So a settler killed at any instant neither loses nor repeats an effect.
//
// Under ledger.BugSettlementNoDedupe it inserts every event as it comes and
// leaves the offset alone: the caller commits it apart (StoreOffsets).
func (s *Store) ApplySettlements(ctx context.Context, topic string, partition int32, records []SettlementRecord) (SettlementResult, error) {
	if len(records) == 0 {
		return SettlementResult{}, errors.New("apply settlements: no records")
	}
	for i := 1; i < len(records); i++ {
		if records[i].Offset <= records[i-1].Offset {
			return SettlementResult{}, fmt.Errorf("apply settlements: offsets out of order at %d (%d after %d)", i, records[i].Offset, records[i-1].Offset)
		}
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	noDedupe := s.bugs.Has(ledger.BugSettlementNoDedupe)
	var result SettlementResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		result = SettlementResult{NextOffset: records[len(records)-1].Offset + 1}
		live := records
		if !noDedupe {
			next, err := lockOffset(ctx, tx, Batch{Topic: topic, Partition: partition})
			if err != nil {
				return err
			}
			for len(live) > 0 && live[0].Offset < next {
				live = live[1:]
				result.AlreadyApplied++
			}
			if len(live) == 0 {
				result.NextOffset = next
				return nil
			}
		}
		var ids, kinds []string
		var sources, destinations, amounts, offsets []int64
		for _, record := range live {
			event := record.Event
			ids = append(ids, event.TransactionID)
			kinds = append(kinds, string(event.Kind))
			sources = append(sources, event.SourceAccountID)
			destinations = append(destinations, event.DestinationAccountID)
			amounts = append(amounts, event.AmountMinor)
			offsets = append(offsets, record.Offset)
		}
		conflict := ` ON CONFLICT (transaction_id) DO NOTHING`
		if noDedupe {
			conflict = ``
		}
		tag, err := tx.Exec(ctx, `INSERT INTO settlement_history (transaction_id, kind, source_account_id, destination_account_id,
			amount, kafka_partition, kafka_offset)
			SELECT id, kind, source, destination, amount, $7, kafka_offset
			FROM unnest($1::text[]::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) WITH ORDINALITY
				AS t(id, kind, source, destination, amount, kafka_offset, position)
			ORDER BY position`+conflict, ids, kinds, sources, destinations, amounts, offsets, partition)
		if err != nil {
			return fmt.Errorf("write settlement history: %w", err)
		}
		result.Applied = int(tag.RowsAffected())
		result.Duplicates = len(live) - result.Applied
		if noDedupe {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE consumer_offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2`,
			topic, partition, result.NextOffset); err != nil {
			return fmt.Errorf("store settlement offset: %w", err)
		}
		return nil
	})
	if err != nil {
		return SettlementResult{}, fmt.Errorf("apply settlements of partition %d at offset %d: %w", partition, records[0].Offset, err)
	}
	return result, nil
}

// StoreOffsets stores next offsets of topic's partitions on their own: only
// ledger.BugSettlementNoDedupe's settler does, apart from its effects.
func (s *Store) StoreOffsets(ctx context.Context, topic string, offsets map[int32]int64) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for partition, next := range offsets {
		if _, err := s.pool.Exec(ctx, `INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()`, topic, partition, next); err != nil {
			return fmt.Errorf("store offset of partition %d: %w", partition, err)
		}
	}
	return nil
}
