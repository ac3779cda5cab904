package settlement_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/settlement"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	commandsTopic = "ledger.commands"
	partitions    = 2
)

// rig is a migrated ledger of the test's own and a kfake broker with the
// settlements topic.
type rig struct {
	t       *testing.T
	url     string
	store   *postgres.Store
	brokers []string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	url := stacktest.PostgresURL(t)
	if err := postgres.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	listener := stacktest.Listen(t)
	used := false
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, ledger.SettlementsTopic),
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
	r := &rig{t: t, url: url, brokers: cluster.ListenAddrs()}
	r.store = r.open(nil)
	return r
}

// open opens a store of the rig's ledger with bugs (schema prepared).
func (r *rig) open(bugs ledger.Bugs) *postgres.Store {
	r.t.Helper()
	store, err := postgres.Open(context.Background(), postgres.Config{URL: r.url, SeededBugs: bugs})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(store.Close)
	if err := store.PrepareSeededBugs(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return store
}

// settle applies, through the worker's apply, three deposits (settled) and
// a withdrawal beyond the balance (rejected); it returns the settled
// transactions' ids.
func (r *rig) settle(store *postgres.Store) []string {
	r.t.Helper()
	ctx := context.Background()
	user, err := store.CreateUser(ctx, "alice@example.com", "hash")
	if err != nil {
		r.t.Fatal(err)
	}
	command := func(kind ledger.Kind, key string, source, destination, amount int64) ledger.Command {
		return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: kind, UserID: user.ID, IdempotencyKey: key,
			SourceAccountID: source, DestinationAccountID: destination, AmountMinor: amount, Fingerprint: "fp-" + key, AcceptedAt: time.Now()}
	}
	commands := []ledger.Command{
		command(ledger.KindDeposit, "d-1", ledger.ExternalAccountID, user.AccountID, 100),
		command(ledger.KindDeposit, "d-2", ledger.ExternalAccountID, user.AccountID, 200),
		command(ledger.KindWithdrawal, "w-1", user.AccountID, ledger.ExternalAccountID, 10_000),
		command(ledger.KindDeposit, "d-3", ledger.ExternalAccountID, user.AccountID, 300),
	}
	batch := postgres.Batch{Topic: commandsTopic, Partition: 0}
	for i, c := range commands {
		batch.Records = append(batch.Records, postgres.Record{Partition: 0, Offset: int64(i), Command: c})
	}
	result, err := store.ApplyBatch(ctx, batch)
	if err != nil {
		r.t.Fatal(err)
	}
	if result.Settled != 3 || result.Applied != 4 {
		r.t.Fatalf("applied %d, settled %d; want 4 and 3", result.Applied, result.Settled)
	}
	return []string{commands[0].TransactionID, commands[1].TransactionID, commands[3].TransactionID}
}

// count runs a count query.
func (r *rig) count(query string, args ...any) int64 {
	r.t.Helper()
	var n int64
	if err := r.store.Pool().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func (r *rig) relay(config settlement.RelayConfig) *settlement.Relay {
	r.t.Helper()
	producer, err := kafka.NewProducer(context.Background(), kafka.ProducerConfig{Brokers: r.brokers, Topic: ledger.SettlementsTopic})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(producer.Close)
	relay, err := settlement.NewRelay(r.store, producer, config, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return relay
}

// published is the settlements topic's records, summed over partitions.
func (r *rig) published() int64 {
	r.t.Helper()
	ends, err := endOffsets(r.brokers)
	if err != nil {
		r.t.Fatal(err)
	}
	var total int64
	for _, end := range ends {
		total += end
	}
	return total
}

// runSettler runs a settler of store from its stored offsets until it has
// consumed the topic to its end, then stops it (as a kill would: nothing
// is flushed by the test).
func (r *rig) runSettler(store *postgres.Store, bugs ledger.Bugs) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := make([]int32, partitions)
	for i := range all {
		all[i] = int32(i)
	}
	offsets, err := store.NextOffsets(ctx, ledger.SettlementsTopic, all)
	if err != nil {
		r.t.Fatal(err)
	}
	reader, err := kafka.NewReader(kafka.ReaderConfig{Brokers: r.brokers, Topic: ledger.SettlementsTopic, StartOffsets: offsets})
	if err != nil {
		r.t.Fatal(err)
	}
	defer reader.Close()
	settler, err := settlement.NewSettler(store, reader, settlement.SettlerConfig{OffsetCommitInterval: time.Hour}, bugs, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	runContext, stop := context.WithCancel(ctx)
	var wait sync.WaitGroup
	wait.Add(1)
	go func() {
		defer wait.Done()
		if err := settler.Run(runContext); err != nil {
			r.t.Error(err)
		}
	}()
	defer func() { stop(); wait.Wait() }()
	want := r.published()
	for {
		// The settler has consumed everything once its stored offsets
		// reach the topic's end.
		consumed, err := consumedRecords(ctx, store)
		if err != nil {
			r.t.Fatal(err)
		}
		// The seeded bug stores no offset here (its commit interval is an
		// hour): every event it read made a row.
		if consumed >= want || (bugs.Has(ledger.BugSettlementNoDedupe) && r.count(`SELECT count(*) FROM settlement_history`) >= want) {
			return
		}
		if ctx.Err() != nil {
			r.t.Fatalf("the settler consumed %d of %d records", consumed, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumedRecords sums the settler's stored offsets.
func consumedRecords(ctx context.Context, store *postgres.Store) (int64, error) {
	var total int64
	err := store.Pool().QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1`,
		ledger.SettlementsTopic).Scan(&total)
	return total, err
}

func endOffsets(brokers []string) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return kafka.EndOffsets(ctx, brokers, ledger.SettlementsTopic)
}

// TestRelayCrashRepublishesAndTheSettlerAppliesOnce: the outbox holds one
// event per settled transaction (none for the rejected one); a relay that
// dies after the broker's acknowledgement and before marking the rows
// published publishes them again, and the settler still makes one row per
// transaction, also when it starts again from its stored offsets.
func TestRelayCrashRepublishesAndTheSettlerAppliesOnce(t *testing.T) {
	r := newRig(t)
	settled := r.settle(r.store)
	if n := r.count(`SELECT count(*) FROM settlement_outbox`); n != 3 {
		t.Fatalf("outbox has %d rows, want 3 (one per settled transaction)", n)
	}
	crashed := false
	relay := r.relay(settlement.RelayConfig{AfterPublish: func(events []ledger.SettlementEvent) error {
		if !crashed {
			crashed = true
			return errors.New("relay died after the acknowledgement")
		}
		return nil
	}})
	if _, err := relay.Pass(context.Background()); err == nil {
		t.Fatal("the crashed pass returned no error")
	}
	if n := r.count(`SELECT count(*) FROM settlement_outbox WHERE published_at IS NULL`); n != 3 {
		t.Fatalf("%d unpublished rows after the crash, want 3", n)
	}
	if n, err := relay.Pass(context.Background()); err != nil || n != 3 {
		t.Fatalf("second pass published %d (%v), want 3", n, err)
	}
	if n, err := relay.Pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("third pass published %d (%v), want 0", n, err)
	}
	if published := r.published(); published != 6 {
		t.Fatalf("the topic holds %d events, want 6 (3 published twice)", published)
	}
	r.runSettler(r.store, nil)
	r.runSettler(r.store, nil) // started again from its offsets: nothing new
	if n := r.count(`SELECT count(*) FROM settlement_history`); n != 3 {
		t.Fatalf("settlement_history has %d rows, want 3", n)
	}
	if n := r.count(`SELECT count(DISTINCT transaction_id) FROM settlement_history WHERE transaction_id = ANY($1::uuid[])`, settled); n != 3 {
		t.Fatalf("%d of the settled transactions have a history row, want 3", n)
	}
}

// TestSettlementNoDedupeAppliesARepublishedEventTwice is the seeded bug
// settlement-no-dedupe: the republished events get a second row.
func TestSettlementNoDedupeAppliesARepublishedEventTwice(t *testing.T) {
	r := newRig(t)
	r.settle(r.store)
	crashed := false
	relay := r.relay(settlement.RelayConfig{AfterPublish: func([]ledger.SettlementEvent) error {
		if !crashed {
			crashed = true
			return errors.New("relay died after the acknowledgement")
		}
		return nil
	}})
	_, _ = relay.Pass(context.Background())
	if _, err := relay.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	bugs := ledger.Bugs{ledger.BugSettlementNoDedupe}
	r.runSettler(r.open(bugs), bugs)
	if n := r.count(`SELECT count(*) FROM settlement_history`); n != 6 {
		t.Fatalf("settlement_history has %d rows, want 6 (every republished event applied again)", n)
	}
}

// TestOutboxOutsideTxCommitsTheBatchWithoutItsEvents is the seeded bug
// outbox-outside-tx: the batch commits with no outbox row; the rows are
// written a moment later (here by a clean stop), so a crash in between
// loses them.
func TestOutboxOutsideTxCommitsTheBatchWithoutItsEvents(t *testing.T) {
	r := newRig(t)
	store, err := postgres.Open(context.Background(), postgres.Config{URL: r.url, SeededBugs: ledger.Bugs{ledger.BugOutboxOutsideTx}})
	if err != nil {
		t.Fatal(err)
	}
	r.settle(store)
	if n := r.count(`SELECT count(*) FROM settlement_outbox`); n != 0 {
		t.Fatalf("outbox has %d rows right after the commit, want 0 (they wait in memory)", n)
	}
	if n := r.count(`SELECT count(*) FROM transactions WHERE status = 'settled'`); n != 3 {
		t.Fatalf("%d settled transactions, want 3", n)
	}
	store.Close()
	if n := r.count(`SELECT count(*) FROM settlement_outbox`); n != 3 {
		t.Fatalf("outbox has %d rows after a clean stop, want 3", n)
	}
}
