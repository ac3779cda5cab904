package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Record is one command read from a partition of the commands topic.
type Record struct {
	Partition int32
	Offset    int64
	Command   ledger.Command
}

// Batch is a run of records from one partition, in offset order.
type Batch struct {
	Topic     string
	Partition int32
	Records   []Record
}

// BatchResult says what applying a batch did.
type BatchResult struct {
	// Outcomes holds the outcome of every command of the batch that names a
	// transaction, including duplicates (their outcome is the stored one),
	// so a waiting gateway can be woken whichever copy it sent.
	Outcomes []ledger.OutcomeNotice
	// Applied counts commands that produced a new transaction row (settled
	// or rejected); Duplicates counts commands whose key already had one.
	Applied, Duplicates int
	// Settled counts the applied commands that settled (the rest were
	// rejected).
	Settled int
	// AlreadyApplied counts records below the stored offset: a batch
	// redelivered after a crash or a rebalance, skipped whole.
	AlreadyApplied int
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
// drops commands whose transaction already exists (exactly-once by key),
// locks every touched account in id order (no deadlocks between workers),
// checks overdrafts sequentially in offset order, writes double-entry
// postings and balances, and stores the partition's next offset. Either all
// of it commits or none of it does, so a worker killed at any instant leaves
// the partition at a consistent offset. A store opened with seeded bugs
// applies as its applyPlan says instead (seeded.go).
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
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var result BatchResult
	var err error
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
	if err != nil {
		return BatchResult{}, fmt.Errorf("apply batch of partition %d at offset %d: %w", batch.Partition, batch.Records[0].Offset, err)
	}
	return result, nil
}

// applyWithOffset is the reference design: offset, postings and balances in
// one transaction.
func (s *Store) applyWithOffset(ctx context.Context, batch Batch) (BatchResult, error) {
	var result BatchResult
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
		writes, err := s.applyRecords(ctx, tx, records, &result)
		if err != nil {
			return err
		}
		writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
		if err := writes.send(ctx, tx, batch.Partition); err != nil {
			return err
		}
		result.BalanceVersions = writes.versions
		// Everything is written and nothing committed: a worker dying here
		// must leave no trace of the batch, which is delivered again.
		crash.Hit(crash.MidBatch)
		return nil
	})
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
		writes, err := s.applyRecords(ctx, tx, records, &result)
		if err != nil {
			return err
		}
		return writes.send(ctx, tx, batch.Partition)
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
		writes, err := s.applyRecords(ctx, tx, records, &result)
		if err != nil {
			return err
		}
		return writes.send(ctx, tx, batch.Partition)
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
				writes, err := s.applyRecords(groupContext, tx, chunk, &result)
				if err != nil {
					return err
				}
				writes.setOffset(batch.Topic, batch.Partition, result.NextOffset)
				writes.offsetOnlyForward = true
				return writes.send(groupContext, tx, batch.Partition)
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

// applyRecords applies records in offset order inside tx: it drops commands
// whose transaction exists, locks the touched accounts, decides each command
// against the in-memory balances, and returns the rows to write. It fills
// result's outcomes, counters and balances.
func (s *Store) applyRecords(ctx context.Context, tx pgx.Tx, records []Record, result *BatchResult) (*batchWrites, error) {
	// Exactly-once by key: look up every transaction id of the batch.
	existing := map[string]ledger.OutcomeNotice{}
	if s.plan.dedupeByKey {
		ids := make([]string, 0, len(records))
		for _, record := range records {
			ids = append(ids, record.Command.TransactionID)
		}
		rows, err := tx.Query(ctx, `SELECT id::text, status, reason, fingerprint FROM transactions WHERE id = ANY($1::uuid[])`, ids)
		if err != nil {
			return nil, fmt.Errorf("look up keys: %w", err)
		}
		var notice ledger.OutcomeNotice
		var status, reason string
		if _, err := pgx.ForEachRow(rows, []any{&notice.TransactionID, &status, &reason, &notice.Fingerprint}, func() error {
			notice.Status, notice.Reason = ledger.Status(status), ledger.Code(reason)
			existing[notice.TransactionID] = notice
			return nil
		}); err != nil {
			return nil, fmt.Errorf("look up keys: %w", err)
		}
	}

	// Lock every touched user account in id order.
	accountIDs := make([]int64, 0, 2*len(records))
	seen := map[int64]bool{}
	for _, record := range records {
		for _, id := range []int64{record.Command.SourceAccountID, record.Command.DestinationAccountID} {
			if id != ledger.ExternalAccountID && !seen[id] {
				seen[id] = true
				accountIDs = append(accountIDs, id)
			}
		}
	}
	sort.Slice(accountIDs, func(i, j int) bool { return accountIDs[i] < accountIDs[j] })
	accounts := make(map[int64]*accountState, len(accountIDs))
	query := `SELECT id, user_id, balance FROM accounts WHERE id = ANY($1::bigint[]) AND kind = 'user' ORDER BY id`
	if s.plan.lockAccounts {
		query += ` FOR UPDATE`
	}
	rows, err := tx.Query(ctx, query, accountIDs)
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

	// Apply sequentially in offset order, in memory.
	writes := &batchWrites{}
	for _, record := range records {
		command := record.Command
		if stored, ok := existing[command.TransactionID]; ok {
			result.Duplicates++
			result.Outcomes = append(result.Outcomes, stored)
			continue
		}
		outcome := decide(command, accounts)
		if outcome.Status == ledger.StatusSettled {
			source, destination := accounts[command.SourceAccountID], accounts[command.DestinationAccountID]
			var sourceAfter, destinationAfter *int64
			if source != nil {
				source.balance -= command.AmountMinor
				source.touched = true
				sourceAfter = &source.balance
			}
			if destination != nil {
				destination.balance += command.AmountMinor
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
		result.Outcomes = append(result.Outcomes, notice)
		result.Applied++
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

// loadCachedBalances is ledger.BugTrustCacheBalance: the overdraft check
// will read each account's cached balance, as it was when the batch began,
// instead of the locked row. An account the cache does not hold, or a cache
// that does not answer, falls back to the row.
func (s *Store) loadCachedBalances(ctx context.Context, accounts map[int64]*accountState, accountIDs []int64) {
	cached, err := s.cachedBalances(ctx, accountIDs)
	if err != nil {
		return
	}
	for id, balance := range cached {
		if account, ok := accounts[id]; ok {
			account.cachedBalance, account.hasCachedBalance = balance, true
		}
	}
}

// decide returns the outcome of one command against the current in-memory
// balances: the overdraft and ownership checks happen here, in offset order.
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
	// versions is the last posting id written per account, after send.
	versions map[int64]int64

	// The partition's next offset, written when offsetTopic is set.
	offsetTopic string
	offsetNext  int64
	// offsetOnlyForward keeps a higher stored offset (parallel chunks).
	offsetOnlyForward bool
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
			FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
				$8::text[], $9::text[], $10::text[], $12::bigint[], $13::timestamptz[])
				AS t(id, user_id, key, kind, source, destination, amount, status, reason, fingerprint, kafka_offset, accepted_at)`,
			w.ids, w.userIDs, w.keys, w.kinds, w.sources, w.destinations, w.amounts, w.statuses, w.reasons,
			w.fingerprints, partition, w.offsets, w.acceptedAts)
	}
	if len(w.postingTransactions) > 0 {
		postingsAt = pipeline.Len()
		pipeline.Queue(`INSERT INTO postings (transaction_id, account_id, amount, balance_after)
			SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[])
			RETURNING account_id, id`,
			w.postingTransactions, w.postingAccounts, w.postingAmounts, w.postingBalances)
	}
	if len(w.balanceIDs) > 0 {
		pipeline.Queue(`UPDATE accounts SET balance = v.balance
			FROM unnest($1::bigint[], $2::bigint[]) AS v(id, balance) WHERE accounts.id = v.id`,
			w.balanceIDs, w.balances)
	}
	return pipeline, postingsAt
}
