package worker

import (
	"math"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestBetweenCommitsCrashValidate(t *testing.T) {
	split := ledger.Bugs{ledger.BugSkipDedupe}
	cases := []struct {
		name  string
		crash BetweenCommitsCrash
		bugs  ledger.Bugs
		want  string
	}{
		{"none", BetweenCommitsCrash{}, nil, ""},
		{"negative", BetweenCommitsCrash{Probability: -0.1}, split, "not in [0, 1]"},
		{"above one", BetweenCommitsCrash{Probability: 2}, split, "not in [0, 1]"},
		{"not a number", BetweenCommitsCrash{Probability: math.NaN()}, split, "not in [0, 1]"},
		{"without a split commit", BetweenCommitsCrash{Probability: 0.1}, ledger.Bugs{ledger.BugReadModifyWriteWithoutLock}, "needs --seeded-bug offset-before-postings or skip-dedupe"},
		{"skip-dedupe", BetweenCommitsCrash{Probability: 0.1, Seed: 3}, split, ""},
		{"offset-before-postings", BetweenCommitsCrash{Probability: 1}, ledger.Bugs{ledger.BugOffsetBeforePostings}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.crash.validate(c.bugs)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("error %q, want none", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestStoreBugsAddNoIdempotency(t *testing.T) {
	all := ledger.Bugs{ledger.BugNoIdempotency, ledger.BugSkipDedupe}
	if got := storeBugs(ledger.Bugs{ledger.BugSkipDedupe}, all); got.String() != "no-idempotency,skip-dedupe" {
		t.Errorf("with no-idempotency: %s", got)
	}
	if got := storeBugs(ledger.Bugs{ledger.BugSkipDedupe}, ledger.Bugs{ledger.BugSkipDedupe}); got.String() != "skip-dedupe" {
		t.Errorf("without no-idempotency: %s", got)
	}
}
