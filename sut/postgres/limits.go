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

// dailyDebit is one user's UTC day of debits during a batch: the settled
// total, and whether the batch changed it.
type dailyDebit struct {
	debited int64
	changed bool
}

// countsDailyDebits reports whether the store keeps daily_debits: with a
// limit only (ledger.BugLimitRace, too, counts only when a limit is set, and
// then without checking it).
func (s *Store) countsDailyDebits() bool {
	return s.dailyDebitLimit > 0
}

// loadDailyDebits reads the daily_debits rows of the users and days the
// batch's debits count against. The caller has locked the debited accounts
// (one account per user, and every debit locks its source account), which
// serialises every writer of a user's rows: no row lock of its own is
// needed. Nil when the store counts no daily debits.
func (s *Store) loadDailyDebits(ctx context.Context, tx pgx.Tx, live []Record) (map[DailyDebitKey]*dailyDebit, error) {
	if !s.countsDailyDebits() {
		return nil, nil
	}
	daily := map[DailyDebitKey]*dailyDebit{}
	var users []int64
	var days []time.Time
	for _, record := range live {
		command := record.Command
		if !ledger.CountsAgainstDailyLimit(command.Kind) {
			continue
		}
		key := DailyDebitKey{UserID: command.UserID, Day: ledger.DebitDay(command.AcceptedAt)}
		if _, seen := daily[key]; !seen {
			daily[key] = &dailyDebit{}
			users = append(users, key.UserID)
			days = append(days, key.Day)
		}
	}
	if len(users) == 0 {
		return daily, nil
	}
	rows, err := tx.Query(ctx, `SELECT d.user_id, d.day, d.debited_minor FROM daily_debits d
		JOIN unnest($1::bigint[], $2::date[]) AS k(user_id, day) ON d.user_id = k.user_id AND d.day = k.day`, planWithValues, users, days)
	if err != nil {
		return nil, fmt.Errorf("read daily debits: %w", err)
	}
	var key DailyDebitKey
	var debited int64
	if _, err := pgx.ForEachRow(rows, []any{&key.UserID, &key.Day, &debited}, func() error {
		key.Day = ledger.DebitDay(key.Day)
		if day, ok := daily[key]; ok {
			day.debited = debited
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read daily debits: %w", err)
	}
	return daily, nil
}

// checkDailyLimit is the hard daily debit limit: a debit that decide()
// settled is rejected with ledger.CodeDailyLimitExceeded when the user's
// settled debits of its day plus its amount would pass the limit; a settled
// debit is counted. Under ledger.BugLimitRace the debit is only counted.
func (s *Store) checkDailyLimit(command ledger.Command, outcome ledger.Outcome, daily map[DailyDebitKey]*dailyDebit) ledger.Outcome {
	if daily == nil || outcome.Status != ledger.StatusSettled || !ledger.CountsAgainstDailyLimit(command.Kind) {
		return outcome
	}
	day, ok := daily[DailyDebitKey{UserID: command.UserID, Day: ledger.DebitDay(command.AcceptedAt)}]
	if !ok {
		panic(fmt.Sprintf("apply: the daily debits of user %d for %s were not read", command.UserID, command.AcceptedAt))
	}
	// debited and the amount are each at most far below int64's range
	// (amounts are at most ledger.MaxAmountMinor); the comparison is
	// written so it cannot overflow anyway.
	if !s.plan.skipDailyLimitCheck && day.debited > s.dailyDebitLimit-command.AmountMinor {
		return ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusRejected, Reason: ledger.CodeDailyLimitExceeded}
	}
	day.debited += command.AmountMinor
	day.changed = true
	return outcome
}

// addDailyDebit makes send write a user's day total.
func (w *batchWrites) addDailyDebit(key DailyDebitKey, debited int64) {
	w.dailyUsers = append(w.dailyUsers, key.UserID)
	w.dailyDays = append(w.dailyDays, key.Day)
	w.dailyDebited = append(w.dailyDebited, debited)
}

// RecordRejection stores a command the gateway refused on its own (the soft
// balance check, the soft daily limit: docs/limits.md) as a rejected
// transaction with reason, without a Kafka position (partition and offset
// -1, as ApplyOne's rows), so the refusal is as durable as the worker's: a
// retry of the key, or a copy of the command that reaches a worker, finds
// the rejected row (the primary key and the unique key refuse a second
// one). It returns the transaction stored under the command's id: this
// rejection, or the row a copy of the command stored first (which may be
// settled, or another body's: the caller compares fingerprints).
func (s *Store) RecordRejection(ctx context.Context, command ledger.Command, reason ledger.Code) (ledger.Transaction, error) {
	if err := command.Validate(); err != nil {
		return ledger.Transaction{}, fmt.Errorf("record rejection: %w", err)
	}
	if reason == "" {
		return ledger.Transaction{}, errors.New("record rejection: a rejection needs a reason")
	}
	insertContext, cancel := s.withTimeout(ctx)
	defer cancel()
	acceptedAt := command.AcceptedAt
	if acceptedAt.IsZero() {
		acceptedAt = time.Unix(0, 0).UTC()
	}
	// A refusal is stored only when the ledger justifies it: the cached
	// figures the gateway read may be ones the ledger no longer holds, and a
	// stored refusal is final. An overdraft refusal, while the ledger's
	// balance is below the amount (a credit committed, its worker killed
	// before updating the cache, leaves the cached balance low). A
	// daily-limit refusal, while the ledger's settled debits of the day are
	// above limit - amount (a compensated saga lowers them, and a racing
	// cache write or a failed forget leaves the cached total high); never
	// when the store has no limit. Without the row the command is queued and
	// the worker decides.
	justified := `TRUE`
	switch reason {
	case ledger.CodeInsufficientFunds:
		justified = `(SELECT balance FROM accounts WHERE id = $5 AND kind = 'user') < $7`
	case ledger.CodeDailyLimitExceeded:
		justified = `FALSE`
		if s.countsDailyDebits() {
			justified = `COALESCE((SELECT debited_minor FROM daily_debits WHERE user_id = $2 AND day = $11), 0) > $12::bigint - $7`
		}
	}
	insert := `INSERT INTO transactions (id, user_id, idempotency_key, kind, source_account_id,
		destination_account_id, amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, 'rejected', $8, $9, -1, -1, $10
		WHERE ` + justified
	arguments := []any{command.TransactionID, command.UserID, command.IdempotencyKey, string(command.Kind), command.SourceAccountID,
		command.DestinationAccountID, command.AmountMinor, string(reason), command.Fingerprint, acceptedAt}
	if reason == ledger.CodeDailyLimitExceeded && s.countsDailyDebits() {
		arguments = append(arguments, ledger.DebitDay(acceptedAt), s.dailyDebitLimit)
	}
	var tag pgconn.CommandTag
	var err error
	if !s.sharded() {
		// One ledger: one statement, as the justification's figures only
		// grow there between a read and the worker's decision (no saga
		// lowers a day's debits).
		tag, err = s.pool.Exec(insertContext, insert+` ON CONFLICT DO NOTHING`, arguments...)
	} else {
		// A shard of several: nor is a refusal of a transfer whose saga is
		// logged stored (docs/sharding.md): its debit is made and its
		// outcome is the saga's, written when the saga ends; a rejected row
		// first would tell the client a refusal of money that moves. The
		// source account's lock orders this with the saga's debit, which
		// holds it and then looks for a row of the transfer (SagaDebit), and
		// with a compensation lowering the day's debits (SagaFinish, under
		// the same lock): whichever commits first, the other sees it.
		err = pgx.BeginFunc(insertContext, s.pool, func(tx pgx.Tx) error {
			if command.SourceAccountID != ledger.ExternalAccountID {
				if _, err := tx.Exec(insertContext, `SELECT 1 FROM accounts WHERE id = $1 AND kind = 'user' FOR SHARE`, command.SourceAccountID); err != nil {
					return err
				}
			}
			var err error
			tag, err = tx.Exec(insertContext, insert+` AND NOT EXISTS (SELECT 1 FROM sagas WHERE id = $1) ON CONFLICT DO NOTHING`, arguments...)
			return err
		})
	}
	if err != nil {
		return ledger.Transaction{}, fmt.Errorf("record rejection: %w", err)
	}
	stored, err := s.transaction(ctx, command.TransactionID)
	if tag.RowsAffected() == 0 && ledger.ErrorCode(err) == ledger.CodeNotFound {
		return ledger.Transaction{}, ErrRefusalNotJustified
	}
	return stored, err
}

// ErrRefusalNotJustified is RecordRejection's answer to an overdraft
// refusal of a debit the ledger's balance covers, to a daily-limit refusal
// of a debit the ledger's day total leaves room for (or a store with no
// limit), or to a refusal of a transfer whose saga is logged: nothing was
// stored.
var ErrRefusalNotJustified = errors.New("record rejection: the ledger does not justify the refusal; the worker must decide")
