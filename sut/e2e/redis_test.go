package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"
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
