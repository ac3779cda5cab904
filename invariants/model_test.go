package invariants

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a journal and a ledger export, built by the pure model below or
// by hand, then mutated by tests.
type fixture struct {
	journal      []JournalEntry
	accounts     []Account
	transactions []Transaction
	postings     []Posting
	// deadLetters, when not nil, is written as dead_letters.jsonl (even
	// empty); nil leaves the file out: dead letters not available.
	deadLetters []DeadLetter
}

// model is a pure model of a correct payment system and its client: every
// operation is applied at once, in issue order, so the ledger it produces
// is the one a correct system would hold for the journal it produces.
type model struct {
	fixture
	balances    map[int64]int64
	accountRow  map[int64]int // account id → index in accounts
	clock       int64
	partitions  int32
	offsets     map[int32]int64
	nextPosting int64
	nextOp      int
	// infoOutcomes counts the info operations by resolution.
	infoSettled, infoRejected, infoAbsent int64
}

const modelUserBase = 100

// newModel signs up users: user modelUserBase+i owns account i (1-based).
func newModel(users int) *model {
	m := &model{balances: map[int64]int64{}, accountRow: map[int64]int{}, clock: 1_700_000_000_000_000, partitions: 4,
		offsets: map[int32]int64{}}
	m.accounts = append(m.accounts, Account{ID: 0, Kind: "external"})
	for i := 1; i <= users; i++ {
		account, user := int64(i), int64(modelUserBase+i)
		m.accountRow[account] = len(m.accounts)
		m.accounts = append(m.accounts, Account{ID: account, UserID: user, Kind: "user"})
		m.journal = append(m.journal, m.entry("signup", "", user, 0, account, 0, OutcomeOK))
	}
	return m
}

func (m *model) user(account int64) int64 { return modelUserBase + account }

func (m *model) entry(kind, key string, user, from, to, amount int64, outcome string) JournalEntry {
	m.nextOp++
	invoke := m.clock
	m.clock += 10
	return JournalEntry{Version: 1, Op: fmt.Sprintf("op-%d", m.nextOp), Kind: kind, Key: key, User: user, From: from,
		To: to, Amount: amount, Invoke: invoke, Complete: invoke + 5, Attempts: 1, Outcome: outcome}
}

// variant says how the client experienced an operation.
type variant int

const (
	plain          variant = iota // the client learns the outcome
	infoApplied                   // the client gives up, the system applied it
	infoLost                      // the client gives up, the request never arrived
	gatewayRejects                // a 4xx before the ledger: no row
	duplicated                    // a concurrent duplicate was sent too
	replayed                      // the client sends the same request again later
	misused                       // another request reuses the key with another body
	variantCount
)

// operate issues one money operation and applies it to the model's ledger.
// It returns the index of its journal entry.
func (m *model) operate(kind string, from, to, amount int64, how variant) int {
	ordering := from
	user := m.user(from)
	if kind == KindDeposit {
		ordering, user = to, m.user(to)
	}
	key := fmt.Sprintf("k-%d", m.nextOp+1)
	entry := m.entry(kind, key, user, from, to, amount, OutcomeOK)
	if how == gatewayRejects {
		entry.Outcome, entry.Reason = OutcomeFail, "rate_limited"
		m.journal = append(m.journal, entry)
		return len(m.journal) - 1
	}
	if how == infoLost {
		entry.Outcome = OutcomeInfo
		m.infoAbsent++
		m.journal = append(m.journal, entry)
		return len(m.journal) - 1
	}
	// Apply: the decision a correct ledger makes.
	settled := kind == KindDeposit || m.balances[from] >= amount
	partition := int32(ordering % int64(m.partitions))
	offset := m.offsets[partition]
	m.offsets[partition]++
	transaction := Transaction{ID: fmt.Sprintf("tx-%s-%d", key, user), UserID: user, IdempotencyKey: key, Kind: kind,
		SourceAccountID: from, DestinationAccountID: to, Amount: amount, Status: StatusSettled,
		Partition: ptr(partition), AppliedOrder: ptr(offset)}
	if settled {
		for _, leg := range []struct{ account, amount int64 }{{from, -amount}, {to, amount}} {
			m.nextPosting++
			posting := Posting{ID: m.nextPosting, TransactionID: transaction.ID, AccountID: leg.account, Amount: leg.amount}
			if leg.account != 0 {
				m.balances[leg.account] += leg.amount
				posting.BalanceAfter = ptr(m.balances[leg.account])
				m.accounts[m.accountRow[leg.account]].Balance = m.balances[leg.account]
			}
			m.postings = append(m.postings, posting)
		}
		entry.Status = StatusSettled
	} else {
		transaction.Status, transaction.Reason = StatusRejected, "insufficient_funds"
		entry.Outcome, entry.Status, entry.Reason = OutcomeFail, StatusRejected, "insufficient_funds"
	}
	entry.Tx = transaction.ID
	m.transactions = append(m.transactions, transaction)
	if how == infoApplied {
		entry.Outcome, entry.Status, entry.Reason, entry.Tx = OutcomeInfo, "", "", ""
		if settled {
			m.infoSettled++
		} else {
			m.infoRejected++
		}
	}
	if how == duplicated {
		entry.Dup = "concurrent"
	}
	m.journal = append(m.journal, entry)
	index := len(m.journal) - 1
	switch how {
	case replayed:
		replay := m.entry(kind, key, user, from, to, amount, entry.Outcome)
		replay.Status, replay.Reason, replay.Tx = entry.Status, entry.Reason, entry.Tx
		m.journal = append(m.journal, replay)
	case misused:
		misuse := m.entry(KindMisuse, key, user, from, to, amount+1, OutcomeFail)
		misuse.Reason, misuse.MisuseOf = "idempotency_key_reused", entry.Op
		m.journal = append(m.journal, misuse)
	}
	return index
}

// write stores the fixture as a run directory and an export directory.
func (f *fixture) write(t testing.TB) (runDir, exportDir string) {
	t.Helper()
	runDir, exportDir, err := f.writeIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return runDir, exportDir
}

// writeIn stores the fixture under root (for rapid, whose T has no TempDir).
func (f *fixture) writeIn(root string) (runDir, exportDir string, err error) {
	runDir, exportDir = filepath.Join(root, "run"), filepath.Join(root, "ledger")
	for _, err := range []error{
		writeJSONLines(filepath.Join(runDir, "journal.jsonl"), f.journal),
		writeJSONLines(filepath.Join(exportDir, AccountsFile), f.accounts),
		writeJSONLines(filepath.Join(exportDir, TransactionsFile), f.transactions),
		writeJSONLines(filepath.Join(exportDir, PostingsFile), f.postings),
	} {
		if err != nil {
			return "", "", err
		}
	}
	if f.deadLetters != nil {
		if err := writeJSONLines(filepath.Join(exportDir, DeadLettersFile), f.deadLetters); err != nil {
			return "", "", err
		}
	}
	return runDir, exportDir, nil
}

func writeLines[T any](t testing.TB, path string, values []T) {
	t.Helper()
	if err := writeJSONLines(path, values); err != nil {
		t.Fatal(err)
	}
}

func writeJSONLines[T any](path string, values []T) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	defer file.Close()
	writer := bufio.NewWriter(file)
	encoder := json.NewEncoder(writer)
	for i := range values {
		if err := encoder.Encode(&values[i]); err != nil {
			return err
		}
	}
	if err := writer.Flush(); err != nil {
		return err
	}
	return file.Close()
}

// fakeCache is a CacheReader over a map.
type fakeCache map[int64]int64

func (c fakeCache) CachedBalances(_ context.Context, ids []int64) ([]int64, []bool, error) {
	balances, found := make([]int64, len(ids)), make([]bool, len(ids))
	for i, id := range ids {
		balances[i], found[i] = c[id]
	}
	return balances, found, nil
}

// audit runs the auditor over the fixture's files.
func (f *fixture) audit(t testing.TB, cache CacheReader) *Result {
	t.Helper()
	result, err := f.auditIn(t.TempDir(), cache)
	if err != nil {
		t.Fatal(err)
	}
	return result
}

func (f *fixture) auditIn(root string, cache CacheReader) (*Result, error) {
	return f.auditScoped(root, cache, "")
}

func (f *fixture) auditScoped(root string, cache CacheReader, scope string) (*Result, error) {
	runDir, exportDir, err := f.writeIn(root)
	if err != nil {
		return nil, err
	}
	result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}, Cache: cache, Scope: scope})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return result, nil
}

func (r *Result) invariant(name string) *InvariantResult {
	for i := range r.Invariants {
		if r.Invariants[i].Name == name {
			return &r.Invariants[i]
		}
	}
	panic("no invariant " + name)
}

// violated lists the violated invariants.
func (r *Result) violated() []string {
	var names []string
	for _, invariant := range r.Invariants {
		if invariant.Status == StatusViolated {
			names = append(names, invariant.Name)
		}
	}
	return names
}

func (r *Result) summary() string {
	var b strings.Builder
	r.WriteSummary(&b)
	return b.String()
}

// explanation renders an invariant's violations as JSON, to search for the
// keys and accounts they must name.
func (r *Result) explanation(name string) string {
	content, _ := json.Marshal(r.invariant(name).Violations)
	return string(content)
}

func readFile(path string) (string, error) {
	content, err := os.ReadFile(path)
	return string(content), err
}
