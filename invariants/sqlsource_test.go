package invariants

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// otherShape is a ledger schema nobody here wrote: other table and column
// names, UUID ids, a numeric running balance.
const otherShape = `
CREATE TABLE wallets (wallet_no bigint PRIMARY KEY, owner bigint, balance_cents bigint NOT NULL);
CREATE TABLE payments (ref uuid PRIMARY KEY, owner bigint, client_key text, type text, debit_wallet bigint,
  credit_wallet bigint, cents bigint, state text, failure text, seq bigint);
CREATE TABLE entries (entry_id bigserial PRIMARY KEY, payment_ref uuid, wallet_no bigint, cents bigint, running numeric(20,0));
INSERT INTO wallets VALUES (0, 0, 0), (11, 7, 100);
INSERT INTO payments VALUES ('6f1c3a1e-0000-4000-8000-000000000001', 7, 'key-1', 'DEPOSIT', 0, 11, 100, 'OK', NULL, 1),
  ('6f1c3a1e-0000-4000-8000-000000000002', 7, 'key-2', 'WITHDRAWAL', 11, 0, 500, 'DECLINED', 'insufficient_funds', 2);
INSERT INTO entries (payment_ref, wallet_no, cents, running) VALUES
  ('6f1c3a1e-0000-4000-8000-000000000001', 0, -100, NULL), ('6f1c3a1e-0000-4000-8000-000000000001', 11, 100, 100);
`

// otherShapeQueries map the schema to the export format's columns.
const otherShapeQueries = `driver: postgres
url_env: TEST_LEDGER_URL
accounts: |
  SELECT wallet_no AS id, owner AS user_id, CASE WHEN wallet_no = 0 THEN 'external' ELSE 'user' END AS kind, balance_cents AS balance FROM wallets
transactions: |
  SELECT ref::text AS id, owner AS user_id, client_key AS idempotency_key, lower(type) AS kind, debit_wallet AS source_account_id,
         credit_wallet AS destination_account_id, cents AS amount, CASE state WHEN 'OK' THEN 'settled' ELSE 'rejected' END AS status,
         COALESCE(failure, '') AS reason, seq AS applied_order FROM payments
postings: |
  SELECT entry_id AS id, payment_ref AS transaction_id, wallet_no AS account_id, cents AS amount, running AS balance_after FROM entries ORDER BY entry_id
`

func writeQueries(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSQLLedgerReadsAnotherSchema(t *testing.T) {
	url := stacktest.PostgresURL(t)
	ctx := context.Background()
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connection.Exec(ctx, otherShape); err != nil {
		t.Fatal(err)
	}
	connection.Close(ctx)
	t.Setenv("TEST_LEDGER_URL", url)

	ledger, err := LoadSQLLedger(writeQueries(t, otherShapeQueries))
	if err != nil {
		t.Fatal(err)
	}
	source, err := OpenSQL(ctx, *ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	var accounts []Account
	var transactions []Transaction
	var postings []Posting
	var deadLetters string
	err = source.Scan(ctx, Visitor{
		Account:     func(a *Account) error { accounts = append(accounts, *a); return nil },
		Transaction: func(x *Transaction) error { transactions = append(transactions, *x); return nil },
		Posting:     func(p *Posting) error { postings = append(postings, *p); return nil },
		DeadLetters: func(available bool, note string) error { deadLetters = note; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 2 || accounts[1] != (Account{ID: 11, UserID: 7, Kind: "user", Balance: 100}) {
		t.Errorf("accounts %+v", accounts)
	}
	if len(transactions) != 2 || transactions[1].ID != "6f1c3a1e-0000-4000-8000-000000000002" || transactions[1].Kind != KindWithdrawal ||
		transactions[1].Status != StatusRejected || transactions[1].Reason != "insufficient_funds" || *transactions[1].AppliedOrder != 2 {
		t.Errorf("transactions %+v", transactions)
	}
	if len(postings) != 2 || postings[1].TransactionID != "6f1c3a1e-0000-4000-8000-000000000001" || postings[1].BalanceAfter == nil ||
		*postings[1].BalanceAfter != 100 || postings[0].BalanceAfter != nil {
		t.Errorf("postings %+v", postings)
	}
	if !strings.Contains(deadLetters, "no dead_letters query") {
		t.Errorf("dead letters note %q", deadLetters)
	}
	if print, err := source.Fingerprint(ctx); err != nil || print != "1 settled, 1 rejected; 2 postings up to id 2 moving 200; balances 100" {
		t.Errorf("fingerprint %q, %v", print, err)
	}

	// A query whose column is misnamed fails when opened, naming it.
	misnamed := strings.Replace(otherShapeQueries, "cents AS amount, running", "cents AS amout, running", 1)
	ledger, err = LoadSQLLedger(writeQueries(t, misnamed))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQL(ctx, *ledger); err == nil || !strings.Contains(err.Error(), `column "amout"`) || !strings.Contains(err.Error(), "query postings") {
		t.Errorf("a misnamed column: %v", err)
	}
	// Postings out of id order are refused while reading.
	unordered := strings.Replace(otherShapeQueries, "ORDER BY entry_id", "ORDER BY entry_id DESC", 1)
	ledger, _ = LoadSQLLedger(writeQueries(t, unordered))
	source, err = OpenSQL(ctx, *ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	err = source.Scan(ctx, Visitor{Account: func(*Account) error { return nil }, Transaction: func(*Transaction) error { return nil },
		Posting: func(*Posting) error { return nil }})
	if err == nil || !strings.Contains(err.Error(), "ORDER BY id") {
		t.Errorf("unordered postings: %v", err)
	}
}

func TestSQLLedgerFileValidation(t *testing.T) {
	t.Setenv("TEST_LEDGER_URL", "")
	for name, c := range map[string]struct{ content, want string }{
		"unknown field":   {"driver: postgres\nurl: x\naccounts: a\ntransactions: t\npostings: p\npostngs: p\n", "line 6"},
		"unknown driver":  {"driver: oracle\nurl: x\naccounts: a\ntransactions: t\npostings: p\n", `driver: "oracle"`},
		"unset variable":  {"driver: postgres\nurl_env: TEST_LEDGER_URL\naccounts: a\ntransactions: t\npostings: p\n", "TEST_LEDGER_URL is not set"},
		"missing query":   {"driver: mysql\nurl: x\naccounts: a\ntransactions: t\n", "postings: missing"},
		"two connections": {"driver: mysql\nurl: x\nurl_env: Y\naccounts: a\ntransactions: t\npostings: p\n", "give one"},
	} {
		_, err := LoadSQLLedger(writeQueries(t, c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestSQLValueConversions: what the two drivers return for the column types
// a ledger uses becomes whole numbers, text and times, or a clear error.
func TestSQLValueConversions(t *testing.T) {
	row := &sqlRow{index: map[string]int{"a": 0}, values: []any{nil}}
	for _, c := range []struct {
		value any
		want  int64
		ok    bool
	}{
		{int64(-7), -7, true}, {uint64(7), 7, true}, {uint64(1 << 63), 0, false}, {float64(12), 12, true}, {float64(1.5), 0, false},
		{float32(3), 3, true}, {[]byte("1250.00"), 1250, true}, {"1250.50", 0, false}, {"42", 42, true}, {"x", 0, false},
	} {
		row.values[0], row.problem = c.value, nil
		got := row.optionalInt("a")
		if c.ok && (got == nil || *got != c.want) || !c.ok && (got != nil || row.problem == nil) {
			t.Errorf("%T %v: %v, problem %v; want %d ok=%v", c.value, c.value, got, row.problem, c.want, c.ok)
		}
	}
	row.values[0], row.problem = []byte("2026-12-05 01:02:03.5"), nil
	if at := row.time("a"); at == nil || at.Second() != 3 {
		t.Errorf("a MySQL DATETIME as text: %v (%v)", at, row.problem)
	}
}
