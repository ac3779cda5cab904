package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// ApplyOne applies a single command in its own transaction, the classic
// design: lock both account rows (in id order), check, write, commit. It is
// the naive baseline the batched pipeline is measured against, and the
// reference system's one-transaction-per-request mode. Commands applied this
// way carry no Kafka position: partition and offset are stored as -1. A
// command whose transaction exists already returns the stored outcome, or an
// error with ledger.CodeIdempotencyKeyReused when the stored one has another
// fingerprint.
func (s *Store) ApplyOne(ctx context.Context, command ledger.Command) (ledger.Outcome, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var outcome ledger.Outcome
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var status, reason, fingerprint string
		err := tx.QueryRow(ctx, `SELECT status, reason, fingerprint FROM transactions WHERE id = $1::uuid`, command.TransactionID).Scan(&status, &reason, &fingerprint)
		if err == nil {
			// The key was applied already: by this request's earlier copy
			// (same fingerprint, the stored outcome is the answer) or by
			// another request that used the same key (never applied twice,
			// and this one is refused).
			if fingerprint != command.Fingerprint {
				return ledger.Errorf(ledger.CodeIdempotencyKeyReused, "idempotency key %q was already used with a different request", command.IdempotencyKey)
			}
			outcome = ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.Status(status), Reason: ledger.Code(reason)}
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		ids := []int64{}
		for _, id := range []int64{command.SourceAccountID, command.DestinationAccountID} {
			if id != ledger.ExternalAccountID {
				ids = append(ids, id)
			}
		}
		if len(ids) == 2 && ids[0] > ids[1] {
			ids[0], ids[1] = ids[1], ids[0]
		}
		accounts := map[int64]*accountState{}
		rows, err := tx.Query(ctx, `SELECT id, user_id, balance FROM accounts WHERE id = ANY($1::bigint[]) AND kind = 'user'
			ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return err
		}
		var id int64
		var state accountState
		if _, err := pgx.ForEachRow(rows, []any{&id, &state.userID, &state.balance}, func() error {
			copied := state
			accounts[id] = &copied
			return nil
		}); err != nil {
			return err
		}
		outcome = decide(command, accounts)
		var writes batchWrites
		// The daily debit limit, as ApplyBatch checks it, under the lock of
		// the user's account just taken.
		daily, err := s.loadDailyDebits(ctx, tx, []Record{{Command: command}})
		if err != nil {
			return err
		}
		outcome = s.checkDailyLimit(command, outcome, daily)
		for key, day := range daily {
			if day.changed {
				writes.addDailyDebit(key, day.debited)
			}
		}
		if outcome.Status == ledger.StatusSettled {
			for _, leg := range []struct {
				account int64
				amount  int64
			}{{command.SourceAccountID, -command.AmountMinor}, {command.DestinationAccountID, command.AmountMinor}} {
				var after *int64
				if account := accounts[leg.account]; account != nil {
					// decide() checked the limits; the arithmetic is checked
					// again.
					if leg.amount < 0 {
						account.balance = mustMove(ledger.Debit(account.balance, -leg.amount))
					} else {
						account.balance = mustMove(ledger.Credit(account.balance, leg.amount))
					}
					after = &account.balance
					writes.balanceIDs = append(writes.balanceIDs, leg.account)
					writes.balances = append(writes.balances, account.balance)
				}
				writes.addPosting(command.TransactionID, leg.account, leg.amount, after)
			}
		}
		writes.addTransaction(Record{Partition: -1, Offset: -1, Command: command}, outcome)
		return writes.sendWithoutOffset(ctx, tx)
	})
	if err != nil {
		return ledger.Outcome{}, fmt.Errorf("apply %s: %w", command.TransactionID, err)
	}
	return outcome, nil
}
