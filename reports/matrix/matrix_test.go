package matrix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// gateScenario is the repository's gate scenario, which every profile's sets must suit.
const gateScenario = "../../scenarios/gate.yaml"

func profile(t *testing.T, name string) mutation.Profile {
	t.Helper()
	for _, profile := range mutation.Profiles() {
		if profile.Name == name {
			return profile
		}
	}
	t.Fatalf("no profile %s", name)
	return mutation.Profile{}
}

// cellStackStub is a started stack as the cell's configuration sees it.
type cellStackStub struct {
	gateways []string
	executor chaos.Executor
}

func (s cellStackStub) Stack() runner.StackInfo {
	return runner.StackInfo{Kind: runner.KindLocal, Dir: "/tmp/lpr-x", StartedByRun: true, Gateways: s.gateways}
}

func (cellStackStub) ScrapeTargets() []runner.ScrapeTarget {
	return []runner.ScrapeTarget{{Name: "gateway-0", URL: "http://127.0.0.1:1/metrics"}}
}

func (s cellStackStub) Executor() chaos.Executor { return s.executor }

// executorStub stands for the local stack's executor: only its identity matters here.
type executorStub struct{ chaos.Executor }

// TestCellConfig: the stack and the engine's configuration a cell builds. The stack has the matrix's gateways
// and workers and the case's seeded bug and worker arguments; the run has the scenario with the profile's sets,
// then the run's duration (--duration overrides the profile's, and comes after the profile's sets so it wins)
// and the setup bound; the matrix's seed; the stack's gateways; the profile's steps as the plan, one step per
// component at the profile's offsets; run.json's record with the seeded bug; bounds that cover the setup, the
// schedule and the graceful stop. The generator's command line the engine builds from it carries them.
func TestCellConfig(t *testing.T) {
	runs, err := mutation.Plan(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var run mutation.Run
	for _, candidate := range runs {
		if candidate.Case != nil && len(candidate.Profile.Steps) > 0 && len(candidate.Case.WorkerArgs) > 0 {
			run = candidate
			break
		}
	}
	if run.Case == nil {
		t.Fatal("no seeded bug with worker arguments under a profile with faults")
	}
	o := Options{Scenario: gateScenario, Binary: "/opt/ledgerproof", Seed: 42, Duration: 45 * time.Second, DrainTimeout: 90 * time.Second}

	target, err := cellTarget(o, run)
	if err != nil {
		t.Fatal(err)
	}
	bug := string(run.Case.Bug)
	if target.Config.Gateways != mutation.Gateways || target.Config.Workers != mutation.Workers {
		t.Errorf("stack: %d gateways, %d workers; want %d and %d", target.Config.Gateways, target.Config.Workers, mutation.Gateways, mutation.Workers)
	}
	if !slices.Equal(target.SeededBugs, []string{bug}) || target.Config.Binary != o.Binary {
		t.Errorf("stack: seeded bugs %v, binary %q; want [%s] and %q", target.SeededBugs, target.Config.Binary, bug, o.Binary)
	}
	if !slices.Equal(target.Config.WorkerArgs, run.Case.WorkerArgs) {
		t.Errorf("worker args %v, want the case's %v", target.Config.WorkerArgs, run.Case.WorkerArgs)
	}

	runProfile := cellProfile(o, run)
	if runProfile.Duration != o.Duration || runProfile.Name != run.Profile.Name {
		t.Fatalf("profile %s for %s; want %s for --duration %s", runProfile.Name, runProfile.Duration, run.Profile.Name, o.Duration)
	}
	gateways := make([]string, target.Config.Gateways)
	for i := range gateways {
		gateways[i] = fmt.Sprintf("http://127.0.0.1:%d", 18080+i)
	}
	executor := &executorStub{}
	var output strings.Builder
	config := cellConfig(context.Background(), o, runProfile, 1, "03-x-"+bug, "/runs/03-x-"+bug, target.SeededBugs,
		cellStackStub{gateways: gateways, executor: executor}, &output)

	wantSets := append(append([]string(nil), run.Profile.Sets...), "schedule.duration=45s", "setup.timeout=2m0s")
	if config.Scenario != gateScenario || config.Binary != o.Binary || config.RunDir != "/runs/03-x-"+bug {
		t.Errorf("scenario %q, binary %q, run dir %q", config.Scenario, config.Binary, config.RunDir)
	}
	if !slices.Equal(config.Sets, wantSets) {
		t.Errorf("sets %q, want %q", config.Sets, wantSets)
	}
	if config.Seed != 42 {
		t.Errorf("seed %d, want 42", config.Seed)
	}
	if len(config.Gateways) != mutation.Gateways || !slices.Equal(config.Gateways, gateways) {
		t.Errorf("gateways %v, want the stack's %d", config.Gateways, mutation.Gateways)
	}
	if len(config.ScrapeTargets) != 1 || config.Output != &output || config.HardStop == nil {
		t.Errorf("scrape targets %v, output %v, hard stop %v", config.ScrapeTargets, config.Output, config.HardStop)
	}
	if config.SetupTimeout != SetupTimeout+time.Minute || config.LoadTimeout != 45*time.Second+SetupTimeout+2*time.Minute {
		t.Errorf("bounds: setup %s, load %s", config.SetupTimeout, config.LoadTimeout)
	}
	record := config.Record
	switch {
	case record == nil:
		t.Fatal("no run record")
	case record.ID != "03-x-"+bug || record.Scenario != "" || record.Seed != 42 || !slices.Equal(record.ScenarioSets, wantSets):
		t.Errorf("record: id %q, scenario %q, seed %d, sets %q", record.ID, record.Scenario, record.Seed, record.ScenarioSets)
	case !slices.Equal(record.SeededBugs, []string{bug}) || len(record.Stack.Gateways) != mutation.Gateways:
		t.Errorf("record: seeded bugs %v, stack %+v", record.SeededBugs, record.Stack)
	}

	if config.Plan == nil {
		t.Fatalf("profile %s has %d steps and no plan", runProfile.Name, len(runProfile.Steps))
	}
	if config.Plan.Name != runProfile.Name || config.Plan.Executor != chaos.Executor(executor) {
		t.Errorf("plan %q with executor %v; want %q with the stack's", config.Plan.Name, config.Plan.Executor, runProfile.Name)
	}
	var want []string
	for _, step := range runProfile.Steps {
		for _, component := range step.Components {
			want = append(want, fmt.Sprintf("%s %s %s", step.At, step.Action, component))
		}
	}
	var got []string
	for _, step := range config.Plan.Timeline {
		got = append(got, fmt.Sprintf("%s %s %s", step.At, step.Action, step.Target))
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("plan timeline %q, want the profile's steps %q", got, want)
	}
	for i := 1; i < len(config.Plan.Timeline); i++ {
		if config.Plan.Timeline[i].At < config.Plan.Timeline[i-1].At {
			t.Errorf("timeline out of time order: %v", config.Plan.Timeline)
		}
	}

	args := strings.Join(runner.LoadArgs(config.RunDir, config.Scenario, config.Gateways, config.Sets, config.Seed, 0, 1), " ")
	wantArgs := "load --scenario " + gateScenario + " --base-url http://127.0.0.1:18080,http://127.0.0.1:18081 --out /runs/03-x-" + bug +
		" --seed 42 --set " + strings.Join(wantSets, " --set ")
	if args != wantArgs {
		t.Errorf("the generator's command line:\n got %s\nwant %s", args, wantArgs)
	}

	// The clean system under a profile without faults, at the profile's own duration: no plan, no seeded bug.
	clean := mutation.Run{Profile: profile(t, mutation.ProfileDuplicates)}
	o.Duration = 0
	config = cellConfig(context.Background(), o, cellProfile(o, clean), 1, "01-duplicates-clean", "/runs/01", nil,
		cellStackStub{gateways: gateways}, &output)
	if config.Plan != nil || len(config.Record.SeededBugs) != 0 {
		t.Errorf("clean duplicates: plan %v, seeded bugs %v", config.Plan, config.Record.SeededBugs)
	}
	if sets := strings.Join(config.Sets, " "); !strings.HasSuffix(sets, "schedule.duration="+clean.Profile.Duration.String()+" setup.timeout=2m0s") {
		t.Errorf("without --duration: sets %q", sets)
	}
	if config.LoadTimeout != clean.Profile.Duration+SetupTimeout+2*time.Minute {
		t.Errorf("without --duration: load bound %s", config.LoadTimeout)
	}
}

// TestLoadEndedFailsALoadCutShort: a load the engine stopped at one of its bounds fails the cell, naming the
// bound, whatever the load exited with; a load that ended by itself is judged by its exit as before.
func TestLoadEndedFailsALoadCutShort(t *testing.T) {
	started := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	cases := []struct {
		name         string
		record       runner.RunFile
		wantErr      string
		setupProblem bool
	}{
		{"ended by itself, thresholds crossed", runner.RunFile{LoadExitCode: 99, LoadStartedAt: &started}, "", false},
		{"ended by itself, passed", runner.RunFile{LoadExitCode: 0, LoadStartedAt: &started}, "", false},
		{"cut short at the load timeout, exit 99", runner.RunFile{LoadExitCode: 99, LoadStartedAt: &started, LoadStopped: runner.LoadStoppedLoadTimeout},
			"did not finish within the engine's load timeout (6m45s)", false},
		{"cut short at the load timeout, exit 0", runner.RunFile{LoadExitCode: 0, LoadStartedAt: &started, LoadStopped: runner.LoadStoppedLoadTimeout},
			"load timeout (6m45s)", false},
		{"cut short at the setup timeout, exit 2", runner.RunFile{LoadExitCode: 2, LoadStopped: runner.LoadStoppedSetupTimeout},
			"its setup did not end within the engine's setup timeout (3m0s)", false},
		{"a generator did not start", runner.RunFile{LoadExitCode: -1, LoadStopped: runner.LoadStoppedStartFailed}, "the engine stopped the load (start failed", false},
		{"setup gave up by itself, exit 2", runner.RunFile{LoadExitCode: 2}, "", true},
		{"crashed", runner.RunFile{LoadExitCode: 3, LoadStartedAt: &started}, "the load exited 3", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			record := c.record
			result := mutation.Result{LoadExit: -1}
			cell := &cell{ctx: context.Background(), dir: t.TempDir(), say: func(string, ...any) {}, result: &result, record: &record,
				setupTimeout: 3 * time.Minute, loadTimeout: 6*time.Minute + 45*time.Second}
			cell.loadEnded()
			switch {
			case c.wantErr == "" && cell.err != nil:
				t.Errorf("the cell fails: %v", cell.err)
			case c.wantErr != "" && (cell.err == nil || !strings.Contains(cell.err.Error(), c.wantErr)):
				t.Errorf("error %v, want one saying %q", cell.err, c.wantErr)
			}
			if (result.SetupProblem != "") != c.setupProblem {
				t.Errorf("setup problem %q", result.SetupProblem)
			}
			if result.LoadExit != record.LoadExitCode {
				t.Errorf("load exit %d, want %d", result.LoadExit, record.LoadExitCode)
			}
		})
	}
}

// TestProfileTimeline: a profile's steps become one chaos step per component at the same offset, in time order,
// each a process action the local executor applies.
func TestProfileTimeline(t *testing.T) {
	timeline := profileTimeline(profile(t, mutation.ProfileBrokerOut), 1)
	var got []string
	for _, step := range timeline {
		got = append(got, step.At.String()+" "+string(step.Action)+" "+step.Target+" "+step.Source)
	}
	want := []string{"8s kill broker steps[0]", "13s kill gateway-0 steps[1]", "13s kill gateway-1 steps[1]",
		"15s start broker steps[2]", "16s start gateway-0 steps[3]", "16s start gateway-1 steps[3]"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	inventory := chaos.Inventory{Processes: []string{"postgres", "redis", "broker", "gateway-0", "gateway-1", "worker-0", "worker-1", "relay", "settler"}}
	sharded := chaos.Inventory{Processes: append(append([]string(nil), inventory.Processes...), "postgres-shard-1", "worker-s1-0", "worker-s1-1", "relay-shard-1")}
	for _, p := range mutation.Profiles() {
		on := inventory
		if p.Shards > 1 {
			on = sharded // a sharded stack's profile
		}
		if err := chaos.ValidateTargets(p.Name, profileTimeline(p, max(p.Shards, 1)), on); err != nil {
			t.Errorf("profile %s: %v", p.Name, err)
		}
	}
	if timeline := profileTimeline(profile(t, mutation.ProfileDuplicates), 2); len(timeline) != 0 {
		t.Errorf("duplicates has no faults; timeline %v", timeline)
	}
	// Every profile of every stack also runs on the sharded one.
	for _, p := range mutation.Profiles() {
		if err := chaos.ValidateTargets(p.Name, profileTimeline(p, 2), sharded); err != nil {
			t.Errorf("profile %s on 2 shards: %v", p.Name, err)
		}
	}
}

// TestProfileTimelineEveryShard: the bursts profile (EveryShard) kills and
// starts the workers of every shard on a sharded stack, so each shard's
// workers come back to a backlog; the worker-kills profile still names
// shard 0's workers only, and one ledger has no other shard.
func TestProfileTimelineEveryShard(t *testing.T) {
	targetsAt := func(timeline []chaos.Step, at time.Duration, action chaos.Action) []string {
		var targets []string
		for _, step := range timeline {
			if step.At == at && step.Action == action {
				targets = append(targets, step.Target)
			}
		}
		sort.Strings(targets)
		return targets
	}
	bursts := profile(t, mutation.ProfileBursts)
	if !bursts.EveryShard {
		t.Fatal("bursts is not EveryShard")
	}
	for _, test := range []struct {
		profile mutation.Profile
		shards  int
		at      time.Duration
		action  chaos.Action
		want    string
	}{
		{bursts, 1, 6 * time.Second, chaos.ActionKill, "worker-0 worker-1"},
		{bursts, 2, 6 * time.Second, chaos.ActionKill, "worker-0 worker-1 worker-s1-0 worker-s1-1"},
		{bursts, 3, 12 * time.Second, chaos.ActionStart, "worker-0 worker-1 worker-s1-0 worker-s1-1 worker-s2-0 worker-s2-1"},
		{profile(t, mutation.ProfileWorkerKills), 2, 22 * time.Second, chaos.ActionKill, "worker-0 worker-1"},
	} {
		got := strings.Join(targetsAt(profileTimeline(test.profile, test.shards), test.at, test.action), " ")
		if got != test.want {
			t.Errorf("%s on %d shard(s), %v %s: %q, want %q", test.profile.Name, test.shards, test.at, test.action, got, test.want)
		}
	}
}

// TestFaultLines: the chaos log's records become the matrix's fault lines, in time order, failures apart.
func TestFaultLines(t *testing.T) {
	dir := t.TempDir()
	if lines, failed := faultLines(dir); lines != nil || failed != nil {
		t.Errorf("no chaos log: %v %v", lines, failed)
	}
	log := `{"v":1,"offset_ms":8012,"action":"start","target":"worker-0","result":"ok","duration_ms":1530}
{"v":1,"offset_ms":6004,"action":"kill","target":"worker-0","result":"ok","duration_ms":41}
{"v":1,"offset_ms":14000,"action":"kill","target":"worker-1","result":"error","error":"no such process"}
{"v":1,"offset_ms":30000,"action":"resume","target":"worker-1","result":"ok","cleanup":true}
`
	if err := os.WriteFile(filepath.Join(dir, chaos.LogFileName), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, failed := faultLines(dir)
	want := []string{"t+6.0s kill worker-0: ok (0.0s)", "t+8.0s start worker-0: ok (1.5s)", "t+14.0s kill worker-1: FAILED: no such process"}
	if strings.Join(lines, "|") != strings.Join(want, "|") || len(failed) != 1 || failed[0] != want[2] {
		t.Errorf("lines %q, failed %q; want %q", lines, failed, want)
	}
}

// TestOptionsValidate: each bad option is refused before any stack starts, with what to fix.
func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	strict := filepath.Join(dir, "closed.yaml")
	if err := os.WriteFile(strict, []byte("name: closed\nschedule:\n  executor: closed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := Options{Out: dir, Scenario: gateScenario, DrainTimeout: 90 * time.Second}
	cases := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"good", func(*Options) {}, ""},
		{"good with a duration and one bug", func(o *Options) { o.Duration = 60 * time.Second; o.Only = string(mutation.Cases()[0].Bug) }, ""},
		{"negative duration", func(o *Options) { o.Duration = -time.Second }, "--duration -1s"},
		{"duration above 60s", func(o *Options) { o.Duration = 61 * time.Second }, "--duration 1m1s: want 0"},
		{"no drain timeout", func(o *Options) { o.DrainTimeout = 0 }, "--drain-timeout 0s"},
		{"no scenario", func(o *Options) { o.Scenario = "" }, "--scenario"},
		{"unknown bug", func(o *Options) { o.Only = "lose-everything" }, `unknown seeded bug "lose-everything"`},
		{"missing scenario", func(o *Options) { o.Scenario = filepath.Join(dir, "none.yaml") }, "profile duplicates"},
		{"scenario refusing the profiles' sets", func(o *Options) { o.Scenario = strict }, "schedule.rate"},
		{"every bug on the sharded stack", func(o *Options) { o.ShardedBugs = ShardedBugsAll }, ""},
		{"unknown sharded bugs", func(o *Options) { o.ShardedBugs = "some" }, `--sharded-bugs "some"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := good
			c.change(&o)
			runs, err := o.validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "" && len(runs) == 0:
				t.Fatal("no runs")
			case c.want != "" && err == nil:
				t.Fatalf("accepted; want an error saying %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// TestGateBugsOptionsValidate: gate-bugs needs an existing folder unless it only lists the systems.
func TestGateBugsOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		options GateBugsOptions
		want    string
	}{
		{"list", GateBugsOptions{List: true}, ""},
		{"a folder", GateBugsOptions{Dir: dir}, ""},
		{"no folder", GateBugsOptions{}, "--dir is required"},
		{"missing folder", GateBugsOptions{Dir: filepath.Join(dir, "none")}, "--dir: "},
		{"a file", GateBugsOptions{Dir: file}, "is not a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.options.validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v; want one saying %q", err, c.want)
			}
		})
	}
}

// TestGateBugsList prints every system, clean last.
func TestGateBugsList(t *testing.T) {
	var out strings.Builder
	if err := GateBugs(GateBugsOptions{List: true}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != strings.Join(mutation.GateSystems(), "\n") {
		t.Errorf("list %q", got)
	}
}
