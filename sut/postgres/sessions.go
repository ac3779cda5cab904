package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Sessions live here so that every gateway can check a token whatever Redis
// (their fast path) lost, and end here: a user's sessions_valid_after ends
// every session issued at or before it (migration 003, docs/security.md).
// Times are the database's clock, so the gateways' clocks never decide
// whether a session was issued before or after a sign-out.

// CreateSession stores a session of the token whose SHA-256 is tokenHash,
// issued now and expiring after ttl, both by the database's clock, and
// returns it.
func (s *Store) CreateSession(ctx context.Context, tokenHash []byte, userID, accountID int64, ttl time.Duration) (ledger.Session, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	session := ledger.Session{UserID: userID, AccountID: accountID}
	// One reading of the clock for both ends: two calls of
	// clock_timestamp() differ by the microseconds between them.
	err := s.pool.QueryRow(ctx, `INSERT INTO sessions (token_hash, user_id, account_id, issued_at, expires_at)
		SELECT $1, $2, $3, now.t, now.t + $4::interval FROM (SELECT clock_timestamp() AS t) AS now
		RETURNING issued_at, expires_at`,
		tokenHash, userID, accountID, ttl).Scan(&session.IssuedAt, &session.ExpiresAt)
	if err != nil {
		return ledger.Session{}, fmt.Errorf("create session: %w", err)
	}
	return session, nil
}

// LookupSession returns the unexpired session of the token whose SHA-256 is
// tokenHash; found is false when there is none. It does not look at the
// user's sessions_valid_after: the caller checks that (SessionsEndedSince).
func (s *Store) LookupSession(ctx context.Context, tokenHash []byte) (session ledger.Session, found bool, err error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err = s.pool.QueryRow(ctx, `SELECT user_id, account_id, issued_at, expires_at FROM sessions
		WHERE token_hash = $1 AND expires_at > clock_timestamp()`, tokenHash).
		Scan(&session.UserID, &session.AccountID, &session.IssuedAt, &session.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Session{}, false, nil
	}
	if err != nil {
		return ledger.Session{}, false, fmt.Errorf("read session: %w", err)
	}
	return session, true, nil
}

// EndSessions ends every session of the user issued until now (sign-out):
// its sessions_valid_after becomes now, by the database's clock, unless it
// is later already; the ended sessions' rows are deleted. It returns the
// user's revocation time. An unknown user is CodeNotFound.
func (s *Store) EndSessions(ctx context.Context, userID int64) (ledger.SessionsValidAfter, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	revocation := ledger.SessionsValidAfter{UserID: userID}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var validAfter, changedAt pgtype.Timestamptz
		err := tx.QueryRow(ctx, `UPDATE users SET sessions_valid_after = GREATEST(sessions_valid_after, clock_timestamp())
			WHERE id = $1 RETURNING sessions_valid_after, sessions_changed_at`, userID).Scan(&validAfter, &changedAt)
		if err != nil {
			return err
		}
		revocation.ValidAfter, revocation.ChangedAt = finiteTime(validAfter), finiteTime(changedAt)
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND issued_at <= $2`, userID, validAfter)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.SessionsValidAfter{}, ledger.Errorf(ledger.CodeNotFound, "no user %d", userID)
	}
	if err != nil {
		return ledger.SessionsValidAfter{}, fmt.Errorf("end sessions of user %d: %w", userID, err)
	}
	return revocation, nil
}

// SessionsEndedSince returns the users whose sessions_valid_after changed
// after changedAfter (by the database's clock), oldest change first, at most
// limit of them, and the database's clock read before them: rows changed
// after it are left for the next call. With recentOnly, only revocation
// times later than now minus recentWithin are returned (an older one ends
// only sessions that expired anyway): a gateway's first look.
func (s *Store) SessionsEndedSince(ctx context.Context, changedAfter time.Time, recentWithin time.Duration, recentOnly bool, limit int) (revocations []ledger.SessionsValidAfter, databaseNow time.Time, err error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&databaseNow); err != nil {
		return nil, time.Time{}, fmt.Errorf("read the database's clock: %w", err)
	}
	query := `SELECT id, sessions_valid_after, sessions_changed_at FROM users
		WHERE sessions_changed_at > $1 AND sessions_changed_at > '-infinity' ORDER BY sessions_changed_at LIMIT $2`
	arguments := []any{changedAfter, limit}
	if recentOnly {
		query = `SELECT id, sessions_valid_after, sessions_changed_at FROM users
			WHERE sessions_changed_at > $1 AND sessions_changed_at > '-infinity' AND sessions_valid_after > $3::timestamptz - $4::interval
			ORDER BY sessions_changed_at LIMIT $2`
		arguments = append(arguments, databaseNow, recentWithin)
	}
	if changedAfter.IsZero() {
		// The zero time.Time is year 1, later than '-infinity': the first
		// look asks from the beginning.
		arguments[0] = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	rows, err := s.pool.Query(ctx, query, arguments...)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read ended sessions: %w", err)
	}
	var userID int64
	var validAfter, changedAt pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&userID, &validAfter, &changedAt}, func() error {
		revocations = append(revocations, ledger.SessionsValidAfter{UserID: userID,
			ValidAfter: finiteTime(validAfter), ChangedAt: finiteTime(changedAt)})
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read ended sessions: %w", err)
	}
	return revocations, databaseNow, nil
}

// finiteTime maps an infinite timestamp to a time.Time that compares the
// same way: '-infinity' (an operator took a revocation back) to the zero
// time, before every session; 'infinity' to the year 9999, after every one.
func finiteTime(value pgtype.Timestamptz) time.Time {
	switch value.InfinityModifier {
	case pgtype.NegativeInfinity:
		return time.Time{}
	case pgtype.Infinity:
		return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return value.Time
}

// DeleteExpiredSessions deletes at most limit sessions that expired, and
// returns how many it deleted.
func (s *Store) DeleteExpiredSessions(ctx context.Context, limit int) (int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE token_hash IN
		(SELECT token_hash FROM sessions WHERE expires_at <= clock_timestamp() LIMIT $1)`, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// UsersWithoutEmailKey returns at most limit users that have no email key
// (created before migration 003, or by CreateUser), with ids above afterID,
// in id order.
func (s *Store) UsersWithoutEmailKey(ctx context.Context, afterID int64, limit int) ([]ledger.User, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT id, email FROM users WHERE email_key IS NULL AND id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("read users without email key: %w", err)
	}
	var users []ledger.User
	var user ledger.User
	_, err = pgx.ForEachRow(rows, []any{&user.ID, &user.Email}, func() error {
		users = append(users, user)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read users without email key: %w", err)
	}
	return users, nil
}

// SetEmailKey gives a user without one its email key; a key another user
// holds is CodeEmailTaken (two old accounts a person reads as one address).
func (s *Store) SetEmailKey(ctx context.Context, userID int64, emailKey string) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `UPDATE users SET email_key = $2 WHERE id = $1 AND email_key IS NULL`, userID, emailKey)
	if uniqueViolation(err) {
		return ledger.Errorf(ledger.CodeEmailTaken, "another user holds this email key")
	}
	if err != nil {
		return fmt.Errorf("set the email key of user %d: %w", userID, err)
	}
	return nil
}
