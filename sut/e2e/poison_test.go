package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// settleBound is the liveness bound of the acceptance: a deposit queued
// behind poison records, or on a partition next to a stuck one, settles
// within it.
const settleBound = 5 * time.Second

// partitionOf is the partition the gateway queues an account's commands to.
func (s *testStack) partitionOf(accountID int64) int32 {
	return kafka.PartitionFor([]byte(strconv.FormatInt(accountID, 10)), int32(s.file.Partitions))
}

// usersOnTwoPartitions signs up users until two of them have accounts on
// different partitions.
func (s *testStack) usersOnTwoPartitions() (user, user) {
	s.t.Helper()
	first := s.newUser(0)
	for range 50 {
		other := s.newUser(0)
		if s.partitionOf(other.accountID) != s.partitionOf(first.accountID) {
			return first, other
		}
	}
	s.t.Fatal("50 users all landed on one partition")
	return user{}, user{}
}

// produceRaw appends raw values to partition of the commands topic, as any
// producer of the topic could (a foreign client, an operator with kcat).
func (s *testStack) produceRaw(partition int32, values ...[]byte) {
	s.t.Helper()
	producer, err := kgo.NewClient(kgo.SeedBrokers(s.file.Endpoints.Brokers...), kgo.DefaultProduceTopic(kafka.DefaultTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, value := range values {
		if err := producer.ProduceSync(ctx, &kgo.Record{Partition: partition, Value: value}).FirstErr(); err != nil {
			s.t.Fatal(err)
		}
	}
}

// depositSettlesWithin deposits and asserts the deposit has its final
// outcome within bound of the request's start, and that it is want.
func (s *testStack) depositSettlesWithin(u user, key string, amount int64, bound time.Duration, wantStatus, wantReason string) client.Transaction {
	s.t.Helper()
	ctx := context.Background()
	started := time.Now()
	response, err := u.Deposit(ctx, key, u.accountID, amount, bound)
	if err != nil {
		s.t.Fatal(err)
	}
	var outcome client.Transaction
	if err := response.Decode(&outcome); err != nil || (response.Status != http.StatusOK && response.Status != http.StatusAccepted) {
		s.t.Fatalf("deposit %s: %d %s (%v)", key, response.Status, response.Body, err)
	}
	for outcome.Status == "accepted" && time.Since(started) < bound {
		time.Sleep(50 * time.Millisecond)
		polled, err := u.Transaction(ctx, outcome.TransactionID)
		if err != nil {
			s.t.Fatal(err)
		}
		if err := polled.Decode(&outcome); err != nil {
			s.t.Fatal(err)
		}
	}
	if elapsed := time.Since(started); outcome.Status != wantStatus || outcome.Reason != wantReason || elapsed > bound {
		s.t.Fatalf("deposit %s on partition %d: %s/%s after %s, want %s/%s within %s", key, s.partitionOf(u.accountID),
			outcome.Status, outcome.Reason, elapsed.Round(time.Millisecond), wantStatus, wantReason, bound)
	}
	return outcome
}

type deadLetterRow struct {
	partition     int32
	offset        int64
	raw           string
	reason        string
	transactionID string
}

func (s *testStack) deadLetters() []deadLetterRow {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT kafka_partition, kafka_offset, raw, reason, COALESCE(transaction_id::text, '')
		FROM dead_letters WHERE topic = $1 ORDER BY kafka_partition, kafka_offset`, kafka.DefaultTopic)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var letters []deadLetterRow
	for rows.Next() {
		var letter deadLetterRow
		var raw []byte
		if err := rows.Scan(&letter.partition, &letter.offset, &raw, &letter.reason, &letter.transactionID); err != nil {
			s.t.Fatal(err)
		}
		letter.raw = string(raw)
		letters = append(letters, letter)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return letters
}

// workerReadyz is the worker's /readyz answer.
func (s *testStack) workerReadyz(worker int) (int, string) {
	s.t.Helper()
	return get(s.t, strings.TrimSuffix(s.file.Endpoints.WorkerMetrics[worker], "/metrics")+"/readyz")
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	response, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response.StatusCode, string(body)
}

// waitFor polls condition until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPoisonRecordsDoNotBlock: an undecodable record and a forged one (its
// key names alice's funding, its transaction id derives from another key)
// are produced into a partition (as kcat -P would); a deposit queued behind them on that partition, and one on
// another partition of the same worker, both settle within the liveness
// bound; the two records are in dead_letters and had no effect.
func TestPoisonRecordsDoNotBlock(t *testing.T) {
	s := startStack(t, 1, 1)
	alice, bob := s.usersOnTwoPartitions()
	funding := s.depositSettlesWithin(alice, "funding", 1000, 10*time.Second, "settled", "")
	poisoned := s.partitionOf(alice.accountID)

	garbage := []byte("this is not json")
	collidingID := ledger.TransactionIDFor(alice.userID, "not-the-funding-key")
	colliding, err := json.Marshal(ledger.Command{TransactionID: collidingID, Kind: ledger.KindDeposit, UserID: alice.userID,
		IdempotencyKey: "funding", SourceAccountID: ledger.ExternalAccountID, DestinationAccountID: alice.accountID,
		AmountMinor: 1_000_000, Fingerprint: "forged", AcceptedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	s.produceRaw(poisoned, garbage, colliding)

	s.depositSettlesWithin(alice, "behind-the-poison", 10, settleBound, "settled", "")
	s.depositSettlesWithin(bob, "next-door", 20, settleBound, "settled", "")

	letters := s.deadLetters()
	if len(letters) != 2 {
		t.Fatalf("dead letters %+v, want the two produced records", letters)
	}
	want := []deadLetterRow{
		{partition: poisoned, raw: string(garbage), reason: string(ledger.DeadLetterUndecodable)},
		// Set aside for its id, before any lookup of its key: a key stored under
		// another id is looked up only after the unique index refuses a batch
		// (sut/postgres TestApplyBatchSetsPoisonAside has that key collision).
		{partition: poisoned, raw: string(colliding), reason: string(ledger.DeadLetterTransactionIDMismatch), transactionID: collidingID},
	}
	for i, letter := range letters {
		letter.offset = 0
		if letter != want[i] {
			t.Errorf("dead letter %d: %+v, want %+v", i, letter, want[i])
		}
	}
	if letters[1].offset != letters[0].offset+1 {
		t.Errorf("dead letters at offsets %d and %d, want consecutive", letters[0].offset, letters[1].offset)
	}
	// The forgery had no effect: alice has her funding and her deposit.
	if got := s.balance(alice.accountID); got != 1010 {
		t.Errorf("alice has %d, want 1010", got)
	}
	stored, err := alice.Transaction(context.Background(), funding.TransactionID)
	if err != nil || stored.Status != http.StatusOK {
		t.Fatalf("the funding transaction: %v %d", err, stored.Status)
	}
	metrics := scrape(t, s.file.Endpoints.WorkerMetrics[0])
	for _, line := range []string{`ledger_worker_dead_letters_total{reason="undecodable"} 1`, `ledger_worker_dead_letters_total{reason="transaction_id_mismatch"} 1`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("worker metrics lack %s", line)
		}
	}
	s.checkLedger()

	// The audit finds them too (a ledger-wide audit: no client journaled
	// these records, so they are reported, not violations).
	runDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(runDir, "journal.jsonl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	source, err := invariants.OpenPostgres(context.Background(), s.file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	var progress strings.Builder
	result, err := invariants.Audit(context.Background(), invariants.Config{RunDir: runDir, Ledger: source,
		Scope: invariants.ScopeLedger, Progress: &progress})
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, progress.String())
	}
	audited := result.DeadLetters
	if audited == nil || !audited.Available || audited.Count == nil || *audited.Count != 2 ||
		audited.ByReason[string(ledger.DeadLetterUndecodable)] != 1 || audited.ByReason[string(ledger.DeadLetterTransactionIDMismatch)] != 1 {
		t.Errorf("the audit's dead letters: %+v, want the two records by reason", audited)
	}
}

// TestBalanceLimitKeepsWorkersUp: a deposit or a transfer that would take a
// balance above ledger.MaxBalanceMinor, or beyond int64 from a balance set
// near it by hand, is rejected with balance_limit, and every worker stays
// up and ready (they used to panic, and panic again after each restart).
func TestBalanceLimitKeepsWorkersUp(t *testing.T) {
	s := startStack(t, 1, 2)
	ctx := context.Background()
	alice, bob := s.usersOnTwoPartitions()
	for i := range int(ledger.MaxBalanceMinor / ledger.MaxAmountMinor) {
		s.depositSettlesWithin(alice, fmt.Sprintf("fill-%d", i), ledger.MaxAmountMinor, 10*time.Second, "settled", "")
	}
	if got := s.balance(alice.accountID); got != ledger.MaxBalanceMinor {
		t.Fatalf("alice has %d, want %d", got, ledger.MaxBalanceMinor)
	}
	s.depositSettlesWithin(alice, "one-too-many", 1, 10*time.Second, "rejected", string(ledger.CodeBalanceLimit))
	s.fund(bob, 5)
	response, err := bob.Transfer(ctx, "to-alice", bob.accountID, alice.accountID, 1, 10*time.Second)
	if err := expectOutcome(response, err, "rejected", string(ledger.CodeBalanceLimit)); err != nil {
		t.Fatal(err)
	}

	// The report's case: a balance near int64's maximum (set by hand).
	if _, err := s.db.Exec(ctx, `UPDATE accounts SET balance = $1 WHERE id = $2`, int64(math.MaxInt64-10), bob.accountID); err != nil {
		t.Fatal(err)
	}
	s.depositSettlesWithin(bob, "overflow", 50_000_000_000, 10*time.Second, "rejected", string(ledger.CodeBalanceLimit))
	if _, err := s.db.Exec(ctx, `UPDATE accounts SET balance = 5 WHERE id = $1`, bob.accountID); err != nil {
		t.Fatal(err)
	}

	file, err := stack.Status(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, component := range file.Components {
		if component.Kind == stack.KindWorker && !component.Alive() {
			t.Errorf("%s is %s", component.Name, component.Status())
		}
	}
	for worker := range s.file.Endpoints.WorkerMetrics {
		if status, body := s.workerReadyz(worker); status != http.StatusOK {
			t.Errorf("worker %d not ready: %d %s", worker, status, body)
		}
	}
	if a, b := s.balance(alice.accountID), s.balance(bob.accountID); a != ledger.MaxBalanceMinor || b != 5 {
		t.Errorf("balances %d/%d, want %d/5", a, b, ledger.MaxBalanceMinor)
	}
	s.checkLedger()
}

// TestStuckPartitionHoldsOnlyItself: while one partition cannot be applied
// (its offset row locked, so every attempt times out: a transient failure
// the worker must retry, never skip), a deposit on another partition of the
// same worker settles within the liveness bound; the worker reports the
// stuck partition (metrics, /readyz 503) and recovers once the lock goes.
func TestStuckPartitionHoldsOnlyItself(t *testing.T) {
	s := startStack(t, 1, 1, "--stalled-after=1s")
	ctx := context.Background()
	alice, bob := s.usersOnTwoPartitions()
	s.fund(alice, 100)
	s.fund(bob, 100)
	stuck := s.partitionOf(alice.accountID)

	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT * FROM consumer_offsets WHERE topic = $1 AND partition = $2 FOR UPDATE`, kafka.DefaultTopic, stuck); err != nil {
		t.Fatal(err)
	}
	response, err := alice.Deposit(ctx, "stuck", alice.accountID, 7, 0)
	var pending client.Transaction
	if err != nil || response.Status != http.StatusAccepted || response.Decode(&pending) != nil {
		t.Fatalf("deposit on the stuck partition: %v %d %s", err, response.Status, response.Body)
	}
	s.depositSettlesWithin(bob, "next-door", 3, settleBound, "settled", "")

	waitFor(t, 30*time.Second, "the worker reports the stuck partition", func() bool {
		status, body := s.workerReadyz(0)
		return status == http.StatusServiceUnavailable && strings.Contains(body, fmt.Sprintf("partition %d has lagged", stuck))
	})
	metrics := scrape(t, s.file.Endpoints.WorkerMetrics[0])
	if !strings.Contains(metrics, "ledger_worker_stalled_partitions 1") ||
		!strings.Contains(metrics, fmt.Sprintf(`ledger_worker_partition_stalled_seconds{partition="%d"}`, stuck)) {
		t.Errorf("worker metrics lack the stalled partition:\n%s", grepLines(metrics, "stalled"))
	}
	if got := s.balance(alice.accountID); got != 100 {
		t.Fatalf("alice has %d while her partition is locked", got)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitApplied([]string{pending.TransactionID}, 60*time.Second)
	waitFor(t, 30*time.Second, "the worker is ready again", func() bool {
		status, _ := s.workerReadyz(0)
		return status == http.StatusOK
	})
	if got := s.balance(alice.accountID); got != 107 {
		t.Errorf("alice has %d, want 107", got)
	}
	s.checkLedger()
}

// TestGatewayReadyOnlyWithWorkers: a gateway is ready only while a worker
// is in the commands topic's consumer group; it says so in its "workers"
// check.
func TestGatewayReadyOnlyWithWorkers(t *testing.T) {
	s := startStack(t, 1, 1)
	readyz := s.file.Endpoints.GatewayInternal[0] + "/readyz"
	var body struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	check := func(wantStatus int) func() bool {
		return func() bool {
			status, text := get(t, readyz)
			if err := json.Unmarshal([]byte(text), &body); err != nil {
				t.Fatalf("readyz body %q: %v", text, err)
			}
			return status == wantStatus
		}
	}
	if !check(http.StatusOK)() || body.Checks["workers"] != "ok" {
		t.Fatalf("gateway not ready with a worker: %+v", body)
	}
	s.operate("stop", "worker-0")
	// A static member stays in the group until its session times out (10s).
	waitFor(t, 60*time.Second, "the gateway is unready without workers", check(http.StatusServiceUnavailable))
	if body.Ready || !strings.Contains(body.Checks["workers"], "no member") {
		t.Fatalf("readyz without workers: %+v", body)
	}
	s.operate("start", "worker-0")
	waitFor(t, 60*time.Second, "the gateway is ready again", check(http.StatusOK))
}

// grepLines keeps the lines of text that contain word.
func grepLines(text, word string) string {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, word) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}
