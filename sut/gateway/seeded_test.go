package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// Each gateway bug is shown with and without it on the same requests, with
// the real Postgres and Redis. Only the broker differs per test: a real
// producer whose broker is down, or a queue that records what it was given.

// recordingQueue acknowledges every record and keeps the commands.
type recordingQueue struct {
	mutex    sync.Mutex
	commands []ledger.Command
}

func (q *recordingQueue) Produce(_ context.Context, _, value []byte) (int32, int64, error) {
	var command ledger.Command
	if err := json.Unmarshal(value, &command); err != nil {
		return -1, -1, err
	}
	q.mutex.Lock()
	defer q.mutex.Unlock()
	q.commands = append(q.commands, command)
	return 0, int64(len(q.commands) - 1), nil
}

func (q *recordingQueue) produced() []ledger.Command {
	q.mutex.Lock()
	defer q.mutex.Unlock()
	return append([]ledger.Command(nil), q.commands...)
}

// testGateway serves a gateway with bugs over HTTP and returns its URL and a
// signed-in user's token and account.
func testGateway(t *testing.T, config gateway.Config, queue gateway.Queue) (url, token string, accountID int64) {
	t.Helper()
	url, token, accountID, _ = testGatewayWithCache(t, config, queue)
	return url, token, accountID
}

// testGatewayWithCache is testGateway, and returns the gateway's Redis
// client too.
func testGatewayWithCache(t *testing.T, config gateway.Config, queue gateway.Queue) (url, token string, accountID int64, cache *redis.Client) {
	t.Helper()
	ctx := context.Background()
	postgresURL := stacktest.PostgresURL(t)
	if err := postgres.Migrate(ctx, postgresURL); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: postgresURL, SeededBugs: config.SeededBugs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cache, err = redis.New(redis.Config{Addr: stacktest.RedisAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	user, err := store.CreateUser(ctx, "alice@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	token = "token-of-alice"
	if err := cache.CreateSession(ctx, token, redis.Session{UserID: user.ID, AccountID: user.AccountID}, time.Hour); err != nil {
		t.Fatal(err)
	}
	server, err := gateway.New(config, gateway.Dependencies{Store: store, Cache: cache, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	httpServer := httptest.NewServer(server.Handler())
	t.Cleanup(httpServer.Close)
	return httpServer.URL, token, user.AccountID, cache
}

type depositAnswer struct {
	status        int
	replayed      bool
	transactionID string
	body          []byte
}

func postDeposit(t *testing.T, url, token, key string, accountID int64) depositAnswer {
	t.Helper()
	return postDepositWaiting(t, url, token, key, accountID, 0)
}

// postDepositWaiting is postDeposit asking the gateway to wait up to
// waitSeconds for the outcome (Prefer: wait; 0 asks for no wait).
func postDepositWaiting(t *testing.T, url, token, key string, accountID int64, waitSeconds int) depositAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"account_id": %d, "amount": 100}`, accountID)
	request, err := http.NewRequest(http.MethodPost, url+"/v1/deposits", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer "+token)
	request.Header.Set("Idempotency-Key", key)
	request.Header.Set("Content-Type", "application/json")
	if waitSeconds > 0 {
		request.Header.Set("Prefer", "wait="+strconv.Itoa(waitSeconds))
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	content, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		TransactionID string `json:"transaction_id"`
	}
	_ = json.Unmarshal(content, &decoded)
	return depositAnswer{status: response.StatusCode, replayed: response.Header.Get(gateway.ReplayedHeader) == "true",
		transactionID: decoded.TransactionID, body: content}
}

func bugVariants(bug ledger.Bug) []struct {
	name   string
	bugs   ledger.Bugs
	active bool
} {
	return []struct {
		name   string
		bugs   ledger.Bugs
		active bool
	}{{"with " + string(bug), ledger.Bugs{bug}, true}, {"without " + string(bug), nil, false}}
}

func TestSeededNoIdempotency(t *testing.T) {
	t.Parallel()
	for _, variant := range bugVariants(ledger.BugNoIdempotency) {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			queue := &recordingQueue{}
			url, token, account := testGateway(t, gateway.Config{SeededBugs: variant.bugs}, queue)
			// The client retries one request (say its first answer was
			// lost): same key, same body.
			first := postDeposit(t, url, token, "deposit-1", account)
			retry := postDeposit(t, url, token, "deposit-1", account)
			if first.status != http.StatusAccepted || retry.status != http.StatusAccepted {
				t.Fatalf("statuses %d and %d, want 202 twice", first.status, retry.status)
			}
			produced := queue.produced()
			for _, command := range produced {
				if command.IdempotencyKey != "deposit-1" {
					t.Errorf("queued key %q, want the client's key", command.IdempotencyKey)
				}
			}
			if variant.active {
				if len(produced) != 2 || first.transactionID == retry.transactionID || retry.replayed {
					t.Errorf("the retry is not a new transaction: %d queued, ids %s and %s, replayed %v",
						len(produced), first.transactionID, retry.transactionID, retry.replayed)
				}
				return
			}
			if len(produced) != 1 || first.transactionID != retry.transactionID || !retry.replayed {
				t.Errorf("the retry is not a replay: %d queued, ids %s and %s, replayed %v",
					len(produced), first.transactionID, retry.transactionID, retry.replayed)
			}
		})
	}
}

func TestSeededAcknowledgeBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, variant := range bugVariants(ledger.BugAcknowledgeBeforeCommit) {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			// A real producer whose broker is down: nothing can be
			// acknowledged.
			deadBroker := "127.0.0.1:" + strconv.Itoa(stacktest.FreePort(t))
			producer, err := kafka.NewProducer(context.Background(), kafka.ProducerConfig{Brokers: []string{deadBroker},
				RequestTimeout: time.Second, DeliveryTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(producer.Close)
			const produceTimeout = 500 * time.Millisecond
			url, token, account := testGateway(t, gateway.Config{SeededBugs: variant.bugs, ProduceTimeout: produceTimeout}, producer)

			started := time.Now()
			first := postDeposit(t, url, token, "deposit-1", account)
			elapsed := time.Since(started)
			retry := postDeposit(t, url, token, "deposit-1", account)
			if variant.active {
				// Accepted at once, and every retry is told so from the
				// remembered answer: the client never learns the command
				// was lost.
				if first.status != http.StatusAccepted || elapsed >= produceTimeout {
					t.Errorf("answered %d after %s, want 202 before the produce timeout", first.status, elapsed)
				}
				if retry.status != http.StatusAccepted || !retry.replayed {
					t.Errorf("retry answered %d (replayed %v), want the remembered 202", retry.status, retry.replayed)
				}
				return
			}
			if first.status != http.StatusServiceUnavailable || elapsed < produceTimeout {
				t.Errorf("answered %d after %s, want 503 after the produce timeout", first.status, elapsed)
			}
			if retry.status != http.StatusServiceUnavailable || retry.replayed {
				t.Errorf("retry answered %d (replayed %v), want 503 again", retry.status, retry.replayed)
			}
		})
	}
}

func TestSeededBugsOfOtherProcessesAreRefused(t *testing.T) {
	t.Parallel()
	_, err := gateway.New(gateway.Config{SeededBugs: ledger.Bugs{ledger.BugSkipDedupe}},
		gateway.Dependencies{Store: nil, Cache: nil, Queue: &recordingQueue{}})
	if err == nil {
		t.Fatal("a gateway accepted a worker's bug")
	}
}

// TestTakeoverResponseIsReplayed: a key whose first request's gateway died
// (its reservation older than the in-flight lease, never answered) is taken
// over by the next request with it, and the response that request gets is
// the one its retry is replayed. Otherwise the retry would find the
// reservation unanswered, take over again and queue a second copy.
func TestTakeoverResponseIsReplayed(t *testing.T) {
	t.Parallel()
	queue := &recordingQueue{}
	url, token, account, cache := testGatewayWithCache(t, gateway.Config{}, queue)
	ctx := context.Background()
	session, found, err := cache.LookupSession(ctx, token)
	if err != nil || !found {
		t.Fatalf("session: found=%v err=%v", found, err)
	}
	canonical := fmt.Sprintf(`{"account_id":%d,"amount":100}`, account)
	died := redis.IdempotencyRecord{Fingerprint: ledger.Fingerprint(ledger.KindDeposit, []byte(canonical)),
		TransactionID: ledger.TransactionIDFor(session.UserID, "orphan"), ReservedAt: time.Now().Add(-2 * time.Minute).UTC()}
	if reservation, err := cache.Reserve(ctx, session.UserID, "orphan", died, time.Hour); err != nil || !reservation.Reserved {
		t.Fatalf("the dead gateway's reservation: %+v err=%v", reservation, err)
	}

	first := postDeposit(t, url, token, "orphan", account)
	if first.status != http.StatusAccepted || first.replayed {
		t.Fatalf("the takeover: %+v, want 202 not replayed", first)
	}
	retry := postDeposit(t, url, token, "orphan", account)
	if retry.status != http.StatusAccepted || !retry.replayed || retry.transactionID != first.transactionID {
		t.Fatalf("the retry: %+v, want the takeover's 202 replayed (%s)", retry, first.transactionID)
	}
	if produced := queue.produced(); len(produced) != 1 {
		t.Fatalf("%d commands queued, want 1", len(produced))
	}
}
