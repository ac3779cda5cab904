package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSeededBugThroughTheStack starts the whole stack with a gateway bug
// given to gateways and workers alike, as `up --seeded-bug` does: the
// gateway runs it and says so loudly, the workers ignore it and say so, and
// its effect lands in the ledger as two settled transactions for one client
// key (the gateway removed the unique key the bug's system would not have,
// so the workers are not stuck on it).
func TestSeededBugThroughTheStack(t *testing.T) {
	t.Parallel()
	bugArgs := []string{"--seeded-bug", "no-idempotency", "--unsafe-allow-seeded-bugs"}
	s := startStackWith(t, 1, 1, bugArgs, bugArgs)
	alice := s.newUser(0)
	ctx := context.Background()
	var ids []string
	for range 2 {
		response, err := alice.Deposit(ctx, "one-deposit", alice.accountID, 100, 10*time.Second)
		if err != nil || response.Status != http.StatusOK {
			t.Fatalf("deposit: %v %d %s", err, response.Status, response.Body)
		}
		var body struct {
			TransactionID string `json:"transaction_id"`
			Status        string `json:"status"`
		}
		if err := json.Unmarshal(response.Body, &body); err != nil || body.Status != "settled" {
			t.Fatalf("deposit answered %s", response.Body)
		}
		ids = append(ids, body.TransactionID)
	}
	if ids[0] == ids[1] {
		t.Fatalf("the retry was answered as a replay of %s", ids[0])
	}
	var effects int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND idempotency_key = 'one-deposit'
		AND status = 'settled'`, alice.userID).Scan(&effects); err != nil {
		t.Fatal(err)
	}
	if effects != 2 || s.balance(alice.accountID) != 200 {
		t.Errorf("%d settled effects for one key, balance %d; want 2 and 200", effects, s.balance(alice.accountID))
	}
	s.checkLedger()

	logs := map[string]string{"gateway-0": "SEEDED BUG ACTIVE", "worker-0": "seeded bugs that do not live in this process are ignored"}
	for name, want := range logs {
		component, err := s.file.Component(name)
		if err != nil {
			t.Fatal(err)
		}
		content, err := os.ReadFile(component.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(content), want) || !strings.Contains(string(content), "no-idempotency") {
			t.Errorf("%s's log does not say %q about no-idempotency", name, want)
		}
	}
}
