// Package matrix runs `ledgerproof mutation` (`make mutation`): every seeded
// bug and the clean system under their fault profiles, each cell a run of the
// run engine (reports/runner) on a fresh local stack, then the matrix of which
// invariants caught what (docs/mutation.md). It also judges the runs of `make
// gate-bugs` (`ledgerproof gate-bugs`, docs/ci.md) into the same kind of
// matrix. The model (profiles, cases, the verdict of a cell, the rendering) is
// invariants/mutation.
package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// Options are the settings of `ledgerproof mutation` (its flags).
type Options struct {
	// Out is the parent of the run folder mutation-<timestamp>/.
	Out string
	// Doc is the Markdown file whose generated section receives a full
	// matrix; "": none.
	Doc string
	// Only lists the seeded bugs to run, comma-separated (with the clean
	// system under their profiles); "": every bug.
	Only string
	// Scenario is the scenario every run's load drives, with each
	// profile's overrides.
	Scenario string
	// Binary is the ledgerproof binary the stacks and the load run; "":
	// this process's executable.
	Binary string
	// Duration overrides every profile's load duration (0: the profile's;
	// at most MaxDuration).
	Duration time.Duration
	// DrainTimeout bounds each audit's wait for the pipeline to drain.
	DrainTimeout time.Duration
	// Seed is every run's load seed (0: each run draws one).
	Seed int
	// KeepStacks stops each run's stack without removing its directory.
	KeepStacks bool
	// Command is the command line recorded in matrix.json.
	Command string
	// Shards selects the stacks: 0 both halves of the matrix, the single
	// stack's runs then those of a sharded stack of mutation.ShardedStack
	// shards; 1 the single stack's only; N > 1 a sharded stack's only, with
	// N shards (docs/mutation.md).
	Shards int
	// ShardedBugs selects the bugs a sharded stack runs: ShardedBugsAll
	// (the default when empty) every bug, each under its profile, the
	// single ledger's too; ShardedBugsSaga the saga bugs only.
	ShardedBugs string
}

// The values of Options.ShardedBugs.
const (
	ShardedBugsSaga = "saga"
	ShardedBugsAll  = "all"
)

// MaxDuration bounds Options.Duration: the matrix runs a dozen cells in a
// CI job.
const MaxDuration = 60 * time.Second

// validate checks the options before any stack starts: a set the scenario
// refuses would otherwise fail each run in turn. It returns the runs of the
// matrix.
func (o Options) validate() ([]mutation.Run, error) {
	if o.Duration < 0 || o.Duration > MaxDuration {
		return nil, fmt.Errorf("--duration %s: want 0 (the profiles') or at most 60s", o.Duration)
	}
	if o.DrainTimeout <= 0 {
		return nil, fmt.Errorf("--drain-timeout %s: want a positive duration", o.DrainTimeout)
	}
	if o.Scenario == "" {
		return nil, errors.New("--scenario: give the scenario every run's load drives")
	}
	var runs []mutation.Run
	var err error
	switch {
	case o.Shards < 0 || o.Shards > shard.MaxShards:
		return nil, fmt.Errorf("--shards %d: want 0 (a single and a %d-shard stack), 1 (single only) or 2 to %d (sharded only)", o.Shards, mutation.ShardedStack, shard.MaxShards)
	case o.ShardedBugs != "" && o.ShardedBugs != ShardedBugsSaga && o.ShardedBugs != ShardedBugsAll:
		return nil, fmt.Errorf("--sharded-bugs %q: want %s (the saga bugs only) or %s (every bug)", o.ShardedBugs, ShardedBugsSaga, ShardedBugsAll)
	case o.Shards == 0:
		runs, err = mutation.Plan(o.only(), o.ShardedBugs != ShardedBugsSaga)
	case o.ShardedBugs == ShardedBugsSaga:
		runs, err = mutation.PlanFor(o.only(), o.Shards)
	default:
		runs, err = mutation.PlanEveryBug(o.only(), o.Shards)
	}
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("no run: the selected bugs (--only %s) do not run on a stack of %d shard(s)", o.Only, o.Shards)
	}
	// Every profile's load is checked before any stack starts: a set the
	// scenario refuses would otherwise fail each run in turn.
	for _, profile := range mutation.Profiles() {
		if _, err := scenario.Load(o.Scenario, profileSets(profile, o.Duration)); err != nil {
			return nil, fmt.Errorf("profile %s: %w (run from the repository root)", profile.Name, err)
		}
		sharded := cellProfile(o, mutation.Run{Profile: profile, Shards: mutation.ShardedStack})
		if _, err := scenario.Load(o.Scenario, profileSets(sharded, o.Duration)); err != nil {
			return nil, fmt.Errorf("profile %s on a sharded stack: %w (run from the repository root)", profile.Name, err)
		}
	}
	return runs, nil
}

// only is the --only list; nil: every bug.
func (o Options) only() []string {
	if o.Only == "" {
		return nil
	}
	return strings.Split(o.Only, ",")
}

// Run runs the mutation matrix: every seeded bug, and the clean system,
// under the fault profile that makes the bug show itself, each on a fresh
// local stack; then prints which invariants caught what and writes
// matrix.json, matrix.md and (a full matrix) the doc's section. It fails
// unless every bug is caught by an expected invariant and the clean system
// passes every profile.
func Run(ctx context.Context, o Options, out io.Writer) error {
	runs, err := o.validate()
	if err != nil {
		return err
	}
	only := o.only()
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find the ledgerproof binary: %w", err)
		}
	}
	started := time.Now().UTC()
	root, err := filepath.Abs(filepath.Join(o.Out, "mutation-"+started.Format("20060102T150405Z")))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	matrix := &mutation.Matrix{
		Version: 1, StartedAt: started, Dir: root, Profiles: mutation.Profiles(), Cases: mutation.Cases(),
		Complete: len(only) == 0, Command: o.Command,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Commit: runner.Revision(),
	}
	matrix.Hostname, _ = os.Hostname()
	fmt.Fprintf(out, "mutation: %d runs (%d fault profiles), run folder %s\n", len(runs), countProfiles(runs), root)
	for i, run := range runs {
		if ctx.Err() != nil {
			matrix.Unfinished = true
			break
		}
		result := runCell(ctx, o, root, i, len(runs), run, out)
		matrix.Results = append(matrix.Results, result)
		if ctx.Err() != nil {
			matrix.Unfinished = true
		}
	}
	matrix.Seconds = time.Since(started).Seconds()
	matrix.Finish()

	content, err := json.MarshalIndent(matrix, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "matrix.json"), append(content, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmutation matrix (%s, %s):\n\n%s\n", root, (time.Duration(matrix.Seconds) * time.Second).String(), matrix.Text())
	if err := os.WriteFile(filepath.Join(root, "matrix.md"), []byte(matrix.Markdown()), 0o644); err != nil {
		return err
	}
	switch {
	case o.Doc == "":
	case !matrix.Complete || matrix.Unfinished:
		fmt.Fprintf(out, "%s not updated: only a full, finished matrix is written there (this one: %s/matrix.md)\n", o.Doc, root)
	default:
		if err := writeMatrixDoc(o.Doc, matrix.Markdown()); err != nil {
			return err
		}
		fmt.Fprintf(out, "matrix written to %s and %s\n", o.Doc, filepath.Join(root, "matrix.json"))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if !matrix.Passed {
		return fmt.Errorf("%d of %d run(s) not as required:\n  %s", len(matrix.Failures), len(matrix.Results),
			strings.Join(matrix.Failures, "\n  "))
	}
	fmt.Fprintf(out, "mutation: PASSED — every seeded bug caught by an expected invariant; the clean system passed every profile\n")
	return nil
}

func countProfiles(runs []mutation.Run) int {
	seen := map[string]bool{}
	for _, run := range runs {
		seen[run.Profile.Name] = true
	}
	return len(seen)
}

// writeMatrixDoc replaces the generated section of the doc.
func writeMatrixDoc(path, generated string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("matrix doc: %w", err)
	}
	updated, err := mutation.ReplaceGenerated(string(doc), generated)
	if err != nil {
		return fmt.Errorf("matrix doc %s: %w", path, err)
	}
	return os.WriteFile(path, []byte(updated), 0o644)
}
