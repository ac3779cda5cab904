package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/client"
)

// TestIdempotencyContract checks the contract over the real pipeline: a
// replay returns the identical bytes (through another gateway too), a key
// reused with another body is rejected and never applied, 50 concurrent
// requests with one key have one effect, and an overdraft is rejected.
func TestIdempotencyContract(t *testing.T) {
	checkIdempotencyContract(t, startStack(t, 2, 1))
}

// TestIdempotencyContractNaive: the same contract holds in the naive apply
// mode (gateway --apply-mode naive, no worker): each request applied by the
// gateway in a Postgres transaction of its own.
func TestIdempotencyContractNaive(t *testing.T) {
	checkIdempotencyContract(t, startStackWith(t, 2, 0, []string{"--apply-mode", "naive"}, nil))
}

func checkIdempotencyContract(t *testing.T, s *testStack) {
	ctx := context.Background()
	alice, bob := s.newUser(0), s.newUser(1)
	s.fund(alice, 1000)

	t.Run("replay returns the identical response", func(t *testing.T) {
		for _, wait := range []time.Duration{0, 10 * time.Second} {
			key := fmt.Sprintf("replay-%s", wait)
			first, err := alice.Transfer(ctx, key, alice.accountID, bob.accountID, 10, wait)
			if err != nil || (first.Status != http.StatusAccepted && first.Status != http.StatusOK) {
				t.Fatalf("first: %v %d %s", err, first.Status, first.Body)
			}
			for gateway := range 2 {
				replay, err := alice.on(s, gateway).Transfer(ctx, key, alice.accountID, bob.accountID, 10, wait)
				if err != nil {
					t.Fatal(err)
				}
				if replay.Status != first.Status || !bytes.Equal(replay.Body, first.Body) || !replay.Replayed {
					t.Errorf("wait %s, gateway %d: replay %d %q (replayed=%v), first %d %q", wait, gateway, replay.Status, replay.Body, replay.Replayed, first.Status, first.Body)
				}
			}
		}
	})

	t.Run("same key with another body is rejected and never applied", func(t *testing.T) {
		first, err := alice.Transfer(ctx, "reused", alice.accountID, bob.accountID, 5, 10*time.Second)
		if err != nil || first.Status != http.StatusOK {
			t.Fatalf("first: %v %d %s", err, first.Status, first.Body)
		}
		before := s.balance(bob.accountID)
		reused, err := alice.Transfer(ctx, "reused", alice.accountID, bob.accountID, 500, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if reused.Status != http.StatusUnprocessableEntity || reused.ErrorCode() != "idempotency_key_reused" {
			t.Fatalf("reused key: %d %s", reused.Status, reused.Body)
		}
		// A later request of alice's proves the queue moved past anything
		// the misuse could have queued.
		s.fund(alice, 1)
		if after := s.balance(bob.accountID); after != before {
			t.Fatalf("bob's balance moved from %d to %d", before, after)
		}
		var rows int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND idempotency_key = 'reused'`, alice.userID).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("%d transactions for the key, want 1", rows)
		}
	})

	t.Run("50 concurrent requests with one key give one effect", func(t *testing.T) {
		before := s.balance(bob.accountID)
		var group sync.WaitGroup
		statuses := make(chan int, 50)
		for i := range 50 {
			group.Add(1)
			go func() {
				defer group.Done()
				response, err := alice.on(s, i%2).Transfer(ctx, "concurrent", alice.accountID, bob.accountID, 7, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				statuses <- response.Status
			}()
		}
		group.Wait()
		close(statuses)
		counts := map[int]int{}
		for status := range statuses {
			counts[status]++
		}
		for status := range counts {
			if status != http.StatusOK && status != http.StatusAccepted && status != http.StatusConflict {
				t.Errorf("unexpected statuses %v", counts)
			}
		}
		s.fund(alice, 1)
		if after := s.balance(bob.accountID); after != before+7 {
			t.Fatalf("bob's balance went from %d to %d, want +7 exactly once (statuses %v)", before, after, counts)
		}
	})

	t.Run("overdraft is rejected", func(t *testing.T) {
		balance := s.balance(alice.accountID)
		response, err := alice.Withdraw(ctx, "too-much", alice.accountID, balance+1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var outcome client.Transaction
		if err := response.Decode(&outcome); err != nil {
			t.Fatal(err)
		}
		if response.Status != http.StatusOK || outcome.Status != "rejected" || outcome.Reason != "insufficient_funds" {
			t.Fatalf("overdraft: %d %s", response.Status, response.Body)
		}
		if after := s.balance(alice.accountID); after != balance {
			t.Fatalf("balance moved from %d to %d", balance, after)
		}
	})
	s.checkLedger()
}

// runTransfers sends transfers among users from several goroutines until
// the deadline or count, in both directions, recording acknowledgements.
func runTransfers(ctx context.Context, s *testStack, users []user, goroutines, perGoroutine int, l *load) {
	var group sync.WaitGroup
	for g := range goroutines {
		group.Add(1)
		go func() {
			defer group.Done()
			random := rand.New(rand.NewPCG(uint64(g), 42))
			for i := 0; i < perGoroutine && ctx.Err() == nil; i++ {
				from := users[random.IntN(len(users))]
				to := users[random.IntN(len(users))]
				if from.accountID == to.accountID {
					continue
				}
				key := fmt.Sprintf("load-%d-%d", g, i)
				// Retry with the same key until acknowledged or the
				// deadline: what a careful client does across faults.
				for attempt := 0; ctx.Err() == nil; attempt++ {
					response, err := from.on(s, i%len(s.file.Endpoints.Gateways)).Transfer(ctx, key, from.accountID, to.accountID, int64(1+random.IntN(50)), 0)
					if err == nil && (response.Status == http.StatusAccepted || response.Status == http.StatusOK) {
						var outcome client.Transaction
						if response.Decode(&outcome) == nil {
							l.acknowledge(outcome.TransactionID)
						}
						break
					}
					l.failures.Add(1)
					time.Sleep(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
				}
			}
		}()
	}
	group.Wait()
}

// TestConcurrentTransfersBothWays: transfers in both directions among 10
// accounts through two gateways and two workers end with no deadlock (all
// settle in time) and the total conserved.
func TestConcurrentTransfersBothWays(t *testing.T) {
	s := startStack(t, 2, 2)
	users := make([]user, 10)
	for i := range users {
		users[i] = s.newUser(i % 2)
		s.fund(users[i], 1000)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var l load
	runTransfers(ctx, s, users, 20, 100, &l)
	ids := l.ids()
	if len(ids) < 1000 {
		t.Fatalf("only %d transfers acknowledged", len(ids))
	}
	s.waitApplied(ids, 30*time.Second)
	s.checkTotal(users, 10_000)
	s.checkLedger()
}

// TestWorkerKilledMidBatch kills a worker with SIGKILL while transfers flow
// (so batches are being applied), restarts it, and checks every
// acknowledged command has exactly one effect.
func TestWorkerKilledMidBatch(t *testing.T) {
	s := startStack(t, 1, 1, "--linger=20ms")
	users := s.fundedUsers(10, 10_000)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var l load
	done := make(chan struct{})
	go func() {
		defer close(done)
		runTransfers(ctx, s, users, 16, 150, &l)
	}()
	// Kill the worker the moment Postgres shows it inside a batch's
	// transaction; Postgres logs each connection that vanished with a
	// transaction open, which tells how many kills landed mid-batch.
	for kill := range 3 {
		s.waitTransfersApplied(200 * (kill + 1))
		s.waitWorkerInTransaction("worker-0")
		s.operate("kill", "worker-0")
		s.operate("start", "worker-0")
	}
	<-done
	ids := l.ids()
	s.waitApplied(ids, 60*time.Second)
	s.checkTotal(users, 100_000)
	var duplicates int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING count(*) > 2) x`).Scan(&duplicates); err != nil {
		t.Fatal(err)
	}
	if duplicates != 0 {
		t.Fatalf("%d transactions applied more than once", duplicates)
	}
	s.checkLedger()
	log, err := os.ReadFile(filepath.Join(s.dir, "logs", "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	midBatch := strings.Count(string(log), "unexpected EOF on client connection with an open transaction")
	if midBatch == 0 {
		t.Fatal("no kill landed inside a batch's transaction (Postgres logged no aborted open transaction)")
	}
	t.Logf("%d transfers acknowledged; %d of 3 kills landed inside an open batch transaction", len(ids), midBatch)
}

// TestBrokerKilled kills the broker with SIGKILL under load, restarts it, and
// checks no acknowledged command is lost.
func TestBrokerKilled(t *testing.T) {
	s := startStack(t, 1, 1)
	users := s.fundedUsers(10, 10_000)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var l load
	done := make(chan struct{})
	go func() {
		defer close(done)
		runTransfers(ctx, s, users, 16, 100, &l)
	}()
	waitForAcknowledged(t, &l, 300)
	s.operate("kill", "broker")
	atKill := len(l.ids())
	s.operate("start", "broker")
	<-done
	ids := l.ids()
	if len(ids) <= atKill {
		t.Fatalf("no transfer was acknowledged after the broker restarted (%d at the kill)", atKill)
	}
	t.Logf("broker killed after %d acknowledgements; %d more after its restart", atKill, len(ids)-atKill)
	s.waitApplied(ids, 60*time.Second)
	s.checkTotal(users, 100_000)
	s.checkLedger()
	t.Logf("%d transfers acknowledged, %d failed attempts retried", len(ids), l.failures.Load())
}

func waitForAcknowledged(t *testing.T, l *load, count int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(l.ids()) < count {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d acknowledgements within a minute", len(l.ids()), count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *testStack) transfersApplied() int {
	s.t.Helper()
	var count int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE kind = 'transfer'`).Scan(&count); err != nil {
		s.t.Fatal(err)
	}
	return count
}

func (s *testStack) waitTransfersApplied(count int) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for s.transfersApplied() < count {
		if time.Now().After(deadline) {
			s.t.Fatalf("fewer than %d transfers applied within a minute", count)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBadInput: malformed requests get a clear error with the right status
// and code, and nothing reaches the ledger.
func TestBadInput(t *testing.T) {
	s := startStack(t, 1, 1)
	ctx := context.Background()
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 100)
	anonymous := client.New(s.file.Endpoints.Gateways[0])
	transfer := func(amount string) []byte {
		return []byte(fmt.Sprintf(`{"from_account_id":%d,"to_account_id":%d,"amount":%s}`, alice.accountID, bob.accountID, amount))
	}
	cases := []struct {
		name   string
		client *client.Client
		method string
		path   string
		body   []byte
		key    string
		status int
		code   string
	}{
		{"no token", anonymous, "POST", "/v1/transfers", transfer("1"), "k", 401, "unauthenticated"},
		{"missing key", alice.Client, "POST", "/v1/transfers", transfer("1"), "", 400, "idempotency_key_missing"},
		{"zero amount", alice.Client, "POST", "/v1/transfers", transfer("0"), "k1", 400, "invalid_amount"},
		{"negative amount", alice.Client, "POST", "/v1/transfers", transfer("-5"), "k2", 400, "invalid_amount"},
		{"fractional amount", alice.Client, "POST", "/v1/transfers", transfer("1.5"), "k3", 400, "invalid_amount"},
		{"exponent amount", alice.Client, "POST", "/v1/transfers", transfer("1e3"), "k4", 400, "invalid_amount"},
		{"string amount", alice.Client, "POST", "/v1/transfers", transfer(`"10"`), "k5", 400, "invalid_amount"},
		{"amount above maximum", alice.Client, "POST", "/v1/transfers", transfer("100000000001"), "k-above-max", 400, "invalid_amount"},
		{"amount overflows int64", alice.Client, "POST", "/v1/transfers", transfer("99999999999999999999"), "k7", 400, "invalid_amount"},
		{"unknown field", alice.Client, "POST", "/v1/deposits", []byte(fmt.Sprintf(`{"account_id":%d,"amount":1,"currency":"EUR"}`, alice.accountID)), "k8", 400, "invalid_request"},
		{"malformed JSON", alice.Client, "POST", "/v1/deposits", []byte(`{"account_id":`), "k9", 400, "invalid_request"},
		{"two JSON values", alice.Client, "POST", "/v1/deposits", []byte(fmt.Sprintf(`{"account_id":%d,"amount":1} {}`, alice.accountID)), "k10", 400, "invalid_request"},
		{"body too large", alice.Client, "POST", "/v1/deposits", bytes.Repeat([]byte(" "), 20_000), "k11", 413, "body_too_large"},
		{"transfer from another's account", bob.Client, "POST", "/v1/transfers", transfer("1"), "k12", 403, "forbidden"},
		{"deposit to another's account", bob.Client, "POST", "/v1/deposits", []byte(fmt.Sprintf(`{"account_id":%d,"amount":1}`, alice.accountID)), "k13", 403, "forbidden"},
		{"same account", alice.Client, "POST", "/v1/transfers", []byte(fmt.Sprintf(`{"from_account_id":%d,"to_account_id":%d,"amount":1}`, alice.accountID, alice.accountID)), "k14", 400, "same_account"},
		{"read another's account", bob.Client, "GET", fmt.Sprintf("/v1/accounts/%d", alice.accountID), nil, "", 404, "account_not_found"},
		{"unknown transaction", alice.Client, "GET", "/v1/transactions/00000000-0000-8000-8000-000000000000", nil, "", 404, "not_found"},
		{"bad email", anonymous, "POST", "/v1/users", []byte(`{"email":"not-an-email","password":"long enough"}`), "", 400, "invalid_email"},
		{"short password", anonymous, "POST", "/v1/users", []byte(`{"email":"x@example.com","password":"short"}`), "", 400, "weak_password"},
		{"wrong password", anonymous, "POST", "/v1/sessions", []byte(`{"email":"nobody@example.com","password":"whatever1"}`), "", 401, "invalid_credentials"},
		{"unknown route", anonymous, "GET", "/v1/nothing", nil, "", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			response, err := c.client.Do(ctx, c.method, c.path, c.body, c.key, 0)
			if err != nil {
				t.Fatal(err)
			}
			if response.Status != c.status || response.ErrorCode() != c.code {
				t.Fatalf("got %d %s, want %d %s", response.Status, response.Body, c.status, c.code)
			}
		})
	}
	// A transfer to an account that does not exist is queued, then rejected
	// by the worker.
	response, err := alice.Transfer(ctx, "nowhere", alice.accountID, 987654321, 1, 10*time.Second)
	if err := expectOutcome(response, err, "rejected", "account_not_found"); err != nil {
		t.Fatal(err)
	}
	s.fund(alice, 1)
	if got := s.balance(alice.accountID); got != 101 {
		t.Fatalf("alice has %d, want 101: a bad request moved money", got)
	}
	s.checkLedger()
}

func expectOutcome(response client.Response, err error, status, reason string) error {
	if err != nil {
		return err
	}
	var outcome client.Transaction
	if err := response.Decode(&outcome); err != nil {
		return err
	}
	if response.Status != http.StatusOK || outcome.Status != status || outcome.Reason != reason {
		return fmt.Errorf("got %d %s, want %s/%s", response.Status, response.Body, status, reason)
	}
	return nil
}

// waitWorkerInTransaction polls pg_stat_activity until the named worker has a
// transaction open.
func (s *testStack) waitWorkerInTransaction(name string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var open int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND xact_start IS NOT NULL`, name).Scan(&open); err != nil {
			s.t.Fatal(err)
		}
		if open > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s never had a transaction open within 30s", name)
		}
	}
}

// fundedUsers signs up n users on the first gateway and funds each.
func (s *testStack) fundedUsers(n int, amount int64) []user {
	s.t.Helper()
	users := make([]user, n)
	for i := range users {
		users[i] = s.newUser(0)
		s.fund(users[i], amount)
	}
	return users
}

// checkTotal asserts the users' balances add up to want.
func (s *testStack) checkTotal(users []user, want int64) {
	s.t.Helper()
	var total int64
	for _, u := range users {
		total += s.balance(u.accountID)
	}
	if total != want {
		s.t.Fatalf("total %d, want %d: money was created or destroyed", total, want)
	}
}
