package ledger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestParseBugs(t *testing.T) {
	cases := []struct {
		name          string
		names         []string
		unsafeAllowed bool
		want          ledger.Bugs
		// wantError is a piece of the expected error; empty for none.
		wantError string
		refused   bool
	}{
		{"nothing", nil, false, nil, "", false},
		{"blank names", []string{"", " , "}, false, nil, "", false},
		{"one bug with the switch", []string{"skip-dedupe"}, true, ledger.Bugs{ledger.BugSkipDedupe}, "", false},
		{"comma list, repeats and order", []string{"no-idempotency, rmw-without-lock", "no-idempotency"}, true,
			ledger.Bugs{ledger.BugNoIdempotency, ledger.BugReadModifyWriteWithoutLock}, "", false},
		{"a bug without the switch", []string{"skip-dedupe"}, false, nil, "refused without the unsafe switch", true},
		{"an unknown bug", []string{"skip-dedupe,lose-everything"}, true, nil, `unknown seeded bug "lose-everything"`, false},
		{"an unknown bug without the switch", []string{"lose-everything"}, false, nil, "unknown seeded bug", false},
		{"two offset bugs", []string{"offset-before-postings", "concurrent-partition"}, true, nil, "pick one", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ledger.ParseBugs(c.names, c.unsafeAllowed)
			if c.wantError == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if got.String() != c.want.String() {
					t.Fatalf("got %s, want %s", got, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Fatalf("error %v, want one containing %q", err, c.wantError)
			}
			if errors.Is(err, ledger.ErrSeededBugsNotAllowed) != c.refused {
				t.Fatalf("error %v: refused = %v, want %v", err, !c.refused, c.refused)
			}
		})
	}
}

func TestEveryBugLivesInOneProcess(t *testing.T) {
	var all []string
	for _, description := range ledger.Catalogue() {
		if description.Process != ledger.ProcessGateway && description.Process != ledger.ProcessWorker && description.Process != ledger.ProcessSettler {
			t.Errorf("bug %s lives in %q", description.Bug, description.Process)
		}
		if description.Summary == "" {
			t.Errorf("bug %s has no summary", description.Bug)
		}
		all = append(all, string(description.Bug))
	}
	if len(all) < 7 {
		t.Fatalf("catalogue has %d bugs, want at least 7", len(all))
	}
	bugs, err := ledger.ParseBugs([]string{"ack-before-commit,no-idempotency,rmw-without-lock,trust-cache-balance,skip-dedupe"}, true)
	if err != nil {
		t.Fatal(err)
	}
	gateway, ignored := bugs.For(ledger.ProcessGateway)
	if gateway.String() != "ack-before-commit,no-idempotency" || ignored.String() != "rmw-without-lock,skip-dedupe,trust-cache-balance" {
		t.Errorf("gateway's bugs %s, ignored %s", gateway, ignored)
	}
	worker, ignored := bugs.For(ledger.ProcessWorker)
	if worker.String() != "rmw-without-lock,skip-dedupe,trust-cache-balance" || ignored.String() != "ack-before-commit,no-idempotency" {
		t.Errorf("worker's bugs %s, ignored %s", worker, ignored)
	}
}
