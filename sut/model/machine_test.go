package model_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"pgregory.net/rapid"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// The test's own defaults for rapid's flags, used unless the command line or
// the environment gives them: a check costs about a second of HTTP round
// trips against the stack, and shrinking a failure replays sequences
// hundreds of times, so rapid's default of 100 checks is more than the
// test's time budget allows.
var rapidDefaults = []struct{ flag, environment, value string }{
	{"rapid.checks", "RAPID_CHECKS", "20"},
	{"rapid.steps", "RAPID_STEPS", "30"},
	// Shrinking replays sequences against the real stack; 30s is plenty
	// for the handful of steps a counterexample needs.
	{"rapid.shrinktime", "RAPID_SHRINKTIME", "30s"},
}

func TestMain(m *testing.M) {
	flag.Parse()
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, d := range rapidDefaults {
		if _, inEnvironment := os.LookupEnv(d.environment); given[d.flag] || inEnvironment {
			continue
		}
		if err := flag.Set(d.flag, d.value); err != nil {
			fmt.Fprintf(os.Stderr, "model: set -%s: %v\n", d.flag, err)
			os.Exit(2)
		}
	}
	stacktest.Main(m)
}

const (
	// gateways and workers shape the one stack all checks share.
	gateways = 2
	workers  = 2
	// waitForOutcome is the "Prefer: wait" of every money request.
	waitForOutcome = 10 * time.Second
	// outcomeDeadline bounds polling for an outcome the wait did not see
	// (the request was answered 202 accepted).
	outcomeDeadline = 30 * time.Second
	// usersPerCheckMaximum keeps the per-step invariant check cheap.
	usersPerCheckMaximum = 4
	// workerRestartsPerCheckMaximum bounds the slowest action (about 70ms
	// for the kill and the start, plus the worker's rejoin).
	workerRestartsPerCheckMaximum = 1
	// amountMaximum is above a typical balance, so overdrafts happen often.
	amountMaximum = 150
	password      = "correct horse"
)

// environment is the real stack the checks run against.
type environment struct {
	dir      string
	gateways []string
	db       *pgxpool.Pool
	// run makes emails and keys unique across checks and test binaries.
	run     string
	counter atomic.Int64
}

func startEnvironment(t *testing.T) *environment {
	t.Helper()
	started := time.Now()
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: gateways, Workers: workers})
	db, err := pgxpool.New(context.Background(), file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	t.Logf("stack with %d gateways and %d workers up in %s", gateways, workers, time.Since(started).Round(time.Millisecond))
	return &environment{dir: file.Dir, gateways: file.Endpoints.Gateways, db: db,
		run: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())}
}

func (e *environment) unique(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, e.run, e.counter.Add(1))
}

// TestReferenceSystemMatchesModel starts one stack and runs the state
// machine against it twice: with the faithful model, which must pass, and
// with a model that ignores overdrafts, which rapid must catch.
func TestReferenceSystemMatchesModel(t *testing.T) {
	env := startEnvironment(t)

	t.Run("faithful model", func(t *testing.T) {
		var checks, steps, restarts atomic.Int64
		started := time.Now()
		rapid.Check(t, func(rt *rapid.T) {
			m := newMachine(env, false, workerRestartsPerCheckMaximum)
			checks.Add(1)
			defer func() { steps.Add(int64(m.steps)); restarts.Add(int64(m.restarts)) }()
			rt.Repeat(m.actions())
		})
		t.Logf("%d checks, %d steps, %d worker restarts in %s", checks.Load(), steps.Load(), restarts.Load(),
			time.Since(started).Round(time.Millisecond))
	})

	t.Run("model ignoring overdraft is caught", func(t *testing.T) {
		// The failing run must not leave a fail file that later runs
		// replay. Short sequences and a shorter shrink keep it to about 15s:
		// an overdraft needs two steps, and each step drawn is a group the
		// shrinker tries to remove with a replay against the stack.
		setFlagForTest(t, "rapid.nofailfile", "true")
		setFlagForTest(t, "rapid.steps", "10")
		setFlagForTest(t, "rapid.shrinktime", "15s")

		recorder := &recordingTB{name: t.Name()}
		started := time.Now()
		var runs, steps int
		rapid.Check(recorder, func(rt *rapid.T) {
			// No worker restarts here: they cannot change the outcome of
			// an overdraft, and shrinking replays sequences a few thousand
			// times, each restart adding about 100ms to a replay.
			m := newMachine(env, true, 0)
			runs++
			defer func() { steps += m.steps }()
			rt.Repeat(m.actions())
		})
		elapsed := time.Since(started).Round(time.Millisecond)
		t.Logf("%d runs of the machine (search, shrinking, final output), %d steps, in %s", runs, steps, elapsed)
		output := recorder.output()
		if !recorder.Failed() {
			t.Fatalf("rapid found no counterexample to a model that ignores overdrafts (%s); its output:\n%s", elapsed, output)
		}
		if !strings.Contains(output, "[rapid] failed after") || !strings.Contains(output, "-rapid.seed=") {
			t.Errorf("rapid's report does not say how to replay the failure:\n%s", output)
		}
		if !strings.Contains(output, reasonInsufficientFunds) {
			t.Errorf("the counterexample is not about an overdraft:\n%s", output)
		}
		// The shrunk sequence is printed once, after the report: a line per
		// step that completed, then the failing step. A minimal one is a
		// signup before an overdrawing withdrawal (or two signups before a
		// transfer), usually reached; but the shrink is bounded in time
		// (rapid.shrinktime), so on a busy machine it may stop earlier (6
		// steps once in make test): the test requires a printed sequence
		// shorter than the longest a run may draw, and logs how far it got.
		_, shrunk, _ := strings.Cut(output, "Failed test output:")
		completed := regexp.MustCompile(`(?m)^step \d+: .*$`).FindAllString(shrunk, -1)
		if len(completed) == 0 || len(completed) >= 10 {
			t.Errorf("the counterexample printed %d completed steps before the failing one, want 1 to 9 (rapid.steps is 10)\n%s", len(completed), output)
		}
		t.Logf("rapid caught the broken model in %s, shrunk to %d completed steps before the failing one; its report:\n%s", elapsed, len(completed), output)
	})
}

// setFlagForTest sets a flag until the test ends.
func setFlagForTest(t *testing.T, name, value string) {
	t.Helper()
	previous := flag.Lookup(name).Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := flag.Set(name, previous); err != nil {
			t.Errorf("restore -%s: %v", name, err)
		}
	})
}

// recordingTB is a rapid.TB that records failures and output instead of
// failing the test, so a test can assert that rapid fails.
type recordingTB struct {
	name   string
	mutex  sync.Mutex
	failed bool
	lines  []string
}

func (r *recordingTB) record(failed bool, line string) {
	r.mutex.Lock()
	defer r.mutex.Unlock()
	r.failed = r.failed || failed
	r.lines = append(r.lines, line)
}

func (r *recordingTB) output() string {
	r.mutex.Lock()
	defer r.mutex.Unlock()
	return strings.Join(r.lines, "\n")
}

func (r *recordingTB) Helper()                         {}
func (r *recordingTB) Name() string                    { return r.name }
func (r *recordingTB) Logf(format string, args ...any) { r.record(false, fmt.Sprintf(format, args...)) }
func (r *recordingTB) Log(args ...any)                 { r.record(false, fmt.Sprint(args...)) }
func (r *recordingTB) Skipf(format string, args ...any) {
	panic("recordingTB: skip: " + fmt.Sprintf(format, args...))
}
func (r *recordingTB) Skip(args ...any) { panic("recordingTB: skip: " + fmt.Sprint(args...)) }
func (r *recordingTB) SkipNow()         { panic("recordingTB: skip") }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.record(true, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Error(args ...any) { r.record(true, fmt.Sprint(args...)) }
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.record(true, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatal(args ...any) { r.record(true, fmt.Sprint(args...)) }
func (r *recordingTB) FailNow()          { r.record(true, "FailNow") }
func (r *recordingTB) Fail()             { r.record(true, "Fail") }

func (r *recordingTB) Failed() bool {
	r.mutex.Lock()
	defer r.mutex.Unlock()
	return r.failed
}

// machine is one check's state: its users, the requests it sent and the
// model they must agree with.
type machine struct {
	env      *environment
	model    *ledgerModel
	users    []*modelUser
	requests []sentRequest
	restarts int
	// restartsMaximum bounds the worker restarts of one check.
	restartsMaximum int
	steps           int
}

// modelUser is a signed-in user with a client on every gateway.
type modelUser struct {
	index             int
	email             string
	userID, accountID int64
	clients           []*client.Client
}

// sentRequest is a money request sent with a fresh key, and its first answer,
// which every retry with the same key must replay.
type sentRequest struct {
	user      *modelUser
	key       string
	operation operation
	status    int
	body      []byte
}

func newMachine(env *environment, ignoreOverdraft bool, restartsMaximum int) *machine {
	return &machine{env: env, model: newLedgerModel(ignoreOverdraft), restartsMaximum: restartsMaximum}
}

func (m *machine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"signup":         m.signup,
		"deposit":        m.deposit,
		"withdraw":       m.withdraw,
		"transfer":       m.transfer,
		"retry":          m.retry,
		"reuse-key":      m.reuseKey,
		"restart-worker": m.restartWorker,
		"":               m.check,
	}
}

func (m *machine) signup(t *rapid.T) {
	if len(m.users) >= usersPerCheckMaximum {
		t.Skip("enough users")
	}
	gateway := drawGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	email := m.env.unique("model") + "@example.com"
	first := client.New(m.env.gateways[gateway])
	userID, accountID, err := first.Signup(ctx, email, password)
	if err != nil {
		fail(t, "signup failed", "signup of user %d (%s) through gateway %d: %v", len(m.users), email, gateway, err)
	}
	if err := first.Signin(ctx, email, password); err != nil {
		fail(t, "signin failed", "signin of user %d (%s) through gateway %d: %v", len(m.users), email, gateway, err)
	}
	user := &modelUser{index: len(m.users), email: email, userID: userID, accountID: accountID}
	for _, url := range m.env.gateways {
		c := client.New(url)
		c.Token = first.Token
		user.clients = append(user.clients, c)
	}
	m.model.open(accountID)
	m.users = append(m.users, user)
	m.steps++
	t.Logf("step %d: user %d signed up on gateway %d: account %d", m.steps, len(m.users)-1, gateway, accountID)
}

func (m *machine) deposit(t *rapid.T) {
	user := m.drawUser(t, "user")
	amount := rapid.Int64Range(1, amountMaximum).Draw(t, "amount")
	m.fresh(t, user, operation{kindDeposit, externalAccountID, user.accountID, amount})
}

func (m *machine) withdraw(t *rapid.T) {
	user := m.drawUser(t, "user")
	amount := rapid.Int64Range(1, amountMaximum).Draw(t, "amount")
	m.fresh(t, user, operation{kindWithdrawal, user.accountID, externalAccountID, amount})
}

func (m *machine) transfer(t *rapid.T) {
	if len(m.users) < 2 {
		t.Skip("a transfer needs two users")
	}
	from := rapid.IntRange(0, len(m.users)-1).Draw(t, "from")
	to := rapid.IntRange(0, len(m.users)-2).Draw(t, "to")
	if to >= from {
		to++
	}
	amount := rapid.Int64Range(1, amountMaximum).Draw(t, "amount")
	m.fresh(t, m.users[from], operation{kindTransfer, m.users[from].accountID, m.users[to].accountID, amount})
}

// fresh sends an operation with a new key and compares its outcome with the
// model's.
func (m *machine) fresh(t *rapid.T, user *modelUser, op operation) {
	gateway := drawGateway(t)
	key := m.env.unique("key")
	started := time.Now()
	response, err := send(user.clients[gateway], key, op)
	if err != nil {
		fail(t, op.Kind+" got no answer", "%s through gateway %d with key %s: %v", m.describe(op), gateway, key, err)
	}
	want := m.model.apply(op)
	final := response
	if response.Status == http.StatusAccepted {
		// The wait ended before the outcome (a worker was restarting):
		// the outcome must still come, and be the model's.
		final = m.awaitOutcome(t, user, response)
	}
	if final.Status != http.StatusOK {
		fail(t, fmt.Sprintf("%s answered %d %s, want 200", op.Kind, final.Status, final.ErrorCode()),
			"%s through gateway %d with key %s answered %d %s", m.describe(op), gateway, key, final.Status, bytes.TrimSpace(final.Body))
	}
	var got client.Transaction
	if err := final.Decode(&got); err != nil {
		t.Fatal(err)
	}
	wantTransaction := client.Transaction{TransactionID: got.TransactionID, Kind: op.Kind, Status: want.Status,
		Amount: op.AmountMinor, SourceAccountID: op.SourceAccountID, DestinationAccountID: op.DestinationAccountID, Reason: want.Reason}
	if got.Status != want.Status || got.Reason != want.Reason {
		fail(t, fmt.Sprintf("%s: the system says %s, the model %s", op.Kind, outcomeText(got.Status, got.Reason), outcomeText(want.Status, want.Reason)),
			"%s through gateway %d with key %s: the system says %s, the model %s; the answer was %s", m.describe(op), gateway, key,
			m.describeTransaction(got), m.describeTransaction(wantTransaction), bytes.TrimSpace(final.Body))
	}
	if got != wantTransaction || got.TransactionID == "" {
		fail(t, op.Kind+": the transaction resource does not match the request",
			"%s through gateway %d with key %s: the system says %s, the model %s; the answer was %s", m.describe(op), gateway, key,
			m.describeTransaction(got), m.describeTransaction(wantTransaction), bytes.TrimSpace(final.Body))
	}
	m.requests = append(m.requests, sentRequest{user: user, key: key, operation: op, status: response.Status, body: response.Body})
	m.steps++
	t.Logf("step %d: %s through gateway %d: %s %s (%d in %s, key %s, transaction %s)", m.steps, m.describe(op), gateway,
		got.Status, got.Reason, response.Status, time.Since(started).Round(time.Millisecond), key, got.TransactionID)
}

// awaitOutcome polls the transaction of a 202 answer until it is final.
func (m *machine) awaitOutcome(t *rapid.T, user *modelUser, accepted client.Response) client.Response {
	var pending client.Transaction
	if err := accepted.Decode(&pending); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(outcomeDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		response, err := user.clients[0].Transaction(ctx, pending.TransactionID)
		cancel()
		if err != nil {
			fail(t, "reading an accepted transaction failed", "read transaction %s: %v", pending.TransactionID, err)
		}
		var current client.Transaction
		if response.Status == http.StatusOK && response.Decode(&current) == nil &&
			(current.Status == statusSettled || current.Status == statusRejected) {
			return response
		}
		if time.Now().After(deadline) {
			fail(t, fmt.Sprintf("an accepted transaction was not final within %s", outcomeDeadline),
				"transaction %s: %d %s", pending.TransactionID, response.Status, bytes.TrimSpace(response.Body))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// retry sends a previous request again, same key and body: the first answer
// must come back byte for byte, and nothing may change (the invariant check
// after the step sees any new effect).
func (m *machine) retry(t *rapid.T) {
	index, request := m.drawRequest(t)
	gateway := drawGateway(t)
	response, err := send(request.user.clients[gateway], request.key, request.operation)
	if err != nil {
		fail(t, "a retry got no answer", "retry of request %d (%s, key %s) through gateway %d: %v",
			index, m.describe(request.operation), request.key, gateway, err)
	}
	if response.Status != request.status || !bytes.Equal(response.Body, request.body) {
		fail(t, "a retry with the same key and body did not replay the first answer",
			"retry of request %d (%s, key %s) through gateway %d answered %d %s; the first answer was %d %s",
			index, m.describe(request.operation), request.key, gateway, response.Status, bytes.TrimSpace(response.Body), request.status, bytes.TrimSpace(request.body))
	}
	if !response.Replayed {
		fail(t, "a replay was not marked Idempotent-Replayed", "retry of request %d (%s, key %s) through gateway %d",
			index, m.describe(request.operation), request.key, gateway)
	}
	m.steps++
	t.Logf("step %d: retry of request %d (%s, key %s) through gateway %d replayed %d", m.steps, index,
		m.describe(request.operation), request.key, gateway, response.Status)
}

// reuseKey sends a previous key with a different amount: it must be refused
// and have no effect.
func (m *machine) reuseKey(t *rapid.T) {
	index, request := m.drawRequest(t)
	gateway := drawGateway(t)
	changed := request.operation
	changed.AmountMinor++
	response, err := send(request.user.clients[gateway], request.key, changed)
	if err != nil {
		fail(t, "a reused key got no answer", "reuse of request %d's key %s for %s through gateway %d: %v",
			index, request.key, m.describe(changed), gateway, err)
	}
	if response.Status != http.StatusUnprocessableEntity || response.ErrorCode() != "idempotency_key_reused" {
		fail(t, fmt.Sprintf("a key reused with another body answered %d %s, want 422 idempotency_key_reused", response.Status, response.ErrorCode()),
			"reuse of request %d's key %s for %s through gateway %d answered %d %s",
			index, request.key, m.describe(changed), gateway, response.Status, bytes.TrimSpace(response.Body))
	}
	m.steps++
	t.Logf("step %d: reuse of request %d's key (%s) for %s through gateway %d refused", m.steps, index, request.key, m.describe(changed), gateway)
}

// restartWorker kills a worker with SIGKILL and starts it again.
func (m *machine) restartWorker(t *rapid.T) {
	if m.restarts >= m.restartsMaximum {
		t.Skip("enough worker restarts in this check")
	}
	name := fmt.Sprintf("worker-%d", rapid.IntRange(0, workers-1).Draw(t, "worker"))
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := stack.Operate(ctx, m.env.dir, name, stack.ActionKill); err != nil {
		fail(t, "killing a worker failed", "kill %s: %v", name, err)
	}
	if _, err := stack.Operate(ctx, m.env.dir, name, stack.ActionStart); err != nil {
		fail(t, "starting a worker failed", "start %s: %v", name, err)
	}
	m.restarts++
	m.steps++
	t.Logf("step %d: %s killed and started again in %s", m.steps, name, time.Since(started).Round(time.Millisecond))
}

// check compares the system with the model after every step.
func (m *machine) check(t *rapid.T) {
	if total := m.model.total(); total != m.model.netExternalMinor {
		panic(fmt.Sprintf("model: balances sum to %d, net external money is %d", total, m.model.netExternalMinor))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accountIDs := make([]int64, 0, len(m.users))
	userIDs := make([]int64, 0, len(m.users))
	for i, user := range m.users {
		accountIDs = append(accountIDs, user.accountID)
		userIDs = append(userIDs, user.userID)
		gateway := i % len(user.clients)
		balance, err := user.clients[gateway].Balance(ctx, user.accountID)
		if err != nil {
			fail(t, "reading a balance failed", "balance of user %d (account %d) through gateway %d: %v", i, user.accountID, gateway, err)
		}
		if want := m.model.balances[user.accountID]; balance != want {
			fail(t, "a balance read through the API differs from the model",
				"user %d (account %d) has %d through gateway %d, the model %d", i, user.accountID, balance, gateway, want)
		}
	}
	if len(m.users) == 0 {
		return
	}

	rows, err := m.env.db.Query(ctx, `SELECT a.id, a.balance, COALESCE((SELECT sum(p.amount) FROM postings p WHERE p.account_id = a.id), 0)
		FROM accounts a WHERE a.id = ANY($1)`, accountIDs)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var account, balance, postings int64
		if err := rows.Scan(&account, &balance, &postings); err != nil {
			t.Fatal(err)
		}
		seen++
		if want := m.model.balances[account]; balance != want || postings != want {
			fail(t, "a ledger balance or its sum of postings differs from the model",
				"%s (account %d): ledger balance %d, sum of postings %d, the model %d", m.accountName(account), account, balance, postings, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(accountIDs) {
		fail(t, "accounts are missing from the ledger", "%d of %d accounts are in the ledger", seen, len(accountIDs))
	}

	var transactions, malformed int
	if err := m.env.db.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE (SELECT count(*) FROM postings p WHERE p.transaction_id = t.id) <> CASE t.status WHEN 'settled' THEN 2 ELSE 0 END
			OR COALESCE((SELECT sum(p.amount) FROM postings p WHERE p.transaction_id = t.id), 0) <> 0)
		FROM transactions t WHERE t.user_id = ANY($1)`, userIDs).Scan(&transactions, &malformed); err != nil {
		t.Fatal(err)
	}
	if transactions > len(m.requests) {
		fail(t, "exactly once: the ledger has more transactions than keys sent (a duplicate or a phantom)",
			"the ledger has %d transactions of this check's users for %d keys sent", transactions, len(m.requests))
	}
	if transactions < len(m.requests) {
		fail(t, "exactly once: the ledger has fewer transactions than keys answered (a lost operation)",
			"the ledger has %d transactions of this check's users for %d keys sent", transactions, len(m.requests))
	}
	if malformed != 0 {
		fail(t, "transactions without two postings summing to zero (settled) or none (rejected)",
			"%d transactions of this check's users are malformed", malformed)
	}

	// Conservation over the whole ledger: every check before this one left
	// it quiet, so the sums are exact.
	var balances, net int64
	if err := m.env.db.QueryRow(ctx, `SELECT
		(SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind = 'user'),
		(SELECT COALESCE(sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount END), 0) FROM transactions WHERE status = 'settled' AND kind <> 'transfer')`).
		Scan(&balances, &net); err != nil {
		t.Fatal(err)
	}
	if balances != net {
		fail(t, "conservation: user balances differ from settled deposits minus withdrawals",
			"user balances sum to %d, settled deposits minus withdrawals are %d", balances, net)
	}
}

func (m *machine) drawUser(t *rapid.T, label string) *modelUser {
	if len(m.users) == 0 {
		t.Skip("no user yet")
	}
	return m.users[rapid.IntRange(0, len(m.users)-1).Draw(t, label)]
}

func (m *machine) drawRequest(t *rapid.T) (int, sentRequest) {
	if len(m.requests) == 0 {
		t.Skip("no request sent yet")
	}
	index := rapid.IntRange(0, len(m.requests)-1).Draw(t, "request")
	return index, m.requests[index]
}

// accountName names an account by the index of its user in this check, so
// that messages do not change between runs of the same sequence.
func (m *machine) accountName(accountID int64) string {
	if accountID == externalAccountID {
		return "outside"
	}
	for _, user := range m.users {
		if user.accountID == accountID {
			return fmt.Sprintf("user %d", user.index)
		}
	}
	return "an account of no user of this check"
}

// describe names an operation with users' indices.
func (m *machine) describe(op operation) string {
	switch op.Kind {
	case kindDeposit:
		return fmt.Sprintf("deposit of %d to %s", op.AmountMinor, m.accountName(op.DestinationAccountID))
	case kindWithdrawal:
		return fmt.Sprintf("withdrawal of %d by %s", op.AmountMinor, m.accountName(op.SourceAccountID))
	}
	return fmt.Sprintf("%s of %d from %s to %s", op.Kind, op.AmountMinor, m.accountName(op.SourceAccountID), m.accountName(op.DestinationAccountID))
}

// describeTransaction renders a transaction resource without its id.
func (m *machine) describeTransaction(transaction client.Transaction) string {
	outcome := outcomeText(transaction.Status, transaction.Reason)
	if transaction.TransactionID == "" {
		outcome += " without a transaction id"
	}
	return fmt.Sprintf("%s: %s", outcome, m.describe(operation{transaction.Kind, transaction.SourceAccountID,
		transaction.DestinationAccountID, transaction.Amount}))
}

// fail ends a step with a failure. rapid keeps a smaller sequence while
// shrinking only if it fails with the same message, so the summary holds
// nothing that changes between runs (ids the system chose) or with shrinking
// (amounts, user indices); the details go to the log, which rapid prints
// for the minimal sequence.
func fail(t *rapid.T, summary string, detailFormat string, args ...any) {
	t.Helper()
	t.Logf(detailFormat, args...)
	t.Fatal(summary)
}

// outcomeText renders an outcome as "settled" or "rejected (reason)".
func outcomeText(status, reason string) string {
	if reason == "" {
		return status
	}
	return status + " (" + reason + ")"
}

func drawGateway(t *rapid.T) int {
	return rapid.IntRange(0, gateways-1).Draw(t, "gateway")
}

// send sends an operation with a key, asking to wait for its outcome.
func send(c *client.Client, key string, op operation) (client.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitForOutcome+20*time.Second)
	defer cancel()
	switch op.Kind {
	case kindDeposit:
		return c.Deposit(ctx, key, op.DestinationAccountID, op.AmountMinor, waitForOutcome)
	case kindWithdrawal:
		return c.Withdraw(ctx, key, op.SourceAccountID, op.AmountMinor, waitForOutcome)
	case kindTransfer:
		return c.Transfer(ctx, key, op.SourceAccountID, op.DestinationAccountID, op.AmountMinor, waitForOutcome)
	}
	return client.Response{}, errors.New("unknown kind " + op.Kind)
}
