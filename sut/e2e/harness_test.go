package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// testStack is a running local stack of the test's own.
type testStack struct {
	t    *testing.T
	dir  string
	file *stack.File
	db   *pgxpool.Pool
}

// startStack starts a stack on free ports with cheap password hashing.
func startStack(t *testing.T, gateways, workers int, extraWorkerArgs ...string) *testStack {
	t.Helper()
	return startStackWith(t, gateways, workers, nil, extraWorkerArgs)
}

// startStackWith also appends arguments to every gateway's command line.
func startStackWith(t *testing.T, gateways, workers int, extraGatewayArgs, extraWorkerArgs []string) *testStack {
	t.Helper()
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: gateways, Workers: workers,
		GatewayArgs: extraGatewayArgs, WorkerArgs: extraWorkerArgs})
	db, err := pgxpool.New(context.Background(), file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return &testStack{t: t, dir: file.Dir, file: file, db: db}
}

// operate applies a stack action to one component.
func (s *testStack) operate(action, name string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := stack.Operate(ctx, s.dir, name, action); err != nil {
		s.t.Fatalf("%s %s: %v", action, name, err)
	}
}

var userCounter atomic.Int64

// user is a signed-up, signed-in user with its own client.
type user struct {
	*client.Client
	userID, accountID int64
}

func (s *testStack) newUser(gateway int) user {
	s.t.Helper()
	ctx := context.Background()
	c := client.New(s.file.Endpoints.Gateways[gateway])
	email := fmt.Sprintf("user%d-%d@example.com", time.Now().UnixNano(), userCounter.Add(1))
	userID, accountID, err := c.Signup(ctx, email, "correct horse")
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Signin(ctx, email, "correct horse"); err != nil {
		s.t.Fatal(err)
	}
	return user{Client: c, userID: userID, accountID: accountID}
}

// on returns the same user's client pointed at another gateway.
func (u user) on(s *testStack, gateway int) user {
	c := client.New(s.file.Endpoints.Gateways[gateway])
	c.Token = u.Token
	return user{Client: c, userID: u.userID, accountID: u.accountID}
}

// fund deposits amount and waits for it to settle.
func (s *testStack) fund(u user, amount int64) {
	s.t.Helper()
	response, err := u.Deposit(context.Background(), fmt.Sprintf("fund-%d-%d", u.accountID, time.Now().UnixNano()), u.accountID, amount, 10*time.Second)
	if err != nil || response.Status != http.StatusOK {
		s.t.Fatalf("fund: %v %d %s", err, response.Status, response.Body)
	}
}

// balance reads the ledger's balance directly.
func (s *testStack) balance(accountID int64) int64 {
	s.t.Helper()
	var balance int64
	if err := s.db.QueryRow(context.Background(), `SELECT balance FROM accounts WHERE id = $1`, accountID).Scan(&balance); err != nil {
		s.t.Fatal(err)
	}
	return balance
}

// waitApplied polls until every transaction id is in the ledger.
func (s *testStack) waitApplied(ids []string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var found int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE id = ANY($1::uuid[])`, ids).Scan(&found); err != nil {
			s.t.Fatal(err)
		}
		if found == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("only %d of %d acknowledged transactions reached the ledger within %s", found, len(ids), within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkLedger asserts conservation and balance-equals-postings.
func (s *testStack) checkLedger() {
	s.t.Helper()
	ctx := context.Background()
	var unbalanced, wrongBalances, doublePostings int
	var balances, net int64
	queries := []struct {
		sql  string
		into any
	}{
		{`SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING sum(amount) <> 0) x`, &unbalanced},
		{`SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING count(*) <> 2) x`, &doublePostings},
		{`SELECT count(*) FROM accounts a WHERE kind = 'user' AND balance <> COALESCE((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`, &wrongBalances},
		{`SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind = 'user'`, &balances},
		{`SELECT COALESCE(sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount END), 0) FROM transactions WHERE status = 'settled' AND kind <> 'transfer'`, &net},
	}
	for _, q := range queries {
		if err := s.db.QueryRow(ctx, q.sql).Scan(q.into); err != nil {
			s.t.Fatal(err)
		}
	}
	if unbalanced != 0 || doublePostings != 0 || wrongBalances != 0 || balances != net {
		s.t.Fatalf("ledger broken: %d unbalanced, %d with other than two postings, %d balances differ from postings, balances %d vs net deposits %d",
			unbalanced, doublePostings, wrongBalances, balances, net)
	}
}

// load sends transfers among users until stop is closed (or count is
// reached), recording the transaction ids the gateways acknowledged.
type load struct {
	mutex        sync.Mutex
	acknowledged []string
	failures     atomic.Int64
}

func (l *load) acknowledge(id string) {
	l.mutex.Lock()
	l.acknowledged = append(l.acknowledged, id)
	l.mutex.Unlock()
}

func (l *load) ids() []string {
	l.mutex.Lock()
	defer l.mutex.Unlock()
	return append([]string(nil), l.acknowledged...)
}
