package generator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/history"
)

// newSetupClient returns an HTTP client of server with fast retries, journaling to a new journal.
func newSetupClient(t *testing.T, serverURL string) (*client.HTTP, *history.Journal) {
	t.Helper()
	journal, err := history.OpenJournal(filepath.Join(t.TempDir(), "journal.jsonl"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = journal.Close() })
	ledger, err := client.NewHTTP(client.Options{BaseURLs: []string{serverURL}, Timeout: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, RetryAttempts: 3, RetryBackoff: time.Millisecond, RetryMaxBackoff: 5 * time.Millisecond,
		Seed: 1, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ledger.Close)
	return ledger, journal
}

// setupConfig prepares count accounts numbered from 10, quickly retried.
func setupConfig(count int) SetupConfig {
	return SetupConfig{Count: count, FundingMinor: 5000, Concurrency: 2, Timeout: 10 * time.Second, Password: "password-1",
		EmailPrefix: "prep", RunTag: "tag", FirstIndex: 10, RetryPause: 5 * time.Millisecond}
}

func setupEmail(index int) string { return fmt.Sprintf("prep-tag-%d@ledgerproof.test", index) }

func TestPrepare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(*fakeSystem)
		// fundingTries is the least number of funding deposits journaled per account.
		fundingTries int
	}{
		{name: "every answer at once", configure: func(*fakeSystem) {}, fundingTries: 1},
		{name: "funding answered 202, settled when polled", configure: func(f *fakeSystem) { f.fundingAccepted = true }, fundingTries: 1},
		// The client tries 3 times per deposit: 4 answers 503 make setup send the deposit again, with its key.
		{name: "funding unavailable for a while, then 202", configure: func(f *fakeSystem) {
			f.fundingUnavailable, f.fundingAccepted = 4, true
		}, fundingTries: 2},
		{name: "funding unavailable for a while, then settled", configure: func(f *fakeSystem) { f.fundingUnavailable = 7 }, fundingTries: 3},
		{name: "first sign-up answer lost", configure: func(f *fakeSystem) { f.dropFirstSignup = true }, fundingTries: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			fake, server := newFakeSystem(t, test.configure)
			ledger, journal := newSetupClient(t, server.URL)
			config := setupConfig(3)
			var progressMutex sync.Mutex
			var progress []int
			config.Progress = func(ready int) {
				progressMutex.Lock()
				defer progressMutex.Unlock()
				progress = append(progress, ready)
			}
			accounts, err := Prepare(context.Background(), ledger, config)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if len(accounts) != 3 {
				t.Fatalf("%d accounts prepared, want 3", len(accounts))
			}
			seenAccounts := map[int64]bool{}
			for i, account := range accounts {
				session := account.Session
				if session.Email != setupEmail(10+i) || session.Token == "" || session.AccountID == 0 || seenAccounts[session.AccountID] {
					t.Errorf("account %d: %+v, want a session of %s with its own account", i, session, setupEmail(10+i))
				}
				seenAccounts[session.AccountID] = true
				if account.FundingMinor != 5000 {
					t.Errorf("account %d funded with %d, want 5000", i, account.FundingMinor)
				}
				// However many tries the funding took, it was applied once, under one key.
				if balance := fake.balanceOf(session.AccountID); balance != 5000 {
					t.Errorf("account %d: balance %d, want the funding 5000 once", i, balance)
				}
				if keys := fake.fundingKeysOf(session.AccountID); len(keys) != 1 {
					t.Errorf("account %d funded with keys %v, want one", i, keys)
				}
			}
			if slices.Sort(progress); !slices.Equal(progress, []int{1, 2, 3}) {
				t.Errorf("progress %v, want 1, 2, 3", progress)
			}

			if err := journal.Close(); err != nil {
				t.Fatal(err)
			}
			deposits := map[int64][]history.Entry{}
			signups := 0
			for _, entry := range readJournal(t, journal.Path()) {
				if entry.VU != 0 || entry.Iter != -1 {
					t.Errorf("setup journaled %+v, want vu 0 and iter -1", entry)
				}
				switch entry.Kind {
				case client.KindSignup:
					signups++
				case client.KindDeposit:
					deposits[entry.To] = append(deposits[entry.To], entry)
				default:
					t.Errorf("setup journaled a %s", entry.Kind)
				}
			}
			if signups < 3 {
				t.Errorf("%d sign-ups journaled, want at least 3", signups)
			}
			for _, account := range accounts {
				tries := deposits[account.Session.AccountID]
				if len(tries) < test.fundingTries {
					t.Errorf("account %d: %d funding deposits journaled, want at least %d", account.Session.AccountID, len(tries), test.fundingTries)
					continue
				}
				for _, try := range tries {
					if try.Key != tries[0].Key || !strings.HasPrefix(try.Key, fundingKeyPrefix) || try.Amount != 5000 {
						t.Errorf("account %d: funding tries %+v, want one setup key and the funding amount", account.Session.AccountID, tries)
						break
					}
				}
				if last := tries[len(tries)-1]; last.Outcome != client.OutcomeOK {
					t.Errorf("account %d: last funding deposit %+v, want outcome ok", account.Session.AccountID, last)
				}
			}
		})
	}
}

func TestPrepareNumbersAccountsFromFirstIndex(t *testing.T) {
	_, server := newFakeSystem(t, nil)
	ledger, _ := newSetupClient(t, server.URL)
	config := setupConfig(2)
	config.FirstIndex = 40
	accounts, err := Prepare(context.Background(), ledger, config)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if accounts[0].Session.Email != setupEmail(40) || accounts[1].Session.Email != setupEmail(41) {
		t.Errorf("emails %s, %s, want %s, %s", accounts[0].Session.Email, accounts[1].Session.Email, setupEmail(40), setupEmail(41))
	}
}

func TestPrepareNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(*fakeSystem)
		timeout   time.Duration
		// missing maps the emails setup must report to what their problem must say.
		missing map[string]string
	}{
		{
			name:      "a sign-up refused",
			configure: func(f *fakeSystem) { f.refuseSignup = func(email string) bool { return email == setupEmail(11) } },
			timeout:   10 * time.Second,
			missing:   map[string]string{setupEmail(11): "sign-up refused"},
		},
		{
			name:      "funding never settles",
			configure: func(f *fakeSystem) { f.fundingUnavailable = 1 << 30 },
			timeout:   2 * time.Second,
			missing: map[string]string{
				setupEmail(10): "funding deposit (key setup-tag-10) not settled",
				setupEmail(11): "funding deposit (key setup-tag-11) not settled",
				setupEmail(12): "funding deposit (key setup-tag-12) not settled",
			},
		},
		{
			name:      "sign-ups never answered",
			configure: func(f *fakeSystem) { f.hangSignup = true },
			timeout:   2 * time.Second,
			missing: map[string]string{
				setupEmail(10): "not signed up", setupEmail(11): "not signed up", setupEmail(12): "not signed up",
			},
		},
		{
			name:      "sign-in unavailable",
			configure: func(f *fakeSystem) { f.unavailableSignin = true },
			timeout:   2 * time.Second,
			missing: map[string]string{
				setupEmail(10): "signed up, but not signed in", setupEmail(11): "signed up, but not signed in",
				setupEmail(12): "signed up, but not signed in",
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			_, server := newFakeSystem(t, test.configure)
			ledger, _ := newSetupClient(t, server.URL)
			config := setupConfig(3)
			config.Concurrency = 3
			config.Timeout = test.timeout
			accounts, err := Prepare(context.Background(), ledger, config)
			var failure *SetupError
			if !errors.As(err, &failure) {
				t.Fatalf("Prepare: %v (%d accounts), want a *SetupError", err, len(accounts))
			}
			if accounts != nil {
				t.Errorf("Prepare returned %d accounts with its error", len(accounts))
			}
			if failure.Count != 3 || failure.Ready != 3-len(test.missing) || len(failure.Missing) != len(test.missing) {
				t.Errorf("ready %d of %d, missing %v; want %d of 3 ready", failure.Ready, failure.Count, failure.Missing, 3-len(test.missing))
			}
			message := err.Error()
			for email, problem := range test.missing {
				if !strings.Contains(failure.Missing[email], problem) {
					t.Errorf("missing[%s] = %q, want it to contain %q", email, failure.Missing[email], problem)
				}
				if !strings.Contains(message, email+": "+problem) {
					t.Errorf("the message does not name %s and %q:\n%s", email, problem, message)
				}
			}
		})
	}
}

func TestSetupErrorListsFiveAndCountsTheRest(t *testing.T) {
	missing := map[string]string{}
	for i := range 8 {
		missing[setupEmail(i)] = "not signed up"
	}
	message := (&SetupError{Ready: 2, Count: 10, Missing: missing}).Error()
	if !strings.HasPrefix(message, "setup prepared 2 of 10 accounts; missing:") || !strings.Contains(message, "... and 3 more") ||
		strings.Count(message, "not signed up") != 5 {
		t.Errorf("message:\n%s\nwant 2 of 10, five accounts listed and 3 more counted", message)
	}
	// In order, so that two runs' messages compare.
	if first, second := strings.Index(message, setupEmail(0)), strings.Index(message, setupEmail(1)); first < 0 || second < first {
		t.Errorf("emails not in order:\n%s", message)
	}
}

func TestPrepareRefusesAnEmptyConfig(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SetupConfig)
	}{
		{name: "no accounts", change: func(c *SetupConfig) { c.Count = 0 }},
		{name: "no concurrency", change: func(c *SetupConfig) { c.Concurrency = 0 }},
		{name: "no time", change: func(c *SetupConfig) { c.Timeout = 0 }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := setupConfig(2)
			test.change(&config)
			// No request may be sent: a nil ledger would panic if one were.
			if _, err := Prepare(context.Background(), nil, config); err == nil || !strings.Contains(err.Error(), "must be positive") {
				t.Errorf("Prepare: %v, want a refusal", err)
			}
		})
	}
}
