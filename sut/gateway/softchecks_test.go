package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// softGateway serves a gateway with soft checks over HTTP, on a real
// Postgres and Redis, and returns what the tests look into.
type softGateway struct {
	url, token string
	user       ledger.User
	store      *postgres.Store
	cache      *redis.Client
	queue      *recordingQueue
	now        time.Time
}

// limitCaches are the two ways a gateway reads the soft checks' figures:
// with the key's reservation, when the LimitCache is the Cache (the
// reference gateway), and with reads of their own, when it is not.
var limitCaches = []struct {
	name string
	of   func(*redis.Client) gateway.LimitCache
}{
	{"read with the reservation", func(cache *redis.Client) gateway.LimitCache { return cache }},
	{"read on their own", func(cache *redis.Client) gateway.LimitCache { return separateLimits{cache} }},
}

// separateLimits is the same Redis behind another value, so the gateway
// reads the figures on their own.
type separateLimits struct{ cache *redis.Client }

func (l separateLimits) CachedBalance(ctx context.Context, accountID int64) (int64, bool, error) {
	return l.cache.CachedBalance(ctx, accountID)
}
func (l separateLimits) CachedDailyDebits(ctx context.Context, userID int64, day time.Time) (int64, bool, error) {
	return l.cache.CachedDailyDebits(ctx, userID, day)
}

func newSoftGateway(t *testing.T, config gateway.Config) *softGateway {
	t.Helper()
	return newSoftGatewayWith(t, config, limitCaches[0].of)
}

func newSoftGatewayWith(t *testing.T, config gateway.Config, limits func(*redis.Client) gateway.LimitCache) *softGateway {
	t.Helper()
	ctx := context.Background()
	postgresURL := stacktest.PostgresURL(t)
	if err := postgres.Migrate(ctx, postgresURL); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: postgresURL, DailyDebitLimitMinor: config.DailyDebitLimitMinor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cache, err := redis.New(redis.Config{Addr: stacktest.RedisAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	user, err := store.CreateUser(ctx, "alice@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	s := &softGateway{token: "token-of-alice", user: user, store: store, cache: cache, queue: &recordingQueue{},
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := cache.CreateSession(ctx, s.token, redis.Session{UserID: user.ID, AccountID: user.AccountID}, time.Hour); err != nil {
		t.Fatal(err)
	}
	server, err := gateway.New(config, gateway.Dependencies{Store: store, Cache: cache, Queue: s.queue,
		LimitCache: limits(cache), Rejections: store, Clock: func() time.Time { return s.now }})
	if err != nil {
		t.Fatal(err)
	}
	httpServer := httptest.NewServer(server.Handler())
	t.Cleanup(httpServer.Close)
	s.url = httpServer.URL
	return s
}

type softAnswer struct {
	status   int
	replayed bool
	body     string
	decoded  struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
}

func (s *softGateway) withdraw(t *testing.T, key string, amount int64) softAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"account_id": %d, "amount": %d}`, s.user.AccountID, amount)
	request, err := http.NewRequest(http.MethodPost, s.url+"/v1/withdrawals", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer "+s.token)
	request.Header.Set("Idempotency-Key", key)
	request.Header.Set("Content-Type", "application/json")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	content, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	answer := softAnswer{status: response.StatusCode, replayed: response.Header.Get(gateway.ReplayedHeader) == "true", body: string(content)}
	_ = json.Unmarshal(content, &answer.decoded)
	return answer
}

// refused asserts a soft refusal: answered 200 with the rejected
// transaction, recorded in the ledger, and never queued.
func (s *softGateway) refused(t *testing.T, key string, answer softAnswer, reason ledger.Code) {
	t.Helper()
	if answer.status != http.StatusOK || answer.decoded.Status != string(ledger.StatusRejected) || answer.decoded.Reason != string(reason) {
		t.Fatalf("%s: %d %s, want 200 rejected for %s", key, answer.status, answer.body, reason)
	}
	stored, err := s.store.Transaction(context.Background(), ledger.TransactionIDFor(s.user.ID, key))
	if err != nil || stored.Status != ledger.StatusRejected || stored.Reason != reason {
		t.Fatalf("%s in the ledger: %+v %v, want rejected for %s", key, stored, err, reason)
	}
	for _, command := range s.queue.produced() {
		if command.IdempotencyKey == key {
			t.Fatalf("%s was queued although refused", key)
		}
	}
}

func (s *softGateway) queued(t *testing.T, key string, answer softAnswer) {
	t.Helper()
	if answer.status != http.StatusAccepted {
		t.Fatalf("%s: %d %s, want 202 (queued for the worker)", key, answer.status, answer.body)
	}
}

func TestSoftBalanceCheck(t *testing.T) {
	t.Parallel()
	for _, limits := range limitCaches {
		t.Run(limits.name, func(t *testing.T) {
			t.Parallel()
			testSoftBalanceCheck(t, newSoftGatewayWith(t, gateway.Config{SoftBalanceCheck: true}, limits.of))
		})
	}
}

func testSoftBalanceCheck(t *testing.T, s *softGateway) {
	ctx := context.Background()
	// Nothing cached: no soft check, the worker decides.
	s.queued(t, "miss", s.withdraw(t, "miss", 100))
	if err := s.cache.AfterCommit(ctx, map[int64]int64{s.user.AccountID: 50}, map[int64]int64{s.user.AccountID: 1}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	answer := s.withdraw(t, "soft", 100)
	s.refused(t, "soft", answer, ledger.CodeInsufficientFunds)
	if stored, _ := s.store.Transaction(context.Background(), ledger.TransactionIDFor(s.user.ID, "soft")); stored.Partition != -1 || stored.Offset != -1 {
		t.Errorf("the soft refusal is stored at partition %d, offset %d, want -1, -1 (no stream position)", stored.Partition, stored.Offset)
	}
	// A replay gets the same bytes, even once the cache says otherwise.
	if err := s.cache.AfterCommit(ctx, map[int64]int64{s.user.AccountID: 5000}, map[int64]int64{s.user.AccountID: 2}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if replay := s.withdraw(t, "soft", 100); !replay.replayed || replay.body != answer.body || replay.status != answer.status {
		t.Fatalf("replay: %d replayed=%v %s, want the first answer %s", replay.status, replay.replayed, replay.body, answer.body)
	}
	s.queued(t, "covered", s.withdraw(t, "covered", 100))
}

func TestSoftBalanceCheckOff(t *testing.T) {
	t.Parallel()
	s := newSoftGateway(t, gateway.Config{})
	if err := s.cache.AfterCommit(context.Background(), map[int64]int64{s.user.AccountID: 50}, map[int64]int64{s.user.AccountID: 1}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	s.queued(t, "off", s.withdraw(t, "off", 100))
}

func TestSoftDailyLimit(t *testing.T) {
	t.Parallel()
	for _, limits := range limitCaches {
		t.Run(limits.name, func(t *testing.T) {
			t.Parallel()
			testSoftDailyLimit(t, newSoftGatewayWith(t, gateway.Config{DailyDebitLimitMinor: 1000}, limits.of))
		})
	}
}

func testSoftDailyLimit(t *testing.T, s *softGateway) {
	ctx := context.Background()
	// Above the limit by itself: refused without the cache.
	s.refused(t, "huge", s.withdraw(t, "huge", 1001), ledger.CodeDailyLimitExceeded)
	s.queued(t, "first", s.withdraw(t, "first", 900))
	day := ledger.DebitDay(s.now)
	if err := s.cache.SetDailyDebits(ctx, []redis.DailyDebits{{UserID: s.user.ID, Day: day, DebitedMinor: 900}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The cache says 900, the ledger nothing (a compensation lowered it,
	// or a cache write raced): the refusal is not final, the worker
	// decides.
	s.queued(t, "cache-above-the-ledger", s.withdraw(t, "cache-above-the-ledger", 101))
	// The ledger's 900 justifies it.
	s.settleInLedger(t, deposit(s.user, "fund", 5000, s.now), withdrawalOf(s.user, "settled", 900, s.now))
	s.refused(t, "over", s.withdraw(t, "over", 101), ledger.CodeDailyLimitExceeded)
	s.queued(t, "at-the-limit", s.withdraw(t, "at-the-limit", 100))
	// The next UTC day starts from nothing.
	s.now = s.now.Add(24 * time.Hour)
	s.queued(t, "next-day", s.withdraw(t, "next-day", 1000))
}

func TestSoftChecksConfig(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name   string
		config gateway.Config
		deps   bool
		want   string
	}{
		{"negative limit", gateway.Config{DailyDebitLimitMinor: -1}, true, "must not be negative"},
		{"soft check without its cache", gateway.Config{SoftBalanceCheck: true}, false, "need a limit cache"},
		{"daily limit without its cache", gateway.Config{DailyDebitLimitMinor: 5}, false, "need a limit cache"},
	} {
		t.Run(test.name, func(t *testing.T) {
			dependencies := gateway.Dependencies{Queue: &recordingQueue{}}
			if test.deps {
				dependencies.LimitCache, dependencies.Rejections = stubLimits{}, stubLimits{}
			}
			_, err := gateway.New(test.config, dependencies)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("error %v, want one saying %q", err, test.want)
			}
		})
	}
}

type stubLimits struct{}

func (stubLimits) CachedBalance(context.Context, int64) (int64, bool, error) { return 0, false, nil }
func (stubLimits) CachedDailyDebits(context.Context, int64, time.Time) (int64, bool, error) {
	return 0, false, nil
}
func (stubLimits) RecordRejection(context.Context, ledger.Command, ledger.Code) (ledger.Transaction, error) {
	return ledger.Transaction{}, nil
}

// settleInLedger applies commands in the ledger, as a worker would.
func (s *softGateway) settleInLedger(t *testing.T, commands ...ledger.Command) {
	t.Helper()
	batch := postgres.Batch{Topic: "ledger.commands", Partition: 0}
	for i, command := range commands {
		batch.Records = append(batch.Records, postgres.Record{Partition: 0, Offset: int64(i), Command: command})
	}
	result, err := s.store.ApplyBatch(context.Background(), batch)
	if err != nil || result.Settled != len(commands) {
		t.Fatalf("apply: %+v %v", result, err)
	}
}

func deposit(user ledger.User, key string, amount int64, at time.Time) ledger.Command {
	return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: ledger.KindDeposit, UserID: user.ID, IdempotencyKey: key,
		DestinationAccountID: user.AccountID, AmountMinor: amount, Fingerprint: "fp-" + key, AcceptedAt: at}
}

func withdrawalOf(user ledger.User, key string, amount int64, at time.Time) ledger.Command {
	return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: ledger.KindWithdrawal, UserID: user.ID, IdempotencyKey: key,
		SourceAccountID: user.AccountID, AmountMinor: amount, Fingerprint: "fp-" + key, AcceptedAt: at}
}
