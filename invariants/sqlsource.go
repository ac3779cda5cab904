package invariants

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	// The two SQL databases a team's ledger is read from.
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"gopkg.in/yaml.v3"
)

// SQLLedger says how to read a team's own ledger database: the driver, where
// the connection string comes from, and one query per table whose result
// columns are named like the export format's fields (docs/external.md).
type SQLLedger struct {
	// Driver is postgres or mysql.
	Driver string `yaml:"driver"`
	// URLEnv names the environment variable holding the connection string
	// (a password never sits in the file); URL, when set instead, is the
	// connection string itself (for databases without a password).
	URLEnv string `yaml:"url_env"`
	URL    string `yaml:"url"`
	// The queries. Postings must come in ascending id order.
	Accounts     string `yaml:"accounts"`
	Transactions string `yaml:"transactions"`
	Postings     string `yaml:"postings"`
	// DeadLetters is optional: without it the audit says dead letters are
	// not available.
	DeadLetters string `yaml:"dead_letters"`
}

// The columns of each query: required ones, then optional ones. A column not
// listed is an error (a misspelt optional column would otherwise be
// silently ignored).
var sqlColumns = map[string][2][]string{
	"accounts":     {{"id", "user_id", "kind", "balance"}, nil},
	"transactions": {{"id", "user_id", "idempotency_key", "kind", "source_account_id", "destination_account_id", "amount", "status"}, {"reason", "partition", "applied_order"}},
	"postings":     {{"id", "transaction_id", "account_id", "amount"}, {"balance_after"}},
	"dead_letters": {{"id", "partition", "offset", "reason"}, {"topic", "raw", "raw_bytes", "transaction_id", "dead_at"}},
}

// sqlDrivers maps the file's driver names to database/sql's.
var sqlDrivers = map[string]string{"postgres": "pgx", "mysql": "mysql"}

// LoadSQLLedger reads and validates a ledger query file; every problem is
// listed, with the file's line numbers where YAML gives them.
func LoadSQLLedger(path string) (*SQLLedger, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ledger queries: %w", err)
	}
	decoder := yaml.NewDecoder(bytes.NewReader(content))
	decoder.KnownFields(true)
	var ledger SQLLedger
	if err := decoder.Decode(&ledger); err != nil {
		return nil, fmt.Errorf("ledger queries %s: %w", path, err)
	}
	var problems []string
	if _, known := sqlDrivers[ledger.Driver]; !known {
		problems = append(problems, fmt.Sprintf("driver: %q, want postgres or mysql", ledger.Driver))
	}
	switch {
	case ledger.URLEnv != "" && ledger.URL != "":
		problems = append(problems, "url_env and url: give one (url_env keeps the password out of the file)")
	case ledger.URLEnv == "" && ledger.URL == "":
		problems = append(problems, "url_env: missing (the environment variable holding the connection string)")
	case ledger.URLEnv != "" && os.Getenv(ledger.URLEnv) == "":
		problems = append(problems, fmt.Sprintf("url_env: the variable %s is not set", ledger.URLEnv))
	}
	for name, query := range map[string]string{"accounts": ledger.Accounts, "transactions": ledger.Transactions, "postings": ledger.Postings} {
		if strings.TrimSpace(query) == "" {
			columns := sqlColumns[name]
			problems = append(problems, fmt.Sprintf("%s: missing (a SELECT returning %s)", name, strings.Join(append(columns[0], optional(columns[1])...), ", ")))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("ledger queries %s:\n  - %s", path, strings.Join(problems, "\n  - "))
	}
	return &ledger, nil
}

func optional(columns []string) []string {
	out := make([]string, len(columns))
	for i, column := range columns {
		out[i] = column + " (optional)"
	}
	return out
}

// SQLSource reads a ledger through a team's own queries.
type SQLSource struct {
	ledger SQLLedger
	db     *sql.DB
	where  string
}

// OpenSQL connects, and runs each query with no rows wanted to check its
// columns: a wrong query fails here, before any load.
func OpenSQL(ctx context.Context, ledger SQLLedger) (*SQLSource, error) {
	url := ledger.URL
	if ledger.URLEnv != "" {
		url = os.Getenv(ledger.URLEnv)
	}
	db, err := sql.Open(sqlDrivers[ledger.Driver], url)
	if err != nil {
		return nil, fmt.Errorf("ledger database (%s): %w", ledger.Driver, err)
	}
	db.SetMaxOpenConns(2)
	source := &SQLSource{ledger: ledger, db: db, where: ledger.Driver + " database"}
	if ledger.URLEnv != "" {
		source.where += " of $" + ledger.URLEnv
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: cannot connect: %w", source.where, err)
	}
	for _, table := range source.tables() {
		rows, err := db.QueryContext(ctx, "SELECT * FROM ("+table.query+") AS ledgerproof_check WHERE 1 = 0")
		if err == nil {
			var columns []string
			columns, err = rows.Columns()
			rows.Close()
			if err == nil {
				err = checkColumns(table.name, columns)
			}
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("%s, query %s: %w", source.where, table.name, err)
		}
	}
	return source, nil
}

type sqlTable struct{ name, query string }

func (s *SQLSource) tables() []sqlTable {
	tables := []sqlTable{{"accounts", s.ledger.Accounts}, {"transactions", s.ledger.Transactions}, {"postings", s.ledger.Postings}}
	if strings.TrimSpace(s.ledger.DeadLetters) != "" {
		tables = append(tables, sqlTable{"dead_letters", s.ledger.DeadLetters})
	}
	return tables
}

// checkColumns requires a query's columns to be the table's.
func checkColumns(table string, columns []string) error {
	want := sqlColumns[table]
	var problems []string
	for _, required := range want[0] {
		if !slices.Contains(columns, required) {
			problems = append(problems, "no column "+required)
		}
	}
	for _, column := range columns {
		if !slices.Contains(want[0], column) && !slices.Contains(want[1], column) {
			problems = append(problems, fmt.Sprintf("column %q is not one of %s (name it with AS)", column, strings.Join(append(want[0], want[1]...), ", ")))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Close closes the connection pool.
func (s *SQLSource) Close() { s.db.Close() }

// Describe implements Source.
func (s *SQLSource) Describe() string { return s.where + " (your queries)" }

// Fingerprint counts and sums what the queries return, for a quiet-ledger
// drain.
func (s *SQLSource) Fingerprint(ctx context.Context) (string, error) {
	// Counts by status (a pending row that becomes rejected moves no money),
	// the postings' highest id and moved total (their plain sum is 0 in a
	// double-entry ledger), the stored balances' total.
	var settled, rejected, postings, maxID, moved, balances sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT SUM(CASE WHEN status = 'settled' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) FROM ("+
		s.ledger.Transactions+") AS t").Scan(&settled, &rejected)
	if err == nil {
		err = s.db.QueryRowContext(ctx, "SELECT COUNT(*), MAX(id), SUM(ABS(amount)) FROM ("+s.ledger.Postings+") AS p").Scan(&postings, &maxID, &moved)
	}
	if err == nil {
		err = s.db.QueryRowContext(ctx, "SELECT SUM(balance) FROM ("+s.ledger.Accounts+") AS a").Scan(&balances)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.where, err)
	}
	return fmt.Sprintf("%s settled, %s rejected; %s postings up to id %s moving %s; balances %s",
		settled.String, rejected.String, postings.String, maxID.String, moved.String, balances.String), nil
}

// Scan implements Source: the accounts, the transactions, the postings (in
// ascending id order, checked) and the dead letters, all in one read-only
// REPEATABLE READ transaction: one snapshot of the ledger, whatever is
// written meanwhile.
func (s *SQLSource) Scan(ctx context.Context, visitor Visitor) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%s: begin a read-only snapshot: %w", s.where, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return s.scan(ctx, tx, visitor)
}

func (s *SQLSource) scan(ctx context.Context, tx *sql.Tx, visitor Visitor) error {
	var account Account
	if err := s.query(ctx, tx, "accounts", s.ledger.Accounts, func(v *sqlRow) error {
		account = Account{ID: v.int("id"), UserID: v.int("user_id"), Kind: v.text("kind"), Balance: v.int("balance")}
		return visitor.Account(&account)
	}); err != nil {
		return err
	}
	var transaction Transaction
	if err := s.query(ctx, tx, "transactions", s.ledger.Transactions, func(v *sqlRow) error {
		transaction = Transaction{ID: v.text("id"), UserID: v.int("user_id"), IdempotencyKey: v.text("idempotency_key"), Kind: v.text("kind"),
			SourceAccountID: v.int("source_account_id"), DestinationAccountID: v.int("destination_account_id"), Amount: v.int("amount"),
			Status: v.text("status"), Reason: v.text("reason"), AppliedOrder: v.optionalInt("applied_order")}
		if partition := v.optionalInt("partition"); partition != nil {
			transaction.Partition = ptr(int32(*partition))
		}
		if transaction.ID == "" {
			return errors.New("a transaction without an id")
		}
		return visitor.Transaction(&transaction)
	}); err != nil {
		return err
	}
	var posting Posting
	var last int64
	first := true
	if err := s.query(ctx, tx, "postings", s.ledger.Postings, func(v *sqlRow) error {
		posting = Posting{ID: v.int("id"), TransactionID: v.text("transaction_id"), AccountID: v.int("account_id"), Amount: v.int("amount"),
			BalanceAfter: v.optionalInt("balance_after")}
		if !first && posting.ID <= last {
			return fmt.Errorf("posting %d comes after posting %d: the postings query must ORDER BY id", posting.ID, last)
		}
		first, last = false, posting.ID
		return visitor.Posting(&posting)
	}); err != nil {
		return err
	}
	if visitor.DeadLetters == nil {
		return nil
	}
	if strings.TrimSpace(s.ledger.DeadLetters) == "" {
		return visitor.DeadLetters(false, "not available: the ledger queries have no dead_letters query")
	}
	if err := visitor.DeadLetters(true, ""); err != nil {
		return err
	}
	var letter DeadLetter
	return s.query(ctx, tx, "dead_letters", s.ledger.DeadLetters, func(v *sqlRow) error {
		raw := []byte(v.text("raw"))
		if len(raw) > MaxDeadLetterRawBytes {
			raw = raw[:MaxDeadLetterRawBytes]
		}
		letter = DeadLetter{ID: v.int("id"), Topic: v.text("topic"), Partition: int32(v.int("partition")), Offset: v.int("offset"),
			Raw: raw, Reason: v.text("reason"), TransactionID: v.text("transaction_id")}
		if size := v.optionalInt("raw_bytes"); size != nil {
			letter.RawBytes = *size
		}
		if at := v.time("dead_at"); at != nil {
			letter.DeadAt = at
		}
		if visitor.DeadLetter == nil {
			return nil
		}
		return visitor.DeadLetter(&letter)
	})
}

// query streams one query's rows, naming the query and row in errors.
func (s *SQLSource) query(ctx context.Context, tx *sql.Tx, table, query string, each func(*sqlRow) error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("%s, query %s: %w", s.where, table, err)
	}
	defer rows.Close()
	columns, err := rows.Columns()
	if err == nil {
		err = checkColumns(table, columns)
	}
	if err != nil {
		return fmt.Errorf("%s, query %s: %w", s.where, table, err)
	}
	row := &sqlRow{index: map[string]int{}, values: make([]any, len(columns))}
	pointers := make([]any, len(columns))
	for i, column := range columns {
		row.index[column] = i
		pointers[i] = &row.values[i]
	}
	for number := 1; rows.Next(); number++ {
		if err := rows.Scan(pointers...); err != nil {
			return fmt.Errorf("%s, query %s, row %d: %w", s.where, table, number, err)
		}
		row.problem = nil
		err := each(row)
		if row.problem != nil {
			err = row.problem
		}
		if err != nil {
			return fmt.Errorf("%s, query %s, row %d: %w", s.where, table, number, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s, query %s: %w", s.where, table, err)
	}
	return nil
}

// sqlRow is one result row; its accessors convert what the drivers return
// (int64, float64 with no fraction, []byte or string digits, UUIDs as
// bytes or text) and remember the first value that does not convert.
type sqlRow struct {
	index   map[string]int
	values  []any
	problem error
}

func (r *sqlRow) value(column string) (any, bool) {
	i, ok := r.index[column]
	if !ok || r.values[i] == nil {
		return nil, false
	}
	return r.values[i], true
}

func (r *sqlRow) fail(column string, value any, want string) {
	if r.problem == nil {
		r.problem = fmt.Errorf("column %s: %v (%T) is not %s", column, value, value, want)
	}
}

func (r *sqlRow) int(column string) int64 {
	if value := r.optionalInt(column); value != nil {
		return *value
	}
	if _, present := r.index[column]; present && r.problem == nil {
		r.problem = fmt.Errorf("column %s: NULL where a whole number is needed", column)
	}
	return 0
}

func (r *sqlRow) optionalInt(column string) *int64 {
	value, ok := r.value(column)
	if !ok {
		return nil
	}
	switch v := value.(type) {
	case int64:
		return &v
	case int32:
		return ptr(int64(v))
	case uint64: // MySQL BIGINT UNSIGNED
		if v <= math.MaxInt64 {
			return ptr(int64(v))
		}
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return ptr(int64(v))
		}
	case float32:
		if f := float64(v); f == math.Trunc(f) && math.Abs(f) < 1<<24 {
			return ptr(int64(f))
		}
	case []byte, string:
		// Digits, or a decimal whose fraction is zeros ("1250.00": what
		// numeric(12,2) * 100 gives).
		text := strings.TrimSpace(textOf(v))
		if whole, fraction, found := strings.Cut(text, "."); found && strings.Trim(fraction, "0") == "" {
			text = whole
		}
		if parsed, err := strconv.ParseInt(text, 10, 64); err == nil {
			return &parsed
		}
	}
	r.fail(column, value, "a whole number (amounts in minor units: e.g. CAST(amount * 100 AS BIGINT) of a decimal in major units)")
	return nil
}

func textOf(value any) string {
	switch v := value.(type) {
	case []byte:
		return string(v)
	case string:
		return v
	}
	return fmt.Sprint(value)
}

func (r *sqlRow) text(column string) string {
	value, ok := r.value(column)
	if !ok {
		return ""
	}
	switch v := value.(type) {
	case []byte:
		return string(v)
	case string:
		return v
	case int64:
		return fmt.Sprint(v)
	}
	r.fail(column, value, "text")
	return ""
}

func (r *sqlRow) time(column string) *time.Time {
	value, ok := r.value(column)
	if !ok {
		return nil
	}
	if at, ok := value.(time.Time); ok {
		return &at
	}
	// MySQL without parseTime=true sends DATETIME as text.
	for _, layout := range []string{"2006-01-02 15:04:05.999999", time.RFC3339Nano} {
		if at, err := time.Parse(layout, textOf(value)); err == nil {
			return &at
		}
	}
	r.fail(column, value, "a timestamp")
	return nil
}
