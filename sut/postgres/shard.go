package postgres

import (
	"context"
	"fmt"

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
