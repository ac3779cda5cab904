package gateway_test

import (
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
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestServeShardedGateway: a gateway process given a second shard
// (ProcessConfig.ShardPostgresURLs, the --shard-postgres-url flag) opens it,
// reports it in /readyz, and signs users up with their accounts in both
// shards, found again at sign-in. No broker runs: signup and sign-in need
// none.
func TestServeShardedGateway(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	layout := shard.Layout{Shards: 2}
	var urls []string
	var stores []*postgres.Store
	for index := range layout.Shards {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		if err := store.NumberAccountsForShard(ctx, layout, index); err != nil {
			t.Fatal(err)
		}
		urls, stores = append(urls, url), append(stores, store)
	}
	public, internal := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	process := gateway.ProcessConfig{
		Daemon: daemon.Config{PostgresURL: urls[0], PostgresMaxConnections: 4, RedisAddr: stacktest.RedisAddr(t),
			Brokers: fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t)), Topic: "ledger.commands", Partitions: 1, ReplicationFactor: 1,
			Name: "gateway-sharded", LogLevel: "warn"},
		Listen: public, InternalListen: internal, KDFMemoryKiB: 64, KDFIterations: 1,
		ShardPostgresURLs: urls[1:],
	}
	served := make(chan error, 1)
	go func() { served <- gateway.Serve(ctx, process) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	var ready map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		response, err := http.Get("http://" + internal + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			if err := json.Unmarshal(body, &ready); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer: %v", err)
		}
	}
	checks, _ := ready["checks"].(map[string]any)
	if checks[shard.Component(1)] != "ok" || checks["postgres"] != "ok" {
		t.Errorf("/readyz checks %v, want postgres and %s ok", checks, shard.Component(1))
	}

	byShard := map[int]int{}
	for i := range 2 {
		email := fmt.Sprintf("served%d@example.com", i)
		credentials := fmt.Sprintf(`{"email": %q, "password": "a long and unusual passphrase 42"}`, email)
		var signup, signin struct {
			UserID    int64 `json:"user_id"`
			AccountID int64 `json:"account_id"`
		}
		for _, step := range []struct {
			path   string
			answer any
		}{{"/v1/users", &signup}, {"/v1/sessions", &signin}} {
			response, err := http.Post("http://"+public+step.path, "application/json", strings.NewReader(credentials))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			if response.StatusCode != http.StatusCreated {
				t.Fatalf("%s for %s: %d %s", step.path, email, response.StatusCode, body)
			}
			if err := json.Unmarshal(body, step.answer); err != nil {
				t.Fatal(err)
			}
		}
		index := layout.Of(signup.UserID)
		if signin.AccountID != signup.AccountID || layout.Of(signup.AccountID) != index {
			t.Fatalf("user %d: account %d at signup, %d at sign-in; want one account of shard %d", signup.UserID, signup.AccountID, signin.AccountID, index)
		}
		if account, err := stores[index].Account(ctx, signup.AccountID); err != nil || account.UserID != signup.UserID {
			t.Fatalf("shard %d: account %d is %+v, %v; want user %d's", index, signup.AccountID, account, err, signup.UserID)
		}
		byShard[index]++
	}
	if byShard[0] != 1 || byShard[1] != 1 {
		t.Errorf("accounts per shard %v, want one in each", byShard)
	}
}
