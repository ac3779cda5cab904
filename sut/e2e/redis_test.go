package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// TestRedisLossKeepsServing: with Redis killed, and again after it restarts
// empty, a signed-in user keeps moving money (the gateway remembers the
// sessions it saw; idempotency falls back to the ledger), replays are still
// answered, and the ledger stays right.
func TestRedisLossKeepsServing(t *testing.T) {
	s := startStack(t, 1, 1)
	ctx := context.Background()
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 1000)

	s.operate("kill", "redis")
	response, err := alice.Transfer(ctx, "while-redis-is-down", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(response, err, "settled", ""); err != nil {
		t.Fatalf("transfer with Redis down: %v", err)
	}
	replay, err := alice.Transfer(ctx, "while-redis-is-down", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(replay, err, "settled", ""); err != nil || !replay.Replayed {
		t.Fatalf("replay with Redis down: %v (replayed=%v)", err, replay.Replayed)
	}

	s.operate("start", "redis") // it restarts empty: no sessions, no keys
	response, err = alice.Withdraw(ctx, "after-redis-restart", alice.accountID, 50, 10*time.Second)
	if err := expectOutcome(response, err, "settled", ""); err != nil {
		t.Fatalf("withdrawal after Redis restarted empty: %v", err)
	}
	reused, err := alice.Transfer(ctx, "while-redis-is-down", alice.accountID, bob.accountID, 999, 10*time.Second)
	if err != nil || reused.Status != http.StatusUnprocessableEntity {
		t.Fatalf("key reused after Redis lost it: %v %d %s", err, reused.Status, reused.Body)
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != 850 || b != 100 {
		t.Fatalf("balances %d/%d, want 850/100", a, b)
	}
	s.checkLedger()
}

// TestKeysNewToACompleteRedisSkipTheLedger: a fresh stack marks Redis's keys
// complete (the ledger was empty), so keys Redis reserves as new are queued
// without asking the ledger. A key whose Redis record is gone (as after its
// TTL) is then queued a second time: the ledger's unique key keeps one
// effect, and the waiting replay gets the stored outcome, or 422 for a
// different body.
func TestKeysNewToACompleteRedisSkipTheLedger(t *testing.T) {
	// The gateway looks at the mark every 200 ms instead of 5 s, so the test
	// waits for a look after Redis lost its data rather than sleeping.
	s := startStackWith(t, 1, 1, []string{"--keys-complete-interval=200ms"}, nil)
	ctx := context.Background()
	cache, err := redis.New(redis.Config{Addr: s.file.Endpoints.RedisAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for complete, _ := cache.KeysComplete(ctx); !complete; complete, _ = cache.KeysComplete(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not mark the fresh Redis's keys complete")
		}
		time.Sleep(100 * time.Millisecond)
	}
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 1000)
	first, err := alice.Transfer(ctx, "forgotten", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(first, err, "settled", ""); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: s.file.Endpoints.RedisAddr})
	t.Cleanup(func() { _ = raw.Close() })
	forget := func() {
		t.Helper()
		if n, err := raw.Del(ctx, fmt.Sprintf("idem:%d:forgotten", alice.userID)).Result(); err != nil || n != 1 {
			t.Fatalf("forget the key's record: deleted %d, %v", n, err)
		}
	}

	forget()
	replay, err := alice.Transfer(ctx, "forgotten", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(replay, err, "settled", ""); err != nil {
		t.Fatalf("replay of a forgotten key: %v", err)
	}
	if string(replay.Body) != string(first.Body) {
		t.Fatalf("replay answered %s, the first request %s", replay.Body, first.Body)
	}
	forget()
	reused, err := alice.Transfer(ctx, "forgotten", alice.accountID, bob.accountID, 999, 10*time.Second)
	if err != nil || reused.Status != http.StatusUnprocessableEntity {
		t.Fatalf("forgotten key reused with another body: %v %d %s", err, reused.Status, reused.Body)
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != 900 || b != 100 {
		t.Fatalf("balances %d/%d, want 900/100", a, b)
	}
	// A deposit that does not wait is answered 202, a response the gateway
	// stores in the key's record (a final outcome from the worker is not
	// stored: its replays read the worker's outcome record).
	carol := s.newUser(0)
	if accepted, err := carol.Deposit(ctx, "unwaited", carol.accountID, 5, 0); err != nil || accepted.Status != http.StatusAccepted {
		t.Fatalf("a deposit without waiting: %v %d %s", err, accepted.Status, accepted.Body)
	}
	metrics := scrape(t, s.file.Endpoints.GatewayInternal[0]+"/metrics")
	if !strings.Contains(metrics, `ledger_gateway_ledger_key_checks_total{result="skipped"}`) {
		t.Fatal("no money request skipped the ledger check")
	}
	// The stage timings count every money request's claim (the funding,
	// the transfer, its replay, the reused key, carol's deposit: five at
	// least) and every response remembered (carol's 202: one at least).
	if claims := metricValue(t, metrics, `ledger_gateway_stage_seconds_count{stage="claim"}`); claims < 5 {
		t.Fatalf("%v claims timed, want at least 5", claims)
	}
	if remembered := metricValue(t, metrics, `ledger_gateway_stage_seconds_count{stage="remember"}`); remembered < 1 {
		t.Fatalf("%v responses remembered and timed, want at least 1", remembered)
	}
	if !strings.Contains(metrics, "\nledger_gateway_requests_in_flight 0\n") {
		t.Fatal("the gateway's requests in flight are not 0 between requests")
	}

	// Redis loses everything while the ledger has transactions: the mark is
	// gone and stays gone (the gateway looks again, finds the ledger not
	// empty, and leaves it unmarked), so a reused key is refused by the
	// ledger at once, even without waiting.
	internal := s.file.Endpoints.GatewayInternal[0] + "/metrics"
	const notEmpty = `ledger_gateway_keys_complete_checks_total{result="ledger-not-empty"}`
	looksBefore := metricValue(t, scrape(t, internal), notEmpty)
	if err := raw.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for metricValue(t, scrape(t, internal), notEmpty) <= looksBefore {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not look at the mark again within 30 s of Redis losing its data")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if complete, err := cache.KeysComplete(ctx); err != nil || complete {
		t.Fatalf("after Redis lost its data: keys complete %v, %v", complete, err)
	}
	reused, err = alice.Transfer(ctx, "forgotten", alice.accountID, bob.accountID, 999, 0)
	if err != nil || reused.Status != http.StatusUnprocessableEntity {
		t.Fatalf("after Redis lost its data, a reused key without waiting: %v %d %s", err, reused.Status, reused.Body)
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != 900 || b != 100 {
		t.Fatalf("balances %d/%d, want 900/100", a, b)
	}
	s.checkLedger()
}

// metricValue returns the value of one sample line of a /metrics text (name
// with its labels, as printed), 0 when the line is absent.
func metricValue(t *testing.T, text, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if value, found := strings.CutPrefix(line, sample+" "); found {
			number, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return number
		}
	}
	return 0
}
