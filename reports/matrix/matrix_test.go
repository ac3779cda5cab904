package matrix

import (
	"os"
	"path/filepath"
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

// TestLoadArgs: the engine's load command line of a cell carries the profile's sets, then the run's duration
// (so it wins; --duration overrides the profile's) and the setup bound.
func TestLoadArgs(t *testing.T) {
	bursts := profile(t, mutation.ProfileBursts)
	args := strings.Join(runner.LoadArgs("/runs/04-bursts-clean", "scenarios/gate.yaml", []string{"http://a", "http://b"},
		profileSets(bursts, 45*time.Second), 42, 0, 1), " ")
	for _, want := range []string{
		"load --scenario scenarios/gate.yaml --base-url http://a,http://b --out /runs/04-bursts-clean --seed 42",
		"--set client.wait=0s --set client.poll_for=0s",
		"--set setup.funding=3000 --set workload.accounts=uniform",
		"--set client.early_timeouts.rate=0 --set schedule.duration=45s --set setup.timeout=2m0s",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("arguments %q lack %q", args, want)
		}
	}
	if sets := strings.Join(profileSets(bursts, 0), " "); !strings.HasSuffix(sets, "schedule.duration=30s setup.timeout=2m0s") {
		t.Errorf("without --duration: sets %q", sets)
	}
}

// TestProfileTimeline: a profile's steps become one chaos step per component at the same offset, in time order,
// each a process action the local executor applies.
func TestProfileTimeline(t *testing.T) {
	timeline := profileTimeline(profile(t, mutation.ProfileBrokerOut))
	var got []string
	for _, step := range timeline {
		got = append(got, step.At.String()+" "+string(step.Action)+" "+step.Target+" "+step.Source)
	}
	want := []string{"8s kill broker steps[0]", "13s kill gateway-0 steps[1]", "13s kill gateway-1 steps[1]",
		"15s start broker steps[2]", "16s start gateway-0 steps[3]", "16s start gateway-1 steps[3]"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	inventory := chaos.Inventory{Processes: []string{"postgres", "redis", "broker", "gateway-0", "gateway-1", "worker-0", "worker-1"}}
	for _, p := range mutation.Profiles() {
		if err := chaos.ValidateTargets(p.Name, profileTimeline(p), inventory); err != nil {
			t.Errorf("profile %s: %v", p.Name, err)
		}
	}
	if timeline := profileTimeline(profile(t, mutation.ProfileDuplicates)); len(timeline) != 0 {
		t.Errorf("duplicates has no faults; timeline %v", timeline)
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
