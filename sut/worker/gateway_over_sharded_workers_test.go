package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestGatewayOverShardedWorkers: a sharded gateway (gateway.Serve with
// --shard-postgres-url) in front of one worker per shard (Serve with --shard
// I) on a real broker and two real Postgres shards: /readyz waits for both
// shards' consumer groups; two users' accounts land in both shards; a
// deposit, a cross-shard transfer (a saga, completed), one to a missing
// account (compensated: rejected account_not_found) and one back are
// answered with their outcomes within the bounded wait, their statuses and
// the balances read from the right shards.
func TestGatewayOverShardedWorkers(t *testing.T) {
	r := newShardedRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 3)
	for i := range 2 {
		process := ProcessConfig{Group: "ledger-workers", MetricsListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Shard: i, ShardPostgresURLs: r.urls[1:],
			Worker: Config{Linger: time.Millisecond}}
		process.Daemon = daemon.Config{PostgresURL: r.urls[0], PostgresMaxConnections: 4, RedisAddr: r.redis, Brokers: strings.Join(r.brokers, ","),
			Topic: kafka.DefaultTopic, Partitions: 2, ReplicationFactor: 1, Name: fmt.Sprintf("worker-s%d", i), LogLevel: "warn"}
		go func() { served <- Serve(ctx, process) }()
	}
	public, internal := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := gateway.ProcessConfig{
		Daemon: daemon.Config{PostgresURL: r.urls[0], PostgresMaxConnections: 4, RedisAddr: r.redis, Brokers: strings.Join(r.brokers, ","),
			Topic: kafka.DefaultTopic, Partitions: 2, ReplicationFactor: 1, Name: "gateway-0", LogLevel: "warn"},
		Listen: public, InternalListen: internal, KDFMemoryKiB: 64, KDFIterations: 1, WorkersGroup: "ledger-workers",
		ShardPostgresURLs: r.urls[1:],
	}
	g.Gateway.ApplyMode = gateway.ApplyModeQueue
	g.Gateway.SoftBalanceCheck = true
	go func() { served <- gateway.Serve(ctx, g) }()
	defer func() {
		cancel()
		for range 3 {
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}()
	r.eventually(30*time.Second, func() error {
		response, err := http.Get("http://" + internal + "/readyz")
		if err != nil {
			return err
		}
		defer response.Body.Close()
		body, _ := io.ReadAll(response.Body)
		if response.StatusCode != 200 {
			return fmt.Errorf("readyz %d %s", response.StatusCode, body)
		}
		if !strings.Contains(string(body), `"postgres-shard-1":"ok"`) {
			return fmt.Errorf("readyz %s does not report shard 1", body)
		}
		return nil
	})
	type answer struct {
		Token         string `json:"token"`
		UserID        int64  `json:"user_id"`
		AccountID     int64  `json:"account_id"`
		Balance       int64  `json:"balance"`
		TransactionID string `json:"transaction_id"`
		Status        string `json:"status"`
		Reason        string `json:"reason"`
	}
	call := func(method, path, token, key, body string) (int, answer, string) {
		var reader io.Reader
		if body != "" {
			reader = bytes.NewBufferString(body)
		}
		request, _ := http.NewRequest(method, "http://"+public+path, reader)
		if body != "" {
			request.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			request.Header.Set("Authorization", "Bearer "+token)
		}
		if key != "" {
			request.Header.Set("Idempotency-Key", key)
			request.Header.Set("Prefer", "wait=15")
		}
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		read, _ := io.ReadAll(response.Body)
		var a answer
		_ = json.Unmarshal(read, &a)
		return response.StatusCode, a, string(read)
	}
	var users []answer
	for _, email := range []string{"alice@example.com", "bob@example.com"} {
		credentials := fmt.Sprintf(`{"email": %q, "password": "a long and unusual passphrase 42"}`, email)
		if status, _, body := call("POST", "/v1/users", "", "", credentials); status != 201 {
			t.Fatalf("signup %d %s", status, body)
		}
		status, a, body := call("POST", "/v1/sessions", "", "", credentials)
		if status != 201 {
			t.Fatalf("signin %d %s", status, body)
		}
		users = append(users, a)
	}
	alice, bob := users[0], users[1]
	if r.layout.Of(alice.AccountID) == r.layout.Of(bob.AccountID) {
		t.Fatalf("alice's account %d and bob's %d are in one shard: want one in each", alice.AccountID, bob.AccountID)
	}
	steps := []struct {
		token, key, path, body, wantStatus, wantReason string
	}{
		{alice.Token, "fund", "/v1/deposits", fmt.Sprintf(`{"account_id": %d, "amount": 500}`, alice.AccountID), "settled", ""},
		{alice.Token, "across", "/v1/transfers", fmt.Sprintf(`{"from_account_id": %d, "to_account_id": %d, "amount": 120}`, alice.AccountID, bob.AccountID), "settled", ""},
		{alice.Token, "missing", "/v1/transfers", fmt.Sprintf(`{"from_account_id": %d, "to_account_id": %d, "amount": 80}`, alice.AccountID, bob.AccountID+2000), "rejected", "account_not_found"},
		{bob.Token, "back", "/v1/transfers", fmt.Sprintf(`{"from_account_id": %d, "to_account_id": %d, "amount": 20}`, bob.AccountID, alice.AccountID), "settled", ""},
	}
	for _, step := range steps {
		status, a, body := call("POST", step.path, step.token, step.key, step.body)
		if status != 200 || a.Status != step.wantStatus || a.Reason != step.wantReason {
			t.Errorf("%s: %d %s, want %s %s", step.key, status, body, step.wantStatus, step.wantReason)
			continue
		}
		if status, got, body := call("GET", "/v1/transactions/"+a.TransactionID, step.token, "", ""); status != 200 || got.Status != step.wantStatus {
			t.Errorf("status of %s: %d %s", step.key, status, body)
		}
	}
	for _, check := range []struct {
		user answer
		want int64
	}{{alice, 400}, {bob, 100}} {
		status, a, body := call("GET", fmt.Sprintf("/v1/accounts/%d", check.user.AccountID), check.user.Token, "", "")
		if status != 200 || a.Balance != check.want {
			t.Errorf("balance of %d: %d %s, want %d", check.user.AccountID, status, body, check.want)
		}
	}
}

func freePort(t *testing.T) int { return stacktest.FreePort(t) }
