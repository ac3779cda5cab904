// Package postgres is the ledger's Postgres adapter: the schema (embedded,
// versioned migrations), users and accounts, and the batch apply that is the
// heart of the worker: one transaction per batch of a partition's commands.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/ledgerproof/ledgerproof/sut/coalesce"
	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures a Store.
type Config struct {
	// URL is a libpq-style connection string. Required.
	URL string
	// MaxConnections caps the pool. Default 16: a worker runs at most a few
	// concurrent batches and a gateway's queries are short; more connections
	// only add lock convoys on a 2-core machine.
	MaxConnections int32
	// ApplicationName names the connections in pg_stat_activity and the
	// server's log (the process name, e.g. worker-0). Default none.
	ApplicationName string
	// QueryTimeout bounds every statement a caller issues without its own
	// deadline. Default 10s.
	QueryTimeout time.Duration
	// SeededBugs are the deliberate mistakes ApplyBatch makes (see
	// seeded.go and docs/seeded-bugs.md). Default none: the correct ledger.
	// Only a process started with the unsafe switch passes any.
	SeededBugs ledger.Bugs
	// CachedBalances reads cached balances of accounts (absent ones are
	// left out). Required with ledger.BugTrustCacheBalance, unused
	// otherwise: the correct ledger never reads the cache.
	CachedBalances func(ctx context.Context, accountIDs []int64) (map[int64]int64, error)
	// BetweenCommits is called, under a bug that splits a batch's commit in
	// two (ledger.BugOffsetBeforePostings, ledger.BugSkipDedupe), after the
	// first commit and before the second, with the batch's partition: the
	// worker's crash injection and the tests hook in here. Default none.
	BetweenCommits func(partition int32)
	// Dedupe, when set, is the first tier of the batch apply's dedupe: a
	// Bloom filter of recent transaction ids (docs/two-tier-dedupe.md).
	// A command whose id it has never seen skips the exact lookup; the
	// ledger's primary key and unique key stay the backstop, and a batch
	// they refuse is applied again with every id looked up. Default nil:
	// every id is looked up. Required with ledger.BugBloomOnlyDedupe.
	Dedupe *dedupe.Filter
	// DailyDebitLimitMinor is the most a user may debit (withdrawals and
	// transfers out) per UTC day, in minor units, checked by ApplyBatch
	// under the lock of the user's account and counted in daily_debits
	// (docs/limits.md), and by ApplyOne the same way. Default 0: no limit.
	DailyDebitLimitMinor int64
	// Shards is the number of shards of the ledger this store is one of
	// (docs/sharding.md). With more than one, the store guards what only
	// sagas need (an id logged in sagas counts as taken; a soft refusal
	// takes the source account's lock and looks at the saga log).
	// NewShardedLedger sets it too. Default 0, as 1: a single ledger, whose
	// statements stay as they were.
	Shards int
}

func (c *Config) applyDefaults() error {
	if c.URL == "" {
		return errors.New("postgres: URL is required")
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 16
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("postgres: MaxConnections %d must be positive", c.MaxConnections)
	}
	if c.Shards < 0 {
		return fmt.Errorf("postgres: Shards %d must not be negative (0 or 1: a single ledger)", c.Shards)
	}
	if c.DailyDebitLimitMinor < 0 {
		return fmt.Errorf("postgres: daily debit limit %d must not be negative (0: no limit)", c.DailyDebitLimitMinor)
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.SeededBugs.Has(ledger.BugTrustCacheBalance) && c.CachedBalances == nil {
		return fmt.Errorf("postgres: seeded bug %s needs CachedBalances", ledger.BugTrustCacheBalance)
	}
	if c.SeededBugs.Has(ledger.BugBloomOnlyDedupe) && c.Dedupe == nil {
		return fmt.Errorf("postgres: seeded bug %s needs a Dedupe filter", ledger.BugBloomOnlyDedupe)
	}
	return nil
}

// Store is the ledger in Postgres.
type Store struct {
	pool         *pgxpool.Pool
	queryTimeout time.Duration
	// transactions coalesces concurrent Transaction lookups into one query
	// per batch: a gateway asks for every money request's key.
	transactions *coalesce.Batcher[string, transactionAnswer]
	// plan is how ApplyBatch applies: the reference design, or the one the
	// seeded bugs make of it.
	plan           applyPlan
	bugs           ledger.Bugs
	cachedBalances func(ctx context.Context, accountIDs []int64) (map[int64]int64, error)
	betweenCommits func(partition int32)
	// dedupe is the Bloom filter of recent ids (nil: none).
	dedupe *dedupe.Filter
	// dailyDebitLimit is Config.DailyDebitLimitMinor.
	dailyDebitLimit int64
	// shards is Config.Shards (raised by NewShardedLedger): read it with
	// sharded.
	shards atomic.Int32
	// outbox is ledger.BugOutboxOutsideTx's queue of outbox rows written
	// after the commit (outbox.go); nil otherwise.
	outbox *deferredOutbox
}

// Open connects to Postgres. It does not migrate; call Migrate first.
func Open(ctx context.Context, config Config) (*Store, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	poolConfig, err := pgxpool.ParseConfig(config.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse URL: %w", err)
	}
	poolConfig.MaxConns = config.MaxConnections
	if config.ApplicationName != "" {
		poolConfig.ConnConfig.RuntimeParams["application_name"] = config.ApplicationName
	}
	if poolConfig.ConnConfig.ConnectTimeout == 0 {
		poolConfig.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	store := &Store{pool: pool, queryTimeout: config.QueryTimeout, plan: newApplyPlan(config.SeededBugs), bugs: config.SeededBugs,
		cachedBalances: config.CachedBalances, betweenCommits: config.BetweenCommits, dedupe: config.Dedupe, dailyDebitLimit: config.DailyDebitLimitMinor}
	store.shards.Store(int32(config.Shards))
	store.transactions = coalesce.New(store.transactionBatch, coalesce.Options{Lanes: 2, Max: 256})
	if store.plan.outboxAfterCommit {
		store.startOutboxFlusher()
	}
	return store, nil
}

// Close releases the pool.
func (s *Store) Close() {
	s.stopOutboxFlusher()
	s.transactions.Close()
	s.pool.Close()
}

// Pool exposes the pool to the audit and the tests of this repository.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks the database answers; used by readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.pool.Ping(ctx)
}

// sharded reports whether the store is one shard of several.
func (s *Store) sharded() bool { return s.shards.Load() > 1 }

// markSharded records that the store is a shard of n.
func (s *Store) markSharded(n int) {
	if int32(n) > s.shards.Load() {
		s.shards.Store(int32(n))
	}
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.queryTimeout)
}

// MigrateWhenReady applies the migrations like Migrate, retrying while it
// fails, until it succeeds or timeout has passed: the database may still be
// starting (compose starts everything at once). It returns the last error.
func MigrateWhenReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := Migrate(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// Migrate brings the schema at url to the newest version. It holds an
// advisory lock, so concurrent callers (several workers starting at once)
// apply each migration once.
func Migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.Background())
	migrator, err := migrate.NewMigrator(ctx, conn, "schema_version")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := migrator.LoadMigrations(files); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if err := migrator.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// errAccountLimit rolls back a signup beyond ledger.MaxUserAccounts.
var errAccountLimit = errors.New("account limit")

// CreateUser stores a new user and its account (balance 0) in one
// transaction, without an email key (as users created before migration 003;
// a gateway computes the key later, BackfillEmailKeys). A taken email is
// CodeEmailTaken; an account id above ledger.MaxUserAccounts is refused with
// CodeUnavailable (nothing is stored). Tests and the benchmark use it; the
// gateway calls CreateUserWithKey.
func (s *Store) CreateUser(ctx context.Context, email, passwordHash string) (ledger.User, error) {
	return s.createUser(ctx, email, nil, passwordHash, oneLedger)
}

// CreateUserWithKey is CreateUser with the email's uniqueness key (the
// gateway's skeleton of the address): an email or a key already taken is
// CodeEmailTaken, whichever user holds it.
func (s *Store) CreateUserWithKey(ctx context.Context, email, emailKey, passwordHash string) (ledger.User, error) {
	return s.createUser(ctx, email, &emailKey, passwordHash, oneLedger)
}

// createUser stores a user and, when layout puts the user in this database's
// shard (shard 0: always with one ledger), its account, in one transaction
// (see CreateUserOfShards).
func (s *Store) createUser(ctx context.Context, email string, emailKey *string, passwordHash string, layout shard.Layout) (ledger.User, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	user := ledger.User{Email: email, PasswordHash: passwordHash}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO users (email, email_key, password_hash) VALUES ($1, $2, $3) RETURNING id`,
			email, emailKey, passwordHash).Scan(&user.ID); err != nil {
			return err
		}
		if layout.Of(user.ID) != 0 {
			return nil // the account is created in the user's shard (CreateShardAccount)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO accounts (user_id, kind) VALUES ($1, 'user') RETURNING id`,
			user.ID).Scan(&user.AccountID); err != nil {
			return err
		}
		// Account ids count the accounts from 1 (with gaps, never fewer):
		// beyond the bound, the sum of maximal balances could overflow.
		if user.AccountID > ledger.MaxUserAccounts {
			return errAccountLimit
		}
		return checkNumbering(layout, 0, user.AccountID)
	})
	if errors.Is(err, errAccountLimit) {
		return ledger.User{}, ledger.Errorf(ledger.CodeUnavailable, "the ledger holds its maximum of %d accounts", ledger.MaxUserAccounts)
	}
	if uniqueViolation(err) {
		return ledger.User{}, ledger.Errorf(ledger.CodeEmailTaken, "a user with this email already exists")
	}
	if err != nil {
		return ledger.User{}, fmt.Errorf("create user: %w", err)
	}
	return user, nil
}

// uniqueViolation reports whether err is Postgres's unique_violation.
func uniqueViolation(err error) bool {
	var pgError *pgconn.PgError
	return errors.As(err, &pgError) && pgError.Code == "23505"
}

// UserByEmail finds a user and its account by its stored email; an unknown
// email is CodeNotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (ledger.User, error) {
	return s.findUser(ctx, `WHERE u.email = $1`, email)
}

// UserByEmailKey finds a user by its email key, or, for a user created
// without one (before migration 003, not yet backfilled), by its stored
// email; an unknown user is CodeNotFound.
func (s *Store) UserByEmailKey(ctx context.Context, emailKey, email string) (ledger.User, error) {
	return s.findUser(ctx, `WHERE u.email_key = $1 OR (u.email_key IS NULL AND u.email = $2)
		ORDER BY u.email_key IS NULL LIMIT 1`, emailKey, email)
}

func (s *Store) findUser(ctx context.Context, where string, arguments ...any) (ledger.User, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var user ledger.User
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.email, u.password_hash, a.id
		FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'user' `+where, arguments...).
		Scan(&user.ID, &user.Email, &user.PasswordHash, &user.AccountID)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.User{}, ledger.Errorf(ledger.CodeNotFound, "no such user")
	}
	if err != nil {
		return ledger.User{}, fmt.Errorf("find user: %w", err)
	}
	return user, nil
}

// Account reads a user account; an unknown id is CodeAccountNotFound.
func (s *Store) Account(ctx context.Context, id int64) (ledger.Account, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	account := ledger.Account{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT user_id, balance FROM accounts WHERE id = $1 AND kind = 'user'`, id).
		Scan(&account.UserID, &account.BalanceMinor)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Account{}, ledger.Errorf(ledger.CodeAccountNotFound, "account %d does not exist", id)
	}
	if err != nil {
		return ledger.Account{}, fmt.Errorf("read account %d: %w", id, err)
	}
	return account, nil
}

const transactionColumns = `id::text, user_id, idempotency_key, kind, source_account_id, destination_account_id,
	amount, status, reason, fingerprint, kafka_partition, kafka_offset, accepted_at, applied_at`

func scanTransaction(row pgx.Row) (ledger.Transaction, error) {
	var t ledger.Transaction
	var kind, status, reason string
	err := row.Scan(&t.ID, &t.UserID, &t.IdempotencyKey, &kind, &t.SourceAccountID, &t.DestinationAccountID,
		&t.AmountMinor, &status, &reason, &t.Fingerprint, &t.Partition, &t.Offset, &t.AcceptedAt, &t.AppliedAt)
	t.Kind, t.Status, t.Reason = ledger.Kind(kind), ledger.Status(status), ledger.Code(reason)
	return t, err
}

// Transaction reads a transaction by id; an unknown id is CodeNotFound.
// Concurrent lookups of canonical ids (lowercase, hyphenated: the ids the
// system derives) go to Postgres together, as one query per batch.
func (s *Store) Transaction(ctx context.Context, id string) (ledger.Transaction, error) {
	if !canonicalUUID(id) {
		return s.transaction(ctx, id)
	}
	answer, err := s.transactions.Do(ctx, id)
	if err != nil {
		return ledger.Transaction{}, fmt.Errorf("read transaction %s: %w", id, err)
	}
	if !answer.found {
		return ledger.Transaction{}, ledger.Errorf(ledger.CodeNotFound, "transaction %s does not exist", id)
	}
	return answer.transaction, nil
}

// LedgerEmpty reports whether the ledger has no transaction at all.
func (s *Store) LedgerEmpty(ctx context.Context) (bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var empty bool
	err := s.pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM transactions)`).Scan(&empty)
	return empty, err
}

// transaction reads one transaction by id, alone.
func (s *Store) transaction(ctx context.Context, id string) (ledger.Transaction, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	t, err := scanTransaction(s.pool.QueryRow(ctx, `SELECT `+transactionColumns+` FROM transactions WHERE id = $1::uuid`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Transaction{}, ledger.Errorf(ledger.CodeNotFound, "transaction %s does not exist", id)
	}
	if err != nil {
		return ledger.Transaction{}, fmt.Errorf("read transaction %s: %w", id, err)
	}
	return t, nil
}

type transactionAnswer struct {
	transaction ledger.Transaction
	found       bool
}

// planWithValues sends a statement unnamed, so that Postgres plans it with
// its parameters' values every time (pgx.QueryExecModeCacheDescribe). The
// lookups of many rows by value in tables that grow under load take it (the
// batch's transactions by id or key, its accounts, its daily debits, the
// sagas in flight): a prepared statement's generic plan, chosen while the
// ledger's tables were empty, is a sequential scan, and it stayed cached as
// the tables grew (measured under load: the transaction and account lookups
// by id = ANY($1) scanned whole tables, 2,742 scans reading 29.7M rows in
// 20 s). Every other statement (the inserts from arrays, the updates joined
// on a primary key, the offset row) has one sensible plan whatever its
// values and stays prepared, so Postgres plans it once per connection
// rather than once per batch (docs/performance.md, "Ninth pass").
const planWithValues = pgx.QueryExecModeCacheDescribe

// transactionBatch reads the transactions of many ids in one query, planned
// with its values (planWithValues).
func (s *Store) transactionBatch(ctx context.Context, ids []string) ([]transactionAnswer, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+transactionColumns+` FROM transactions WHERE id = ANY($1::text[]::uuid[])`,
		planWithValues, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[string]ledger.Transaction, len(ids))
	for rows.Next() {
		t, err := scanTransaction(rows)
		if err != nil {
			return nil, err
		}
		found[t.ID] = t
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	answers := make([]transactionAnswer, len(ids))
	for i, id := range ids {
		t, ok := found[id]
		answers[i] = transactionAnswer{transaction: t, found: ok}
	}
	return answers, nil
}

// canonicalUUID reports whether id is a UUID in Postgres's output form, so
// that the id a row comes back with is the id asked for.
func canonicalUUID(id string) bool { return ledger.ValidTransactionID(id) }

// NextOffsets returns, for each partition, the next offset to apply: where a
// worker must seek when it is assigned the partition. It creates missing rows
// at offset 0 so later batches can lock them.
func (s *Store) NextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `INSERT INTO consumer_offsets (topic, partition, next_offset)
		SELECT $1, p, 0 FROM unnest($2::integer[]) AS p ON CONFLICT DO NOTHING`, topic, partitions); err != nil {
		return nil, fmt.Errorf("create offset rows: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets
		WHERE topic = $1 AND partition = ANY($2::integer[])`, topic, partitions)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	offsets := make(map[int32]int64, len(partitions))
	var partition int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&partition, &next}, func() error {
		offsets[partition] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	return offsets, nil
}
