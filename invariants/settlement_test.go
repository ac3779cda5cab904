package invariants

import (
	"time"

	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestSettlementExactlyOnce audits a reference ledger whose outbox the
// settler applied once (passes), then each way a settlement goes wrong
// (fails, naming the transaction and its counts).
func TestSettlementExactlyOnce(t *testing.T) {
	r := newReferenceLedger(t)
	alice, bob := r.signup("alice@example.com"), r.signup("bob@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100),
		referenceCommand(alice, ledger.KindTransfer, "a-2", alice.AccountID, bob.AccountID, 30))
	r.apply(referenceCommand(bob, ledger.KindWithdrawal, "b-1", bob.AccountID, 0, 1000)) // insufficient funds
	runDir := t.TempDir()
	writeLines(t, runDir+"/journal.jsonl", r.journal)
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	deposit, transferID, rejected := ledger.TransactionIDFor(alice.ID, "a-1"), ledger.TransactionIDFor(alice.ID, "a-2"), ledger.TransactionIDFor(bob.ID, "b-1")

	good := r.audit(runDir, source, nil)
	settlement := good.invariant(SettlementExactlyOnce)
	if good.Verdict != VerdictPassed || settlement.Status != StatusPassed {
		t.Fatalf("the settled ledger: verdict %s, settlement-exactly-once %s\n%s", good.Verdict, settlement.Status, good.summary())
	}
	if settlement.Checked["settled transactions"] != 2 || settlement.Checked["rejected transactions"] != 1 {
		t.Errorf("checked %v, want 2 settled and 1 rejected", settlement.Checked)
	}

	// expectViolation audits after change (undone by undo) and wants one
	// settlement-exactly-once violation whose explanation has every part.
	expectViolation := func(t *testing.T, change, undo string, args []any, parts ...string) {
		t.Helper()
		r.exec(change, args...)
		defer r.exec(undo, args...)
		result := r.audit(runDir, source, nil)
		if !slices.Contains(result.violated(), SettlementExactlyOnce) {
			t.Fatalf("violated %v\n%s", result.violated(), result.summary())
		}
		explanation := result.explanation(SettlementExactlyOnce)
		for _, part := range parts {
			if !strings.Contains(explanation, part) {
				t.Errorf("explanation lacks %q: %s", part, explanation)
			}
		}
	}
	t.Run("missing event", func(t *testing.T) {
		// The event and its effect never happened (outbox-outside-tx).
		expectViolation(t, `WITH o AS (DELETE FROM settlement_outbox WHERE transaction_id = $1 RETURNING *),
				h AS (DELETE FROM settlement_history WHERE transaction_id = $1 RETURNING *) SELECT 1`,
			`SELECT $1::text`, []any{transferID}, transferID, "no settlement event", "lost")
		r.settleDownstreamAgain()
	})
	t.Run("missing effect", func(t *testing.T) {
		expectViolation(t, `DELETE FROM settlement_history WHERE transaction_id = $1`,
			`INSERT INTO settlement_history (transaction_id, kind, source_account_id, destination_account_id, amount, kafka_partition, kafka_offset)
				SELECT transaction_id, kind, source_account_id, destination_account_id, amount, 0, id FROM settlement_outbox WHERE transaction_id = $1`,
			[]any{deposit}, deposit, "no effect downstream", "0 effect(s)")
	})
	t.Run("doubled effect", func(t *testing.T) {
		r.exec(`DROP INDEX settlement_history_transaction`)
		defer r.exec(`CREATE UNIQUE INDEX settlement_history_transaction ON settlement_history (transaction_id)`)
		expectViolation(t, `INSERT INTO settlement_history (transaction_id, kind, source_account_id, destination_account_id, amount, kafka_partition, kafka_offset)
				SELECT transaction_id, kind, source_account_id, destination_account_id, amount, 1, 99 FROM settlement_outbox WHERE transaction_id = $1`,
			`DELETE FROM settlement_history WHERE transaction_id = $1 AND kafka_offset = 99`, []any{deposit}, deposit, "applied 2 times downstream", "2 effect(s)")
	})
	t.Run("effect of a rejected transaction", func(t *testing.T) {
		expectViolation(t, `INSERT INTO settlement_history (transaction_id, kind, source_account_id, destination_account_id, amount, kafka_partition, kafka_offset)
				VALUES ($1, 'withdrawal', 2, 0, 1000, 0, 98)`,
			`DELETE FROM settlement_history WHERE transaction_id = $1`, []any{rejected}, rejected, "is rejected", `"b-1"`)
	})
	t.Run("event of an unknown transaction", func(t *testing.T) {
		unknown := ledger.TransactionIDFor(alice.ID, "never-sent")
		expectViolation(t, `INSERT INTO settlement_outbox (transaction_id, kind, source_account_id, destination_account_id, amount) VALUES ($1, 'deposit', 0, 1, 5)`,
			`DELETE FROM settlement_outbox WHERE transaction_id = $1`, []any{unknown}, unknown, "is not in the ledger", "1 event(s)")
	})
	t.Run("passes again", func(t *testing.T) {
		if result := r.audit(runDir, source, nil); result.Verdict != VerdictPassed {
			t.Fatalf("verdict %s, violated %v\n%s", result.Verdict, result.violated(), result.summary())
		}
	})
	t.Run("a stack without a settlement pipeline", func(t *testing.T) {
		// The events the workers wrote are never applied downstream: with
		// the pipeline declared absent, skipped with the reason, not violated.
		r.exec(`ALTER TABLE settlement_history RENAME TO settlement_history_away`)
		r.exec(`CREATE TABLE settlement_history (LIKE settlement_history_away INCLUDING ALL)`)
		defer r.exec(`DROP TABLE settlement_history; ALTER TABLE settlement_history_away RENAME TO settlement_history`)
		if result := r.audit(runDir, source, nil); result.invariant(SettlementExactlyOnce).Status != StatusViolated {
			t.Fatalf("no effect downstream and the pipeline not declared absent: settlement-exactly-once %s", result.invariant(SettlementExactlyOnce).Status)
		}
		result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: source, DrainTimeout: 10 * time.Second,
			NoSettlement: "the stack runs no settlement pipeline"})
		if err != nil {
			t.Fatal(err)
		}
		invariant := result.invariant(SettlementExactlyOnce)
		if invariant.Status != StatusSkipped || !strings.Contains(invariant.Note, "no settlement pipeline") || result.Verdict != VerdictPassed {
			t.Fatalf("settlement-exactly-once %s (%q), verdict %s; want skipped with the reason, passed", invariant.Status, invariant.Note, result.Verdict)
		}
	})
	t.Run("a ledger without an outbox", func(t *testing.T) {
		r.exec(`ALTER TABLE settlement_outbox RENAME TO settlement_outbox_away`)
		defer r.exec(`ALTER TABLE settlement_outbox_away RENAME TO settlement_outbox`)
		result := r.audit(runDir, source, nil)
		invariant := result.invariant(SettlementExactlyOnce)
		if invariant.Status != StatusSkipped || !strings.Contains(invariant.Note, "migration 006") {
			t.Fatalf("settlement-exactly-once %s (%q), want skipped with the reason", invariant.Status, invariant.Note)
		}
		if result.Verdict != VerdictPassed {
			t.Fatalf("verdict %s", result.Verdict)
		}
	})
}

// TestSettlementExactlyOnceNotExercised: a ledger where nothing settled has
// nothing to settle downstream.
func TestSettlementExactlyOnceNotExercised(t *testing.T) {
	r := newReferenceLedger(t)
	bob := r.signup("bob@example.com")
	r.apply(referenceCommand(bob, ledger.KindWithdrawal, "b-1", bob.AccountID, 0, 1000))
	runDir := t.TempDir()
	writeLines(t, runDir+"/journal.jsonl", r.journal)
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	invariant := r.audit(runDir, source, nil).invariant(SettlementExactlyOnce)
	if invariant.Status != StatusNotExercised || invariant.Note == "" {
		t.Fatalf("settlement-exactly-once %s (%q), want not exercised with a reason", invariant.Status, invariant.Note)
	}
}

// TestSettlementDrainProbe waits for the outbox to be published and the
// settler to reach the settlements topic's end (a real kfake broker), once
// the commands are drained.
func TestSettlementDrainProbe(t *testing.T) {
	r := newReferenceLedger(t)
	alice := r.signup("alice@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100))
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, SettlementsTopic), kfake.ListenFn(listenOnce(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	for i := 0; i < 2; i++ {
		if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: SettlementsTopic, Partition: 0, Value: []byte("event")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	broker, err := OpenBrokerOffsets(cluster.ListenAddrs(), SettlementsTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	commandsDone := true
	commands := func(context.Context) (DrainState, error) {
		return DrainState{Done: commandsDone, Progress: "commands"}, nil
	}
	probe := SettlementDrainProbe(commands, source, broker)
	expect := func(done bool, progress string) {
		t.Helper()
		state, err := probe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if state.Done != done || !strings.Contains(state.Progress, progress) {
			t.Fatalf("done %v (%q), want %v with %q", state.Done, state.Progress, done, progress)
		}
	}
	commandsDone = false
	expect(false, "commands")
	commandsDone = true
	r.exec(`UPDATE settlement_outbox SET published_at = NULL`)
	expect(false, "1 event(s) unpublished")
	r.exec(`UPDATE settlement_outbox SET published_at = now()`)
	r.exec(`INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, 0, 1)`, SettlementsTopic)
	expect(false, "settler: 1 event(s) behind")
	r.exec(`UPDATE consumer_offsets SET next_offset = 2 WHERE topic = $1`, SettlementsTopic)
	expect(true, "settler: caught up")
	if state, err := SettlementDrainProbe(commands, source, nil)(context.Background()); err != nil || !state.Done {
		t.Fatalf("without the broker: done %v (%v)", state.Done, err)
	}
	// A broker that stops answering: not done (the settler's last events
	// may be on their way), never "caught up" by default.
	cluster.Close()
	expect(false, "settlements topic unavailable")
}

// listenOnce gives kfake one listener of the test's, below the ephemeral
// ports.
func listenOnce(t *testing.T) func(string, string) (net.Listener, error) {
	listener := stacktest.Listen(t)
	used := false
	return func(string, string) (net.Listener, error) {
		if used {
			return nil, errors.New("a second listener of a single-node cluster")
		}
		used = true
		return listener, nil
	}
}
