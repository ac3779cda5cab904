package worker

import (
	"io"
	"log/slog"
	"math"
	"slices"
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

// TestBetweenCommitsCrashExits: with probability 1 the hook ends the process
// with status 86 at every batch, and with seed-determined draws below 1 the
// same seed crashes at the same batches.
func TestBetweenCommitsCrashExits(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var codes []int
	always := BetweenCommitsCrash{Probability: 1, Seed: 7, Exit: func(code int) { codes = append(codes, code) }}
	hook, err := always.hook(ledger.Bugs{ledger.BugSkipDedupe}, logger)
	if err != nil || hook == nil {
		t.Fatalf("hook: %v, %v", hook != nil, err)
	}
	hook(0)
	hook(1)
	if len(codes) != 2 || codes[0] != crashExitCode || codes[1] != crashExitCode {
		t.Fatalf("exits %v, want two of %d", codes, crashExitCode)
	}
	draws := func() []int {
		var crashed []int
		batch := 0
		sometimes := BetweenCommitsCrash{Probability: 0.5, Seed: 11, Exit: func(int) { crashed = append(crashed, batch) }}
		hook, err := sometimes.hook(ledger.Bugs{ledger.BugOffsetBeforePostings}, logger)
		if err != nil {
			t.Fatal(err)
		}
		for batch = range 40 {
			hook(0)
		}
		return crashed
	}
	first, second := draws(), draws()
	if len(first) == 0 || len(first) == 40 || !slices.Equal(first, second) {
		t.Fatalf("crashes at %v then %v: want some of 40, the same for one seed", first, second)
	}
	if none, _ := (BetweenCommitsCrash{}).hook(nil, logger); none != nil {
		t.Fatal("a hook without a crash asked for")
	}
}
