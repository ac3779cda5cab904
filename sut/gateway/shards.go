package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// A sharded ledger (docs/sharding.md): the accounts are split across N
// Postgres databases by account id (shard.Layout.Of). Users, sessions and
// email keys stay in shard 0, Store's database. The gateway chooses a new
// user's shard as user id mod N (the layout's rule applied to the user id:
// users are numbered 1, 2, 3... in shard 0, so signups spread evenly), and
// creates the user's account there; as the rule needs nothing but the user
// id, sign-in finds the account in that shard, on any gateway. A session
// names its account, so every request reads and writes that account's
// shard:
//
//   - the account's balance (GET /v1/accounts/{id}): the account's shard;
//   - a transaction's row: the shard of the command's key account
//     (ledger.Command.PartitionKey: the source of a withdrawal or a
//     transfer, the destination of a deposit), where its worker writes it
//     (a cross-shard transfer's saga writes it in the source's shard when
//     it ends). The key account of every command a user may send is the
//     user's own account (parseCommand), so the idempotency check, the
//     waits, the status by id (GET /v1/transactions/{id}) and the soft
//     refusals all go to the shard of the caller's account;
//   - "is the ledger empty" (markKeysComplete): every shard.
//
// With one shard (no Dependencies.Shards) every read and write goes to
// Store, as before sharding.

// ShardStore is what the gateway needs of one shard of a sharded ledger
// (postgres.Store).
type ShardStore interface {
	Account(ctx context.Context, id int64) (ledger.Account, error)
	Transaction(ctx context.Context, id string) (ledger.Transaction, error)
	LedgerEmpty(ctx context.Context) (bool, error)
	Ping(ctx context.Context) error
	// RecordRejection stores a soft refusal (Rejections).
	RecordRejection(ctx context.Context, command ledger.Command, reason ledger.Code) (ledger.Transaction, error)
	// UserAccount is the id of the user's account in this shard
	// (CodeAccountNotFound: none).
	UserAccount(ctx context.Context, userID int64) (int64, error)
	// CreateShardAccount creates the user's account in this shard, or
	// returns the one it has: a repeated call creates nothing more.
	CreateShardAccount(ctx context.Context, userID int64) (int64, error)
}

// ShardUsers is what the gateway needs of shard 0 to sign users up and in
// when the accounts are split (postgres.Store).
type ShardUsers interface {
	// CreateUserOfShards stores the user, and its account when the user's
	// shard is 0 (else AccountID is 0).
	CreateUserOfShards(ctx context.Context, email, emailKey, passwordHash string, layout shard.Layout) (ledger.User, error)
	// UserByEmailKeyOfShards finds the user; AccountID is 0 when its
	// account is not in shard 0.
	UserByEmailKeyOfShards(ctx context.Context, emailKey, email string) (ledger.User, error)
}

// validateShards checks the sharding dependencies against config.
func validateShards(config Config, dependencies Dependencies) (shard.Layout, error) {
	if len(dependencies.Shards) <= 1 {
		return shard.Layout{Shards: 1}, nil
	}
	layout, err := shard.New(len(dependencies.Shards))
	if err != nil {
		return layout, fmt.Errorf("gateway: %w", err)
	}
	for index, store := range dependencies.Shards {
		if store == nil {
			return layout, fmt.Errorf("gateway: shard %d has no store", index)
		}
	}
	if dependencies.ShardUsers == nil {
		return layout, errors.New("gateway: a sharded ledger needs shard 0's users (ShardUsers)")
	}
	if config.ApplyMode == ApplyModeNaive {
		return layout, errors.New(NaiveWithShardsRefused)
	}
	return layout, nil
}

// NaiveWithShardsRefused is the refusal of the naive apply mode over a
// sharded ledger.
const NaiveWithShardsRefused = "the naive apply mode applies each command in one Postgres transaction, which cannot hold a transfer between shards: a sharded ledger needs the queue apply mode (its workers run cross-shard transfers as sagas)"

// sharded reports whether the ledger's accounts are split across databases.
func (g *Gateway) sharded() bool { return g.layout.Shards > 1 }

// accountStore is what the gateway reads of the shard holding an account.
type accountStore interface {
	Account(ctx context.Context, id int64) (ledger.Account, error)
	Transaction(ctx context.Context, id string) (ledger.Transaction, error)
}

// ledgerOf is the database holding accountID and the transactions it keys:
// Store with one ledger, else the account's shard.
func (g *Gateway) ledgerOf(accountID int64) accountStore {
	if !g.sharded() {
		return g.store
	}
	return g.shards[g.layout.Of(accountID)]
}

// rejectionsOf records the soft refusals of commands keyed by accountID:
// Rejections with one ledger, else the account's shard.
func (g *Gateway) rejectionsOf(accountID int64) Rejections {
	if !g.sharded() {
		return g.rejections
	}
	return g.shards[g.layout.Of(accountID)]
}

// ledgerEmpty reports whether no shard holds a transaction.
func (g *Gateway) ledgerEmpty(ctx context.Context) (bool, error) {
	if !g.sharded() {
		return g.store.LedgerEmpty(ctx)
	}
	for index, store := range g.shards {
		empty, err := store.LedgerEmpty(ctx)
		if err != nil {
			return false, fmt.Errorf("shard %d: %w", index, err)
		}
		if !empty {
			return false, nil
		}
	}
	return true, nil
}

// createUser stores a new user and its account: one transaction with one
// ledger; with shards, the user in shard 0 then (unless the user's shard is
// 0) its account in its shard. A fault between the two leaves a user
// without an account, which its sign-in creates (userWithAccount); the
// signup is answered 503 meanwhile, and a client's retry of it gets
// email_taken, the answer that says an earlier try created the user.
func (g *Gateway) createUser(ctx context.Context, email, emailKey, passwordHash string) (ledger.User, error) {
	if !g.sharded() {
		return g.store.CreateUserWithKey(ctx, email, emailKey, passwordHash)
	}
	user, err := g.shardUsers.CreateUserOfShards(ctx, email, emailKey, passwordHash, g.layout)
	if err != nil {
		return ledger.User{}, err
	}
	if user.AccountID != 0 {
		return user, nil
	}
	if user.AccountID, err = g.createShardAccount(ctx, user.ID); err != nil {
		return ledger.User{}, err
	}
	return user, nil
}

// findUser finds a user by its email key for sign-in, with its account id
// (userWithAccount).
func (g *Gateway) findUser(ctx context.Context, emailKey, email string) (ledger.User, error) {
	if !g.sharded() {
		return g.store.UserByEmailKey(ctx, emailKey, email)
	}
	return g.shardUsers.UserByEmailKeyOfShards(ctx, emailKey, email)
}

// userWithAccount completes a user found by findUser whose account is not
// in shard 0: its id is read from the user's shard, and an account missing
// there (its signup failed after storing the user) is created.
func (g *Gateway) userWithAccount(ctx context.Context, user ledger.User) (ledger.User, error) {
	if user.AccountID != 0 {
		return user, nil
	}
	if !g.sharded() {
		// One ledger creates a user and its account together.
		return ledger.User{}, fmt.Errorf("gateway: user %d has no account", user.ID)
	}
	index := g.layout.Of(user.ID)
	accountID, err := g.shards[index].UserAccount(ctx, user.ID)
	if ledger.ErrorCode(err) == ledger.CodeAccountNotFound {
		accountID, err = g.createShardAccount(ctx, user.ID)
	}
	if err != nil {
		return ledger.User{}, ledger.Errorf(ledger.CodeUnavailable, "find the account of user %d in shard %d: %v", user.ID, index, err)
	}
	if got := g.layout.Of(accountID); got != index {
		return ledger.User{}, g.misnumbered(user.ID, accountID, index)
	}
	user.AccountID = accountID
	return user, nil
}

// createShardAccount creates userID's account in the user's shard (or finds
// the one a failed or concurrent signup created there).
func (g *Gateway) createShardAccount(ctx context.Context, userID int64) (int64, error) {
	index := g.layout.Of(userID)
	accountID, err := g.shards[index].CreateShardAccount(ctx, userID)
	if err != nil {
		if ledger.ErrorCode(err) != ledger.CodeInternal {
			return 0, err // the shard's own refusal (its account limit)
		}
		return 0, ledger.Errorf(ledger.CodeUnavailable, "create the account of user %d in shard %d: %v", userID, index, err)
	}
	if got := g.layout.Of(accountID); got != index {
		return 0, g.misnumbered(userID, accountID, index)
	}
	return accountID, nil
}

// misnumbered is the error of an account a shard numbered for another
// layout: every process would look for it in another shard, so it is
// refused and logged for the operator.
func (g *Gateway) misnumbered(userID, accountID int64, index int) error {
	g.logger.Error("a shard numbers its accounts for another layout: run `ledgerproof migrate --shard I/N` on it",
		"shard", index, "shards", g.layout.Shards, "user_id", userID, "account_id", accountID, "routes_to", g.layout.Of(accountID))
	return ledger.Errorf(ledger.CodeUnavailable, "shard %d numbers its accounts for another layout", index)
}
