package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// The two-tier dedupe (docs/two-tier-dedupe.md): with a Bloom filter
// (Config.Dedupe), applyRecords looks up only the ids the filter may have
// seen; the others are taken as new. A wrong "new" (an id applied before
// this process started, by another worker, or forgotten with the filter's
// oldest generation) is refused by the ledger's primary key or unique key
// when the batch inserts it; applyIsolating then applies the batch again
// with every id and key looked up (Batch.checkKeys), so the command is a
// duplicate with its stored outcome: never a second effect, never a dead
// letter.

// idConstraint is the primary key of transactions (migrations/001_init.sql).
const idConstraint = "transactions_pkey"

// idConflict reports whether err is the primary key of transactions
// refusing a row: a transaction id the ledger already has.
func idConflict(err error) bool {
	var pgError *pgconn.PgError
	return errors.As(err, &pgError) && pgError.Code == "23505" && pgError.ConstraintName == idConstraint
}

// lookUpEverything reports whether a batch refused with err is to be
// applied again with every id and key looked up: a key stored under another
// transaction id (the unique key), or a transaction id the ledger has that
// the batch did not find: one stored since the batch's lookup (a gateway's
// soft refusal, RecordRejection, is a second writer of transaction ids) or
// one the Bloom filter called new. The filter's backstop is counted here,
// for id conflicts only: a key stored under another id is not the filter's
// miss.
func (s *Store) lookUpEverything(err error) bool {
	if s.plan.bloomOnly {
		return false
	}
	if s.dedupe != nil && idConflict(err) {
		s.dedupe.CountBackstopConflict()
	}
	return (s.plan.dedupeByKey && idConflict(err)) || ((s.dedupe != nil || s.plan.keyCollisions) && keyConflict(err))
}

// countLookups counts what the filter did for one attempt at a batch of
// live commands: those not in looked (the ids looked up) skipped the exact
// lookup; the looked-up ids the ledger did not have (existing, as the
// lookup filled it) were false positives.
func (s *Store) countLookups(live int, looked []string, existing map[string]ledger.OutcomeNotice) {
	falsePositives := 0
	for _, id := range looked {
		if _, found := existing[id]; !found {
			falsePositives++
		}
	}
	s.dedupe.CountLookups(live-len(looked), len(looked), falsePositives)
}

// rememberApplied adds to the Bloom filter every transaction a committed
// batch named and the ledger now holds: the new ones and the duplicates.
// Only committed ones: an id added for a batch that then failed would cost
// its retry a lookup, not a wrong answer, but would count as a false
// positive.
func (s *Store) rememberApplied(result BatchResult) {
	if s.dedupe == nil || len(result.Outcomes) == 0 {
		return
	}
	ids := make([]string, len(result.Outcomes))
	for i, outcome := range result.Outcomes {
		ids[i] = outcome.TransactionID
	}
	s.dedupe.Add(ids...)
}

// warmChunk is how many ids WarmDedupe adds to the filter at a time.
const warmChunk = 4096

// WarmDedupe fills the Bloom filter (Config.Dedupe) with the ids of the
// ledger's newest transactions, by accepted_at, as many as the filter's
// capacity, so a worker that starts or restarts does not send every retry
// and replay of a recent command to the backstop. It reads for at most
// timeout (the statement is cancelled then; a scan of a large ledger and a
// sort of its newest ids is what takes time) and returns how many ids it
// added; on an error or the timeout the filter keeps what it got, which is
// safe: what it lacks the backstop catches. Without a filter it does
// nothing, and so does ledger.BugBloomOnlyDedupe's store, whose filter
// starts empty.
func (s *Store) WarmDedupe(ctx context.Context, timeout time.Duration) (int, error) {
	if s.dedupe == nil || !s.plan.warmDedupe {
		return 0, nil
	}
	if timeout <= 0 {
		return 0, fmt.Errorf("warm the dedupe filter: timeout %s must be positive", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM transactions ORDER BY accepted_at DESC LIMIT $1`, s.dedupe.Config().Capacity)
	if err != nil {
		return 0, fmt.Errorf("warm the dedupe filter: %w", err)
	}
	loaded := 0
	chunk := make([]string, 0, warmChunk)
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		chunk = append(chunk, id)
		if len(chunk) == warmChunk {
			s.dedupe.Add(chunk...)
			loaded, chunk = loaded+len(chunk), chunk[:0]
		}
		return nil
	})
	s.dedupe.Add(chunk...)
	loaded += len(chunk)
	if err != nil {
		return loaded, fmt.Errorf("warm the dedupe filter (%d ids loaded): %w", loaded, err)
	}
	return loaded, nil
}
