package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// tinyConfig is a benchmark small enough for a unit test, on the test's own
// database server.
func tinyConfig(t *testing.T) Config {
	t.Helper()
	config := DefaultConfig()
	config.PostgresURL = stacktest.PostgresURL(t)
	config.Accounts = 20
	config.InitialBalanceMinor = 3_000 // low enough that some transfers are rejected
	config.Partitions = 3
	config.PoolSize = 4
	config.BatchSizes = []int{1, 4, 16}
	config.Transfers = 120
	config.NaiveTransfers = 60
	config.WarmupTransfers = 10
	config.Repeats = 2
	config.ModeTimeCap = 30 * time.Second
	config.Seed = 7
	return config
}

func TestRunMeasuresEveryModeAndChecksTheLedger(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	config := tinyConfig(t)
	var output bytes.Buffer
	result, err := Run(ctx, config, &output)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, output.String())
	}
	if len(result.Modes) != 1+len(config.BatchSizes) {
		t.Fatalf("%d mode summaries, want %d", len(result.Modes), 1+len(config.BatchSizes))
	}
	if len(result.Runs) != config.Repeats*len(result.Modes) {
		t.Fatalf("%d runs, want %d", len(result.Runs), config.Repeats*len(result.Modes))
	}
	// Interleaved: naive, 1, 4, 16, naive, ...
	for i, run := range result.Runs {
		want := result.Modes[i%len(result.Modes)]
		if run.Mode != want.Mode || run.BatchSize != want.BatchSize || run.Repeat != 1+i/len(result.Modes) {
			t.Errorf("run %d is %s repeat %d, want %s repeat %d", i, modeLabel(run.Mode, run.BatchSize), run.Repeat, want.Label(), 1+i/len(result.Modes))
		}
		wantTransfers := config.Transfers
		if run.Mode == ModeNaive {
			wantTransfers = config.NaiveTransfers
		}
		if !run.LedgerChecked || run.Transfers != wantTransfers || run.Settled+run.Rejected != run.Transfers || run.StoppedByTimeCap {
			t.Errorf("run %d = %+v", i, run)
		}
		if run.TransfersPerSecond <= 0 {
			t.Errorf("run %d has rate %v", i, run.TransfersPerSecond)
		}
	}
	for _, summary := range result.Modes {
		if summary.MedianTransfersPerSecond <= 0 || summary.MinTransfersPerSecond > summary.MedianTransfersPerSecond ||
			summary.MedianTransfersPerSecond > summary.MaxTransfersPerSecond || summary.RatioToNaive <= 0 {
			t.Errorf("summary %+v", summary)
		}
	}
	if result.Modes[0].Mode != ModeNaive || result.Modes[0].RatioToNaive != 1 {
		t.Errorf("first summary %+v, want naive at ratio 1", result.Modes[0])
	}
	// The low funding makes some transfers overdraw, so the check also
	// covers rejections. (Which ones are rejected depends on how the
	// partitions interleave, so it differs from run to run.)
	rejected := 0
	for _, run := range result.Runs {
		rejected += run.Rejected
	}
	if rejected == 0 {
		t.Errorf("no transfer was rejected; the low funding should reject some")
	}
	for _, want := range []string{"seed 7", "ledger consistent", "ratio to naive", "batch 16"} {
		if !strings.Contains(output.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, output.String())
		}
	}
}

func TestRunFailsWhenTheRequiredRatioIsNotMet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	config := tinyConfig(t)
	config.Repeats = 1
	config.BatchSizes = []int{2}
	config.RequireRatio = 1_000 // no batch size is a thousand times faster
	var output bytes.Buffer
	result, err := Run(ctx, config, &output)
	if !errors.Is(err, ErrRatioNotMet) {
		t.Fatalf("err = %v, want ErrRatioNotMet\n%s", err, output.String())
	}
	if result.RatioMet || len(result.Modes) != 2 {
		t.Errorf("result = %+v", result)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(*Config)
	}{
		{"one account", func(c *Config) { c.Accounts = 1 }},
		{"no partitions", func(c *Config) { c.Partitions = 0 }},
		{"pool smaller than partitions", func(c *Config) { c.PoolSize = c.Partitions - 1 }},
		{"no batch sizes", func(c *Config) { c.BatchSizes = nil }},
		{"batch size zero", func(c *Config) { c.BatchSizes = []int{0} }},
		{"batch size twice", func(c *Config) { c.BatchSizes = []int{16, 16} }},
		{"no transfers", func(c *Config) { c.Transfers = 0 }},
		{"no naive transfers", func(c *Config) { c.NaiveTransfers = 0 }},
		{"no repeats", func(c *Config) { c.Repeats = 0 }},
		{"no time cap", func(c *Config) { c.ModeTimeCap = 0 }},
		{"negative ratio", func(c *Config) { c.RequireRatio = -1 }},
		{"libpq key-value URL", func(c *Config) { c.PostgresURL = "host=localhost dbname=x" }},
	}
	if err := DefaultConfig().validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := DefaultConfig()
			c.change(&config)
			if err := config.validate(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestCheckLedgerCatchesBrokenLedgers applies a small workload, checks that
// the checker accepts it, then breaks the ledger (or the expectation) in one
// way per case: the checker must fail every time.
func TestCheckLedgerCatchesBrokenLedgers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// tamper changes the database, or the expectation, after the apply.
		tamper func(t *testing.T, store *postgres.Store, expected *expectation)
	}{
		{"balance raised without a posting", func(t *testing.T, store *postgres.Store, _ *expectation) {
			exec(t, store, `UPDATE accounts SET balance = balance + 1 WHERE id = (SELECT min(id) FROM accounts WHERE kind = 'user')`)
		}},
		{"money moved without postings", func(t *testing.T, store *postgres.Store, _ *expectation) {
			exec(t, store, `UPDATE accounts SET balance = balance + CASE WHEN id = (SELECT min(id) FROM accounts WHERE kind = 'user') THEN 5 ELSE -5 END
				WHERE id IN ((SELECT min(id) FROM accounts WHERE kind = 'user'), (SELECT max(id) FROM accounts WHERE kind = 'user'))`)
		}},
		{"transfer lost", func(t *testing.T, store *postgres.Store, _ *expectation) {
			// Undo a settled transfer completely: balances stay conserved
			// and match the postings, but a transfer the benchmark was told
			// settled is gone.
			var id string
			if err := store.Pool().QueryRow(context.Background(), `SELECT t.id::text FROM transactions t
				JOIN accounts a ON a.id = t.destination_account_id
				WHERE t.kind = 'transfer' AND t.status = 'settled' AND a.balance >= t.amount ORDER BY t.id LIMIT 1`).Scan(&id); err != nil {
				t.Fatal(err)
			}
			exec(t, store, `UPDATE accounts a SET balance = a.balance - p.amount FROM postings p
				WHERE p.transaction_id = $1::uuid AND p.account_id = a.id`, id)
			exec(t, store, `DELETE FROM postings WHERE transaction_id = $1::uuid`, id)
			exec(t, store, `DELETE FROM transactions WHERE id = $1::uuid`, id)
		}},
		{"transfer never issued", func(t *testing.T, _ *postgres.Store, expected *expectation) {
			for id := range expected.outcomes {
				delete(expected.outcomes, id)
				return
			}
		}},
		{"status differs from the reported one", func(t *testing.T, _ *postgres.Store, expected *expectation) {
			for id, status := range expected.outcomes {
				if status == ledger.StatusSettled {
					expected.outcomes[id] = ledger.StatusRejected
					return
				}
			}
			t.Fatal("no settled transfer to tamper with")
		}},
		{"offset not stored", func(t *testing.T, store *postgres.Store, _ *expectation) {
			exec(t, store, `UPDATE consumer_offsets SET next_offset = next_offset - 1 WHERE topic = $1 AND partition = 0`, transfersTopic)
		}},
		{"rejected transfer with postings", func(t *testing.T, store *postgres.Store, _ *expectation) {
			exec(t, store, `UPDATE transactions SET status = 'rejected' WHERE id = (SELECT id FROM transactions
				WHERE kind = 'transfer' AND status = 'settled' ORDER BY id LIMIT 1)`)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store, expected := appliedLedger(t)
			c.tamper(t, store, &expected)
			err := checkLedger(context.Background(), store, expected)
			if !errors.Is(err, ErrLedgerInconsistent) {
				t.Fatalf("check = %v, want ErrLedgerInconsistent", err)
			}
			t.Log(err)
		})
	}
}

// appliedLedger sets up a fresh database, applies a small batched workload
// and returns the store and what the ledger must hold; the checker must
// accept it as is.
func appliedLedger(t *testing.T) (*postgres.Store, expectation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	config := tinyConfig(t)
	users, err := setUp(ctx, config, config.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: config.PostgresURL, MaxConnections: int32(config.PoolSize)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	work := newWorkload(config)
	applier := &modeApplier{store: store, mode: mode{name: ModeBatched, batchSize: 8}, partitions: config.Partitions,
		nextOffsets: make([]int64, config.Partitions)}
	expected := expectation{accounts: config.Accounts, fundedMinor: int64(config.Accounts) * config.InitialBalanceMinor,
		outcomes: map[string]ledger.Status{}, nextOffsets: map[int32]int64{}}
	if _, err := applier.apply(ctx, applier.partition(commandsFor(work.timed, users, "t")), time.Time{}, time.Now, expected.outcomes); err != nil {
		t.Fatal(err)
	}
	for partition, next := range applier.nextOffsets {
		expected.nextOffsets[int32(partition)] = next
	}
	if err := checkLedger(ctx, store, expected); err != nil {
		t.Fatalf("untampered ledger: %v", err)
	}
	return store, expected
}

func exec(t *testing.T, store *postgres.Store, sql string, arguments ...any) {
	t.Helper()
	if _, err := store.Pool().Exec(context.Background(), sql, arguments...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
