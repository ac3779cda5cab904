package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// shardedRig is two migrated shards of the test's own, a kfake broker with
// the commands topic, a Redis of its own, and the commands produced so far.
type shardedRig struct {
	t        *testing.T
	urls     []string
	stores   []*postgres.Store
	brokers  []string
	producer *kafka.Producer
	cache    *redis.Client
	redis    string
	logger   *slog.Logger
	// sources maps each transaction id produced to the shard of its
	// source account (of its account for a deposit): where its row is.
	sources map[string]int
	layout  shard.Layout
	// registries holds the metrics of the last worker started per shard.
	registries map[int]*prometheus.Registry
}

func newShardedRig(t *testing.T, shard0Bugs ...ledger.Bug) *shardedRig {
	t.Helper()
	return newShardedRigWith(t, postgres.Config{SeededBugs: ledger.Bugs(shard0Bugs)})
}

// newShardedRigWith opens shard 0's store with shard0's bugs and daily
// limit.
func newShardedRigWith(t *testing.T, shard0 postgres.Config) *shardedRig {
	t.Helper()
	ctx := context.Background()
	layout, _ := shard.New(2)
	r := &shardedRig{t: t, sources: map[string]int{}, layout: layout, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		registries: map[int]*prometheus.Registry{}}
	for i := 0; i < layout.Shards; i++ {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		config := postgres.Config{URL: url}
		if i == 0 {
			config.SeededBugs, config.DailyDebitLimitMinor = shard0.SeededBugs, shard0.DailyDebitLimitMinor
		}
		store, err := postgres.Open(ctx, config)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
			t.Fatal(err)
		}
		r.urls, r.stores = append(r.urls, url), append(r.stores, store)
	}
	listener := stacktest.Listen(t)
	used := false
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, kafka.DefaultTopic),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if used {
				return nil, errors.New("a second listener of a single-node cluster")
			}
			used = true
			return listener, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	r.brokers = cluster.ListenAddrs()
	if r.producer, err = kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: r.brokers}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.producer.Close)
	r.redis = stacktest.RedisAddr(t)
	if r.cache, err = redis.New(redis.Config{Addr: r.redis}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cache.Close() })
	return r
}

// user creates a user and its account in shard i.
func (r *shardedRig) user(i int, email string) ledger.User {
	r.t.Helper()
	user, err := r.stores[i].CreateUser(context.Background(), email, "hash")
	if err != nil {
		r.t.Fatal(err)
	}
	if r.layout.Of(user.AccountID) != i {
		r.t.Fatalf("account %d of shard %d routes to shard %d", user.AccountID, i, r.layout.Of(user.AccountID))
	}
	return user
}

// command builds a command of user; keys are unique across the rig's users
// (the shards number their users alike, and an id derives from user and key).
func (r *shardedRig) command(user ledger.User, kind ledger.Kind, key string, source, destination, amount int64) ledger.Command {
	key = fmt.Sprintf("%s-of-%d", key, user.AccountID)
	return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: kind, UserID: user.ID, IdempotencyKey: key,
		SourceAccountID: source, DestinationAccountID: destination, AmountMinor: amount, Fingerprint: "fp-" + key, AcceptedAt: time.Now().UTC()}
}

// produce queues commands as the gateway does (keyed by their account).
func (r *shardedRig) produce(commands ...ledger.Command) {
	r.t.Helper()
	for _, command := range commands {
		value, err := json.Marshal(command)
		if err != nil {
			r.t.Fatal(err)
		}
		if _, _, err := r.producer.Produce(context.Background(), []byte(strconv.FormatInt(command.PartitionKey(), 10)), value); err != nil {
			r.t.Fatal(err)
		}
		r.sources[command.TransactionID] = r.layout.Of(command.PartitionKey())
	}
}

// startWorker runs a worker of shard index over stores (stores[index] its
// own) in the shard's consumer group, until the returned stop is called.
func (r *shardedRig) startWorker(index int, stores []*postgres.Store, recovery postgres.SagaRecovery) (stop func()) {
	r.t.Helper()
	sharded, err := postgres.NewShardedLedger(stores, index, recovery, r.logger)
	if err != nil {
		r.t.Fatal(err)
	}
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: r.brokers, Group: shard.Group("ledger-workers", index),
		StartOffsets: func(ctx context.Context, partitions []int32) (map[int32]int64, error) {
			return stores[index].NextOffsets(ctx, kafka.DefaultTopic, partitions)
		}})
	if err != nil {
		r.t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	r.registries[index] = registry
	applier, err := New(Config{Linger: time.Millisecond, SagaRecoveryInterval: 20 * time.Millisecond}, sharded, r.cache, consumer, r.logger,
		NewMetrics(registry))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- applier.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("worker of shard %d: %v", index, err)
		}
		consumer.Close()
	}
	r.t.Cleanup(stop)
	return stop
}

// counter reads the counter name{label=value} of shard's last worker (0
// when it was never counted).
func (r *shardedRig) counter(shard int, name, label, value string) float64 {
	r.t.Helper()
	families, err := r.registries[shard].Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		for _, metric := range family.GetMetric() {
			for _, pair := range metric.GetLabel() {
				if pair.GetName() == label && pair.GetValue() == value {
					return metric.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// eventually polls check until it returns nil, failing the test with its
// last error after within.
func (r *shardedRig) eventually(within time.Duration, check func() error) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outcome reads the transaction row of id in its source's shard ("" when
// there is none yet: pending).
func (r *shardedRig) outcome(id string) (status, reason string) {
	r.t.Helper()
	err := r.stores[r.sources[id]].Pool().QueryRow(context.Background(), `SELECT status, reason FROM transactions WHERE id = $1`, id).Scan(&status, &reason)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		r.t.Fatal(err)
	}
	return status, reason
}

// waitOutcomes waits until every command produced has its outcome.
func (r *shardedRig) waitOutcomes() {
	r.t.Helper()
	r.eventually(30*time.Second, func() error {
		var pending []string
		for id := range r.sources {
			if status, _ := r.outcome(id); status == "" {
				pending = append(pending, id)
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d command(s) without an outcome: %s", len(pending), strings.Join(pending, ", "))
		}
		return nil
	})
}

func (r *shardedRig) balance(i int, account int64) int64 {
	r.t.Helper()
	got, err := r.stores[i].Account(context.Background(), account)
	if err != nil {
		r.t.Fatal(err)
	}
	return got.BalanceMinor
}

// sagaAtomicity is the auditor's saga-atomicity over the rig's shards.
func (r *shardedRig) sagaAtomicity() invariants.InvariantResult {
	r.t.Helper()
	sagas, err := invariants.PostgresSagaSource{URLs: r.urls}.ReadSagas(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return invariants.CheckSagas(sagas, 10)
}

// conservation returns the sum of every user balance of both shards and
// the sum of the external account's postings (deposits minus withdrawals,
// negated): equal when no money was made or lost across the shards.
func (r *shardedRig) conservation() (balances, external int64) {
	r.t.Helper()
	for _, store := range r.stores {
		var sum, outside int64
		if err := store.Pool().QueryRow(context.Background(), `SELECT
			(SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind = 'user'),
			(SELECT COALESCE(sum(amount), 0) FROM postings WHERE account_id = 0)`).Scan(&sum, &outside); err != nil {
			r.t.Fatal(err)
		}
		balances += sum
		external -= outside
	}
	return balances, external
}

// cacheCoherent waits until every cached balance of accounts equals its
// ledger's (a balance not cached is fine: a miss).
func (r *shardedRig) cacheCoherent(accounts map[int64]int) {
	r.t.Helper()
	r.eventually(10*time.Second, func() error {
		for account, i := range accounts {
			cached, err := r.cache.CachedBalances(context.Background(), []int64{account})
			if err != nil {
				return err
			}
			if balance, ok := cached[account]; ok && balance != r.balance(i, account) {
				return fmt.Errorf("account %d cached at %d, ledger %d", account, balance, r.balance(i, account))
			}
		}
		return nil
	})
}

// scenario is the commands both shards' workers apply: deposits in both,
// transfers within a shard, transfers across shards both ways (completed),
// to missing accounts of the other shard (compensated), beyond the balance
// (refused), a copy of a cross-shard transfer, and a withdrawal.
type scenario struct {
	payer0, payee0, payer1, payee1 ledger.User
	completed, compensated         []ledger.Command
	refused                        ledger.Command
}

func (r *shardedRig) runScenario() scenario {
	r.t.Helper()
	s := scenario{payer0: r.user(0, "payer0@example.com"), payee0: r.user(0, "payee0@example.com"),
		payer1: r.user(1, "payer1@example.com"), payee1: r.user(1, "payee1@example.com")}
	missing0, missing1 := s.payee0.AccountID+1000*2, s.payee1.AccountID+1000*2
	r.produce(
		r.command(s.payer0, ledger.KindDeposit, "fund", ledger.ExternalAccountID, s.payer0.AccountID, 1000),
		r.command(s.payer1, ledger.KindDeposit, "fund", ledger.ExternalAccountID, s.payer1.AccountID, 1000),
	)
	s.completed = []ledger.Command{
		r.command(s.payer0, ledger.KindTransfer, "to-payee1", s.payer0.AccountID, s.payee1.AccountID, 100),
		r.command(s.payer1, ledger.KindTransfer, "to-payee0", s.payer1.AccountID, s.payee0.AccountID, 200),
	}
	s.compensated = []ledger.Command{
		r.command(s.payer0, ledger.KindTransfer, "to-missing1", s.payer0.AccountID, missing1, 50),
		r.command(s.payer1, ledger.KindTransfer, "to-missing0", s.payer1.AccountID, missing0, 70),
	}
	s.refused = r.command(s.payer0, ledger.KindTransfer, "too-much", s.payer0.AccountID, s.payee1.AccountID, 5000)
	r.produce(s.completed...)
	r.produce(s.compensated...)
	r.produce(s.refused,
		r.command(s.payer0, ledger.KindTransfer, "within", s.payer0.AccountID, s.payee0.AccountID, 10),
		r.command(s.payer1, ledger.KindWithdrawal, "out", s.payer1.AccountID, ledger.ExternalAccountID, 5),
		s.completed[0], // a copy, as a gateway's retry re-sends
	)
	r.waitOutcomes()
	return s
}

func (r *shardedRig) accounts(s scenario) map[int64]int {
	return map[int64]int{s.payer0.AccountID: 0, s.payee0.AccountID: 0, s.payer1.AccountID: 1, s.payee1.AccountID: 1}
}

// TestShardedWorkersRunSagasAcrossShards: a worker per shard on a real
// broker and two real Postgres shards applies commands of both shards,
// including transfers across shards to existing accounts (completed) and to
// missing ones (compensated); a worker killed mid-saga (its destination
// shard unreachable, then the worker stopped) and restarted finishes the
// saga by its recovery, as does a command redelivered after its debit.
// Every saga ends completed or compensated, the money is conserved across
// the shards, and the cache agrees with the ledgers.
func TestShardedWorkersRunSagasAcrossShards(t *testing.T) {
	r := newShardedRig(t)
	recovery := postgres.SagaRecovery{OlderThan: 200 * time.Millisecond}
	stop0 := r.startWorker(0, r.stores, recovery)
	r.startWorker(1, r.stores, recovery)
	s := r.runScenario()

	for _, command := range s.completed {
		if status, reason := r.outcome(command.TransactionID); status != string(ledger.StatusSettled) {
			t.Errorf("cross-shard transfer %s: %s %s, want settled", command.IdempotencyKey, status, reason)
		}
	}
	for _, command := range s.compensated {
		if status, reason := r.outcome(command.TransactionID); status != string(ledger.StatusRejected) || reason != string(ledger.CodeAccountNotFound) {
			t.Errorf("transfer to a missing account %s: %s %s, want rejected account_not_found", command.IdempotencyKey, status, reason)
		}
	}
	if status, reason := r.outcome(s.refused.TransactionID); status != string(ledger.StatusRejected) || reason != string(ledger.CodeInsufficientFunds) {
		t.Errorf("transfer beyond the balance: %s %s, want rejected insufficient_funds", status, reason)
	}
	want := map[string]int64{"payer0": 1000 - 100 - 10, "payee0": 200 + 10, "payer1": 1000 - 200 - 5, "payee1": 100}
	got := map[string]int64{"payer0": r.balance(0, s.payer0.AccountID), "payee0": r.balance(0, s.payee0.AccountID),
		"payer1": r.balance(1, s.payer1.AccountID), "payee1": r.balance(1, s.payee1.AccountID)}
	for name, balance := range want {
		if got[name] != balance {
			t.Errorf("%s's balance %d, want %d", name, got[name], balance)
		}
	}

	// A worker killed mid-saga: shard 1 unreachable, the debit made, the
	// worker stopped before any credit; another saga's command redelivered
	// after its debit committed (the worker killed before its offset).
	stop0()
	unreachable, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://ledger@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unreachable.Close)
	stopCut := r.startWorker(0, []*postgres.Store{r.stores[0], unreachable}, recovery)
	interrupted := r.command(s.payer0, ledger.KindTransfer, "interrupted", s.payer0.AccountID, s.payee1.AccountID, 30)
	r.produce(interrupted)
	// Debited, and its command passed: the saga left in flight once the
	// credit failed, and the next run's transaction moved the offset. The
	// debit is visible before that (the credit is tried in between); a
	// worker stopped then would leave the command to be redelivered, and
	// the restarted worker would finish the saga by applying it again, not
	// by its recovery.
	r.eventually(30*time.Second, func() error {
		var state string
		var passed bool
		err := r.stores[0].Pool().QueryRow(context.Background(), `SELECT s.state,
			COALESCE((SELECT o.next_offset FROM consumer_offsets o WHERE o.topic = $2 AND o.partition = s.kafka_partition), 0) > s.kafka_offset
			FROM sagas s WHERE s.id = $1`, interrupted.TransactionID, kafka.DefaultTopic).Scan(&state, &passed)
		if err != nil || state != postgres.SagaDebited || !passed {
			return fmt.Errorf("the interrupted saga: %q, its command passed: %v, %v; want debited and passed", state, passed, err)
		}
		return nil
	})
	stopCut()
	if status, _ := r.outcome(interrupted.TransactionID); status != "" {
		t.Errorf("a saga in flight has the outcome %q: its client would be told before the saga ended", status)
	}
	redelivered := r.command(s.payer0, ledger.KindTransfer, "redelivered", s.payer0.AccountID, s.payee1.AccountID, 40)
	if step, err := r.stores[0].SagaDebit(context.Background(), postgres.SagaFor(redelivered, 1, 0, 0)); err != nil || step.State != postgres.SagaDebited {
		t.Fatalf("debit before the crash: %+v %v", step, err)
	}
	r.startWorker(0, r.stores, recovery)
	r.produce(redelivered)
	r.waitOutcomes()
	for _, command := range []ledger.Command{interrupted, redelivered} {
		if status, reason := r.outcome(command.TransactionID); status != string(ledger.StatusSettled) {
			t.Errorf("saga %s after the restart: %s %s, want settled", command.IdempotencyKey, status, reason)
		}
	}
	// The interrupted saga's command was passed (its offset moved while its
	// destination was down): the restarted worker's recovery finished it,
	// and counted it.
	if got := r.counter(0, "ledger_worker_sagas_recovered_total", "state", postgres.SagaCompleted); got < 1 {
		t.Errorf("the restarted worker counted %v sagas recovered, want the interrupted one", got)
	}
	if got := r.balance(0, s.payer0.AccountID); got != 890-30-40 {
		t.Errorf("payer0's balance %d, want %d", got, 890-30-40)
	}
	if got := r.balance(1, s.payee1.AccountID); got != 100+30+40 {
		t.Errorf("payee1's balance %d, want %d", got, 100+30+40)
	}

	result := r.sagaAtomicity()
	if result.Status != invariants.StatusPassed || result.Checked["sagas"] < 6 {
		t.Errorf("saga-atomicity: %s, checked %v: %+v", result.Status, result.Checked, result.Violations)
	}
	for _, store := range r.stores {
		var inFlight int
		if err := store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM sagas WHERE state NOT IN ('completed', 'compensated')`).Scan(&inFlight); err != nil || inFlight != 0 {
			t.Errorf("%d saga(s) neither completed nor compensated (%v)", inFlight, err)
		}
	}
	if balances, external := r.conservation(); balances != external || balances != 2000-5 {
		t.Errorf("the shards' balances sum to %d, deposits minus withdrawals to %d, want both %d", balances, external, 2000-5)
	}
	r.cacheCoherent(r.accounts(s))
}

// TestShardedWorkersSagaBugsAreCaught: under each saga seeded bug in shard
// 0's store, the same scenario breaks saga-atomicity and conservation
// across the shards (the check that passes above fails here).
func TestShardedWorkersSagaBugsAreCaught(t *testing.T) {
	for _, bug := range ledger.SagaBugs() {
		t.Run(string(bug), func(t *testing.T) {
			r := newShardedRig(t, bug)
			recovery := postgres.SagaRecovery{OlderThan: time.Millisecond}
			r.startWorker(0, r.stores, recovery)
			r.startWorker(1, r.stores, recovery)
			r.runScenario()
			// Under saga-double-compensation the extra refunds come from
			// the recovery passes: wait for one.
			r.eventually(10*time.Second, func() error {
				if result := r.sagaAtomicity(); result.Status != invariants.StatusViolated {
					return fmt.Errorf("saga-atomicity %s under %s: %+v", result.Status, bug, result.Violations)
				}
				return nil
			})
			if balances, external := r.conservation(); balances == external {
				t.Errorf("the shards' balances sum to the deposits minus withdrawals (%d) under %s", balances, bug)
			}
		})
	}
}

func TestProcessConfigShardsAreValidated(t *testing.T) {
	base := "postgres://ledger@127.0.0.1:15432/ledger"
	many := make([]string, shard.MaxShards)
	for i := range many {
		many[i] = fmt.Sprintf("postgres://ledger@127.0.0.1:%d/ledger", 16000+i)
	}
	cases := []struct {
		name   string
		shard  int
		urls   []string
		shards int
		error  string
	}{
		{"one ledger", 0, nil, 1, ""},
		{"shard 1 of 2", 1, []string{"postgres://ledger@127.0.0.1:15433/ledger"}, 2, ""},
		{"shard out of range", 2, []string{"postgres://ledger@127.0.0.1:15433/ledger"}, 0, "--shard 2 is not a shard of 2"},
		{"negative shard", -1, nil, 0, "--shard -1 is not a shard of 1"},
		{"shard without URLs", 1, nil, 0, "--shard 1 is not a shard of 1"},
		{"shard 0's URL again", 0, []string{base}, 0, "shards 0 and 1 have the same Postgres URL"},
		{"a URL twice", 0, []string{many[0], many[0]}, 0, "shards 1 and 2 have the same Postgres URL"},
		{"blank URL", 0, []string{" "}, 0, "--shard-postgres-url of shard 1 is empty"},
		{"too many shards", 0, many, 0, "at most 16"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			process := ProcessConfig{Shard: c.shard, ShardPostgresURLs: c.urls}
			process.Daemon.PostgresURL = base
			shards, err := process.shards()
			if c.error == "" {
				if err != nil || shards != c.shards {
					t.Fatalf("%d shards, %v; want %d", shards, err, c.shards)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Fatalf("error %v, want one saying %q", err, c.error)
			}
		})
	}
}

// TestServeShardedWorkers: `ledgerproof worker --shard I
// --shard-postgres-url ...` as Serve runs it: each shard's worker applies
// to its own database in its shard's consumer group, runs the sagas of its
// shard, and counts them and the records it skipped in its metrics.
func TestServeShardedWorkers(t *testing.T) {
	r := newShardedRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metrics := make([]string, 2)
	served := make(chan error, 2)
	for i := range metrics {
		metrics[i] = fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		process := ProcessConfig{Group: "ledger-workers", MetricsListen: metrics[i], Shard: i, ShardPostgresURLs: r.urls[1:],
			Worker: Config{Linger: time.Millisecond}}
		process.Daemon = daemon.Config{PostgresURL: r.urls[0], PostgresMaxConnections: 4, RedisAddr: r.redis, Brokers: strings.Join(r.brokers, ","),
			Topic: kafka.DefaultTopic, Partitions: 2, ReplicationFactor: 1, Name: fmt.Sprintf("worker-s%d", i), LogLevel: "warn"}
		go func() { served <- Serve(ctx, process) }()
	}
	payer, payee := r.user(0, "payer@example.com"), r.user(1, "payee@example.com")
	r.produce(
		r.command(payer, ledger.KindDeposit, "fund", ledger.ExternalAccountID, payer.AccountID, 500),
		r.command(payee, ledger.KindDeposit, "fund", ledger.ExternalAccountID, payee.AccountID, 5),
		r.command(payer, ledger.KindTransfer, "across", payer.AccountID, payee.AccountID, 120),
		r.command(payer, ledger.KindTransfer, "to-missing", payer.AccountID, payee.AccountID+2000, 80),
	)
	r.waitOutcomes()
	if got := r.balance(0, payer.AccountID); got != 380 {
		t.Errorf("payer %d, want 380", got)
	}
	if got := r.balance(1, payee.AccountID); got != 125 {
		t.Errorf("payee %d, want 125", got)
	}
	scrape := func(address string) string {
		response, err := http.Get("http://" + address + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	// The metrics count a batch once it returned, a moment after its
	// outcomes are stored.
	r.eventually(10*time.Second, func() error {
		shard0, shard1 := scrape(metrics[0]), scrape(metrics[1])
		for _, line := range []string{`ledger_worker_sagas_total{state="completed"} 1`, `ledger_worker_sagas_total{state="compensated"} 1`,
			"ledger_worker_foreign_records_total 1"} {
			if !strings.Contains(shard0, line) {
				return fmt.Errorf("shard 0's worker's metrics lack %q", line)
			}
		}
		if !strings.Contains(shard1, "ledger_worker_foreign_records_total 3") {
			return fmt.Errorf("shard 1's worker's metrics do not count the 3 records of shard 0")
		}
		return nil
	})
	admin := kadm.NewClient(newAdminClient(t, r.brokers))
	groups, err := admin.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{shard.Group("ledger-workers", 0), shard.Group("ledger-workers", 1)} {
		if _, ok := groups[group]; !ok {
			t.Errorf("no consumer group %s among %v", group, groups.Groups())
		}
	}
	cancel()
	for range metrics {
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

func newAdminClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// TestShardedWorkerForgetsTheDailyTotalACompensationLowered: a saga's debit
// counts against the user's day, in the ledger and in the cache the
// gateways' soft check reads; its compensation lowers the ledger's total,
// and the cached one, which only grows, is dropped rather than left above
// the ledger's.
func TestShardedWorkerForgetsTheDailyTotalACompensationLowered(t *testing.T) {
	r := newShardedRigWith(t, postgres.Config{DailyDebitLimitMinor: 500})
	recovery := postgres.SagaRecovery{OlderThan: time.Minute}
	r.startWorker(0, r.stores, recovery)
	r.startWorker(1, r.stores, recovery)
	payer, payee := r.user(0, "payer@example.com"), r.user(1, "payee@example.com")
	paid := r.command(payer, ledger.KindTransfer, "across", payer.AccountID, payee.AccountID, 100)
	r.produce(r.command(payer, ledger.KindDeposit, "fund", ledger.ExternalAccountID, payer.AccountID, 1000), paid)
	r.waitOutcomes()
	day := ledger.DebitDay(paid.AcceptedAt)
	r.eventually(10*time.Second, func() error {
		cached, found, err := r.cache.CachedDailyDebits(context.Background(), payer.ID, day)
		if err != nil || !found || cached != 100 {
			return fmt.Errorf("cached daily total %d (found %v, %v), want 100 after a completed saga", cached, found, err)
		}
		return nil
	})
	compensated := r.command(payer, ledger.KindTransfer, "to-missing", payer.AccountID, payee.AccountID+2000, 300)
	r.produce(compensated)
	r.waitOutcomes()
	if status, reason := r.outcome(compensated.TransactionID); status != string(ledger.StatusRejected) || reason != string(ledger.CodeAccountNotFound) {
		t.Fatalf("transfer to a missing account: %s %s", status, reason)
	}
	var ledgerTotal int64
	if err := r.stores[0].Pool().QueryRow(context.Background(), `SELECT debited_minor FROM daily_debits WHERE user_id = $1 AND day = $2`,
		payer.ID, day).Scan(&ledgerTotal); err != nil || ledgerTotal != 100 {
		t.Fatalf("the ledger's daily total %d (%v), want 100: the compensated debit does not count", ledgerTotal, err)
	}
	r.eventually(10*time.Second, func() error {
		cached, found, err := r.cache.CachedDailyDebits(context.Background(), payer.ID, day)
		if err != nil || (found && cached != ledgerTotal) {
			return fmt.Errorf("cached daily total %d (found %v, %v), the ledger's %d", cached, found, err, ledgerTotal)
		}
		return nil
	})
}

// TestShardedWorkerProcessKilledMidSagaResumes: a `ledgerproof worker
// --shard 0` process dies at the crash point worker.mid-saga (the debit
// and saga log committed, the destination not yet asked); nothing is told
// to the client; the restarted process, given the command again from the
// unmoved offset, resumes the saga and completes it.
func TestShardedWorkerProcessKilledMidSagaResumes(t *testing.T) {
	r := newShardedRig(t)
	binary := stacktest.Binary(t)
	payer, payee := r.user(0, "payer@example.com"), r.user(1, "payee@example.com")
	paid := r.command(payer, ledger.KindTransfer, "across", payer.AccountID, payee.AccountID, 250)
	r.produce(r.command(payer, ledger.KindDeposit, "fund", ledger.ExternalAccountID, payer.AccountID, 1000), paid)
	worker := func(extra ...string) *exec.Cmd {
		args := append([]string{"worker", "--shard", "0", "--postgres-url", r.urls[0], "--shard-postgres-url", r.urls[1],
			"--brokers", strings.Join(r.brokers, ","), "--partitions", "2", "--redis-addr", r.redis, "--name", "worker-0",
			"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t)), "--log-level", "warn", "--linger", "1ms"}, extra...)
		command := exec.Command(binary, args...)
		command.Stderr = &strings.Builder{}
		if err := command.Start(); err != nil {
			t.Fatal(err)
		}
		return command
	}
	crashed := worker("--enable-crash-points", "--crash-point", "worker.mid-saga")
	exited := make(chan error, 1)
	go func() { exited <- crashed.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 87 {
			t.Fatalf("the worker exited with %v, want status 87 at worker.mid-saga; its log:\n%s", err, crashed.Stderr)
		}
	case <-time.After(60 * time.Second):
		_ = crashed.Process.Kill()
		t.Fatalf("the worker did not reach worker.mid-saga; its log:\n%s", crashed.Stderr)
	}
	var state string
	if err := r.stores[0].Pool().QueryRow(context.Background(), `SELECT state FROM sagas WHERE id = $1`, paid.TransactionID).Scan(&state); err != nil ||
		state != postgres.SagaDebited {
		t.Fatalf("the saga after the crash: %q %v, want debited", state, err)
	}
	if status, _ := r.outcome(paid.TransactionID); status != "" {
		t.Errorf("the transfer has the outcome %q while its saga is in flight", status)
	}
	if got := r.balance(0, payer.AccountID); got != 750 {
		t.Errorf("payer %d after the debit, want 750", got)
	}

	restarted := worker()
	t.Cleanup(func() {
		_ = restarted.Process.Signal(syscall.SIGTERM)
		_ = restarted.Wait()
	})
	r.eventually(30*time.Second, func() error {
		if status, _ := r.outcome(paid.TransactionID); status != string(ledger.StatusSettled) {
			return fmt.Errorf("the transfer's outcome %q, want settled", status)
		}
		return nil
	})
	if got := r.balance(1, payee.AccountID); got != 250 {
		t.Errorf("payee %d, want 250", got)
	}
	if got := r.balance(0, payer.AccountID); got != 750 {
		t.Errorf("payer %d, want 750", got)
	}
	if result := r.sagaAtomicity(); result.Status != invariants.StatusPassed {
		t.Errorf("saga-atomicity %s: %+v", result.Status, result.Violations)
	}
	if balances, external := r.conservation(); balances != external || balances != 1000 {
		t.Errorf("the shards' balances sum to %d, deposits minus withdrawals to %d, want 1000", balances, external)
	}
}

// TestShardedWorkerAnnouncesWhatAFailingBatchCommitted: a batch whose saga
// fails at its finish (a rule of shard 0 refuses completed sagas for now),
// after the deposit before it committed, has the deposit's outcome
// announced while the worker retries; the retry, once the rule is gone,
// finds the deposit applied and completes the saga.
func TestShardedWorkerAnnouncesWhatAFailingBatchCommitted(t *testing.T) {
	ctx := context.Background()
	r := newShardedRig(t)
	payer, payee := r.user(0, "payer@example.com"), r.user(1, "payee@example.com")
	if _, err := r.stores[0].Pool().Exec(ctx, `ALTER TABLE sagas ADD CONSTRAINT test_no_completion CHECK (state <> 'completed')`); err != nil {
		t.Fatal(err)
	}
	funded := r.command(payer, ledger.KindDeposit, "fund", ledger.ExternalAccountID, payer.AccountID, 1000)
	paid := r.command(payer, ledger.KindTransfer, "across", payer.AccountID, payee.AccountID, 300)
	// Both produced before the workers start: shard 0's first batch holds
	// both.
	r.produce(funded, paid)
	recovery := postgres.SagaRecovery{OlderThan: time.Minute}
	r.startWorker(0, r.stores, recovery)
	r.startWorker(1, r.stores, recovery)
	r.eventually(10*time.Second, func() error {
		notice, found, err := r.cache.LookupOutcome(ctx, funded.TransactionID)
		if err != nil || !found || notice.Status != ledger.StatusSettled {
			return fmt.Errorf("the committed deposit's outcome: %+v (found %v, %v), want settled while the batch retries", notice, found, err)
		}
		return nil
	})
	if status, _ := r.outcome(paid.TransactionID); status != "" {
		t.Fatalf("the saga ended (%s) although its finish is refused", status)
	}
	if _, err := r.stores[0].Pool().Exec(ctx, `ALTER TABLE sagas DROP CONSTRAINT test_no_completion`); err != nil {
		t.Fatal(err)
	}
	r.waitOutcomes()
	if status, _ := r.outcome(paid.TransactionID); status != string(ledger.StatusSettled) {
		t.Errorf("the transfer %s, want settled", status)
	}
	if got := r.balance(1, payee.AccountID); got != 300 {
		t.Errorf("payee %d, want 300", got)
	}
}
