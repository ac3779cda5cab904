package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// newLimitedStore gives a test a migrated, empty ledger of its own whose
// ApplyBatch enforces a daily debit limit (or, with bugs, does not).
func newLimitedStore(t *testing.T, limit int64, bugs ledger.Bugs) *postgres.Store {
	t.Helper()
	url := stacktest.PostgresURL(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: url, DailyDebitLimitMinor: limit, SeededBugs: bugs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

func acceptedOn(c ledger.Command, at time.Time) ledger.Command {
	c.AcceptedAt = at
	return c
}

func withdrawal(user ledger.User, key string, amount int64) ledger.Command {
	return command(user, ledger.KindWithdrawal, key, user.AccountID, ledger.ExternalAccountID, amount)
}

func TestDailyDebitLimit(t *testing.T) {
	t.Parallel()
	store := newLimitedStore(t, 1000, nil)
	ctx := context.Background()
	alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")
	day := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	next := day.Add(2 * time.Hour) // the next UTC day

	result, err := store.ApplyBatch(ctx, batchAt(0, 0,
		acceptedOn(deposit(alice, "d", 5000), day),
		acceptedOn(withdrawal(alice, "w1", 600), day),
		acceptedOn(transfer(alice, "t1", bob.AccountID, 400), day), // exactly at the limit: settles
		acceptedOn(withdrawal(alice, "w2", 1), day),                // above it: rejected
		acceptedOn(withdrawal(alice, "w3", 9000), day),             // insufficient funds first
		acceptedOn(withdrawal(alice, "w4", 1000), next),            // a new day
		acceptedOn(deposit(alice, "d2", 100), day),                 // deposits do not count
	))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ledger.Code{"d": "", "w1": "", "t1": "", "w2": ledger.CodeDailyLimitExceeded,
		"w3": ledger.CodeInsufficientFunds, "w4": "", "d2": ""}
	for key, reason := range want {
		stored, err := store.Transaction(ctx, ledger.TransactionIDFor(alice.ID, key))
		if err != nil {
			t.Fatal(err)
		}
		if stored.Reason != reason {
			t.Errorf("%s: reason %q, want %q (status %s)", key, stored.Reason, reason, stored.Status)
		}
	}
	firstDay, secondDay := postgres.DailyDebitKey{UserID: alice.ID, Day: ledger.DebitDay(day)}, postgres.DailyDebitKey{UserID: alice.ID, Day: ledger.DebitDay(next)}
	if result.DailyDebits[firstDay] != 1000 || result.DailyDebits[secondDay] != 1000 || len(result.DailyDebits) != 2 {
		t.Errorf("batch's daily debits %v, want 1000 on each of the two days", result.DailyDebits)
	}

	// A later batch reads the stored totals: the day is full.
	if _, err := store.ApplyBatch(ctx, batchAt(0, 7, acceptedOn(withdrawal(alice, "w5", 1), day),
		acceptedOn(withdrawal(bob, "b1", 400), day))); err != nil {
		t.Fatal(err)
	}
	if stored, _ := store.Transaction(ctx, ledger.TransactionIDFor(alice.ID, "w5")); stored.Reason != ledger.CodeDailyLimitExceeded {
		t.Errorf("w5 in a later batch: %s %q, want rejected for the daily limit", stored.Status, stored.Reason)
	}
	if stored, _ := store.Transaction(ctx, ledger.TransactionIDFor(bob.ID, "b1")); stored.Status != ledger.StatusSettled {
		t.Errorf("bob's own first debit: %s %q, want settled (limits are per user)", stored.Status, stored.Reason)
	}
	var debited int64
	if err := store.Pool().QueryRow(ctx, `SELECT debited_minor FROM daily_debits WHERE user_id = $1 AND day = $2`,
		alice.ID, ledger.DebitDay(day)).Scan(&debited); err != nil {
		t.Fatal(err)
	}
	if debited != 1000 {
		t.Errorf("daily_debits holds %d for alice's first day, want 1000", debited)
	}
	checkLedger(t, store)
}

func TestDailyDebitLimitOffAndLimitRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, test := range []struct {
		name    string
		limit   int64
		bugs    ledger.Bugs
		settled int
		counted bool
	}{
		{name: "no limit", limit: 0, settled: 3},
		{name: "limit", limit: 1000, settled: 2},
		{name: "limit-race counts without checking", limit: 1000, bugs: ledger.Bugs{ledger.BugLimitRace}, settled: 3, counted: true},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			store := newLimitedStore(t, test.limit, test.bugs)
			alice := newUser(t, store, "alice@example.com")
			result, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "d", 5000),
				withdrawal(alice, "w1", 600), withdrawal(alice, "w2", 600)))
			if err != nil {
				t.Fatal(err)
			}
			if result.Settled != test.settled {
				t.Errorf("settled %d of 3, want %d", result.Settled, test.settled)
			}
			var total int64
			for _, debited := range result.DailyDebits {
				total += debited
			}
			if test.counted && total != 1200 {
				t.Errorf("daily debits %v, want 1200 counted", result.DailyDebits)
			}
		})
	}
	if _, err := postgres.Open(ctx, postgres.Config{URL: "postgres://unused", DailyDebitLimitMinor: -1}); err == nil {
		t.Error("a negative daily limit was accepted")
	}
}

func TestApplyOneDailyDebitLimit(t *testing.T) {
	t.Parallel()
	store := newLimitedStore(t, 1000, nil)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	for _, step := range []struct {
		command ledger.Command
		status  ledger.Status
		reason  ledger.Code
	}{
		{deposit(alice, "d", 5000), ledger.StatusSettled, ""},
		{withdrawal(alice, "w1", 700), ledger.StatusSettled, ""},
		{withdrawal(alice, "w2", 301), ledger.StatusRejected, ledger.CodeDailyLimitExceeded},
		{withdrawal(alice, "w3", 300), ledger.StatusSettled, ""},
	} {
		outcome, err := store.ApplyOne(ctx, step.command)
		if err != nil {
			t.Fatal(err)
		}
		if outcome.Status != step.status || outcome.Reason != step.reason {
			t.Errorf("%s: %s %q, want %s %q", step.command.IdempotencyKey, outcome.Status, outcome.Reason, step.status, step.reason)
		}
	}
	checkLedger(t, store)
}

func TestRecordRejection(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	refused := withdrawal(alice, "soft", 500)
	stored, err := store.RecordRejection(ctx, refused, ledger.CodeInsufficientFunds)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != ledger.StatusRejected || stored.Reason != ledger.CodeInsufficientFunds || stored.Fingerprint != refused.Fingerprint {
		t.Fatalf("stored %+v, want the rejection", stored)
	}
	// A copy of the command that reaches a worker is a duplicate of the
	// rejection: nothing is applied.
	if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "d", 1000), refused)); err != nil {
		t.Fatal(err)
	}
	if balance(t, store, alice.AccountID) != 1000 {
		t.Errorf("balance %d, want 1000: the refused withdrawal was applied", balance(t, store, alice.AccountID))
	}
	// Recording again answers the stored row; an invalid command is refused.
	if again, err := store.RecordRejection(ctx, refused, ledger.CodeDailyLimitExceeded); err != nil || again.Reason != ledger.CodeInsufficientFunds {
		t.Errorf("second record: %+v %v, want the first rejection", again, err)
	}
	if _, err := store.RecordRejection(ctx, ledger.Command{}, ledger.CodeDailyLimitExceeded); err == nil {
		t.Error("an invalid command was recorded")
	}
	checkLedger(t, store)
}

// TestRecordRejectionOnlyWhenTheLedgerCannotPay: an overdraft refusal read from a cached balance the ledger no longer
// holds (a credit committed since) is not stored: the gateway queues the command and the worker decides. One the
// ledger's balance justifies is stored.
func TestRecordRejectionOnlyWhenTheLedgerCannotPay(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice := newUser(t, store, "alice@example.com")
	if _, err := store.ApplyBatch(ctx, batchAt(0, 0, deposit(alice, "d", 1000))); err != nil {
		t.Fatal(err)
	}
	affordable := withdrawal(alice, "stale-cache", 600)
	if _, err := store.RecordRejection(ctx, affordable, ledger.CodeInsufficientFunds); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a refusal of 600 against a balance of 1000: %v, want ErrRefusalNotJustified", err)
	}
	if stored, err := store.Transaction(ctx, affordable.TransactionID); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("the unjustified refusal was stored: %+v %v", stored, err)
	}
	tooMuch := withdrawal(alice, "too-much", 1001)
	if stored, err := store.RecordRejection(ctx, tooMuch, ledger.CodeInsufficientFunds); err != nil || stored.Reason != ledger.CodeInsufficientFunds {
		t.Fatalf("a refusal of 1001 against 1000: %+v %v, want it stored", stored, err)
	}
	// A daily-limit refusal is judged against the ledger's day total
	// (TestRecordRejectionOfTheDailyLimitOnlyWhenTheLedgerIsOver), not the
	// balance: this store has no limit, so none is stored.
	if _, err := store.RecordRejection(ctx, withdrawal(alice, "limit", 10), ledger.CodeDailyLimitExceeded); !errors.Is(err, postgres.ErrRefusalNotJustified) {
		t.Fatalf("a daily-limit refusal without a limit: %v, want ErrRefusalNotJustified", err)
	}
	checkLedger(t, store)
}
