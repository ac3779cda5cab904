package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// The users of a sharded ledger (docs/sharding.md): every user lives in
// shard 0 (sign-in, sessions, email keys); its one account lives in the
// user's shard, user id mod N (shard.Layout.Of of the user id), so the
// account is found from the user alone, at sign-in and by a gateway that
// did not sign the user up. A user of shard 0 gets its account in the
// transaction that creates it, as on one ledger; a user of another shard
// gets it from CreateShardAccount in that shard, right after.

// oneLedger is the layout of an unsharded ledger: every user and account in
// this database.
var oneLedger = shard.Layout{Shards: 1}

// CreateUserOfShards is CreateUserWithKey for shard 0 of a ledger split as
// layout: the user is stored here, and its account too when the user's
// shard (layout.Of(user id)) is 0; otherwise the returned user has no
// AccountID (0) and the caller creates the account in the user's shard with
// that shard's CreateShardAccount. With one shard it is CreateUserWithKey.
// An account created here whose id does not route to shard 0 (the database
// was not numbered with `migrate --shard 0/N`) is refused: nothing is
// stored.
func (s *Store) CreateUserOfShards(ctx context.Context, email, emailKey, passwordHash string, layout shard.Layout) (ledger.User, error) {
	if err := layout.Validate(); err != nil {
		return ledger.User{}, fmt.Errorf("create user: %w", err)
	}
	return s.createUser(ctx, email, &emailKey, passwordHash, layout)
}

// UserByEmailKeyOfShards is UserByEmailKey for shard 0 of a sharded ledger:
// the user is found whether or not its account is in this database; its
// AccountID is 0 when it is not (the account is in the user's shard:
// UserAccount there).
func (s *Store) UserByEmailKeyOfShards(ctx context.Context, emailKey, email string) (ledger.User, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var user ledger.User
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.email, u.password_hash, COALESCE(a.id, 0)
		FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.kind = 'user'
		WHERE u.email_key = $1 OR (u.email_key IS NULL AND u.email = $2)
		ORDER BY u.email_key IS NULL LIMIT 1`, emailKey, email).
		Scan(&user.ID, &user.Email, &user.PasswordHash, &user.AccountID)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.User{}, ledger.Errorf(ledger.CodeNotFound, "no such user")
	}
	if err != nil {
		return ledger.User{}, fmt.Errorf("find user: %w", err)
	}
	return user, nil
}

// UserAccount returns the id of userID's account in this database; none is
// CodeAccountNotFound.
func (s *Store) UserAccount(ctx context.Context, userID int64) (int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var accountID int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM accounts WHERE user_id = $1 AND kind = 'user'`, userID).Scan(&accountID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ledger.Errorf(ledger.CodeAccountNotFound, "user %d has no account here", userID)
	}
	if err != nil {
		return 0, fmt.Errorf("find the account of user %d: %w", userID, err)
	}
	return accountID, nil
}

// checkNumbering refuses an account id created in shard index of layout
// that routes to another shard: the database numbers its accounts for
// another layout (or for one ledger), and the account would be looked for
// in the wrong shard by every process.
func checkNumbering(layout shard.Layout, index int, accountID int64) error {
	if got := layout.Of(accountID); got != index {
		return fmt.Errorf("account %d created in shard %d routes to shard %d of %d: number the shard's accounts with `ledgerproof migrate --shard %d/%d`",
			accountID, index, got, layout.Shards, index, layout.Shards)
	}
	return nil
}
