package worker

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// crashExitCode is the exit status of a seeded crash, distinct from a
// failure (1) and a usage error (2).
const crashExitCode = crash.SeededCrashExitStatus

// BetweenCommitsCrash injects a crash between the two commits a seeded bug
// splits a batch's commit into (offset-before-postings: offset then
// postings; skip-dedupe: postings then offset), so the bug's window is hit
// on purpose rather than by the luck of a kill.
type BetweenCommitsCrash struct {
	// Probability is the chance, per batch, that the worker exits (status
	// 86, like a kill) between the two commits of a batch; only with the
	// seeded bug offset-before-postings or skip-dedupe. Default 0: never.
	Probability float64
	// Seed seeds the crash draws. Default 0: drawn at start and logged.
	Seed uint64
	// Exit ends the process at once (no deferred function, no flush, as a
	// kill would). Default os.Exit; tests replace it to observe the crash.
	Exit func(code int)
}

// splitCommitBugs are the bugs under which a batch commits in two steps.
var splitCommitBugs = []ledger.Bug{ledger.BugOffsetBeforePostings, ledger.BugSkipDedupe}

// validate rejects a probability outside [0, 1], and a crash asked for
// when none of the worker's bugs splits a batch's commit.
func (c BetweenCommitsCrash) validate(bugs ledger.Bugs) error {
	if c.Probability < 0 || c.Probability > 1 || math.IsNaN(c.Probability) {
		return fmt.Errorf("--crash-between-commits-probability %g is not in [0, 1]", c.Probability)
	}
	if c.Probability == 0 {
		return nil
	}
	for _, bug := range splitCommitBugs {
		if bugs.Has(bug) {
			return nil
		}
	}
	return fmt.Errorf("--crash-between-commits-probability needs --seeded-bug %s or %s: without them a batch commits once and there is no between", ledger.BugOffsetBeforePostings, ledger.BugSkipDedupe)
}

// hook returns the postgres BetweenCommits hook, or nil when no crash is
// asked for.
func (c BetweenCommitsCrash) hook(bugs ledger.Bugs, logger *slog.Logger) (func(partition int32), error) {
	if err := c.validate(bugs); err != nil {
		return nil, err
	}
	if c.Probability == 0 {
		return nil, nil
	}
	seed := c.Seed
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	logger.Warn("SEEDED CRASH ACTIVE: the worker exits between a batch's two commits", "probability", c.Probability, "crash_seed", seed)
	random := rand.New(rand.NewPCG(seed, seed))
	exit := c.Exit
	if exit == nil {
		exit = os.Exit
	}
	var mutex sync.Mutex
	return func(partition int32) {
		mutex.Lock()
		crash := random.Float64() < c.Probability
		mutex.Unlock()
		if crash {
			logger.Error("SEEDED CRASH between a batch's two commits", "partition", partition, "crash_seed", seed, "exit_status", crashExitCode)
			exit(crashExitCode)
		}
	}, nil
}
