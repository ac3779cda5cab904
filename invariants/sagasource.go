package invariants

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// maxSagaRows bounds what PostgresSagaSource reads from one shard: the
// saga check holds every saga in memory, and a gate run makes thousands,
// not millions. A shard with more is refused rather than exhausting memory.
const maxSagaRows = 2_000_000

// PostgresSagaSource reads the sagas of every shard of the reference
// system's sharded ledger (sut/postgres/migrations/007_sagas.sql): each
// shard's saga log, its destination decisions, and the postings under
// either's id, one read-only snapshot per shard. Shard i is URLs[i].
type PostgresSagaSource struct {
	URLs []string
}

// Describe names the shards' databases, without credentials.
func (s PostgresSagaSource) Describe() string {
	names := make([]string, len(s.URLs))
	for i, raw := range s.URLs {
		parsed, err := url.Parse(raw)
		if err != nil {
			names[i] = fmt.Sprintf("shard %d", i)
			continue
		}
		parsed.User = nil
		names[i] = parsed.Redacted()
	}
	return fmt.Sprintf("postgres shards %v", names)
}

// ReadSagas implements SagaSource. It is called after drain: a saga still
// in flight then is reported, so the shards need not be one snapshot.
func (s PostgresSagaSource) ReadSagas(ctx context.Context) (*SagaLedger, error) {
	if len(s.URLs) == 0 {
		return nil, errors.New("saga source: no shard URL")
	}
	ledger := &SagaLedger{Shards: len(s.URLs)}
	for shard, databaseURL := range s.URLs {
		if err := readShardSagas(ctx, shard, databaseURL, ledger); err != nil {
			return nil, fmt.Errorf("shard %d: %w", shard, err)
		}
	}
	return ledger, nil
}

func readShardSagas(ctx context.Context, shard int, databaseURL string, ledger *SagaLedger) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var count int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM sagas) + (SELECT count(*) FROM saga_credits)`).Scan(&count); err != nil {
			return fmt.Errorf("count sagas: %w", err)
		}
		if count > maxSagaRows {
			return fmt.Errorf("%d saga rows, more than the %d the check holds", count, maxSagaRows)
		}
		var record SagaRecord
		rows, err := tx.Query(ctx, `SELECT id::text, source_account_id, destination_account_id, destination_shard, amount, state, reason FROM sagas ORDER BY id`)
		if err != nil {
			return fmt.Errorf("read sagas: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&record.ID, &record.SourceAccountID, &record.DestinationAccountID, &record.DestinationShard,
			&record.Amount, &record.State, &record.Reason}, func() error {
			record.Shard = shard
			ledger.Sagas = append(ledger.Sagas, record)
			return nil
		}); err != nil {
			return fmt.Errorf("read sagas: %w", err)
		}
		var decision SagaDecision
		rows, err = tx.Query(ctx, `SELECT saga_id::text, account_id, amount, outcome FROM saga_credits ORDER BY saga_id`)
		if err != nil {
			return fmt.Errorf("read saga decisions: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&decision.SagaID, &decision.AccountID, &decision.Amount, &decision.Outcome}, func() error {
			decision.Shard = shard
			ledger.Decisions = append(ledger.Decisions, decision)
			return nil
		}); err != nil {
			return fmt.Errorf("read saga decisions: %w", err)
		}
		var posting SagaPosting
		rows, err = tx.Query(ctx, `SELECT p.id, p.transaction_id::text, p.account_id, p.amount FROM postings p
			WHERE p.transaction_id IN (SELECT id FROM sagas UNION SELECT saga_id FROM saga_credits) ORDER BY p.id`)
		if err != nil {
			return fmt.Errorf("read saga postings: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&posting.ID, &posting.TransactionID, &posting.AccountID, &posting.Amount}, func() error {
			posting.Shard = shard
			ledger.Postings = append(ledger.Postings, posting)
			return nil
		}); err != nil {
			return fmt.Errorf("read saga postings: %w", err)
		}
		return nil
	})
}
