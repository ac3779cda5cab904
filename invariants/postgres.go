package invariants

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresSource reads the reference system's ledger (sut/postgres/migrations)
// from one REPEATABLE READ, read-only transaction, so the three tables are
// one consistent snapshot. Rows are streamed, never loaded as a whole.
type PostgresSource struct {
	conn *pgx.Conn
	url  string
}

// OpenPostgres connects to the ledger database. The caller closes it.
func OpenPostgres(ctx context.Context, databaseURL string) (*PostgresSource, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the ledger: %w", err)
	}
	return &PostgresSource{conn: conn, url: databaseURL}, nil
}

// Close closes the connection.
func (s *PostgresSource) Close() error { return s.conn.Close(context.Background()) }

// Describe names the database, without credentials.
func (s *PostgresSource) Describe() string {
	parsed, err := url.Parse(s.url)
	if err != nil {
		return "postgres"
	}
	parsed.User = nil
	return "postgres " + parsed.Redacted()
}

// Scan implements Source.
func (s *PostgresSource) Scan(ctx context.Context, visitor Visitor) error {
	return pgx.BeginTxFunc(ctx, s.conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var account Account
		rows, err := tx.Query(ctx, `SELECT id, coalesce(user_id, 0), kind, balance FROM accounts ORDER BY id`)
		if err != nil {
			return fmt.Errorf("read accounts: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&account.ID, &account.UserID, &account.Kind, &account.Balance}, func() error {
			return visitor.Account(&account)
		}); err != nil {
			return fmt.Errorf("read accounts: %w", err)
		}

		var transaction Transaction
		var partition int32
		var offset int64
		var acceptedAt time.Time
		rows, err = tx.Query(ctx, `SELECT id::text, user_id, idempotency_key, kind, source_account_id, destination_account_id,
			amount, status, reason, kafka_partition, kafka_offset, accepted_at FROM transactions`)
		if err != nil {
			return fmt.Errorf("read transactions: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&transaction.ID, &transaction.UserID, &transaction.IdempotencyKey,
			&transaction.Kind, &transaction.SourceAccountID, &transaction.DestinationAccountID, &transaction.Amount,
			&transaction.Status, &transaction.Reason, &partition, &offset, &acceptedAt}, func() error {
			transaction.AcceptedAt = &acceptedAt
			// Rows applied outside Kafka (ApplyOne) carry -1: no stream
			// position, so order falls back to the postings.
			transaction.Partition, transaction.AppliedOrder = nil, nil
			if partition >= 0 && offset >= 0 {
				transaction.Partition, transaction.AppliedOrder = &partition, &offset
			}
			return visitor.Transaction(&transaction)
		}); err != nil {
			return fmt.Errorf("read transactions: %w", err)
		}

		var posting Posting
		var balanceAfter *int64
		rows, err = tx.Query(ctx, `SELECT id, transaction_id::text, account_id, amount, balance_after FROM postings ORDER BY id`)
		if err != nil {
			return fmt.Errorf("read postings: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&posting.ID, &posting.TransactionID, &posting.AccountID, &posting.Amount,
			&balanceAfter}, func() error {
			posting.BalanceAfter = balanceAfter
			return visitor.Posting(&posting)
		}); err != nil {
			return fmt.Errorf("read postings: %w", err)
		}
		if visitor.DeadLetters != nil {
			if err := scanDeadLetters(ctx, tx, visitor); err != nil {
				return err
			}
		}
		if visitor.Settlements == nil {
			return nil
		}
		return scanSettlements(ctx, tx, visitor)
	})
}

// scanSettlements reads, in the scan's snapshot, each transaction's
// settlement events (settlement_outbox) and effects (settlement_history),
// migration 006. A ledger without those tables has no outbox: not
// available, and it says so.
func scanSettlements(ctx context.Context, tx pgx.Tx, visitor Visitor) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('settlement_outbox') IS NOT NULL AND to_regclass('settlement_history') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("look for the settlement tables: %w", err)
	}
	if !exists {
		return visitor.Settlements(false, "not available: the ledger has no settlement_outbox and settlement_history (a schema before migration 006)")
	}
	if err := visitor.Settlements(true, ""); err != nil {
		return err
	}
	if visitor.Settlement == nil {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT coalesce(o.transaction_id, h.transaction_id)::text, coalesce(o.events, 0), coalesce(o.unpublished, 0),
			coalesce(h.effects, 0)
		FROM (SELECT transaction_id, count(*) AS events, count(*) FILTER (WHERE published_at IS NULL) AS unpublished
			FROM settlement_outbox GROUP BY transaction_id) o
		FULL OUTER JOIN (SELECT transaction_id, count(*) AS effects FROM settlement_history GROUP BY transaction_id) h
			ON o.transaction_id = h.transaction_id`)
	if err != nil {
		return fmt.Errorf("read settlements: %w", err)
	}
	var settlement Settlement
	if _, err := pgx.ForEachRow(rows, []any{&settlement.TransactionID, &settlement.Events, &settlement.Unpublished, &settlement.Effects}, func() error {
		return visitor.Settlement(&settlement)
	}); err != nil {
		return fmt.Errorf("read settlements: %w", err)
	}
	return nil
}

// maxDeadLetterReasonCharacters bounds the reason read per dead letter: a
// reason is a code and maybe an error message, never a document.
const maxDeadLetterReasonCharacters = 1024

// scanDeadLetters reads dead_letters (migration 002) in the scan's
// snapshot, at most MaxDeadLetterRawBytes of each record. A ledger whose
// schema predates the table never set a record aside: none, and it says so.
func scanDeadLetters(ctx context.Context, tx pgx.Tx, visitor Visitor) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('dead_letters') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("look for dead_letters: %w", err)
	}
	if !exists {
		return visitor.DeadLetters(true, "the ledger has no dead_letters table (a schema before migration 002): no record was set aside")
	}
	if err := visitor.DeadLetters(true, ""); err != nil {
		return err
	}
	if visitor.DeadLetter == nil {
		return nil
	}
	var letter DeadLetter
	var transactionID *string
	var deadAt time.Time
	rows, err := tx.Query(ctx, `SELECT id, topic, kafka_partition, kafka_offset, substring(raw from 1 for $1), octet_length(raw),
		left(reason, $2), transaction_id::text, dead_at FROM dead_letters ORDER BY id`, MaxDeadLetterRawBytes, maxDeadLetterReasonCharacters)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&letter.ID, &letter.Topic, &letter.Partition, &letter.Offset, &letter.Raw,
		&letter.RawBytes, &letter.Reason, &transactionID, &deadAt}, func() error {
		letter.TransactionID, letter.DeadAt = "", &deadAt
		if transactionID != nil {
			letter.TransactionID = *transactionID
		}
		return visitor.DeadLetter(&letter)
	}); err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	return nil
}

// StoredOffsets returns the next offset the ledger stored per partition of
// topic (consumer_offsets, written with the postings).
func (s *PostgresSource) StoredOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	rows, err := s.conn.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("read consumer offsets: %w", err)
	}
	stored := map[int32]int64{}
	var partition int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&partition, &next}, func() error {
		stored[partition] = next
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read consumer offsets: %w", err)
	}
	return stored, nil
}

// Fingerprint summarises the ledger's progress cheaply enough to poll:
// transactions, the highest posting id, and the stored offsets.
func (s *PostgresSource) Fingerprint(ctx context.Context) (string, error) {
	var transactions, lastPosting, offsets int64
	err := s.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM transactions), (SELECT coalesce(max(id), 0) FROM postings),
		(SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets)`).Scan(&transactions, &lastPosting, &offsets)
	if err != nil {
		return "", fmt.Errorf("ledger fingerprint: %w", err)
	}
	return fmt.Sprintf("%d transactions, last posting %d, offsets sum %d", transactions, lastPosting, offsets), nil
}

// UnpublishedOutbox counts the outbox's unpublished events; hasOutbox is
// false for a ledger without one (before migration 006).
func (s *PostgresSource) UnpublishedOutbox(ctx context.Context) (unpublished int64, hasOutbox bool, err error) {
	if err := s.conn.QueryRow(ctx, `SELECT to_regclass('settlement_outbox') IS NOT NULL`).Scan(&hasOutbox); err != nil {
		return 0, false, fmt.Errorf("look for the outbox: %w", err)
	}
	if !hasOutbox {
		return 0, false, nil
	}
	if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM settlement_outbox WHERE published_at IS NULL`).Scan(&unpublished); err != nil {
		return 0, true, fmt.Errorf("count unpublished outbox events: %w", err)
	}
	return unpublished, true, nil
}
