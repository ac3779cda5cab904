package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func newClient(t *testing.T) *redis.Client {
	t.Helper()
	client, err := redis.New(redis.Config{Addr: stacktest.RedisAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// newClientWithRaw is newClient and a plain go-redis client of the same
// server, for what the client does not do (flush its scripts, write a value
// it would not): each RedisAddr starts a server of its own.
func newClientWithRaw(t *testing.T) (*redis.Client, *goredis.Client) {
	t.Helper()
	addr := stacktest.RedisAddr(t)
	client, err := redis.New(redis.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	raw := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })
	return client, raw
}

func TestIdempotencyRecord(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	record := redis.IdempotencyRecord{Fingerprint: "fp1", TransactionID: "tx1", ReservedAt: time.Now().UTC()}
	pending := redis.PendingTransaction{UserID: 7, Kind: ledger.KindDeposit, DestinationAccountID: 3, AmountMinor: 5}

	reservation, err := client.Reserve(ctx, 7, "key", record, time.Minute)
	if err != nil || !reservation.Reserved {
		t.Fatalf("first reserve: %+v err=%v", reservation, err)
	}
	reservation, err = client.Reserve(ctx, 7, "key", redis.IdempotencyRecord{Fingerprint: "other"}, time.Minute)
	if err != nil || reservation.Reserved || reservation.Existing.Fingerprint != "fp1" || reservation.Existing.ResponseStatus != 0 {
		t.Fatalf("second reserve: %+v err=%v", reservation, err)
	}
	// Keys are scoped per user.
	if reservation, err := client.Reserve(ctx, 8, "key", record, time.Minute); err != nil || !reservation.Reserved {
		t.Fatalf("another user's key: %+v err=%v", reservation, err)
	}

	// The first response stored wins; a later one, or one for another
	// body, does not overwrite it.
	// A reservation alone remembers nothing as pending; a stored 202
	// does.
	if _, found, err := client.LookupPending(ctx, "tx1"); err != nil || found {
		t.Fatalf("pending after the reservation alone: found=%v err=%v", found, err)
	}
	first := record
	first.ResponseStatus, first.ResponseBody = 202, []byte(`{"a":1}`)
	if err := client.StoreResponse(ctx, 7, "key", first, &pending, time.Minute); err != nil {
		t.Fatal(err)
	}
	second := record
	second.ResponseStatus, second.ResponseBody = 200, []byte(`{"b":2}`)
	if err := client.StoreResponse(ctx, 7, "key", second, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	stranger := redis.IdempotencyRecord{Fingerprint: "other", ResponseStatus: 500, ResponseBody: []byte("x")}
	if err := client.StoreResponse(ctx, 7, "key", stranger, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	reservation, err = client.Reserve(ctx, 7, "key", record, time.Minute)
	existing := reservation.Existing
	if err != nil || existing.ResponseStatus != 202 || string(existing.ResponseBody) != `{"a":1}` {
		t.Fatalf("stored response %d %q, %v; want the first, 202", existing.ResponseStatus, existing.ResponseBody, err)
	}

	got, found, err := client.LookupPending(ctx, "tx1")
	if err != nil || !found || got != pending {
		t.Fatalf("pending %+v found=%v err=%v", got, found, err)
	}
	if err := client.Release(ctx, 7, "key", "tx1"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := client.LookupPending(ctx, "tx1"); found {
		t.Fatal("release left the pending transaction")
	}
	if reservation, err := client.Reserve(ctx, 7, "key", record, time.Minute); err != nil || !reservation.Reserved {
		t.Fatalf("after release: %+v err=%v", reservation, err)
	}

	// A 202 stored after the worker recorded the outcome (a wait that ended
	// as the outcome came) leaves no pending transaction behind: the worker
	// forgot it already, and nothing else would.
	late := redis.IdempotencyRecord{Fingerprint: "fp-late", TransactionID: "tx-late", ReservedAt: time.Now().UTC()}
	if _, err := client.Reserve(ctx, 7, "late", late, time.Minute); err != nil {
		t.Fatal(err)
	}
	outcome := ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: "tx-late", Status: ledger.StatusSettled}, Fingerprint: "fp-late"}
	if err := client.AfterCommit(ctx, nil, nil, []ledger.OutcomeNotice{outcome}, time.Minute); err != nil {
		t.Fatal(err)
	}
	late.ResponseStatus, late.ResponseBody = 202, []byte(`{"late":1}`)
	if err := client.StoreResponse(ctx, 7, "late", late, &pending, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, found, err := client.LookupPending(ctx, "tx-late"); err != nil || found {
		t.Fatalf("pending after the outcome was recorded: found=%v err=%v", found, err)
	}
	if reservation, err := client.Reserve(ctx, 7, "late", late, time.Minute); err != nil || reservation.Existing.ResponseStatus != 202 {
		t.Fatalf("the late 202 was not stored: %+v err=%v", reservation, err)
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	if err := client.CreateSession(ctx, "token", redis.Session{UserID: 1, AccountID: 2}, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	session, found, err := client.LookupSession(ctx, "token")
	if err != nil || !found || session.UserID != 1 || session.AccountID != 2 {
		t.Fatalf("session %+v found=%v err=%v", session, found, err)
	}
	if _, found, _ := client.LookupSession(ctx, "other"); found {
		t.Fatal("unknown token found")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, found, _ := client.LookupSession(ctx, "token"); !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAfterCommitPublishesOutcomes(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := make(chan ledger.OutcomeNotice, 4)
	go client.SubscribeOutcomes(ctx, func(notice ledger.OutcomeNotice) { received <- notice })
	notice := ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: "tx", Status: ledger.StatusRejected, Reason: ledger.CodeInsufficientFunds}, Fingerprint: "fp"}
	// The subscription starts asynchronously: publish until it is heard.
	for {
		if err := client.AfterCommit(ctx, map[int64]int64{5: 42}, nil, []ledger.OutcomeNotice{notice}, time.Minute); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-received:
			if got != notice {
				t.Fatalf("got %+v, want %+v", got, notice)
			}
			balance, found, err := client.CachedBalance(ctx, 5)
			if err != nil || !found || balance != 42 {
				t.Fatalf("cached balance %d found=%v err=%v", balance, found, err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no outcome received")
		}
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	t.Parallel()
	server := stacktest.StartRedis(t)
	client, err := redis.New(redis.Config{Addr: server.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err = client.Reserve(context.Background(), 1, "k", redis.IdempotencyRecord{Fingerprint: "f", TransactionID: "t"}, time.Minute)
	if err == nil {
		t.Fatal("reserve against a dead Redis succeeded")
	}
}

func TestCachedBalances(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	if err := client.AfterCommit(ctx, map[int64]int64{901: 150, 902: 0}, nil, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	balances, err := client.CachedBalances(ctx, []int64{901, 902, 903})
	if err != nil {
		t.Fatal(err)
	}
	if len(balances) != 2 || balances[901] != 150 || balances[902] != 0 {
		t.Fatalf("cached balances %v, want 901:150 902:0 and 903 absent", balances)
	}
	if empty, err := client.CachedBalances(ctx, nil); err != nil || len(empty) != 0 {
		t.Fatalf("no accounts: %v %v", empty, err)
	}
}

// TestAfterCommitKeepsTheNewestBalance: two batches that touched one account
// reach Redis in the wrong order; the versions keep the newer balance.
func TestAfterCommitKeepsTheNewestBalance(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		balance int64
		version int64
		want    int64
	}{
		{"first write", 100, 10, 100},
		{"newer write wins", 150, 20, 150},
		{"older write arriving late is ignored", 120, 15, 150},
		{"same version again is ignored", 999, 20, 150},
		{"unversioned write is applied", 7, 0, 7},
		{"a versioned write after it still compares with the last version", 130, 19, 7},
		{"a newer versioned write", 140, 21, 140},
	}
	for _, test := range tests {
		if err := client.AfterCommit(ctx, map[int64]int64{77: test.balance}, map[int64]int64{77: test.version}, nil, time.Minute); err != nil {
			t.Fatalf("%s: %v", test.name, err)
		}
		balance, found, err := client.CachedBalance(ctx, 77)
		if err != nil || !found || balance != test.want {
			t.Fatalf("%s: cached %d (found %v, %v), want %d", test.name, balance, found, err, test.want)
		}
	}
}

// TestAfterCommitComparesEachAccountsOwnVersion: one call with many
// accounts, some newer than the cache, some older, some unversioned, some
// never cached; each account's balance follows its own version (the script
// reads every version at once, and the answers must not shift between
// accounts).
func TestAfterCommitComparesEachAccountsOwnVersion(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	const accounts = 600 // more than a full batch of 512 records touches on one side
	first, firstVersions := map[int64]int64{}, map[int64]int64{}
	for i := range int64(accounts) {
		if i%5 == 4 {
			continue // never cached before the second call
		}
		first[5000+i], firstVersions[5000+i] = 1000+i, 10
	}
	if err := client.AfterCommit(ctx, first, firstVersions, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	second, secondVersions, want := map[int64]int64{}, map[int64]int64{}, map[int64]int64{}
	for i := range int64(accounts) {
		id := 5000 + i
		second[id] = 2000 + i
		switch i % 5 {
		case 0: // newer
			secondVersions[id], want[id] = 11, 2000+i
		case 1: // older
			secondVersions[id], want[id] = 9, 1000+i
		case 2: // the same version
			secondVersions[id], want[id] = 10, 1000+i
		case 3: // unversioned: written whatever is cached
			secondVersions[id], want[id] = 0, 2000+i
		case 4: // not cached before
			secondVersions[id], want[id] = 3, 2000+i
		}
	}
	if err := client.AfterCommit(ctx, second, secondVersions, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, 0, accounts)
	for id := range want {
		ids = append(ids, id)
	}
	cached, err := client.CachedBalances(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if cached[id] != want[id] {
			t.Errorf("account %d (case %d): cached %d, want %d", id, (id-5000)%5, cached[id], want[id])
		}
	}
}

// TestConcurrentReservationsOfOneKey sends many requests with one key at once:
// they share pipelines (the client coalesces them) and exactly one reserves
// the key; every other one sees its record.
func TestConcurrentReservationsOfOneKey(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	const requests = 64
	results := make(chan bool, requests)
	errs := make(chan error, requests)
	for range requests {
		go func() {
			record := redis.IdempotencyRecord{Fingerprint: "fp-concurrent", TransactionID: "tx-concurrent", ReservedAt: time.Now().UTC()}
			reservation, err := client.Reserve(ctx, 77, "concurrent", record, time.Minute)
			if err == nil && !reservation.Reserved && reservation.Existing.Fingerprint != "fp-concurrent" {
				err = fmt.Errorf("found record %+v", reservation.Existing)
			}
			results <- reservation.Reserved
			errs <- err
		}()
	}
	winners := 0
	for range requests {
		if <-results {
			winners++
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d requests reserved the key, want exactly 1", winners)
	}
}

// TestStoreResponseAfterScriptFlush: a Redis that forgot the script (it
// restarted) still stores responses: the client loads the script again.
func TestStoreResponseAfterScriptFlush(t *testing.T) {
	t.Parallel()
	client, raw := newClientWithRaw(t)
	ctx := context.Background()
	record := redis.IdempotencyRecord{Fingerprint: "fp-flush", TransactionID: "tx-flush", ReservedAt: time.Now().UTC()}
	if reservation, err := client.Reserve(ctx, 78, "flush", record, time.Minute); err != nil || !reservation.Reserved {
		t.Fatalf("reserve: %+v err=%v", reservation, err)
	}
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	record.ResponseStatus, record.ResponseBody = 202, []byte(`{"flushed":true}`)
	if err := client.StoreResponse(ctx, 78, "flush", record, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	reservation, err := client.Reserve(ctx, 78, "flush", record, time.Minute)
	if existing := reservation.Existing; err != nil || existing.ResponseStatus != 202 || string(existing.ResponseBody) != `{"flushed":true}` {
		t.Fatalf("stored %+v, %v; want the response stored after the flush", reservation, err)
	}
}

// ReserveAndRead reads the soft checks' cached figures in the reservation's
// pipeline: each as the cache holds it, not found when it holds none, and
// nothing when none is asked for.
func TestReserveAndReadsCachedFigures(t *testing.T) {
	t.Parallel()
	client, raw := newClientWithRaw(t)
	ctx := context.Background()
	const user, account, otherAccount = 91001, 91002, 91003
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := client.AfterCommit(ctx, map[int64]int64{account: 450}, map[int64]int64{account: 1}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := client.SetDailyDebits(ctx, []redis.DailyDebits{{UserID: user, Day: day, DebitedMinor: 900}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	record := redis.IdempotencyRecord{Fingerprint: "fp", TransactionID: "tx-reads"}
	reads := redis.CachedReads{Balance: true, AccountID: account, DailyDebits: true, UserID: user, Day: day}
	reservation, err := client.ReserveAndRead(ctx, user, "reads", record, time.Minute, reads)
	if err != nil || !reservation.Reserved {
		t.Fatalf("reserve: %+v %v", reservation, err)
	}
	if want := (redis.CachedFigure{Read: true, Value: 450, Found: true}); reservation.Balance != want {
		t.Errorf("balance %+v, want %+v", reservation.Balance, want)
	}
	if want := (redis.CachedFigure{Read: true, Value: 900, Found: true}); reservation.DailyDebits != want {
		t.Errorf("daily debits %+v, want %+v", reservation.DailyDebits, want)
	}
	// A replay's reservation reads them too; figures the cache lacks are
	// read and not found.
	reads = redis.CachedReads{Balance: true, AccountID: otherAccount, DailyDebits: true, UserID: user, Day: day.AddDate(0, 0, 1)}
	reservation, err = client.ReserveAndRead(ctx, user, "reads", record, time.Minute, reads)
	if err != nil || reservation.Reserved || reservation.Existing.TransactionID != "tx-reads" {
		t.Fatalf("second reserve: %+v %v", reservation, err)
	}
	if want := (redis.CachedFigure{Read: true}); reservation.Balance != want || reservation.DailyDebits != want {
		t.Errorf("figures the cache lacks: %+v and %+v, want %+v", reservation.Balance, reservation.DailyDebits, want)
	}
	reservation, err = client.ReserveAndRead(ctx, user, "no-reads", record, time.Minute, redis.CachedReads{})
	if err != nil || reservation.Balance.Read || reservation.DailyDebits.Read {
		t.Fatalf("nothing asked for: %+v %v", reservation, err)
	}
	// A figure that is not a number is an error of that figure alone.
	if err := raw.Set(ctx, "balance:91004", "not a number", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	reads = redis.CachedReads{Balance: true, AccountID: 91004}
	reservation, err = client.ReserveAndRead(ctx, user, "garbled", record, time.Minute, reads)
	if err != nil || !reservation.Reserved || reservation.Balance.Err == nil || reservation.Balance.Found {
		t.Fatalf("garbled balance: %+v %v, want the reservation made and the balance's error", reservation, err)
	}
}
