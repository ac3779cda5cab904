package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/reports/matrix"
)

// mutationCommand runs the mutation matrix: every seeded bug, and the clean
// system, under the fault profile that makes the bug show itself, each on a
// fresh local stack; then prints which invariants caught what
// (docs/mutation.md). It fails unless every bug is caught by an expected
// invariant and the clean system passes every profile.
func mutationCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("mutation", flag.ContinueOnError)
	var o matrix.Options
	flags.StringVar(&o.Out, "out", "reports/runs", "parent of the run folder mutation-<timestamp>/ (matrix.json, one subfolder per run)")
	flags.StringVar(&o.Doc, "doc", "docs/mutation.md", "Markdown file whose generated section (between the markers) receives the matrix; written only for a full matrix (no --only); empty: none")
	flags.StringVar(&o.Only, "only", "", "comma-separated seeded bugs to run (with the clean system under their profiles); default every bug")
	flags.StringVar(&o.Scenario, "scenario", "scenarios/gate.yaml", "the scenario every run's load drives, with each profile's overrides (docs/scenarios.md)")
	flags.StringVar(&o.Binary, "binary", "", "ledgerproof binary the stacks and the load run (default: this binary)")
	flags.DurationVar(&o.Duration, "duration", 0, "override every profile's load duration (0: the profile's, 30s; at most 60s)")
	flags.DurationVar(&o.DrainTimeout, "drain-timeout", 90*time.Second, "bound of each audit's wait for the pipeline to drain")
	flags.IntVar(&o.Seed, "seed", 0, "seed of every run's load (0: each run draws one, printed in its load.log)")
	flags.BoolVar(&o.KeepStacks, "keep-stacks", false, "stop but do not purge each run's stack directory (its path is printed)")
	flags.StringVar(&o.ShardedBugs, "sharded-bugs", matrix.ShardedBugsAll, "the bugs the sharded stack runs: all (every bug, each under its profile, as on one ledger, and the saga bugs) or saga (the saga bugs only, a shorter matrix) (docs/mutation.md)")
	flags.IntVar(&o.Shards, "shards", 0, fmt.Sprintf("the stacks: 0 (default) the single stack's runs, then the clean system under every profile and the bugs (--sharded-bugs) on a %d-shard stack; 1 the single stack's runs only; N > 1 the sharded runs only, on N shards (docs/mutation.md)", mutation.ShardedStack))
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		var given []string
		if len(os.Args) > 2 {
			given = os.Args[2:]
		}
		o.Command = "ledgerproof mutation " + strings.Join(given, " ")
		return matrix.Run(ctx, o, os.Stdout)
	}
}
