package invariants

import (
	"context"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestSagaDrainProbeWaitsForSagasInFlight: on two real shards, a saga
// debited and not yet decided keeps the drain from being done although
// the ledger probe says done; once recovery finishes it, the drain is done.
// A ledger probe not done is passed through.
func TestSagaDrainProbeWaitsForSagasInFlight(t *testing.T) {
	stacktest.SkipIfShort(t)
	ctx := context.Background()
	layout, _ := shard.New(2)
	var sources []*PostgresSource
	var stores []*postgres.Store
	for i := 0; i < 2; i++ {
		url := stacktest.PostgresURL(t)
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		if err := store.NumberAccountsForShard(ctx, layout, i); err != nil {
			t.Fatal(err)
		}
		source, err := OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = source.Close() })
		sources, stores = append(sources, source), append(stores, store)
	}
	payer, err := stores[0].CreateUser(ctx, "payer@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	payee, err := stores[1].CreateUser(ctx, "payee@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	fund := postgres.Batch{Topic: "ledger.commands", Records: []postgres.Record{{Command: ledger.Command{
		TransactionID: ledger.TransactionIDFor(payer.ID, "fund"), Kind: ledger.KindDeposit, UserID: payer.ID, IdempotencyKey: "fund",
		SourceAccountID: ledger.ExternalAccountID, DestinationAccountID: payer.AccountID, AmountMinor: 1000, Fingerprint: "fund"}}}}
	if _, err := stores[0].ApplyBatch(ctx, fund); err != nil {
		t.Fatal(err)
	}
	done := func(context.Context) (DrainState, error) { return DrainState{Done: true, Progress: "quiet"}, nil }
	probe := SagaDrainProbe(done, sources)
	if state, err := probe(ctx); err != nil || !state.Done {
		t.Fatalf("no saga: %+v %v, want done", state, err)
	}
	// The debit only: a worker that died before asking the destination.
	if _, err := stores[0].SagaDebit(ctx, testSaga(payer, "in-flight", payee.AccountID, 100)); err != nil {
		t.Fatal(err)
	}
	state, err := probe(ctx)
	if err != nil || state.Done || !strings.Contains(state.Progress, "1 saga(s) in flight") {
		t.Fatalf("a saga in flight: %+v %v, want not done, naming it", state, err)
	}
	notDone := func(context.Context) (DrainState, error) { return DrainState{Progress: "lag 3"}, nil }
	if state, err := SagaDrainProbe(notDone, sources)(ctx); err != nil || state.Done || state.Progress != "lag 3" {
		t.Fatalf("ledger not drained: %+v %v", state, err)
	}
	recovery := postgres.SagaRecovery{Destinations: func(int) *postgres.Store { return stores[1] }, OlderThan: 1}
	if _, err := postgres.RecoverSagas(ctx, stores[0], recovery); err != nil {
		t.Fatal(err)
	}
	if state, err := probe(ctx); err != nil || !state.Done {
		t.Fatalf("after recovery: %+v %v, want done", state, err)
	}
}
