package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestShortRetentionKeepsMoneyRight runs the pipeline with everything a
// transaction leaves behind kept for seconds (docs/performance.md, "Bounded
// memory"): idempotency records 2s, outcome records 1s, broker records 5s.
// Once a settled transfer's records are gone from Redis, its replay is
// still answered with the first answer (the ledger's key); once the broker
// deleted the commands already applied (the log start offset moved), a
// worker restarted on that log resumes at its stored offset and new
// transfers settle; the ledger stays right.
func TestShortRetentionKeepsMoneyRight(t *testing.T) {
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1, GatewayArgs: []string{"--idempotency-ttl=2s"},
		WorkerArgs: []string{"--outcome-ttl=1s"}, BrokerArgs: []string{"--retention=5s"}})
	ctx := context.Background()
	db, err := pgxpool.New(ctx, file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	s := &testStack{t: t, dir: file.Dir, file: file, db: db}
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 1000)
	first, err := alice.Transfer(ctx, "short-lived", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(first, err, "settled", ""); err != nil {
		t.Fatalf("transfer: %v", err)
	}

	raw := goredis.NewClient(&goredis.Options{Addr: s.file.Endpoints.RedisAddr})
	t.Cleanup(func() { _ = raw.Close() })
	transactionID := ledger.TransactionIDFor(alice.userID, "short-lived")
	keys := []string{fmt.Sprintf("idem:%d:short-lived", alice.userID), "outcome:" + transactionID}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := raw.Exists(ctx, keys...).Result()
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the records %v still in Redis 30s after the transfer, with TTLs of 1-2s", left, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
	replay, err := alice.Transfer(ctx, "short-lived", alice.accountID, bob.accountID, 100, 10*time.Second)
	if err := expectOutcome(replay, err, "settled", ""); err != nil {
		t.Fatalf("replay after the records expired: %v", err)
	}
	if string(replay.Body) != string(first.Body) {
		t.Fatalf("replay answered %s, the first request %s", replay.Body, first.Body)
	}

	// The broker deletes the applied commands: some partition's log start
	// offset moves.
	client, err := kgo.NewClient(kgo.SeedBrokers(s.file.Endpoints.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	admin := kadm.NewClient(client)
	deadline = time.Now().Add(60 * time.Second)
	for moved := false; !moved; {
		starts, err := admin.ListStartOffsets(ctx, "ledger.commands")
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		starts.Each(func(offset kadm.ListedOffset) { moved = moved || offset.Offset > 0 })
		if !moved && time.Now().After(deadline) {
			t.Fatal("no partition's log start offset moved within 60s of a 5s retention")
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.operate("restart", "worker-0")
	after, err := alice.Transfer(ctx, "after-retention", alice.accountID, bob.accountID, 50, 15*time.Second)
	if err := expectOutcome(after, err, "settled", ""); err != nil {
		t.Fatalf("transfer after the broker deleted records and the worker restarted: %v", err)
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != 850 || b != 150 {
		t.Fatalf("balances %d/%d, want 850/150", a, b)
	}
	s.checkLedger()
}

// TestRetentionLosesWhatNoWorkerRead is the price of a broker retention,
// shown: with the worker stopped for longer than the retention (2s), a
// transfer acknowledged with 202 is deleted from the broker unread; the
// restarted worker resumes at the log's new start and applies what comes
// next, and the acknowledged transfer never reaches the ledger: what the
// audit's durability invariant reports (acknowledged, not in the ledger).
// This is why the broker keeps every record by default.
func TestRetentionLosesWhatNoWorkerRead(t *testing.T) {
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1, BrokerArgs: []string{"--retention=2s"}})
	ctx := context.Background()
	db, err := pgxpool.New(ctx, file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	s := &testStack{t: t, dir: file.Dir, file: file, db: db}
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 1000)

	s.operate("stop", "worker-0")
	accepted, err := alice.Transfer(ctx, "never-read", alice.accountID, bob.accountID, 100, 0)
	if err != nil || accepted.Status != http.StatusAccepted {
		t.Fatalf("transfer with the worker stopped: %v %d %s, want 202", err, accepted.Status, accepted.Body)
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(s.file.Endpoints.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	admin := kadm.NewClient(client)
	deadline := time.Now().Add(60 * time.Second)
	for {
		starts, err := admin.ListStartOffsets(ctx, "ledger.commands")
		if err == nil {
			err = starts.Error()
		}
		ends, endsErr := admin.ListEndOffsets(ctx, "ledger.commands")
		if endsErr == nil {
			endsErr = ends.Error()
		}
		if err != nil || endsErr != nil {
			t.Fatal(errors.Join(err, endsErr))
		}
		deleted := true
		ends.Each(func(end kadm.ListedOffset) {
			start, _ := starts.Lookup(end.Topic, end.Partition)
			deleted = deleted && start.Offset == end.Offset
		})
		if deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker kept records for 60s with a 2s retention")
		}
		time.Sleep(200 * time.Millisecond)
	}

	s.operate("start", "worker-0")
	after, err := bob.Deposit(ctx, "after-the-loss", bob.accountID, 7, 15*time.Second)
	if err := expectOutcome(after, err, "settled", ""); err != nil {
		t.Fatalf("deposit after the restart: %v", err)
	}
	var found int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE id = $1`, ledger.TransactionIDFor(alice.userID, "never-read")).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found != 0 {
		t.Fatal("the transfer the broker deleted unread reached the ledger")
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != 1000 || b != 7 {
		t.Fatalf("balances %d/%d, want 1000/7: the acknowledged transfer is lost", a, b)
	}
	s.checkLedger()
}
