package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Record is one command read from a partition of the commands topic.
type Record struct {
	Partition int32
	Offset    int64
	Command   ledger.Command
	// Raw is the record's value as read from the topic, kept with the
	// record if it is set aside as a dead letter. Nil: the JSON encoding of
	// Command is kept instead (a caller that built the command itself).
	Raw []byte
	// DeadLetter, when set, is why the record could not be decoded into a
	// command (the worker's decoder decides): the record is set aside
	// whatever Command holds, naming Command.TransactionID if that is a
	// valid id. DeadLetterDetail says more, for logs.
	DeadLetter       ledger.DeadLetterReason
	DeadLetterDetail string
	// Skip makes the batch move its offset past the record and do nothing
	// else with it: a record another shard's workers apply, or a saga the
	// sharded ledger ran itself (ShardedLedger). Counted in
	// BatchResult.Skipped.
	Skip bool
}

// DeadLetter is a record a batch set aside in the dead_letters table, in
// the transaction that moved the partition's offset past it.
type DeadLetter struct {
	Offset int64
	Reason ledger.DeadLetterReason
	// TransactionID is the transaction the record named, "" when it named
	// no valid one.
	TransactionID string
	// Detail says more about the reason, for logs; it is not stored.
	Detail string
}

// Batch is a run of records from one partition, in offset order.
type Batch struct {
	Topic     string
	Partition int32
	Records   []Record
	// checkKeys makes the apply look every command's (user, key) up in the
	// ledger beside its transaction id, and every id whatever the Bloom
	// filter says (docs/two-tier-dedupe.md). Off at first: with every stored id
	// derived from its user and key, the id lookup finds any stored
	// transaction of the key, and the unique (user_id, idempotency_key)
	// index refuses the rare other (a row stored under another id, such as
	// legacy data); applyIsolating then applies the batch again with it on,
	// and the colliding command is set aside. The second lookup cost every
	// batch an index probe per command (docs/performance.md).
	checkKeys bool
}

// BatchResult says what applying a batch did.
type BatchResult struct {
	// Outcomes holds the outcome of every command of the batch that names a
	// transaction, including duplicates (their outcome is the stored one),
	// so a waiting gateway can be woken whichever copy it sent.
	Outcomes []ledger.OutcomeNotice
	// Applied counts commands that produced a new transaction row (settled
	// or rejected); Duplicates counts commands whose key already had one
	// (the same transaction id, or a key collision).
	Applied, Duplicates int
	// DeadLettered counts the records set aside in dead_letters that no
	// other counter counts (a key collision is set aside too, but counted
	// as a duplicate). Every record of a batch is counted once, in Applied,
	// Duplicates, AlreadyApplied, DeadLettered or Skipped.
	DeadLettered int
	// DeadLetters lists every record the batch set aside, key collisions
	// included, in offset order.
	DeadLetters []DeadLetter
	// Settled counts the applied commands that settled (the rest were
	// rejected).
	Settled int
	// AlreadyApplied counts records below the stored offset: a batch
	// redelivered after a crash or a rebalance, skipped whole.
	AlreadyApplied int
	// Skipped counts the records marked Skip the batch moved its offset
	// past. ShardedLedger counts them apart: ForeignSkipped (records of
	// other shards) and Sagas (the cross-shard transfers it ran).
	Skipped int
	// ForeignSkipped counts, in a ShardedLedger's result, the records of
	// the batch whose account lives in another shard: that shard's workers
	// apply them, this shard's only moves its offset past them.
	ForeignSkipped int
	// Sagas counts, in a ShardedLedger's result, the cross-shard transfers
	// of the batch it ran as sagas, by where they stand after the batch
	// (SagaCompleted, SagaCompensated, SagaFailed, SagaRefused, or
	// SagaDebited: in flight, left to the recovery loop), and by
	// "duplicate" for copies of a transfer that had its outcome already.
	Sagas map[string]int
	// DailyDebitsLowered lists, in a ShardedLedger's result, the users'
	// days whose daily_debits total a compensated saga lowered: the
	// gateways' cached totals, which only grow, must be dropped.
	DailyDebitsLowered []DailyDebitKey
	// Balances holds the new balance of every user account the batch touched.
	Balances map[int64]int64
	// BalanceVersions holds, for each account of Balances, the id of the
	// last posting the batch wrote to it: the version of that balance.
	// Posting ids come from a sequence and are drawn while the account's row
	// is locked, so a later balance of an account always has a higher
	// version, whichever batch's cache update reaches Redis first. Empty
	// under the seeded bugs' apply paths other than the reference one.
	BalanceVersions map[int64]int64
	// NextOffset is the offset stored for the partition after the batch.
	NextOffset int64
	// DailyDebits holds, for every user and UTC day the batch settled a
	// debit of, the day's settled debits after the batch (daily_debits);
	// empty without a daily debit limit.
	DailyDebits map[DailyDebitKey]int64
}

// DailyDebitKey names a user's UTC day (ledger.DebitDay).
type DailyDebitKey struct {
	UserID int64
	Day    time.Time
}

type accountState struct {
	userID  int64
	balance int64
	touched bool
	// cachedBalance, when hasCachedBalance, is what the overdraft check
	// reads instead of balance: only under ledger.BugTrustCacheBalance.
	cachedBalance    int64
	hasCachedBalance bool
}

// available is the balance the overdraft check compares a debit with.
func (a *accountState) available() int64 {
	if a.hasCachedBalance {
		return a.cachedBalance
	}
	return a.balance
}

// ApplyBatch applies a batch of one partition in ONE Postgres transaction:
// it locks the partition's offset row, skips records below the stored offset,
// sets aside in dead_letters the records that cannot name a storable
// transaction (ledger.DeadLetterReason), drops commands whose transaction
// already exists (exactly-once by key), locks every touched account in id
// order (no deadlocks between workers), checks overdrafts and balance limits
// sequentially in offset order, writes double-entry postings and balances,
// and stores the partition's next offset. Either all of it commits or none
// of it does, so a worker killed at any instant leaves the partition at a
// consistent offset. A store opened with seeded bugs applies as its
// applyPlan says instead (seeded.go).
//
// When Postgres refuses the batch with an error a record's data causes
// (SQLSTATE class 22, a check or NOT NULL constraint: see isolatable), at
// most MaxApplyErrorsPerBatch times per call, ApplyBatch finds the record
// by bisection and sets it aside with reason "apply_error: <SQLSTATE>", so
// the partition moves on; the halves then commit one after the other, each
// with its offset. Any other error (connection, timeout, a server shutting
// down, a missing table) is returned: retrying may fix it, and a command is
// never set aside for a fault that is not its own.
func (s *Store) ApplyBatch(ctx context.Context, batch Batch) (BatchResult, error) {
	if len(batch.Records) == 0 {
		return BatchResult{}, errors.New("apply batch: empty batch")
	}
	for i, record := range batch.Records {
		if record.Partition != batch.Partition {
			return BatchResult{}, fmt.Errorf("apply batch: record %d is from partition %d, batch is partition %d", i, record.Partition, batch.Partition)
		}
		if i > 0 && record.Offset <= batch.Records[i-1].Offset {
			return BatchResult{}, fmt.Errorf("apply batch: offsets out of order at %d (%d after %d)", i, record.Offset, batch.Records[i-1].Offset)
		}
	}
	setAside := 0
	result, err := s.applyIsolating(ctx, batch, &setAside)
	if err != nil {
		return BatchResult{}, fmt.Errorf("apply batch of partition %d at offset %d: %w", batch.Partition, batch.Records[0].Offset, err)
	}
	return result, nil
}

// applyIsolating applies batch; when Postgres refuses it with an isolatable
// error, it applies each half in turn (recursively), and a single record
// that is still refused is set aside as a dead letter. Each half commits with
// its own offset, in offset order, so a failure midway leaves a consistent
// prefix applied that the retry skips. A poison record costs about
// 2·log2(batch size) transactions.
//
// setAside counts the records set aside so far in this ApplyBatch: beyond
// MaxApplyErrorsPerBatch the error is returned instead (the partition then
// stalls, visibly: readiness and the audit's liveness name it), because
// many records refused in a row point at the system (a sequence behind, a
// constraint changed), not at each record.
func (s *Store) applyIsolating(ctx context.Context, batch Batch, setAside *int) (BatchResult, error) {
	result, err := s.applyOnce(ctx, batch)
	if !batch.checkKeys && s.lookUpEverything(err) {
		// A key stored under another transaction id, or an id the Bloom
		// filter called new that the ledger has: again, looking every id
		// and key up.
		batch.checkKeys = true
		result, err = s.applyOnce(ctx, batch)
	}
	state, ok := isolatable(err)
	if !ok {
		return result, err
	}
	if len(batch.Records) == 1 {
		if *setAside >= MaxApplyErrorsPerBatch {
			return BatchResult{}, fmt.Errorf("%d records of one batch refused by Postgres already, not setting more aside: %w", *setAside, err)
		}
		*setAside++
		record := batch.Records[0]
		record.DeadLetter, record.DeadLetterDetail = ledger.ApplyErrorReason(state), err.Error()
		result, asideError := s.applyOnce(ctx, Batch{Topic: batch.Topic, Partition: batch.Partition, Records: []Record{record}, checkKeys: batch.checkKeys})
		if asideError != nil {
			return BatchResult{}, fmt.Errorf("set offset %d aside after %w: %w", record.Offset, err, asideError)
		}
		return result, nil
	}
	half := len(batch.Records) / 2
	first, err := s.applyIsolating(ctx, Batch{Topic: batch.Topic, Partition: batch.Partition, Records: batch.Records[:half], checkKeys: batch.checkKeys}, setAside)
	if err != nil {
		return BatchResult{}, err
	}
	second, err := s.applyIsolating(ctx, Batch{Topic: batch.Topic, Partition: batch.Partition, Records: batch.Records[half:], checkKeys: batch.checkKeys}, setAside)
	if err != nil {
		return BatchResult{}, err
	}
	return mergeResults(first, second), nil
}

// MaxApplyErrorsPerBatch bounds the records one ApplyBatch sets aside as
// apply errors.
const MaxApplyErrorsPerBatch = 3

// isolatable reports whether err is Postgres refusing a record's data: a
// data exception (SQLSTATE class 22: a value out of range, a string Postgres
// cannot store), a check constraint (23514) or a NOT NULL column (23502).
// Such an error comes back on every retry, and bisection can pin it on one
// record. A unique key (23505) or a foreign key (23503; none is left on the
// tables the apply writes since migration 004, but a team's copy may keep
// one) is refused for the system's reasons, not the record's: the
// transaction keys are deduplicated before the insert, so a duplicate key
// means a sequence behind after a restore, and a missing referenced row
// means a damaged schema; those are
// retried (the partition stalls, visibly) rather than costing every record
// its effect. Every other error is treated as transient and retried for ever:
// connection failures and timeouts are, and an error of another class (an
// undefined table after a bad deployment, a permission, a read-only server
// during a failover) is no record's fault: setting records aside for it
// would take commands out of the ledger that a fixed system would apply.
// keyConstraint is the unique constraint on (user_id, idempotency_key) of
// transactions (migrations/001_init.sql).
const keyConstraint = "transactions_user_id_idempotency_key_key"

// keyConflict reports whether err is the unique (user_id, idempotency_key)
// constraint refusing a transaction: a key stored under another id.
func keyConflict(err error) bool {
	var pgError *pgconn.PgError
	return errors.As(err, &pgError) && pgError.Code == "23505" && pgError.ConstraintName == keyConstraint
}

func isolatable(err error) (sqlState string, ok bool) {
	var pgError *pgconn.PgError
	if !errors.As(err, &pgError) {
		return "", false
	}
	if strings.HasPrefix(pgError.Code, "22") || pgError.Code == "23514" || pgError.Code == "23502" {
		return pgError.Code, true
	}
	return "", false
}

// mergeResults combines the results of two consecutive parts of a batch.
func mergeResults(first, second BatchResult) BatchResult {
	merged := first
	merged.Outcomes = append(merged.Outcomes, second.Outcomes...)
	merged.Applied += second.Applied
	merged.Duplicates += second.Duplicates
	merged.Settled += second.Settled
	merged.AlreadyApplied += second.AlreadyApplied
	merged.DeadLettered += second.DeadLettered
	merged.Skipped += second.Skipped
	merged.ForeignSkipped += second.ForeignSkipped
	if len(second.Sagas) > 0 && merged.Sagas == nil {
		merged.Sagas = map[string]int{}
	}
	for state, count := range second.Sagas {
		merged.Sagas[state] += count
	}
	merged.DailyDebitsLowered = append(merged.DailyDebitsLowered, second.DailyDebitsLowered...)
	merged.DeadLetters = append(merged.DeadLetters, second.DeadLetters...)
	if merged.Balances == nil {
		merged.Balances = map[int64]int64{}
	}
	for id, balance := range second.Balances {
		merged.Balances[id] = balance
	}
	if len(second.BalanceVersions) > 0 && merged.BalanceVersions == nil {
		merged.BalanceVersions = map[int64]int64{}
	}
	for id, version := range second.BalanceVersions {
		merged.BalanceVersions[id] = max(merged.BalanceVersions[id], version)
	}
	// A user-day's total only grows, and the second half was applied after
	// the first: the larger is the day's total after both.
	if len(second.DailyDebits) > 0 && merged.DailyDebits == nil {
		merged.DailyDebits = map[DailyDebitKey]int64{}
	}
	for key, total := range second.DailyDebits {
		merged.DailyDebits[key] = max(merged.DailyDebits[key], total)
	}
	merged.NextOffset = max(first.NextOffset, second.NextOffset)
	return merged
}

// applyOnce applies batch as the store's plan says, with one attempt.
func (s *Store) applyOnce(ctx context.Context, batch Batch) (BatchResult, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var result BatchResult
	var err error
	defer func() {
		if err == nil {
			s.rememberApplied(result)
		}
	}()
	switch s.plan.offsetCommit {
	case offsetWithPostings:
		result, err = s.applyWithOffset(ctx, batch)
	case offsetBeforePostings:
		result, err = s.applyOffsetFirst(ctx, batch)
	case offsetAfterPostings:
		result, err = s.applyOffsetLast(ctx, batch)
	case offsetPerChunk:
		result, err = s.applyChunksConcurrently(ctx, batch)
	default:
		panic(fmt.Sprintf("apply batch: unknown offset commit %d", s.plan.offsetCommit))
	}
	return result, err
}

// applyWithOffset is the reference design: offset, postings and balances in
// one transaction.
func (s *Store) applyWithOffset(ctx context.Context, batch Batch) (BatchResult, error) {
	var result BatchResult
	var written *batchWrites
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		nextOffset, err := lockOffset(ctx, tx, batch)
		if err != nil {
			return err
		}
		var records []Record
		result, records = unapplied(batch, nextOffset)
		if len(records) == 0 {
			return nil
		}
		writes, err := s.applyRecords(ctx, tx, batch, records, &result)
		if err != nil {
			return err
		}
		writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
		if err := writes.send(ctx, tx, batch.Partition); err != nil {
			return err
		}
		written = writes
		result.BalanceVersions = writes.versions
		// Everything is written and nothing committed: a worker dying here
		// must leave no trace of the batch, which is delivered again.
		crash.Hit(crash.MidBatch)
		return nil
	})
	if err == nil && written != nil && written.outboxAfterCommit {
		err = s.writeOutboxAfterCommit(ctx, batch.Partition, written)
	}
	return result, err
}

// applyOffsetFirst is ledger.BugOffsetBeforePostings: the next offset is
// committed on its own, then the postings. If the second transaction never
// commits (the worker dies, Postgres fails), the retry or the next owner
// starts after the batch: it is lost.
func (s *Store) applyOffsetFirst(ctx context.Context, batch Batch) (BatchResult, error) {
	var result BatchResult
	var records []Record
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		nextOffset, err := lockOffset(ctx, tx, batch)
		if err != nil {
			return err
		}
		result, records = unapplied(batch, nextOffset)
		if len(records) == 0 {
			return nil
		}
		var writes batchWrites
		writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
		return writes.send(ctx, tx, batch.Partition)
	})
	if err != nil || len(records) == 0 {
		return result, err
	}
	s.between(batch.Partition)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		writes, err := s.applyRecords(ctx, tx, batch, records, &result)
		if err != nil {
			return err
		}
		if err := writes.send(ctx, tx, batch.Partition); err != nil {
			return err
		}
		// The batch's crash point, where the correct apply has it: the
		// batch's writes made, their transaction not committed (here the
		// offset's already is).
		crash.Hit(crash.MidBatch)
		return nil
	})
	return result, err
}

// applyOffsetLast is the commit order of ledger.BugSkipDedupe: postings
// first, the offset after, at least once, as a consumer that relies on its
// key dedupe does. If the second transaction never commits, the batch is
// delivered again and, with no dedupe, applied again.
func (s *Store) applyOffsetLast(ctx context.Context, batch Batch) (BatchResult, error) {
	var result BatchResult
	var records []Record
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		nextOffset, err := lockOffset(ctx, tx, batch)
		if err != nil {
			return err
		}
		result, records = unapplied(batch, nextOffset)
		if len(records) == 0 {
			return nil
		}
		writes, err := s.applyRecords(ctx, tx, batch, records, &result)
		if err != nil {
			return err
		}
		if err := writes.send(ctx, tx, batch.Partition); err != nil {
			return err
		}
		// The batch's crash point: its writes made, not committed.
		crash.Hit(crash.MidBatch)
		return nil
	})
	if err != nil || len(records) == 0 {
		return result, err
	}
	s.between(batch.Partition)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var writes batchWrites
		writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
		return writes.send(ctx, tx, batch.Partition)
	})
	return result, err
}

// applyChunksConcurrently is ledger.BugConcurrentPartition: the records
// after the stored offset are cut into chunks applied by parallel
// transactions, each raising the offset to its own end; whichever chunk
// commits first applies its commands first, whatever their offsets.
func (s *Store) applyChunksConcurrently(ctx context.Context, batch Batch) (BatchResult, error) {
	var nextOffset int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		nextOffset, err = lockOffset(ctx, tx, batch)
		return err
	})
	if err != nil {
		return BatchResult{}, err
	}
	merged, records := unapplied(batch, nextOffset)
	if len(records) == 0 {
		return merged, nil
	}
	chunkSize := (len(records) + s.plan.chunks - 1) / s.plan.chunks
	var mutex sync.Mutex
	group, groupContext := errgroup.WithContext(ctx)
	for start := 0; start < len(records); start += chunkSize {
		chunk := records[start:min(start+chunkSize, len(records))]
		group.Go(func() error {
			result := BatchResult{Balances: map[int64]int64{}, NextOffset: chunk[len(chunk)-1].Offset + 1}
			err := pgx.BeginFunc(groupContext, s.pool, func(tx pgx.Tx) error {
				writes, err := s.applyRecords(groupContext, tx, batch, chunk, &result)
				if err != nil {
					return err
				}
				writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
				writes.offsetOnlyForward = true
				if err := writes.send(groupContext, tx, batch.Partition); err != nil {
					return err
				}
				// The batch's crash point, in each chunk's transaction: the
				// chunks that committed first stay.
				crash.Hit(crash.MidBatch)
				return nil
			})
			if err != nil {
				return err
			}
			// Merged in commit order, so the last balance reported for an
			// account is the newest.
			mutex.Lock()
			defer mutex.Unlock()
			merged.Outcomes = append(merged.Outcomes, result.Outcomes...)
			merged.Applied += result.Applied
			merged.Duplicates += result.Duplicates
			merged.Settled += result.Settled
			merged.DeadLettered += result.DeadLettered
			merged.Skipped += result.Skipped
			merged.DeadLetters = append(merged.DeadLetters, result.DeadLetters...)
			for id, balance := range result.Balances {
				merged.Balances[id] = balance
			}
			return nil
		})
	}
	return merged, group.Wait()
}

// between runs the BetweenCommits hook of a split commit.
func (s *Store) between(partition int32) {
	if s.betweenCommits != nil {
		s.betweenCommits(partition)
	}
}

// lockOffset locks the partition's offset row, creating it at 0 if missing,
// and returns the next offset to apply.
func lockOffset(ctx context.Context, tx pgx.Tx, batch Batch) (int64, error) {
	var nextOffset int64
	err := tx.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets WHERE topic = $1 AND partition = $2 FOR UPDATE`,
		batch.Topic, batch.Partition).Scan(&nextOffset)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err = tx.Exec(ctx, `INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, $2, 0)
			ON CONFLICT DO NOTHING`, batch.Topic, batch.Partition); err != nil {
			return 0, fmt.Errorf("create offset row: %w", err)
		}
		err = tx.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets WHERE topic = $1 AND partition = $2 FOR UPDATE`,
			batch.Topic, batch.Partition).Scan(&nextOffset)
	}
	if err != nil {
		return 0, fmt.Errorf("lock offset row: %w", err)
	}
	return nextOffset, nil
}

// unapplied drops the records below the stored offset: applied by an
// earlier batch (a redelivery after a crash, or a zombie worker that lost
// the partition). It returns the result so far and the records to apply.
func unapplied(batch Batch, nextOffset int64) (BatchResult, []Record) {
	result := BatchResult{Balances: map[int64]int64{}, NextOffset: nextOffset}
	records := batch.Records
	for len(records) > 0 && records[0].Offset < nextOffset {
		records = records[1:]
		result.AlreadyApplied++
	}
	if len(records) > 0 {
		result.NextOffset = records[len(records)-1].Offset + 1
	}
	return result, records
}

// userKey is a user's idempotency key: what names one logical request.
type userKey struct {
	userID int64
	key    string
}

// lookUpByID reads the stored transactions of a batch's ids;
// lookUpByIDOrKey also those of its (user, key) pairs, to find key
// collisions (both by index: the primary key, and the unique key).
const (
	lookUpByID = `SELECT id::text, user_id, idempotency_key, status, reason, fingerprint
		FROM transactions WHERE id = ANY($1::text[]::uuid[])`
	lookUpByIDOrKey = lookUpByID + `
		UNION ALL
		SELECT t.id::text, t.user_id, t.idempotency_key, t.status, t.reason, t.fingerprint
		FROM unnest($2::bigint[], $3::text[]) AS k(user_id, idempotency_key)
		JOIN transactions t ON t.user_id = k.user_id AND t.idempotency_key = k.idempotency_key`
)

// applyRecords applies records in offset order inside tx: it sets aside the
// records that cannot name a storable transaction, drops commands whose
// transaction exists, sets aside those whose key names another transaction
// or whose id is not derived from their key, locks the touched accounts,
// decides each command against the in-memory balances, and returns the rows
// to write. It fills result's outcomes, counters, dead letters and balances.
func (s *Store) applyRecords(ctx context.Context, tx pgx.Tx, batch Batch, records []Record, result *BatchResult) (*batchWrites, error) {
	topic := batch.Topic
	lookUpKeys := s.plan.keyCollisions && batch.checkKeys
	writes := &batchWrites{deadLetterTopic: topic, outboxAfterCommit: s.plan.outboxAfterCommit}
	// Records that cannot name a transaction the ledger can store are set
	// aside before anything reads their fields.
	setAside := make([]DeadLetter, len(records))
	live := make([]Record, 0, len(records))
	for i, record := range records {
		if record.Skip {
			continue
		}
		reason, detail := record.DeadLetter, record.DeadLetterDetail
		if reason == "" {
			var err error
			if reason, err = record.Command.CheckStorable(); err != nil {
				detail = err.Error()
			}
		}
		if reason != "" {
			setAside[i] = DeadLetter{Offset: record.Offset, Reason: reason, TransactionID: namedTransaction(record.Command), Detail: detail}
			continue
		}
		live = append(live, record)
	}

	// Exactly-once by key: look up every transaction id of the batch (those
	// the Bloom filter has never seen excepted, when it is on: the ledger's
	// keys are their backstop), and every (user, key) when key collisions
	// are checked.
	existing := map[string]ledger.OutcomeNotice{}
	keys := map[userKey]string{}
	if len(live) > 0 && (s.plan.dedupeByKey || lookUpKeys) {
		ids := make([]string, 0, len(live))
		userIDs := make([]int64, 0, len(live))
		idempotencyKeys := make([]string, 0, len(live))
		filtered := s.dedupe != nil && s.plan.dedupeByKey && !batch.checkKeys
		for _, record := range live {
			if filtered && !s.dedupe.MightContain(record.Command.TransactionID) {
				continue
			}
			ids = append(ids, record.Command.TransactionID)
			userIDs = append(userIDs, record.Command.UserID)
			idempotencyKeys = append(idempotencyKeys, record.Command.IdempotencyKey)
		}
		if len(ids) > 0 {
			query, arguments := lookUpByID, []any{planWithValues, ids}
			if lookUpKeys {
				query, arguments = lookUpByIDOrKey, []any{planWithValues, ids, userIDs, idempotencyKeys}
			}
			rows, err := tx.Query(ctx, query, arguments...)
			if err != nil {
				return nil, fmt.Errorf("look up keys: %w", err)
			}
			var notice ledger.OutcomeNotice
			var stored userKey
			var status, reason string
			if _, err := pgx.ForEachRow(rows, []any{&notice.TransactionID, &stored.userID, &stored.key, &status, &reason, &notice.Fingerprint}, func() error {
				notice.Status, notice.Reason = ledger.Status(status), ledger.Code(reason)
				if s.plan.dedupeByKey {
					existing[notice.TransactionID] = notice
				}
				if s.plan.keyCollisions {
					keys[stored] = notice.TransactionID
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("look up keys: %w", err)
			}
		}
		if filtered {
			// Counted per attempt: a batch applied again counts again.
			s.countLookups(len(live), ids, existing)
		}
	}

	// On a shard of several, an id logged in the saga log without its
	// transactions row yet is a transfer in flight (docs/sharding.md): a
	// copy of its command is its duplicate (answered when the saga ends),
	// and another command under its id (the key reused with another body)
	// a key collision; neither may be applied under the saga's id. The
	// transactions' keys cannot refuse it, so every id is looked up, the
	// Bloom filter's answer notwithstanding. A single ledger has no sagas
	// and skips the lookup.
	inFlight, err := s.lookUpSagasInFlight(ctx, tx, live, existing)
	if err != nil {
		return nil, err
	}

	// Lock every touched user account in id order.
	accountIDs := make([]int64, 0, 2*len(live))
	seen := map[int64]bool{}
	for _, record := range live {
		for _, id := range []int64{record.Command.SourceAccountID, record.Command.DestinationAccountID} {
			if id != ledger.ExternalAccountID && !seen[id] {
				seen[id] = true
				accountIDs = append(accountIDs, id)
			}
		}
	}
	sort.Slice(accountIDs, func(i, j int) bool { return accountIDs[i] < accountIDs[j] })
	accounts := make(map[int64]*accountState, len(accountIDs))
	if len(accountIDs) > 0 {
		query := `SELECT id, user_id, balance FROM accounts WHERE id = ANY($1::bigint[]) AND kind = 'user' ORDER BY id`
		if s.plan.lockAccounts {
			query += ` FOR UPDATE`
		}
		rows, err := tx.Query(ctx, query, planWithValues, accountIDs)
		if err != nil {
			return nil, fmt.Errorf("lock accounts: %w", err)
		}
		var accountID int64
		var state accountState
		if _, err := pgx.ForEachRow(rows, []any{&accountID, &state.userID, &state.balance}, func() error {
			copied := state
			accounts[accountID] = &copied
			return nil
		}); err != nil {
			return nil, fmt.Errorf("lock accounts: %w", err)
		}
		if s.plan.trustCachedBalance {
			s.loadCachedBalances(ctx, accounts, accountIDs)
		}
	}

	daily, err := s.loadDailyDebits(ctx, tx, live)
	if err != nil {
		return nil, err
	}

	// Apply sequentially in offset order, in memory.
	setAsideRecord := func(record Record, letter DeadLetter) {
		writes.addDeadLetter(record, letter)
		result.DeadLetters = append(result.DeadLetters, letter)
	}
	for i, record := range records {
		if record.Skip {
			result.Skipped++
			continue
		}
		if setAside[i].Reason != "" {
			setAsideRecord(record, setAside[i])
			result.DeadLettered++
			continue
		}
		command := record.Command
		if stored, ok := existing[command.TransactionID]; ok {
			result.Duplicates++
			result.Outcomes = append(result.Outcomes, stored)
			continue
		}
		if fingerprint, ok := inFlight[command.TransactionID]; ok {
			result.Duplicates++
			if fingerprint != command.Fingerprint {
				setAsideRecord(record, DeadLetter{Offset: record.Offset, Reason: ledger.DeadLetterKeyCollision, TransactionID: command.TransactionID,
					Detail: fmt.Sprintf("user %d's key %q names the saga %s of another command, in flight", command.UserID, command.IdempotencyKey, command.TransactionID)})
			}
			continue
		}
		key := userKey{userID: command.UserID, key: command.IdempotencyKey}
		if other, ok := keys[key]; ok && other != command.TransactionID {
			// Another transaction has the key: this record is a duplicate
			// of it and has no effect. Stored, it would break the unique
			// key; retried, it would block the partition.
			setAsideRecord(record, DeadLetter{Offset: record.Offset, Reason: ledger.DeadLetterKeyCollision, TransactionID: command.TransactionID,
				Detail: fmt.Sprintf("user %d's key %q already names transaction %s", command.UserID, command.IdempotencyKey, other)})
			result.Duplicates++
			continue
		}
		if s.plan.derivedIDs && !command.DerivedTransactionID() {
			setAsideRecord(record, DeadLetter{Offset: record.Offset, Reason: ledger.DeadLetterTransactionIDMismatch, TransactionID: command.TransactionID,
				Detail: fmt.Sprintf("user %d's key %q derives transaction %s", command.UserID, command.IdempotencyKey, ledger.TransactionIDFor(command.UserID, command.IdempotencyKey))})
			result.DeadLettered++
			continue
		}
		outcome := decide(command, accounts)
		outcome = s.checkDailyLimit(command, outcome, daily)
		if outcome.Status == ledger.StatusSettled {
			source, destination := accounts[command.SourceAccountID], accounts[command.DestinationAccountID]
			var sourceAfter, destinationAfter *int64
			if source != nil {
				source.balance = mustMove(ledger.Debit(source.balance, command.AmountMinor))
				source.touched = true
				sourceAfter = &source.balance
			}
			if destination != nil {
				destination.balance = mustMove(ledger.Credit(destination.balance, command.AmountMinor))
				destination.touched = true
				destinationAfter = &destination.balance
			}
			writes.addPosting(command.TransactionID, command.SourceAccountID, -command.AmountMinor, sourceAfter)
			writes.addPosting(command.TransactionID, command.DestinationAccountID, command.AmountMinor, destinationAfter)
			result.Settled++
		}
		writes.addTransaction(record, outcome)
		notice := ledger.OutcomeNotice{Outcome: outcome, Fingerprint: command.Fingerprint}
		if s.plan.dedupeByKey {
			existing[command.TransactionID] = notice
		}
		if s.plan.keyCollisions {
			keys[key] = command.TransactionID
		}
		result.Outcomes = append(result.Outcomes, notice)
		result.Applied++
	}
	for key, day := range daily {
		if day.changed {
			writes.addDailyDebit(key, day.debited)
			if result.DailyDebits == nil {
				result.DailyDebits = map[DailyDebitKey]int64{}
			}
			result.DailyDebits[key] = day.debited
		}
	}
	for _, id := range accountIDs {
		account, ok := accounts[id]
		if !ok {
			continue
		}
		if account.balance < 0 && s.plan.assertNoOverdraft {
			// decide() never lets a balance go negative; if it did, the
			// batch must not commit.
			panic(fmt.Sprintf("apply batch: account %d would end at %d", id, account.balance))
		}
		if account.touched {
			writes.balanceIDs = append(writes.balanceIDs, id)
			writes.balances = append(writes.balances, account.balance)
			result.Balances[id] = account.balance
		}
	}
	return writes, nil
}

// mustMove returns a balance Credit or Debit computed; decide() has checked
// that it fits, so a refusal here is a bug and the batch must not commit.
func mustMove(balance int64, ok bool) int64 {
	if !ok {
		panic(fmt.Sprintf("apply: decide() settled a command that takes a balance (%d) beyond its limits", balance))
	}
	return balance
}

// namedTransaction is the transaction id a command names, "" when it is not
// a valid one (the dead_letters column is a uuid).
func namedTransaction(command ledger.Command) string {
	if ledger.ValidTransactionID(command.TransactionID) {
		return command.TransactionID
	}
	return ""
}

type cachedBalancesKey struct{}

// WithCachedBalances hands ApplyBatch, under ledger.BugTrustCacheBalance,
// the cached balances of the batch's accounts as the worker read them when
// the batch began, before it dropped them from the cache for the gateways'
// soft checks (the worker's invalidateBalances); without them the store
// reads the cache itself, and finds those balances gone. Ignored without
// the bug.
func WithCachedBalances(ctx context.Context, balances map[int64]int64) context.Context {
	return context.WithValue(ctx, cachedBalancesKey{}, balances)
}

// loadCachedBalances is ledger.BugTrustCacheBalance: the overdraft check
// will read each account's cached balance, as it was when the batch began,
// instead of the locked row. An account the cache does not hold, or a cache
// that does not answer, falls back to the row.
func (s *Store) loadCachedBalances(ctx context.Context, accounts map[int64]*accountState, accountIDs []int64) {
	cached, given := ctx.Value(cachedBalancesKey{}).(map[int64]int64)
	if !given {
		var err error
		if cached, err = s.cachedBalances(ctx, accountIDs); err != nil {
			return
		}
	}
	for id, balance := range cached {
		if account, ok := accounts[id]; ok {
			account.cachedBalance, account.hasCachedBalance = balance, true
		}
	}
}

// decide returns the outcome of one command against the current in-memory
// balances: the ownership, overdraft and balance-limit checks happen here, in
// offset order.
func decide(command ledger.Command, accounts map[int64]*accountState) ledger.Outcome {
	reject := func(code ledger.Code) ledger.Outcome {
		return ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusRejected, Reason: code}
	}
	if err := command.Validate(); err != nil {
		return reject(ledger.ErrorCode(err))
	}
	source, destination := accounts[command.SourceAccountID], accounts[command.DestinationAccountID]
	if command.Kind != ledger.KindDeposit && source == nil {
		return reject(ledger.CodeAccountNotFound)
	}
	if command.Kind != ledger.KindWithdrawal && destination == nil {
		return reject(ledger.CodeAccountNotFound)
	}
	// Deposits go to the depositor's own account; withdrawals and transfers
	// leave only the owner's account. The gateway checks this too; the
	// worker re-checks because the topic is an input like any other.
	switch command.Kind {
	case ledger.KindDeposit:
		if destination.userID != command.UserID {
			return reject(ledger.CodeForbidden)
		}
	default:
		if source.userID != command.UserID {
			return reject(ledger.CodeForbidden)
		}
		if source.available() < command.AmountMinor {
			return reject(ledger.CodeInsufficientFunds)
		}
	}
	// Checked arithmetic: no balance may pass ledger.MaxBalanceMinor nor
	// overflow. A debit can only overflow from a balance already far below
	// zero, which only a seeded bug lets happen.
	if source != nil {
		if _, ok := ledger.Debit(source.balance, command.AmountMinor); !ok {
			return reject(ledger.CodeBalanceLimit)
		}
	}
	if destination != nil {
		if _, ok := ledger.Credit(destination.balance, command.AmountMinor); !ok {
			return reject(ledger.CodeBalanceLimit)
		}
	}
	return ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusSettled}
}

// batchWrites collects a batch's rows as columns so each table is written by
// one statement over unnest(), whatever the batch size.
type batchWrites struct {
	ids, keys, kinds, statuses, reasons, fingerprints []string
	userIDs, sources, destinations, amounts, offsets  []int64
	acceptedAts                                       []time.Time

	postingTransactions []string
	postingAccounts     []int64
	postingAmounts      []int64
	postingBalances     []*int64

	balanceIDs, balances []int64

	// The daily_debits rows to write (absolute values).
	dailyUsers   []int64
	dailyDays    []time.Time
	dailyDebited []int64
	// versions is the last posting id written per account, after send.
	versions map[int64]int64

	// Dead letters, written to deadLetterTopic's rows of dead_letters.
	deadLetterTopic    string
	deadOffsets        []int64
	deadRaws           [][]byte
	deadReasons        []string
	deadTransactionIDs []*string

	// The partition's next offset, written when offsetTopic is set.
	offsetTopic string
	offsetNext  int64
	// offsetOnlyForward keeps a higher stored offset (parallel chunks).
	offsetOnlyForward bool
	// outboxAfterCommit leaves the settled transactions' outbox rows out
	// of the batch's statements (ledger.BugOutboxOutsideTx, outbox.go).
	outboxAfterCommit bool
}

// setOffset makes send store the partition's next offset too.
func (w *batchWrites) setOffset(topic string, partition int32, nextOffset int64) {
	w.offsetTopic, w.offsetNext = topic, nextOffset
}

func (w *batchWrites) addTransaction(record Record, outcome ledger.Outcome) {
	command := record.Command
	w.ids = append(w.ids, command.TransactionID)
	w.userIDs = append(w.userIDs, command.UserID)
	w.keys = append(w.keys, command.IdempotencyKey)
	w.kinds = append(w.kinds, string(command.Kind))
	w.sources = append(w.sources, command.SourceAccountID)
	w.destinations = append(w.destinations, command.DestinationAccountID)
	w.amounts = append(w.amounts, command.AmountMinor)
	w.statuses = append(w.statuses, string(outcome.Status))
	w.reasons = append(w.reasons, string(outcome.Reason))
	w.fingerprints = append(w.fingerprints, command.Fingerprint)
	w.offsets = append(w.offsets, record.Offset)
	acceptedAt := command.AcceptedAt
	if acceptedAt.IsZero() {
		acceptedAt = time.Unix(0, 0).UTC()
	}
	w.acceptedAts = append(w.acceptedAts, acceptedAt)
}

// addDeadLetter sets record aside. Its raw value is kept as read (the JSON
// encoding of its command when the caller gave none).
func (w *batchWrites) addDeadLetter(record Record, letter DeadLetter) {
	raw := record.Raw
	if raw == nil {
		// A ledger.Command always encodes.
		raw, _ = json.Marshal(record.Command)
	}
	var transactionID *string
	if letter.TransactionID != "" {
		id := letter.TransactionID
		transactionID = &id
	}
	w.deadOffsets = append(w.deadOffsets, record.Offset)
	w.deadRaws = append(w.deadRaws, raw)
	w.deadReasons = append(w.deadReasons, string(letter.Reason))
	w.deadTransactionIDs = append(w.deadTransactionIDs, transactionID)
}

func (w *batchWrites) addPosting(transactionID string, accountID, amount int64, balanceAfter *int64) {
	w.postingTransactions = append(w.postingTransactions, transactionID)
	w.postingAccounts = append(w.postingAccounts, accountID)
	w.postingAmounts = append(w.postingAmounts, amount)
	if balanceAfter != nil {
		value := *balanceAfter
		balanceAfter = &value
	}
	w.postingBalances = append(w.postingBalances, balanceAfter)
}

// send writes everything, and the partition's next offset if set, in one
// pipelined round trip. It records the last posting id per account in
// w.versions.
func (w *batchWrites) send(ctx context.Context, tx pgx.Tx, partition int32) error {
	pipeline, postingsAt := w.queue(partition)
	if w.offsetTopic != "" {
		statement := `UPDATE consumer_offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2`
		if w.offsetOnlyForward {
			statement = `UPDATE consumer_offsets SET next_offset = GREATEST(next_offset, $3), updated_at = now() WHERE topic = $1 AND partition = $2`
		}
		pipeline.Queue(statement, w.offsetTopic, partition, w.offsetNext)
	}
	if pipeline.Len() == 0 {
		return nil
	}
	if err := w.sendPipeline(ctx, tx, pipeline, postingsAt); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	return nil
}

// sendPipeline sends the statements and reads their results in order; the
// postings' statement (at postingsAt, -1 for none) returns the ids written.
func (w *batchWrites) sendPipeline(ctx context.Context, tx pgx.Tx, pipeline *pgx.Batch, postingsAt int) error {
	results := tx.SendBatch(ctx, pipeline)
	for i := 0; i < pipeline.Len(); i++ {
		if i != postingsAt {
			if _, err := results.Exec(); err != nil {
				results.Close()
				return err
			}
			continue
		}
		rows, err := results.Query()
		if err != nil {
			results.Close()
			return err
		}
		w.versions = make(map[int64]int64, len(w.balanceIDs))
		var accountID, postingID int64
		if _, err := pgx.ForEachRow(rows, []any{&accountID, &postingID}, func() error {
			if postingID > w.versions[accountID] {
				w.versions[accountID] = postingID
			}
			return nil
		}); err != nil {
			results.Close()
			return err
		}
	}
	return results.Close()
}

// sendWithoutOffset writes rows that carry no Kafka position (ApplyOne).
func (w *batchWrites) sendWithoutOffset(ctx context.Context, tx pgx.Tx) error {
	pipeline, postingsAt := w.queue(-1)
	if err := w.sendPipeline(ctx, tx, pipeline, postingsAt); err != nil {
		return fmt.Errorf("write transaction: %w", err)
	}
	return nil
}

// queue builds the pipeline of the rows' statements and says where the
// postings' statement is (-1: none).
func (w *batchWrites) queue(partition int32) (*pgx.Batch, int) {
	pipeline, postingsAt := &pgx.Batch{}, -1
	if len(w.ids) > 0 {
		pipeline.Queue(`INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
			destination_account_id, amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at)
			SELECT id, user_id, key, kind, source, destination, amount, status, reason, fingerprint, $11, kafka_offset, accepted_at
			FROM unnest($1::text[]::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
				$8::text[], $9::text[], $10::text[], $12::bigint[], $13::timestamptz[])
				AS t(id, user_id, key, kind, source, destination, amount, status, reason, fingerprint, kafka_offset, accepted_at)`,
			w.ids, w.userIDs, w.keys, w.kinds, w.sources, w.destinations, w.amounts, w.statuses, w.reasons,
			w.fingerprints, partition, w.offsets, w.acceptedAts)
	}
	if len(w.ids) > 0 && !w.outboxAfterCommit {
		// The outbox rows of the settled transactions, in the batch's
		// transaction: published if and only if settled (outbox.go).
		w.queueOutbox(pipeline)
	}
	if len(w.postingTransactions) > 0 {
		postingsAt = pipeline.Len()
		pipeline.Queue(`INSERT INTO postings (transaction_id, account_id, amount, balance_after)
			SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::bigint[], $4::bigint[])
			RETURNING account_id, id`,
			w.postingTransactions, w.postingAccounts, w.postingAmounts, w.postingBalances)
	}
	if len(w.deadOffsets) > 0 {
		// A batch delivered again (the split commits of the seeded bugs)
		// finds its dead letters there already.
		pipeline.Queue(`INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, raw, reason, transaction_id)
			SELECT $1, $2, kafka_offset, raw, reason, transaction_id
			FROM unnest($3::bigint[], $4::bytea[], $5::text[], $6::text[]::uuid[]) AS d(kafka_offset, raw, reason, transaction_id)
			ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`,
			w.deadLetterTopic, partition, w.deadOffsets, w.deadRaws, w.deadReasons, w.deadTransactionIDs)
	}
	if len(w.dailyUsers) > 0 {
		pipeline.Queue(`INSERT INTO daily_debits (user_id, day, debited_minor)
			SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[])
			ON CONFLICT (user_id, day) DO UPDATE SET debited_minor = EXCLUDED.debited_minor`,
			w.dailyUsers, w.dailyDays, w.dailyDebited)
	}
	if len(w.balanceIDs) > 0 {
		pipeline.Queue(`UPDATE accounts SET balance = v.balance
			FROM unnest($1::bigint[], $2::bigint[]) AS v(id, balance) WHERE accounts.id = v.id`,
			w.balanceIDs, w.balances)
	}
	return pipeline, postingsAt
}

// lookUpSagasInFlight returns the fingerprints of the live records' ids
// logged in the saga log whose transactions row is not stored yet (sagas in
// flight), skipping the ids found in existing. Nil on a single ledger, or
// under a plan without dedupe by key.
func (s *Store) lookUpSagasInFlight(ctx context.Context, tx pgx.Tx, live []Record, existing map[string]ledger.OutcomeNotice) (map[string]string, error) {
	if !s.sharded() || !s.plan.dedupeByKey || len(live) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(live))
	for _, record := range live {
		if _, stored := existing[record.Command.TransactionID]; !stored {
			ids = append(ids, record.Command.TransactionID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT s.id::text, s.fingerprint FROM sagas s
		WHERE s.id = ANY($1::text[]::uuid[]) AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = s.id)`, planWithValues, ids)
	if err != nil {
		return nil, fmt.Errorf("look up sagas: %w", err)
	}
	inFlight := map[string]string{}
	var id, fingerprint string
	if _, err := pgx.ForEachRow(rows, []any{&id, &fingerprint}, func() error {
		inFlight[id] = fingerprint
		return nil
	}); err != nil {
		return nil, fmt.Errorf("look up sagas: %w", err)
	}
	return inFlight, nil
}
