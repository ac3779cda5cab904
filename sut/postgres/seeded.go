package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// offsetCommit is where ApplyBatch stores a partition's next offset relative
// to the postings it covers.
type offsetCommit int

const (
	// offsetWithPostings is the reference design: the offset is written in
	// the same transaction as the postings, so a batch is applied exactly
	// once whatever instant the worker dies at.
	offsetWithPostings offsetCommit = iota
	// offsetBeforePostings (ledger.BugOffsetBeforePostings) commits the
	// offset in a first transaction and the postings in a second: a crash or
	// a failure between them loses the batch.
	offsetBeforePostings
	// offsetAfterPostings (ledger.BugSkipDedupe) commits the postings first
	// and the offset in a second transaction, at least once: a crash or a
	// failure between them redelivers the batch, which only the key dedupe
	// could absorb.
	offsetAfterPostings
	// offsetPerChunk (ledger.BugConcurrentPartition) cuts the batch into
	// chunks applied by parallel transactions, each raising the offset to
	// its own end.
	offsetPerChunk
)

// concurrentPartitionChunks is how many parallel transactions
// ledger.BugConcurrentPartition cuts a batch into (at most; fewer for a
// shorter batch).
const concurrentPartitionChunks = 4

// applyPlan is how ApplyBatch applies a batch. The zero bug set gives the
// reference design; newApplyPlan is the one place each worker bug is
// switched on by name.
type applyPlan struct {
	offsetCommit offsetCommit
	// dedupeByKey drops commands whose transaction already exists.
	dedupeByKey bool
	// keyCollisions looks each command's (user, key) up too and sets aside
	// a command whose key names another transaction. It needs the unique
	// index on (user_id, idempotency_key), which skip-dedupe and
	// no-idempotency drop.
	keyCollisions bool
	// derivedIDs sets aside a command whose transaction id is not derived
	// from its user and key. A system without idempotency by key
	// (no-idempotency) draws fresh ids and has no such check.
	derivedIDs bool
	// lockAccounts reads the touched accounts FOR UPDATE.
	lockAccounts bool
	// chunks is how many parallel transactions apply one batch.
	chunks int
	// trustCachedBalance makes the overdraft check read the cached balance.
	trustCachedBalance bool
	// outboxAfterCommit writes a batch's outbox rows in a second
	// transaction after the batch's commit (ledger.BugOutboxOutsideTx).
	outboxAfterCommit bool
	// assertNoOverdraft panics before committing a negative balance. A bug
	// that makes overdrafts possible on purpose turns the assertion off so
	// the auditor, not a crash loop, sees the overdraft.
	assertNoOverdraft bool
	// bloomOnly trusts the Bloom filter's negatives as the last word: no
	// retry with the exact lookup when the ledger refuses a batch (the bug
	// that sets it also drops the keys that would refuse it).
	bloomOnly bool
	// warmDedupe fills the Bloom filter from the ledger at start
	// (Store.WarmDedupe); off, the filter starts empty.
	warmDedupe bool
	// skipDailyLimitCheck counts the day's debits without checking the
	// daily limit (ledger.BugLimitRace).
	skipDailyLimitCheck bool
}

func newApplyPlan(bugs ledger.Bugs) applyPlan {
	plan := applyPlan{offsetCommit: offsetWithPostings, dedupeByKey: true, keyCollisions: true, derivedIDs: true,
		lockAccounts: true, chunks: 1, assertNoOverdraft: true, warmDedupe: true}
	for _, bug := range bugs {
		switch bug {
		case ledger.BugSkipDedupe:
			plan.dedupeByKey = false
			plan.keyCollisions = false
			plan.offsetCommit = offsetAfterPostings
		case ledger.BugNoIdempotency:
			// A gateway bug; the worker's store is told of it too, since
			// the system it belongs to has no idempotency by key at all.
			plan.keyCollisions = false
			plan.derivedIDs = false
		case ledger.BugReadModifyWriteWithoutLock:
			plan.lockAccounts = false
		case ledger.BugOffsetBeforePostings:
			plan.offsetCommit = offsetBeforePostings
		case ledger.BugConcurrentPartition:
			plan.offsetCommit = offsetPerChunk
			plan.chunks = concurrentPartitionChunks
		case ledger.BugTrustCacheBalance:
			plan.trustCachedBalance = true
			plan.assertNoOverdraft = false
		case ledger.BugBloomOnlyDedupe:
			// The filter alone decides: its negatives are never checked,
			// and it starts empty. With no unique key left, the key
			// collision lookup has nothing to protect either.
			plan.bloomOnly = true
			plan.warmDedupe = false
			plan.keyCollisions = false
		case ledger.BugLimitRace:
			plan.skipDailyLimitCheck = true
		case ledger.BugOutboxOutsideTx:
			plan.outboxAfterCommit = true
		}
	}
	return plan
}

// seededSchemaChanges are the constraints a bug's system would not have.
// The reference schema's constraints are its last line of defence: with them
// a seeded duplicate or overdraft would only be refused by Postgres, and
// ApplyBatch would set the command aside as an apply_error dead letter (a
// lost command, not a wrong ledger). A system that
// relies on the mechanism the bug breaks has no such constraint, and the
// auditor must see what it would store: two settled transactions for one
// client key, or a negative balance.
var seededSchemaChanges = map[ledger.Bug][]string{
	// Two effects of one command share its transaction id and key: the
	// primary key and the unique key go; a plain index keeps lookups by id
	// fast. Migration 004 dropped the postings' foreign key that needs the
	// primary key; it is dropped here too for a schema from before it.
	ledger.BugSkipDedupe: {
		dropConstraints("postings", "contype = 'f' AND confrelid = 'transactions'::regclass"),
		dropConstraints("transactions", "contype IN ('p', 'u')"),
		`CREATE INDEX IF NOT EXISTS transactions_by_id ON transactions (id)`,
	},
	// Every retry has a fresh transaction id and the client's key: only the
	// unique key goes.
	ledger.BugNoIdempotency: {
		dropConstraints("transactions", "contype = 'u'"),
	},
	// The overdraft check is the application's only guard.
	ledger.BugTrustCacheBalance: {
		dropConstraints("accounts", "contype = 'c' AND pg_get_constraintdef(oid) LIKE '%balance >= 0%'"),
	},
	// The Bloom filter is the only dedupe: like skip-dedupe, neither key
	// is left to refuse a second row of one transaction.
	ledger.BugBloomOnlyDedupe: {
		dropConstraints("postings", "contype = 'f' AND confrelid = 'transactions'::regclass"),
		dropConstraints("transactions", "contype IN ('p', 'u')"),
		`CREATE INDEX IF NOT EXISTS transactions_by_id ON transactions (id)`,
	},
	// The settler relies on its offsets alone: the unique transaction id of
	// its history (migration 006) goes.
	ledger.BugSettlementNoDedupe: {
		`DROP INDEX IF EXISTS settlement_history_transaction`,
		`CREATE INDEX IF NOT EXISTS settlement_history_by_transaction ON settlement_history (transaction_id)`,
	},
}

// dropConstraints drops the constraints of table that match condition (a
// predicate on pg_constraint), whatever Postgres named them.
func dropConstraints(table, condition string) string {
	return `DO $$ DECLARE c record; BEGIN
		FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = '` + table + `'::regclass AND ` + condition + ` LOOP
			EXECUTE format('ALTER TABLE ` + table + ` DROP CONSTRAINT %I', c.conname);
		END LOOP; END $$`
}

// seededSchemaLock is the advisory lock that serialises PrepareSeededBugs
// across processes starting at once.
const seededSchemaLock = 7_311_001

// PrepareSeededBugs removes, once and for good, the schema constraints the
// store's seeded bugs need gone (see seededSchemaChanges); with no such bug
// it does nothing. Gateways and workers call it at start. The change is
// permanent for this database: start the next correct run on a fresh stack.
func (s *Store) PrepareSeededBugs(ctx context.Context) error {
	var statements []string
	for _, bug := range s.bugs {
		statements = append(statements, seededSchemaChanges[bug]...)
	}
	if len(statements) == 0 {
		return nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, seededSchemaLock); err != nil {
			return err
		}
		for _, statement := range statements {
			if _, err := tx.Exec(ctx, statement); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prepare the schema for seeded bugs %s: %w", s.bugs, err)
	}
	return nil
}
