package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// NumberAccountsForShard makes the ledger create account ids of its shard
// only (shard.Layout.Sequence: first, first+step, ...), so that every id it
// creates routes back to it and no two shards create the same id. Run at
// startup, before signups, by whoever starts the shard; safe to run again.
// A ledger already holding a user account of another shard is refused.
// With one shard it leaves today's numbering (1, 2, 3...) as it is.
func (s *Store) NumberAccountsForShard(ctx context.Context, layout shard.Layout, index int) error {
	first, step, err := layout.Sequence(index)
	if err != nil {
		return err
	}
	if step == 1 {
		return nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var foreign int64
	var maxID int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE id % $1 <> $2), COALESCE(max(id), 0) FROM accounts WHERE kind = 'user'`,
		step, first%step).Scan(&foreign, &maxID); err != nil {
		return fmt.Errorf("number accounts for shard %d: %w", index, err)
	}
	if foreign > 0 {
		return fmt.Errorf("number accounts for shard %d of %d: %d account(s) of other shards already stored", index, layout.Shards, foreign)
	}
	next := first
	if maxID >= next {
		next = maxID + step - (maxID-first)%step
	}
	// DDL takes no parameters; both numbers are computed integers.
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`ALTER SEQUENCE accounts_id_seq INCREMENT BY %d RESTART WITH %d`, step, next)); err != nil {
		return fmt.Errorf("number accounts for shard %d: %w", index, err)
	}
	return nil
}

// CreateShardAccount creates the account of a user of shard 0 in this
// shard (balance 0), or returns the one it already has: a signup retried
// after a fault, or run again by another gateway, creates one account. An
// account id above ledger.MaxUserAccounts is refused with CodeUnavailable
// (nothing is stored), as CreateUser refuses it.
func (s *Store) CreateShardAccount(ctx context.Context, userID int64) (int64, error) {
	if userID <= 0 {
		return 0, fmt.Errorf("create shard account: user id %d", userID)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var accountID int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO accounts (user_id, kind) VALUES ($1, 'user')
			ON CONFLICT (user_id) WHERE kind = 'user' DO NOTHING RETURNING id`, userID).Scan(&accountID)
		if errors.Is(err, pgx.ErrNoRows) {
			return tx.QueryRow(ctx, `SELECT id FROM accounts WHERE user_id = $1 AND kind = 'user'`, userID).Scan(&accountID)
		}
		if err != nil {
			return err
		}
		if accountID > ledger.MaxUserAccounts {
			return errAccountLimit
		}
		return nil
	})
	if errors.Is(err, errAccountLimit) {
		return 0, ledger.Errorf(ledger.CodeUnavailable, "the ledger holds its maximum number of accounts")
	}
	if err != nil {
		return 0, fmt.Errorf("create shard account of user %d: %w", userID, err)
	}
	return accountID, nil
}
