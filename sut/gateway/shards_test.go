package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// The gateway over a ledger split in two real Postgres shards (databases
// of the test cluster, numbered as `migrate --shard I/2` numbers them), a
// real Redis, and a queue that records the commands: the test plays the
// workers, applying each command in the shard of its key account.

// shardedGateway is a gateway over two shards and what the tests look into.
type shardedGateway struct {
	url    string
	layout shard.Layout
	stores []*postgres.Store
	// shardOne wraps shard 1 so a test can make its account creation fail.
	shardOne *faultyShard
	redis    *stack.Component
	cache    *redis.Client
	queue    *recordingQueue
	// offsets is the next offset of partition 0 in each shard (the test's
	// worker of that shard).
	mutex   sync.Mutex
	offsets []int64
}

// faultyShard is a real shard whose account creation fails while fail is
// set: a shard that cannot be reached between a signup's two steps.
type faultyShard struct {
	*postgres.Store
	fail atomic.Bool
}

func (f *faultyShard) CreateShardAccount(ctx context.Context, userID int64) (int64, error) {
	if f.fail.Load() {
		return 0, errors.New("shard 1 is unreachable")
	}
	return f.Store.CreateShardAccount(ctx, userID)
}

// shardedConfig is a gateway config for tests: cheap hashing, no limits on
// signups and sign-ins, quick waits.
func shardedConfig() gateway.Config {
	off := gateway.RateLimit{PerSecond: -1}
	return gateway.Config{PasswordHashing: gateway.PasswordHashing{MemoryKiB: 64, Iterations: 1},
		SignupPerAddress: off, SignupPerEmail: off, SigninPerAddress: off, SigninPerEmail: off,
		WaitPollInterval: 10 * time.Millisecond, SoftBalanceCheck: true}
}

// newShardedGateway starts the gateway; numbered says whether each shard
// numbers its accounts for the layout (migrate --shard I/2).
func newShardedGateway(t *testing.T, config gateway.Config, numbered bool) *shardedGateway {
	t.Helper()
	ctx := context.Background()
	s := &shardedGateway{layout: shard.Layout{Shards: 2}, queue: &recordingQueue{}, offsets: make([]int64, 2)}
	for index := range s.layout.Shards {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		if numbered {
			if err := store.NumberAccountsForShard(ctx, s.layout, index); err != nil {
				t.Fatal(err)
			}
		}
		s.stores = append(s.stores, store)
	}
	s.shardOne = &faultyShard{Store: s.stores[1]}
	s.redis = stacktest.StartRedis(t)
	cache, err := redis.New(redis.Config{Addr: s.redis.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	s.cache = cache
	server, err := gateway.New(config, gateway.Dependencies{Store: s.stores[0], Cache: cache, Queue: s.queue,
		LimitCache: cache, Rejections: s.stores[0],
		Shards: []gateway.ShardStore{s.stores[0], s.shardOne}, ShardUsers: s.stores[0]})
	if err != nil {
		t.Fatal(err)
	}
	httpServer := httptest.NewServer(server.Handler())
	t.Cleanup(httpServer.Close)
	s.url = httpServer.URL
	return s
}

type shardedAnswer struct {
	status   int
	replayed bool
	body     string
	decoded  struct {
		Token         string `json:"token"`
		UserID        int64  `json:"user_id"`
		AccountID     int64  `json:"account_id"`
		Balance       int64  `json:"balance"`
		TransactionID string `json:"transaction_id"`
		Status        string `json:"status"`
		Reason        string `json:"reason"`
	}
}

// call sends a request; headers are name, value pairs.
func (s *shardedGateway) call(t *testing.T, method, path, token, body string, headers ...string) shardedAnswer {
	t.Helper()
	var content io.Reader
	if body != "" {
		content = bytes.NewBufferString(body)
	}
	request, err := http.NewRequest(method, s.url+path, content)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		request.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		request.Header.Set(headers[i], headers[i+1])
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Error(err)
		return shardedAnswer{}
	}
	defer response.Body.Close()
	read, err := io.ReadAll(response.Body)
	if err != nil {
		t.Error(err)
	}
	answer := shardedAnswer{status: response.StatusCode, replayed: response.Header.Get(gateway.ReplayedHeader) == "true", body: string(read)}
	_ = json.Unmarshal(read, &answer.decoded)
	return answer
}

func (s *shardedGateway) signup(t *testing.T, email string) shardedAnswer {
	t.Helper()
	return s.call(t, http.MethodPost, "/v1/users", "", fmt.Sprintf(`{"email": %q, "password": "a long and unusual passphrase 42"}`, email))
}

func (s *shardedGateway) signin(t *testing.T, email string) shardedAnswer {
	t.Helper()
	return s.call(t, http.MethodPost, "/v1/sessions", "", fmt.Sprintf(`{"email": %q, "password": "a long and unusual passphrase 42"}`, email))
}

// apply is the worker of the command's shard: it applies the command in the
// shard of its key account, as the sharded workers do.
func (s *shardedGateway) apply(t *testing.T, command ledger.Command) {
	t.Helper()
	index := s.layout.Of(command.PartitionKey())
	s.mutex.Lock()
	offset := s.offsets[index]
	s.offsets[index]++
	s.mutex.Unlock()
	batch := postgres.Batch{Topic: "ledger.commands", Partition: 0,
		Records: []postgres.Record{{Partition: 0, Offset: offset, Command: command}}}
	if _, err := s.stores[index].ApplyBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// queuedCommand waits for the command queued under key by user.
func (s *shardedGateway) queuedCommand(t *testing.T, userID int64, key string) ledger.Command {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, command := range s.queue.produced() {
			if command.UserID == userID && command.IdempotencyKey == key {
				return command
			}
		}
	}
	t.Fatalf("no command of user %d with key %s was queued", userID, key)
	return ledger.Command{}
}

// holds reports whether shard index holds the transaction.
func (s *shardedGateway) holds(t *testing.T, index int, transactionID string) (ledger.Transaction, bool) {
	t.Helper()
	stored, err := s.stores[index].Transaction(context.Background(), transactionID)
	if ledger.ErrorCode(err) == ledger.CodeNotFound {
		return ledger.Transaction{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return stored, true
}

type shardedUser struct {
	email           string
	userID, account int64
	token           string
	shard           int
	// fundingMinor is the account's balance.
	fundingMinor          int64
	fundingID, fundingKey string
	fundingCommand        ledger.Command
}

// TestShardedGatewaySpreadsAccountsAndRoutesEveryRead: signups put users'
// accounts in both shards (the user's shard: user id mod 2), in that
// shard only; sign-in finds each account; deposits are applied in the
// account's shard and their status, the balance, a bounded wait and a
// replay answered from the ledger (Redis down) are read there; a soft
// refusal is recorded in the source account's shard.
func TestShardedGatewaySpreadsAccountsAndRoutesEveryRead(t *testing.T) {
	t.Parallel()
	s := newShardedGateway(t, shardedConfig(), true)
	ctx := context.Background()
	var users []*shardedUser
	seen := map[int]int{}
	for i := range 4 {
		email := fmt.Sprintf("user%d@example.com", i)
		answer := s.signup(t, email)
		if answer.status != http.StatusCreated {
			t.Fatalf("signup %s: %d %s", email, answer.status, answer.body)
		}
		user := &shardedUser{email: email, userID: answer.decoded.UserID, account: answer.decoded.AccountID,
			shard: s.layout.Of(answer.decoded.UserID), fundingMinor: int64(100 * (i + 1))}
		if got := s.layout.Of(user.account); got != user.shard {
			t.Errorf("user %d's account %d is numbered for shard %d, want the user's shard %d", user.userID, user.account, got, user.shard)
		}
		for index, store := range s.stores {
			account, err := store.Account(ctx, user.account)
			switch {
			case index == user.shard && (err != nil || account.UserID != user.userID):
				t.Errorf("shard %d, user %d's shard: account %d is %+v, %v; want the user's", index, user.userID, user.account, account, err)
			case index != user.shard && ledger.ErrorCode(err) != ledger.CodeAccountNotFound:
				t.Errorf("shard %d also holds user %d's account %d: %+v, %v", index, user.userID, user.account, account, err)
			}
		}
		seen[user.shard]++
		users = append(users, user)
	}
	if seen[0] == 0 || seen[1] == 0 {
		t.Fatalf("accounts per shard %v: want both shards used", seen)
	}
	for _, user := range users {
		answer := s.signin(t, user.email)
		if answer.status != http.StatusCreated || answer.decoded.AccountID != user.account || answer.decoded.UserID != user.userID {
			t.Fatalf("sign-in of %s: %d %s, want user %d with account %d", user.email, answer.status, answer.body, user.userID, user.account)
		}
		user.token = answer.decoded.Token
	}

	// Each user funds its account; the shard's worker applies it.
	for _, user := range users {
		user.fundingKey = "fund-" + user.email
		answer := s.call(t, http.MethodPost, "/v1/deposits", user.token, fmt.Sprintf(`{"account_id": %d, "amount": %d}`, user.account, user.fundingMinor),
			gateway.IdempotencyKeyHeader, user.fundingKey)
		if answer.status != http.StatusAccepted {
			t.Fatalf("deposit of %s: %d %s", user.email, answer.status, answer.body)
		}
		user.fundingID = answer.decoded.TransactionID
		user.fundingCommand = s.queuedCommand(t, user.userID, user.fundingKey)
		s.apply(t, user.fundingCommand)
	}
	for _, user := range users {
		if _, found := s.holds(t, user.shard, user.fundingID); !found {
			t.Fatalf("the deposit of %s is not in its shard %d", user.email, user.shard)
		}
		if _, found := s.holds(t, 1-user.shard, user.fundingID); found {
			t.Fatalf("the deposit of %s is also in shard %d", user.email, 1-user.shard)
		}
		status := s.call(t, http.MethodGet, "/v1/transactions/"+user.fundingID, user.token, "")
		if status.status != http.StatusOK || status.decoded.Status != string(ledger.StatusSettled) {
			t.Errorf("status of %s's deposit (shard %d): %d %s, want 200 settled", user.email, user.shard, status.status, status.body)
		}
		balance := s.call(t, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", user.account), user.token, "")
		if balance.status != http.StatusOK || balance.decoded.Balance != user.fundingMinor {
			t.Errorf("balance of %s (shard %d): %d %s, want %d", user.email, user.shard, balance.status, balance.body, user.fundingMinor)
		}
	}

	// A bounded wait finds the outcome in the account's shard (no worker
	// announces it here: only the gateway's polls of the ledger can).
	for _, user := range users {
		key := "waited-" + user.email
		done := make(chan shardedAnswer, 1)
		go func() {
			done <- s.call(t, http.MethodPost, "/v1/deposits", user.token, fmt.Sprintf(`{"account_id": %d, "amount": 1}`, user.account),
				gateway.IdempotencyKeyHeader, key, "Prefer", "wait=20")
		}()
		s.apply(t, s.queuedCommand(t, user.userID, key))
		if answer := <-done; answer.status != http.StatusOK || answer.decoded.Status != string(ledger.StatusSettled) {
			t.Errorf("waited deposit of %s (shard %d): %d %s, want 200 settled", user.email, user.shard, answer.status, answer.body)
		}
		user.fundingMinor++
	}

	// A soft refusal (the cache says the balance is short, and the ledger
	// agrees) is recorded in the source account's shard, never queued.
	balances, versions := map[int64]int64{}, map[int64]int64{}
	for _, user := range users {
		balances[user.account], versions[user.account] = 0, 100
	}
	if err := s.cache.AfterCommit(ctx, balances, versions, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, user := range users {
		key := "overdraft-" + user.email
		answer := s.call(t, http.MethodPost, "/v1/withdrawals", user.token, fmt.Sprintf(`{"account_id": %d, "amount": %d}`, user.account, user.fundingMinor+1),
			gateway.IdempotencyKeyHeader, key)
		if answer.status != http.StatusOK || answer.decoded.Status != string(ledger.StatusRejected) || answer.decoded.Reason != string(ledger.CodeInsufficientFunds) {
			t.Errorf("overdraft of %s (shard %d): %d %s, want 200 rejected for insufficient_funds", user.email, user.shard, answer.status, answer.body)
			continue
		}
		stored, found := s.holds(t, user.shard, answer.decoded.TransactionID)
		if !found || stored.Status != ledger.StatusRejected || stored.Partition != -1 {
			t.Errorf("the soft refusal of %s in its shard %d: %+v (found %v), want rejected without a stream position", user.email, user.shard, stored, found)
		}
		if _, found := s.holds(t, 1-user.shard, answer.decoded.TransactionID); found {
			t.Errorf("the soft refusal of %s is also in shard %d", user.email, 1-user.shard)
		}
	}

	// Redis down: a replay of a funding key is answered from the account's
	// shard (the ledger's last word), and nothing is queued again.
	queued := len(s.queue.produced())
	if err := s.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, user := range users {
		answer := s.call(t, http.MethodPost, "/v1/deposits", user.token, fmt.Sprintf(`{"account_id": %d, "amount": %d}`, user.account, user.fundingCommand.AmountMinor),
			gateway.IdempotencyKeyHeader, user.fundingKey)
		if answer.status != http.StatusOK || !answer.replayed || answer.decoded.Status != string(ledger.StatusSettled) {
			t.Errorf("replay of %s's funding key with Redis down (shard %d): %d replayed=%v %s, want 200 settled from the ledger",
				user.email, user.shard, answer.status, answer.replayed, answer.body)
		}
	}
	if got := len(s.queue.produced()); got != queued {
		t.Errorf("%d commands queued by the replays with Redis down, want none: they are in the ledger", got-queued)
	}
}

// TestShardedSignupInterruptedIsFinishedBySignin: a signup whose user is
// stored in shard 0 but whose account cannot be created in shard 1 is
// answered 503; its retry gets email_taken (an earlier try created the
// user), and the sign-in creates the account in the user's shard, once.
func TestShardedSignupInterruptedIsFinishedBySignin(t *testing.T) {
	t.Parallel()
	s := newShardedGateway(t, shardedConfig(), true)
	ctx := context.Background()
	// User 1 is shard 1's (1 mod 2).
	s.shardOne.fail.Store(true)
	if answer := s.signup(t, "interrupted@example.com"); answer.status != http.StatusServiceUnavailable {
		t.Fatalf("signup with shard 1 unreachable: %d %s, want 503", answer.status, answer.body)
	}
	if answer := s.signup(t, "interrupted@example.com"); answer.status != http.StatusConflict || !strings.Contains(answer.body, "email_taken") {
		t.Fatalf("signup retried: %d %s, want 409 email_taken", answer.status, answer.body)
	}
	if answer := s.signin(t, "interrupted@example.com"); answer.status != http.StatusServiceUnavailable {
		t.Fatalf("sign-in with shard 1 still unreachable: %d %s, want 503", answer.status, answer.body)
	}
	s.shardOne.fail.Store(false)
	first := s.signin(t, "interrupted@example.com")
	if first.status != http.StatusCreated || s.layout.Of(first.decoded.AccountID) != 1 || s.layout.Of(first.decoded.UserID) != 1 {
		t.Fatalf("sign-in once shard 1 is back: %d %s, want user and account of shard 1", first.status, first.body)
	}
	again := s.signin(t, "interrupted@example.com")
	if again.status != http.StatusCreated || again.decoded.AccountID != first.decoded.AccountID {
		t.Fatalf("second sign-in: %d %s, want account %d again", again.status, again.body, first.decoded.AccountID)
	}
	account, err := s.stores[1].Account(ctx, first.decoded.AccountID)
	if err != nil || account.UserID != first.decoded.UserID {
		t.Fatalf("shard 1's account %d: %+v, %v; want user %d's", first.decoded.AccountID, account, err, first.decoded.UserID)
	}
	var accounts int
	if err := s.stores[1].Pool().QueryRow(ctx, `SELECT count(*) FROM accounts WHERE kind = 'user'`).Scan(&accounts); err != nil || accounts != 1 {
		t.Fatalf("shard 1 holds %d user accounts (%v), want 1", accounts, err)
	}
	// The users of shard 0 are unaffected by shard 1 (the ids of users
	// are not consecutive: a refused signup takes one too).
	s.shardOne.fail.Store(true)
	for i := 0; ; i++ {
		email := fmt.Sprintf("more%d@example.com", i)
		answer := s.signup(t, email)
		var userID int64
		if err := s.stores[0].Pool().QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, email).Scan(&userID); err != nil {
			t.Fatal(err)
		}
		if s.layout.Of(userID) == 1 {
			if answer.status != http.StatusServiceUnavailable {
				t.Fatalf("signup of shard 1's user %d with shard 1 unreachable: %d %s, want 503", userID, answer.status, answer.body)
			}
			continue
		}
		if answer.status != http.StatusCreated || s.layout.Of(answer.decoded.AccountID) != 0 {
			t.Fatalf("signup of shard 0's user %d with shard 1 unreachable: %d %s, want 201 with an account of shard 0", userID, answer.status, answer.body)
		}
		break
	}
}

// TestShardedSignupRefusesAMisnumberedShard: a shard not numbered for the
// layout (its database not migrated with --shard I/N) would create an
// account that routes to another shard; the signup is refused (503) rather
// than an account stored where no process looks for it.
func TestShardedSignupRefusesAMisnumberedShard(t *testing.T) {
	t.Parallel()
	s := newShardedGateway(t, shardedConfig(), false)
	// Shard 0 unnumbered creates account 1 for user 2 (2 mod 2 = 0): it
	// routes to shard 1.
	if answer := s.signup(t, "first@example.com"); answer.status != http.StatusCreated || answer.decoded.UserID != 1 {
		t.Fatalf("first signup: %d %s, want user 1 (of shard 1, whose first account 1 routes right)", answer.status, answer.body)
	}
	answer := s.signup(t, "second@example.com")
	if answer.status != http.StatusInternalServerError && answer.status != http.StatusServiceUnavailable {
		t.Fatalf("signup into a misnumbered shard 0: %d %s, want refused", answer.status, answer.body)
	}
	var users int
	if err := s.stores[0].Pool().QueryRow(context.Background(), `SELECT count(*) FROM users WHERE email = 'second@example.com'`).Scan(&users); err != nil || users != 0 {
		t.Fatalf("the refused signup stored %d users (%v), want none", users, err)
	}
}

// TestShardedGatewayConfig: a sharded ledger is refused in the naive apply
// mode and without shard 0's users.
func TestShardedGatewayConfig(t *testing.T) {
	t.Parallel()
	store := &postgres.Store{}
	cache, err := redis.New(redis.Config{Addr: "127.0.0.1:1"}) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	for _, test := range []struct {
		name         string
		config       gateway.Config
		dependencies gateway.Dependencies
		want         string
	}{
		{"naive", gateway.Config{ApplyMode: gateway.ApplyModeNaive},
			gateway.Dependencies{Applier: store, Shards: []gateway.ShardStore{store, store}, ShardUsers: store}, "queue apply mode"},
		{"no users", gateway.Config{}, gateway.Dependencies{Queue: &recordingQueue{}, Shards: []gateway.ShardStore{store, store}}, "ShardUsers"},
		{"a shard without a store", gateway.Config{}, gateway.Dependencies{Queue: &recordingQueue{}, Shards: []gateway.ShardStore{store, nil}, ShardUsers: store}, "shard 1 has no store"},
	} {
		t.Run(test.name, func(t *testing.T) {
			test.config.PasswordHashing = gateway.PasswordHashing{MemoryKiB: 64, Iterations: 1}
			test.dependencies.Store, test.dependencies.Cache = store, cache
			_, err := gateway.New(test.config, test.dependencies)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("error %v, want one saying %q", err, test.want)
			}
		})
	}
}
