package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// ShardedLedger is the ledger of one shard's workers (docs/sharding.md):
// they read the whole commands topic in a consumer group of their shard,
// apply the records whose account (ledger.Command.PartitionKey) lives in
// their shard, and move their shard's offset past the others. A transfer
// from their shard to another runs as a saga: the debit and the saga log in
// this shard, the credit (or the cancellation) in the destination's, then
// the finish here. Records that name no account (poison, dead letters) are
// handled by shard 0's workers alone.
//
// A batch is applied in offset order: the records up to a cross-shard
// transfer are one transaction of the batch apply (ApplyBatch, with this
// shard's consumer_offsets row), then the saga runs, then the next run of
// records, whose transaction moves the offset past the saga. A crash
// anywhere redelivers from the stored offset: the records applied are
// skipped by it, and a saga run again finds its stored state (every saga
// step is idempotent) or its stored outcome.
type ShardedLedger struct {
	layout shard.Layout
	index  int
	shards []*Store
	logger *slog.Logger
	// recovery configures the recovery passes (Destinations is set here).
	recovery SagaRecovery
}

// NewShardedLedger is the ledger of shard index of len(shards) shards;
// shards[i] is shard i's store, and shards[index] the one this worker
// applies to. recovery configures RecoverSagas (its Destinations is
// ignored: the shards are). logger may be nil.
func NewShardedLedger(shards []*Store, index int, recovery SagaRecovery, logger *slog.Logger) (*ShardedLedger, error) {
	layout, err := shard.New(len(shards))
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(shards) {
		return nil, fmt.Errorf("sharded ledger: shard %d, want 0 to %d", index, len(shards)-1)
	}
	for i, store := range shards {
		if store == nil {
			return nil, fmt.Errorf("sharded ledger: no store for shard %d", i)
		}
	}
	if logger == nil {
		logger = slog.Default()
	}
	for _, store := range shards {
		store.markSharded(len(shards))
	}
	l := &ShardedLedger{layout: layout, index: index, shards: shards, logger: logger, recovery: recovery}
	l.recovery.Destinations = l.store
	return l, nil
}

// Local is the store of the ledger's own shard.
func (l *ShardedLedger) Local() *Store { return l.shards[l.index] }

// store returns shard i's store, nil for a shard it does not know.
func (l *ShardedLedger) store(i int) *Store {
	if i < 0 || i >= len(l.shards) {
		return nil
	}
	return l.shards[i]
}

// Route is what a shard's worker does with a record.
type Route int

// The routes of a record (ShardedLedger.Route).
const (
	// RouteLocal: applied by this shard's batch apply (including records
	// set aside as dead letters, and commands it rejects).
	RouteLocal Route = iota
	// RouteForeign: another shard's; the offset moves past it.
	RouteForeign
	// RouteSaga: a transfer from this shard to another, run as a saga.
	RouteSaga
)

// Route says what the ledger's shard does with record. A record that names
// no account of a shard (one that cannot be decoded or stored, a command
// whose account is not a positive id) is shard 0's, which sets it aside or
// rejects it, so exactly one shard answers for every record. A transfer
// from this shard to another shard's account is a saga when the batch
// apply would not refuse it on its face (a valid command whose id is
// derived from its user and key); otherwise the batch apply rejects or sets
// it aside here, as on one ledger.
func (l *ShardedLedger) Route(record Record) Route {
	command := record.Command
	owner := 0
	if record.DeadLetter == "" {
		if reason, _ := command.CheckStorable(); reason == "" && command.PartitionKey() > 0 {
			owner = l.layout.Of(command.PartitionKey())
		}
	}
	if owner != l.index {
		return RouteForeign
	}
	if command.Kind != ledger.KindTransfer || command.DestinationAccountID <= 0 || command.SourceAccountID <= 0 ||
		l.layout.Of(command.DestinationAccountID) == l.index || command.Validate() != nil {
		return RouteLocal
	}
	if l.Local().plan.derivedIDs && !command.DerivedTransactionID() {
		return RouteLocal
	}
	return RouteSaga
}

// ApplyBatch applies the batch's records of this shard, in offset order,
// and moves this shard's offset of the partition past every record (its
// own and the others'). It returns, beside what Store.ApplyBatch returns,
// the count of other shards' records (ForeignSkipped) and the sagas run
// (Sagas); the outcome of a saga is in Outcomes once the saga ended
// (completed: settled; compensated: rejected with the destination's
// reason), and the balances it moved in Balances (the destination's too).
// A saga whose destination shard cannot be reached is left in flight, for
// the recovery loop: the partition goes on.
//
// A batch that fails after committing part of itself (a run of records, a
// saga's steps) returns, with the error, what the committed part did (its
// outcomes, balances, daily totals and DailyDebitsLowered; NextOffset as
// committed), so the worker can announce it and refresh the cache: the
// retry finds that part applied and reports it no more.
func (l *ShardedLedger) ApplyBatch(ctx context.Context, batch Batch) (BatchResult, error) {
	if len(batch.Records) == 0 {
		return BatchResult{}, errors.New("apply batch: empty batch")
	}
	local := l.Local()
	result := BatchResult{Balances: map[int64]int64{}}
	var part []Record
	// collisions counts the sagas set aside as key collisions: counted as
	// duplicates, as the batch apply counts its own.
	collisions := 0
	// flush applies the run of records collected so far (with the offset
	// past them), if any.
	flush := func() error {
		if len(part) == 0 {
			return nil
		}
		applied, err := local.ApplyBatch(ctx, Batch{Topic: batch.Topic, Partition: batch.Partition, Records: part})
		if err != nil {
			return err
		}
		result = mergeResults(result, applied)
		part = nil
		return nil
	}
	for _, record := range batch.Records {
		switch l.Route(record) {
		case RouteForeign:
			record.Skip = true
			result.ForeignSkipped++
			part = append(part, record)
		case RouteLocal:
			part = append(part, record)
		case RouteSaga:
			if err := flush(); err != nil {
				return result, err
			}
			ran, err := l.runSaga(ctx, batch.Topic, record)
			var collision *sagaCollision
			if errors.As(err, &collision) {
				// The key reused with another body: set aside as the batch
				// apply sets aside a key collision (counted as a
				// duplicate, no outcome of its own: the waiting gateway is
				// answered when the saga of the key ends, whose fingerprint
				// tells it the key was reused), in the next run's
				// transaction.
				l.logger.Warn("a transfer's key names another command's saga: set aside", "offset", record.Offset, "error", err)
				record.DeadLetter, record.DeadLetterDetail = ledger.DeadLetterKeyCollision, collision.detail
				part = append(part, record)
				collisions++
				continue
			}
			var poison *sagaPoison
			if errors.As(err, &poison) {
				// Postgres refuses the record's data before anything was
				// written: it is set aside as the batch apply sets aside
				// such a record, in the next run's transaction.
				l.logger.Warn("saga refused by Postgres: set aside", "offset", record.Offset, "error", err)
				record.DeadLetter, record.DeadLetterDetail = ledger.ApplyErrorReason(poison.state), err.Error()
				part = append(part, record)
				continue
			}
			result = mergeResults(result, ran)
			if err != nil {
				return result, err
			}
			// The next run's transaction moves the offset past the saga
			// (alone, if the saga ends the batch).
			record.Skip = true
			part = append(part, record)
		}
	}
	if err := flush(); err != nil {
		return result, err
	}
	// The saga records carried in the runs were counted as sagas already.
	result.Skipped = result.ForeignSkipped
	result.DeadLettered -= collisions
	result.Duplicates += collisions
	return result, nil
}

// runSaga runs the saga of the transfer of record, unless the shard's
// stored offset is past it (it ran before) or its transaction has an
// outcome already (a copy of it finished): then the stored outcome is the
// answer.
func (l *ShardedLedger) runSaga(ctx context.Context, topic string, record Record) (BatchResult, error) {
	local := l.Local()
	command := record.Command
	result := BatchResult{Balances: map[int64]int64{}, BalanceVersions: map[int64]int64{}, Sagas: map[string]int{}}
	offsets, err := local.NextOffsets(ctx, topic, []int32{record.Partition})
	if err != nil {
		return BatchResult{}, err
	}
	if record.Offset < offsets[record.Partition] {
		// Counted as already applied by the run that carries it.
		return result, nil
	}
	if stored, found, err := local.storedOutcome(ctx, command); err != nil {
		return BatchResult{}, err
	} else if found {
		result.Duplicates++
		result.Sagas[SagaDuplicate]++
		result.Outcomes = append(result.Outcomes, stored)
		return result, nil
	}
	if command.AcceptedAt.IsZero() {
		// As the batch apply stores it: a record without the time is no
		// reason to stall the partition.
		command.AcceptedAt = time.Unix(0, 0).UTC()
	}
	saga := SagaFor(command, l.layout.Of(command.DestinationAccountID), record.Partition, record.Offset)
	debit, logged, err := local.sagaDebit(ctx, saga)
	if err != nil {
		return BatchResult{}, poisonOr(err)
	}
	if debit.State == SagaKeyCollision {
		return BatchResult{}, &sagaCollision{detail: fmt.Sprintf("user %d's key %q names the saga %s of another command (amount %d to account %d)",
			command.UserID, command.IdempotencyKey, saga.ID, logged.AmountMinor, logged.DestinationAccountID)}
	}
	// A saga logged by a copy of the command resumes from the logged
	// fields, as the recovery does.
	saga = logged
	result.moved(debit)
	if debit.DailyDebited > 0 {
		result.DailyDebits = map[DailyDebitKey]int64{{UserID: saga.UserID, Day: debit.Day}: debit.DailyDebited}
	}
	var finish SagaStep
	switch debit.State {
	case SagaDuplicate:
		// A row stored since the look-up above (the gateway's soft
		// refusal): its outcome is the answer.
		stored, found, err := local.storedOutcome(ctx, command)
		if err != nil {
			return BatchResult{}, err
		}
		if !found {
			return BatchResult{}, fmt.Errorf("saga %s: the debit found a row of the transfer, the look-up none", saga.ID)
		}
		result.Duplicates++
		result.Sagas[SagaDuplicate]++
		result.Outcomes = append(result.Outcomes, stored)
		return result, nil
	case SagaRefused:
		// Nothing was written: the transfer is rejected here, as the
		// batch apply rejects a transfer it cannot pay.
		if err := local.recordSagaRefusal(ctx, record, debit.Reason); err != nil {
			return BatchResult{}, poisonOr(err)
		}
		result.Applied++
		result.Sagas[SagaRefused]++
		result.Outcomes = append(result.Outcomes, sagaNotice(command, SagaStep{State: SagaRefused, Reason: debit.Reason}))
		return result, nil
	case SagaDebited:
		// The saga is in flight: a worker dying here leaves it debited,
		// its command's offset not moved; the restarted worker resumes it
		// (the command redelivered) or its recovery does.
		crash.Hit(crash.MidSaga)
		decision, err := l.store(saga.DestinationShard).SagaCredit(ctx, saga)
		if err != nil {
			// The destination shard is down: the saga stays in flight
			// (compensating it blind could race a credit), and the
			// recovery loop finishes it once the shard answers.
			l.logger.Warn("saga left in flight: the destination shard did not decide", "saga", saga.ID,
				"destination_shard", saga.DestinationShard, "error", err)
			result.Sagas[SagaDebited]++
			return result, nil
		}
		result.moved(decision)
		if finish, err = local.SagaFinish(ctx, saga.ID, decision); err != nil {
			// The debit and the decision are committed: their balances
			// are the caller's to refresh.
			return result, err
		}
		result.moved(finish)
		result.Applied++
	default:
		// Logged by an earlier copy and ended since: its transaction row
		// was read above unless it ended meanwhile; read the outcome now.
		finish = debit
		result.Duplicates++
	}
	result.Sagas[finish.State]++
	if finish.State == SagaCompleted {
		result.Settled++
	}
	result.lowered(local, saga, finish)
	result.Outcomes = append(result.Outcomes, sagaNotice(command, finish))
	return result, nil
}

// sagaCollision is a transfer whose saga id is logged for another command
// (SagaKeyCollision): the record is set aside as the batch apply sets aside
// a key collision, and nothing moves.
type sagaCollision struct{ detail string }

func (c *sagaCollision) Error() string { return c.detail }

// sagaPoison is a saga's first write refused by Postgres for the record's
// data (isolatable: a data exception, a check or NOT NULL constraint),
// before anything of the saga was stored: every retry would be refused the
// same, so the record is set aside rather than stall its partition.
type sagaPoison struct {
	state string
	err   error
}

func (p *sagaPoison) Error() string { return p.err.Error() }
func (p *sagaPoison) Unwrap() error { return p.err }

// poisonOr returns err as a sagaPoison when Postgres refused the record's
// data, else err.
func poisonOr(err error) error {
	if state, ok := isolatable(err); ok {
		return &sagaPoison{state: state, err: err}
	}
	return err
}

// moved records the balance a saga step moved, if it moved one.
func (r *BatchResult) moved(step SagaStep) {
	if step.AccountID == 0 {
		return
	}
	if step.BalanceVersion >= r.BalanceVersions[step.AccountID] {
		r.Balances[step.AccountID] = step.Balance
		r.BalanceVersions[step.AccountID] = step.BalanceVersion
	}
}

// lowered records the user's day a compensation lowered (SagaFinish, when
// the store counts daily debits and the step refunded now).
func (r *BatchResult) lowered(source *Store, saga Saga, finish SagaStep) {
	if finish.State == SagaCompensated && finish.AccountID != 0 && source.countsDailyDebits() {
		r.DailyDebitsLowered = append(r.DailyDebitsLowered, DailyDebitKey{UserID: saga.UserID, Day: ledger.DebitDay(saga.AcceptedAt)})
	}
}

// sagaNotice is the outcome of a saga's transfer for the waiting gateways:
// settled when completed, rejected with the reason otherwise.
func sagaNotice(command ledger.Command, step SagaStep) ledger.OutcomeNotice {
	outcome := ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusRejected, Reason: step.Reason}
	if step.State == SagaCompleted {
		outcome = ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusSettled}
	}
	return ledger.OutcomeNotice{Outcome: outcome, Fingerprint: command.Fingerprint}
}

// storedOutcome reads the outcome stored for command's transaction id, or
// for its user's key (a key stored under another id: the batch apply would
// set the command aside as a key collision, so it is answered as that
// transaction's duplicate).
func (s *Store) storedOutcome(ctx context.Context, command ledger.Command) (ledger.OutcomeNotice, bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var notice ledger.OutcomeNotice
	var status, reason string
	err := s.pool.QueryRow(ctx, `SELECT id::text, status, reason, fingerprint FROM transactions
		WHERE id = $1::uuid OR (user_id = $2 AND idempotency_key = $3) ORDER BY id = $1::uuid DESC LIMIT 1`,
		command.TransactionID, command.UserID, command.IdempotencyKey).Scan(&notice.TransactionID, &status, &reason, &notice.Fingerprint)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.OutcomeNotice{}, false, nil
	}
	if err != nil {
		return ledger.OutcomeNotice{}, false, fmt.Errorf("look up transaction %s: %w", command.TransactionID, err)
	}
	notice.Status, notice.Reason = ledger.Status(status), ledger.Code(reason)
	return notice, true, nil
}

// recordSagaRefusal stores a transfer whose saga debit was refused as a
// rejected transaction at its Kafka position, as the batch apply stores a
// transfer it rejects. A copy stored first (a redelivery) is kept.
func (s *Store) recordSagaRefusal(ctx context.Context, record Record, reason ledger.Code) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	command := record.Command
	acceptedAt := command.AcceptedAt
	if acceptedAt.IsZero() {
		acceptedAt = time.Unix(0, 0).UTC()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
		destination_account_id, amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'rejected', $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`,
		command.TransactionID, command.UserID, command.IdempotencyKey, string(command.Kind), command.SourceAccountID,
		command.DestinationAccountID, command.AmountMinor, string(reason), command.Fingerprint, record.Partition, record.Offset, acceptedAt)
	if err != nil {
		return fmt.Errorf("saga %s: record the refusal: %w", command.TransactionID, err)
	}
	return nil
}

// RecoverSagas runs one recovery pass over the shard's saga log
// (ResumeSagas): it finishes the sagas left in flight past the timeout, and
// returns their outcomes and the balances they moved, for the worker to
// announce and cache as a batch's, and Sagas counting them by state.
func (l *ShardedLedger) RecoverSagas(ctx context.Context) (BatchResult, error) {
	resumed, err := ResumeSagas(ctx, l.Local(), l.recovery)
	result := BatchResult{Balances: map[int64]int64{}, BalanceVersions: map[int64]int64{}, Sagas: map[string]int{}}
	for _, saga := range resumed {
		result.moved(saga.Decision)
		result.moved(saga.Finish)
		result.lowered(l.Local(), saga.Saga, saga.Finish)
		result.Sagas[saga.Finish.State]++
		command := ledger.Command{TransactionID: saga.Saga.ID, Fingerprint: saga.Saga.Fingerprint}
		result.Outcomes = append(result.Outcomes, sagaNotice(command, saga.Finish))
	}
	return result, err
}
