package invariants

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const testPartitions = 4

// referenceLedger drives the reference system's real apply path
// (postgres.Store.ApplyBatch) and journals what a client would have seen.
type referenceLedger struct {
	t       *testing.T
	store   *postgres.Store
	url     string
	journal []JournalEntry
	offsets map[int32]int64
	clock   int64
}

func newReferenceLedger(t *testing.T) *referenceLedger {
	t.Helper()
	url := stacktest.PostgresURL(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return &referenceLedger{t: t, store: store, url: url, offsets: map[int32]int64{}, clock: time.Now().UnixMicro()}
}

func (r *referenceLedger) signup(email string) ledger.User {
	r.t.Helper()
	user, err := r.store.CreateUser(context.Background(), email, "hash")
	if err != nil {
		r.t.Fatal(err)
	}
	r.clock += 10
	r.journal = append(r.journal, JournalEntry{Version: 1, Op: "signup-" + email, Kind: KindSignup, User: user.ID,
		To: user.AccountID, Invoke: r.clock, Complete: r.clock + 5, Outcome: OutcomeOK})
	return user
}

// apply sends commands as one batch of the partition of the first one and
// journals each with the outcome the ledger returned; dup marks a journal
// entry as a delayed duplicate.
func (r *referenceLedger) apply(commands ...ledger.Command) {
	r.t.Helper()
	partition := int32(commands[0].PartitionKey() % testPartitions)
	batch := postgres.Batch{Topic: DefaultTopic, Partition: partition}
	for _, command := range commands {
		batch.Records = append(batch.Records, postgres.Record{Partition: partition, Offset: r.offsets[partition], Command: command})
		r.offsets[partition]++
	}
	result, err := r.store.ApplyBatch(context.Background(), batch)
	if err != nil {
		r.t.Fatal(err)
	}
	r.settleDownstream()
	for i, command := range commands {
		outcome := result.Outcomes[i]
		r.clock += 10
		entry := JournalEntry{Version: 1, Op: fmt.Sprintf("op-%d", len(r.journal)), Kind: string(command.Kind),
			Key: command.IdempotencyKey, User: command.UserID, From: command.SourceAccountID, To: command.DestinationAccountID,
			Amount: command.AmountMinor, Invoke: r.clock, Complete: r.clock + 5, Attempts: 1,
			Status: string(outcome.Status), Reason: string(outcome.Reason), Tx: outcome.TransactionID, Outcome: OutcomeOK}
		if outcome.Status == ledger.StatusRejected {
			entry.Outcome = OutcomeFail
		}
		r.journal = append(r.journal, entry)
	}
}

// settleDownstream does what a drained relay and settler do
// (docs/settlement.md): every outbox event published and applied once.
func (r *referenceLedger) settleDownstream() {
	r.t.Helper()
	r.exec(`UPDATE settlement_outbox SET published_at = now() WHERE published_at IS NULL`)
	r.exec(`INSERT INTO settlement_history (transaction_id, kind, source_account_id, destination_account_id, amount, kafka_partition, kafka_offset)
		SELECT transaction_id, kind, source_account_id, destination_account_id, amount, 0, id FROM settlement_outbox
		ON CONFLICT (transaction_id) DO NOTHING`)
}

// settleDownstreamAgain restores the outbox rows of settled transactions
// that a test deleted, and their effects.
func (r *referenceLedger) settleDownstreamAgain() {
	r.t.Helper()
	r.exec(`INSERT INTO settlement_outbox (transaction_id, kind, source_account_id, destination_account_id, amount, published_at)
		SELECT t.id, t.kind, t.source_account_id, t.destination_account_id, t.amount, now() FROM transactions t
		WHERE t.status = 'settled' AND NOT EXISTS (SELECT 1 FROM settlement_outbox o WHERE o.transaction_id = t.id)`)
	r.settleDownstream()
}

func referenceCommand(user ledger.User, kind ledger.Kind, key string, source, destination, amount int64) ledger.Command {
	return ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: kind, UserID: user.ID,
		IdempotencyKey: key, SourceAccountID: source, DestinationAccountID: destination, AmountMinor: amount,
		Fingerprint: "fp-" + key, AcceptedAt: time.Now()}
}

func (r *referenceLedger) audit(runDir string, source Source, drain DrainProbe) *Result {
	r.t.Helper()
	result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: source, Drain: drain, DrainPoll: 20 * time.Millisecond,
		DrainTimeout: 10 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return result
}

func (r *referenceLedger) exec(sql string, args ...any) {
	r.t.Helper()
	if _, err := r.store.Pool().Exec(context.Background(), sql, args...); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// TestReferencePostgres builds a real ledger with the reference system's
// apply path, audits it through SQL and through an export (passes), then
// tampers with rows in SQL (fails, naming the damage).
func TestReferencePostgres(t *testing.T) {
	r := newReferenceLedger(t)
	alice, bob, carol := r.signup("alice@example.com"), r.signup("bob@example.com"), r.signup("carol@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100))
	r.apply(referenceCommand(bob, ledger.KindDeposit, "b-1", 0, bob.AccountID, 50))
	r.apply(referenceCommand(alice, ledger.KindTransfer, "a-2", alice.AccountID, carol.AccountID, 30),
		referenceCommand(alice, ledger.KindWithdrawal, "a-3", alice.AccountID, 0, 20))
	r.apply(referenceCommand(bob, ledger.KindWithdrawal, "b-2", bob.AccountID, 0, 1000)) // insufficient funds
	// A delayed duplicate of a-2 (same key, same body) collapses onto its row.
	r.apply(referenceCommand(alice, ledger.KindTransfer, "a-2", alice.AccountID, carol.AccountID, 30))
	r.journal[len(r.journal)-1].Dup = "delayed"

	runDir := t.TempDir()
	writeLines(t, runDir+"/journal.jsonl", r.journal)
	ctx := context.Background()
	source, err := OpenPostgres(ctx, r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })

	result := r.audit(runDir, source, QuietProbe(source.Fingerprint, 100*time.Millisecond, nil))
	if result.Verdict != VerdictPassed || !result.Drained {
		t.Fatalf("the reference ledger fails: verdict %s, drained %v, violated %v\n%s", result.Verdict, result.Drained, result.violated(), result.summary())
	}
	if result.LedgerCounts["settled"] != 4 || result.LedgerCounts["rejected"] != 1 || result.invariant(PerAccountOrder).Checked["debits"] == 0 {
		t.Errorf("counts %v, per-account-order checked %v", result.LedgerCounts, result.invariant(PerAccountOrder).Checked)
	}

	// The exporter's output audits the same.
	exportDir := t.TempDir()
	counts, err := Export(ctx, source, exportDir)
	if err != nil {
		t.Fatal(err)
	}
	if counts != [3]int64{4, 5, 8} {
		t.Errorf("exported %v, want 4 accounts, 5 transactions, 8 postings", counts)
	}
	if exported := r.audit(runDir, ExportSource{Dir: exportDir}, nil); exported.Verdict != VerdictPassed {
		t.Fatalf("the export fails: %v\n%s", exported.violated(), exported.summary())
	}

	t.Run("tampered balance", func(t *testing.T) {
		r.exec(`UPDATE accounts SET balance = balance + 5 WHERE id = $1`, bob.AccountID)
		defer r.exec(`UPDATE accounts SET balance = balance - 5 WHERE id = $1`, bob.AccountID)
		result := r.audit(runDir, source, nil)
		if !slices.Contains(result.violated(), BalanceEqualsPostings) {
			t.Fatalf("violated %v\n%s", result.violated(), result.summary())
		}
		if explanation := result.explanation(BalanceEqualsPostings); !strings.Contains(explanation, fmt.Sprintf("account %d", bob.AccountID)) {
			t.Errorf("explanation does not name bob's account %d: %s", bob.AccountID, explanation)
		}
	})
	t.Run("deleted transaction", func(t *testing.T) {
		id := ledger.TransactionIDFor(alice.ID, "a-3")
		r.exec(`DELETE FROM postings WHERE transaction_id = $1`, id)
		r.exec(`DELETE FROM transactions WHERE id = $1`, id)
		result := r.audit(runDir, source, nil)
		violated := result.violated()
		if !slices.Contains(violated, Durability) || !slices.Contains(violated, ExactlyOnce) {
			t.Fatalf("violated %v\n%s", violated, result.summary())
		}
		if explanation := result.explanation(Durability); !strings.Contains(explanation, `"a-3"`) {
			t.Errorf("explanation does not name key a-3: %s", explanation)
		}
	})
}

// TestKafkaDrainProbe drains against a real Kafka-protocol broker (kfake):
// done when the ledger's stored offsets reach the high watermarks.
func TestKafkaDrainProbe(t *testing.T) {
	r := newReferenceLedger(t)
	alice := r.signup("alice@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100),
		referenceCommand(alice, ledger.KindDeposit, "a-2", 0, alice.AccountID, 100))
	partition := int32(alice.AccountID % testPartitions)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(testPartitions, DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	produce := func(n int) {
		for i := 0; i < n; i++ {
			record := &kgo.Record{Topic: DefaultTopic, Partition: partition, Value: []byte("command")}
			if err := producer.ProduceSync(context.Background(), record).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	broker, err := OpenBrokerOffsets(cluster.ListenAddrs(), DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	probe := KafkaDrainProbe(broker, source)

	produce(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state, err := probe(ctx)
	if err != nil || !state.Done {
		t.Fatalf("two records produced, two applied: %+v %v", state, err)
	}
	produce(1)
	state, err = probe(ctx)
	if err != nil || state.Done || !strings.Contains(state.Progress, "lag 1 record(s) on 1 of 4") {
		t.Fatalf("one record not applied: %+v %v", state, err)
	}
}

// TestReferenceDeadLetters inserts rows into the reference ledger's
// dead_letters and checks the audit reads them in its snapshot, through SQL
// and through an export: the dead letter of a command the client was told
// was accepted is a durability violation, garbage and a copy of an applied
// command are only reported.
func TestReferenceDeadLetters(t *testing.T) {
	r := newReferenceLedger(t)
	alice := r.signup("alice@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100))
	applied := ledger.TransactionIDFor(alice.ID, "a-1")
	// a-2 was accepted (202) but its command was set aside: never applied.
	lost := ledger.TransactionIDFor(alice.ID, "a-2")
	r.clock += 10
	r.journal = append(r.journal, JournalEntry{Version: 1, Op: "op-lost", Kind: KindWithdrawal, Key: "a-2", User: alice.ID,
		From: alice.AccountID, Amount: 30, Invoke: r.clock, Complete: r.clock + 5, Attempts: 1, Statuses: []int{202},
		Outcome: OutcomeInfo, Status: StatusAccepted, Tx: lost})
	insert := func(partition int32, offset int64, raw []byte, reason string, transactionID any) {
		t.Helper()
		r.exec(`INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, raw, reason, transaction_id) VALUES ($1, $2, $3, $4, $5, $6)`,
			DefaultTopic, partition, offset, raw, reason, transactionID)
	}
	insert(1, 7, append([]byte("\x00\xffgarbage\x1b"), make([]byte, 4000)...), "undecodable", nil)
	insert(2, 11, []byte(`{"transaction_id":"`+lost+`","kind":"withdrawal"}`), "apply_error: account frozen", lost)
	insert(2, 12, []byte(`{"transaction_id":"`+applied+`","kind":"deposit"}`), "key_collision", applied)

	runDir := t.TempDir()
	writeLines(t, runDir+"/journal.jsonl", r.journal)
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	exportDir := t.TempDir()
	if _, err := Export(context.Background(), source, exportDir); err != nil {
		t.Fatal(err)
	}
	for _, audited := range []struct {
		name   string
		source Source
	}{{"sql", source}, {"export", ExportSource{Dir: exportDir}}} {
		t.Run(audited.name, func(t *testing.T) {
			result := r.audit(runDir, audited.source, nil)
			if violated := result.violated(); !slices.Equal(violated, []string{Durability}) {
				t.Fatalf("violated %v, want only durability\n%s", violated, result.summary())
			}
			explanation := result.explanation(Durability)
			for _, want := range []string{`\"a-2\"`, lost, "partition 2, offset 11", "apply_error: account frozen"} {
				if !strings.Contains(explanation, want) {
					t.Errorf("the explanation lacks %q: %s", want, explanation)
				}
			}
			dead := result.DeadLetters
			if dead == nil || !dead.Available || dead.Count == nil || *dead.Count != 3 || dead.WithoutTransaction != 1 ||
				dead.Journaled != 2 || dead.Lost != 1 || len(dead.First) != 3 {
				t.Fatalf("dead letters %+v", dead)
			}
			garbage := dead.First[0]
			if garbage.Partition != 1 || garbage.Offset != 7 || garbage.RawBytes != 4010 || garbage.Reason != "undecodable" ||
				garbage.DeadAt == nil || !strings.HasPrefix(garbage.RawExcerpt, `\x00\xffgarbage\x1b\x00`) ||
				!strings.HasSuffix(garbage.RawExcerpt, "…") {
				t.Errorf("garbage %+v", garbage)
			}
			if first := dead.First[1]; first.TransactionID != lost || !first.Lost || first.Reason != "apply_error: account frozen" {
				t.Errorf("lost dead letter %+v", first)
			}
			if want := map[string]int64{"undecodable": 1, "apply_error: account frozen": 1, "key_collision": 1}; !equalCounts(dead.ByReason, want) {
				t.Errorf("by reason %v", dead.ByReason)
			}
		})
	}
}

// TestReferenceLedgerWithoutDeadLetterTable: a reference ledger whose
// schema predates migration 002 has no dead_letters table: none were set
// aside, and the audit says why it counts none.
func TestReferenceLedgerWithoutDeadLetterTable(t *testing.T) {
	r := newReferenceLedger(t)
	alice := r.signup("alice@example.com")
	r.apply(referenceCommand(alice, ledger.KindDeposit, "a-1", 0, alice.AccountID, 100))
	r.exec(`DROP TABLE dead_letters`)
	runDir := t.TempDir()
	writeLines(t, runDir+"/journal.jsonl", r.journal)
	source, err := OpenPostgres(context.Background(), r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	result := r.audit(runDir, source, nil)
	if result.Verdict != VerdictPassed {
		t.Fatalf("verdict %s, violated %v\n%s", result.Verdict, result.violated(), result.summary())
	}
	dead := result.DeadLetters
	if dead == nil || !dead.Available || dead.Count == nil || *dead.Count != 0 || !strings.Contains(dead.Note, "no dead_letters table") {
		t.Fatalf("dead letters %+v", dead)
	}
	if summary := result.summary(); !strings.Contains(summary, "dead letters: none — the ledger has no dead_letters table") {
		t.Errorf("summary:\n%s", summary)
	}
}
