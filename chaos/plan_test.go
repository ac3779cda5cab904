package chaos

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// localInventory is the default local stack's shape: 2 gateways, 2 workers,
// 16 partitions, no proxies, no standby, no crash points.
var localInventory = Inventory{
	Processes:  []string{"postgres", "redis", "broker", "gateway-0", "gateway-1", "worker-0", "worker-1", "relay", "settler"},
	Partitions: 16,
}

// fullInventory also has links, a standby and crash points, named as a stack names them (crash.Armer).
var fullInventory = Inventory{
	Processes:   append(append([]string(nil), localInventory.Processes...), "postgres-standby", "postgres-shard-1", "worker-s1-0", "worker-s1-1", "relay-shard-1"),
	Partitions:  16,
	Links:       Links,
	Failover:    true,
	CrashPoints: []string{"worker.after-commit-before-cache", "gateway.after-ack-before-response", "worker.mid-batch"},
}

// crashPointsInventory is the default local stack with crash points: what `ledgerproof run` starts for a plan
// that arms them.
var crashPointsInventory = Inventory{Processes: localInventory.Processes, Partitions: localInventory.Partitions,
	CrashPoints: fullInventory.CrashPoints}

func TestParsePlan(t *testing.T) {
	tests := []struct {
		name string
		plan string
		// wants are substrings the error must contain; none: valid.
		wants []string
	}{
		{"valid process steps", `
name: ok
duration: 60s
steps:
  - {at: 10s, action: kill, target: broker}
  - {at: 15s, action: start, target: broker}
  - {at: 20s, action: pause, target: worker-1, params: {duration: 5s}}
  - {at: 30s, action: crash-point, params: {point: mid-batch, process: "worker:partition=3"}}
  - {at: 40s, action: failover}
  - {at: 50s, action: link, target: "gateway->redis", params: {fault: bandwidth, rate: 64}}
`, nil},
		{"step without an action", `
duration: 60s
steps:
  - {at: 10s, target: broker}
`, []string{"steps[0] (at 10s): action: missing (want one of kill, stop, start, restart, pause, resume, failover, link, crash-point, command)"}},
		{"step without at", `
duration: 60s
steps:
  - {action: kill, target: broker}
`, []string{"steps[0]: at: missing"}},
		{"step without target", `
duration: 60s
steps:
  - {at: 1s, action: kill}
`, []string{"steps[0] (at 1s): target: missing (want a process: broker, broker-N, postgres"}},
		{"unknown action", `
duration: 60s
steps:
  - {at: 10s, action: kil, target: broker}
`, []string{`steps[0] (at 10s): action: "kil" unknown (want one of kill,`}},
		{"negative time", `
duration: 60s
steps:
  - {at: -5s, action: kill, target: broker}
`, []string{"steps[0] (at -5s): at: -5s is negative"}},
		{"bad duration text", `
duration: 60s
steps:
  - {at: 10, action: kill, target: broker}
`, []string{`steps[0] (at 10): at: "10" is not a duration (want e.g. 500ms, 20s, 1m30s)`}},
		{"step after the plan's duration", `
duration: 60s
steps:
  - {at: 61s, action: kill, target: broker}
`, []string{"steps[0] (at 61s): at: 1m1s is after the plan's duration 1m0s"}},
		{"recovery after the plan's duration", `
duration: 60s
steps:
  - {at: 58s, action: kill, target: broker, params: {duration: 5s}}
`, []string{"params.duration: the recovery at 1m3s would be after the plan's duration 1m0s"}},
		{"unknown target form", `
duration: 60s
steps:
  - {at: 1s, action: kill, target: kafka}
`, []string{`target: "kafka" unknown (want a process:`}},
		{"plain worker", `
duration: 60s
steps:
  - {at: 1s, action: kill, target: worker}
`, []string{`"worker": name one worker: worker-N (e.g. worker-0) or worker:partition=N`}},
		{"link target on a process action", `
duration: 60s
steps:
  - {at: 1s, action: kill, target: "worker->postgres"}
`, []string{`"worker->postgres" is a link; kill acts on a process`}},
		{"params on an action that takes none", `
duration: 60s
steps:
  - {at: 1s, action: start, target: broker, params: {duration: 5s}}
`, []string{`steps[0] (at 1s): params: "duration" not allowed: start takes no parameters`}},
		{"link without fault", `
duration: 60s
steps:
  - {at: 1s, action: link, target: "worker->broker"}
`, []string{"params.fault: missing (want latency, cut, bandwidth, reset, heal)"}},
		{"latency without latency", `
duration: 60s
steps:
  - {at: 1s, action: link, target: "worker->broker", params: {fault: latency, jitter: 5ms}}
`, []string{"params.latency: missing"}},
		{"unknown param of link", `
duration: 60s
steps:
  - {at: 1s, action: link, target: "worker->broker", params: {fault: cut, latncy: 5ms}}
`, []string{`params: "latncy" not allowed for link (allowed: fault, latency, jitter, rate, duration)`}},
		{"rate not a number", `
duration: 60s
steps:
  - {at: 1s, action: link, target: "worker->broker", params: {fault: bandwidth, rate: fast}}
`, []string{`params.rate: "fast" is not a positive number`}},
		{"crash point in broker", `
duration: 60s
steps:
  - {at: 1s, action: crash-point, target: broker, params: {point: mid-batch}}
`, []string{"crash points are armed in a gateway or a worker"}},
		{"crash point process contradicts target", `
duration: 60s
steps:
  - {at: 1s, action: crash-point, target: worker-0, params: {point: mid-batch, process: worker-1}}
`, []string{`params.process: "worker-1" contradicts target "worker-0"`}},
		{"failover of redis", `
duration: 60s
steps:
  - {at: 1s, action: failover, target: redis}
`, []string{"failover acts on postgres"}},
		{"unknown top-level field", `
duration: 60s
stepz: []
`, []string{"field stepz not found"}},
		{"unknown step field", `
duration: 60s
steps:
  - {at: 1s, action: kill, target: broker, signal: SIGKILL}
`, []string{"field signal not found"}},
		{"no duration and nothing to do", `
name: empty
`, []string{"duration: missing", "no steps and no random section"}},
		{"random section problems", `
duration: 60s
random: {mean_interval: 10s, kinds: [kill-broker, nuke-everything], start: 50s, stop: 40s}
`, []string{`random: kinds[1]: "nuke-everything" unknown`, "random: start 50s is not before stop 40s"}},
		{"every problem listed", `
duration: 60s
steps:
  - {at: 1s, action: kil, target: broker}
  - {at: 2s, action: kill, target: brokr}
`, []string{"steps[0] (at 1s): action", "steps[1] (at 2s): target"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			plan, err := ParsePlan([]byte(test.plan), "test")
			if len(test.wants) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if _, err := plan.Timeline(1, fullInventory); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got a valid plan", test.wants)
			}
			for _, want := range test.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestTimelineAddsRecoverySteps(t *testing.T) {
	plan, err := ParsePlan([]byte(`
duration: 60s
steps:
  - {at: 20s, action: link, target: "worker->postgres", params: {fault: cut, duration: 10s}}
  - {at: 10s, action: kill, target: broker, params: {duration: 5s}}
  - {at: 10s, action: pause, target: redis, params: {duration: 1s}}
`), "recovery")
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(0, fullInventory)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, step := range timeline {
		got = append(got, strings.Join(strings.Fields(step.String()), " ")+" ["+step.Source+"]")
	}
	want := []string{
		"t+10s kill broker duration=5s [steps[1]]",
		"t+10s pause redis duration=1s [steps[2]]",
		"t+11s resume redis [steps[2] recovery]",
		"t+15s start broker [steps[1] recovery]",
		"t+20s link worker->postgres duration=10s fault=cut [steps[0]]",
		"t+30s link worker->postgres fault=heal [steps[0] recovery]",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateTargetsAgainstTheStack(t *testing.T) {
	plan, err := ParsePlan([]byte(`
name: targets
duration: 60s
steps:
  - {at: 1s, action: kill, target: worker-7}
  - {at: 2s, action: kill, target: "worker:partition=16"}
  - {at: 3s, action: kill, target: postgres-standby}
  - {at: 4s, action: link, target: "worker->broker", params: {fault: cut}}
  - {at: 5s, action: failover}
  - {at: 6s, action: crash-point, target: worker-0, params: {point: mid-batch}}
  - {at: 7s, action: kill, target: worker-1}
`), "targets")
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(0, localInventory)
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateTargets(plan.Name, timeline, localInventory)
	var planError *PlanError
	if !errors.As(err, &planError) {
		t.Fatalf("want a PlanError, got %v", err)
	}
	wants := []string{
		`steps[0] (at 1s, kill worker-7): target "worker-7" does not exist in this stack (it has postgres, redis, broker, gateway-0, gateway-1, worker-0, worker-1, relay, settler)`,
		"steps[1] (at 2s, kill worker:partition=16): partition 16 out of range: the stack's topic has partitions 0..15",
		`steps[2] (at 3s, kill postgres-standby): target "postgres-standby" does not exist in this stack (start it with --postgres-standby)`,
		"steps[3] (at 4s, link worker->broker): link faults are not supported by this stack (start it with --proxies)",
		"steps[4] (at 5s, failover postgres): failover is not supported by this stack (start it with --postgres-standby)",
		"steps[5] (at 6s, crash-point worker-0): crash points are not supported by this stack (start its gateways and workers with --enable-crash-points)",
	}
	if len(planError.Problems) != len(wants) {
		t.Errorf("problems:\n%s", strings.Join(planError.Problems, "\n"))
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if err := ValidateTargets(plan.Name, timeline, fullInventory); err == nil || strings.Contains(err.Error(), "steps[2]") || !strings.Contains(err.Error(), "worker-7") {
		t.Errorf("against the full stack only worker-7 and partition 16 are wrong, got %v", err)
	}
}

func TestRandomExpansionIsDeterministicPerSeed(t *testing.T) {
	plan, err := ParsePlan([]byte(`
name: random
duration: 120s
random:
  mean_interval: 10s
  kinds: [kill-broker, kill-worker, pause-redis, restart-gateway, cut-link, failover-postgres]
  start: 5s
  stop: 100s
  recover_after: 4s
`), "random")
	if err != nil {
		t.Fatal(err)
	}
	render := func(seed uint64) string {
		t.Helper()
		timeline, err := plan.Timeline(seed, fullInventory)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, step := range timeline {
			lines = append(lines, step.String()+" ["+step.Source+"]")
		}
		return strings.Join(lines, "\n")
	}
	first := render(42)
	if again := render(42); again != first {
		t.Fatalf("seed 42 gave two timelines:\n%s\n---\n%s", first, again)
	}
	if other := render(43); other == first {
		t.Fatalf("seeds 42 and 43 gave the same timeline:\n%s", first)
	}
	timeline, _ := plan.Timeline(42, fullInventory)
	if len(timeline) < 4 {
		t.Fatalf("only %d steps:\n%s", len(timeline), first)
	}
	if timeline[0].At != 5*time.Second {
		t.Errorf("first fault at %s, want the random section's start 5s", timeline[0].At)
	}
	// One fault at a time: every fault starts after the previous recovery.
	var busyUntil time.Duration
	for _, step := range timeline {
		if strings.HasSuffix(step.Source, "recovery") {
			busyUntil = step.At
			continue
		}
		if step.At <= busyUntil {
			t.Errorf("%s starts before the previous fault recovered at %s:\n%s", step, busyUntil, first)
		}
		if step.At > 100*time.Second || step.At%randomTimeResolution != 0 && step.At != 5*time.Second {
			t.Errorf("%s: outside [start, stop] or not rounded", step)
		}
		busyUntil = step.At
	}
	if err := ValidateTargets(plan.Name, timeline, fullInventory); err != nil {
		t.Errorf("drawn steps invalid against the stack they were drawn for: %v", err)
	}
}

func TestResolveSeed(t *testing.T) {
	fixed := func() time.Time { return time.Unix(0, 12345) }
	seven, nine, eleven := uint64(7), uint64(9), uint64(11)
	plan := &Plan{Seed: &seven, Random: &Random{Seed: &nine}}
	if seed, source := plan.ResolveSeed(&eleven, fixed); seed != 11 || source != "--seed" {
		t.Errorf("override: %d %s", seed, source)
	}
	if seed, source := plan.ResolveSeed(nil, fixed); seed != 9 || source != "random.seed" {
		t.Errorf("random section: %d %s", seed, source)
	}
	plan.Random.Seed = nil
	if seed, source := plan.ResolveSeed(nil, fixed); seed != 7 || source != "seed" {
		t.Errorf("plan: %d %s", seed, source)
	}
	plan.Seed = nil
	if seed, source := plan.ResolveSeed(nil, fixed); seed != 12345 || source != "drawn" {
		t.Errorf("drawn: %d %s", seed, source)
	}
}

// TestReadyPlans parses and validates every plan in plans/, expands it and
// checks its targets against a stack with every feature.
func TestReadyPlans(t *testing.T) {
	paths, err := filepath.Glob("plans/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"broker", "ci", "everything", "partition", "postgres-failover", "random", "redis", "sharded"}
	var names []string
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			plan, err := LoadPlan(path)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Name != name {
				t.Errorf("plan %s is named %q", path, plan.Name)
			}
			seed, _ := plan.ResolveSeed(nil, time.Now)
			timeline, err := plan.Timeline(seed, fullInventory)
			if err != nil {
				t.Fatal(err)
			}
			if len(timeline) == 0 {
				t.Fatal("no steps")
			}
			if err := ValidateTargets(plan.Name, timeline, fullInventory); err != nil {
				t.Fatal(err)
			}
			if name == "ci" && (plan.Duration < 60*time.Second || plan.Duration > 90*time.Second) {
				t.Errorf("ci plan lasts %s, want 60-90s", plan.Duration)
			}
		})
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("plans: %v, want %v", names, want)
	}
	// The plans that need no optional feature run on the default local stack; ci needs crash points only,
	// which `ledgerproof run` enables on the stack it starts for it.
	for name, inventory := range map[string]Inventory{"ci": crashPointsInventory, "broker": localInventory,
		"redis": localInventory, "random": localInventory} {
		plan, err := LoadPlan(filepath.Join("plans", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		timeline, err := plan.Timeline(1, inventory)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateTargets(plan.Name, timeline, inventory); err != nil {
			t.Errorf("%s on the default local stack: %v", name, err)
		}
	}
	// The CI plan crashes both workers and a gateway at their crash points, kills the broker and Postgres, and
	// SIGKILLs workers at moments drawn from the seed: different seeds, different moments.
	ci, err := LoadPlan("plans/ci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	points := map[string]bool{}
	killedWorkers := map[uint64]string{}
	for _, seed := range []uint64{1, 2, 3} {
		timeline, err := ci.Timeline(seed, crashPointsInventory)
		if err != nil {
			t.Fatal(err)
		}
		var kills []string
		for _, step := range timeline {
			if step.Action == ActionCrashPoint {
				points[step.Params.Point] = true
			}
			if step.Action == ActionKill && strings.HasPrefix(step.Target, "worker-") {
				kills = append(kills, step.At.String()+" "+step.Target)
			}
		}
		if len(kills) == 0 {
			t.Errorf("ci with seed %d kills no worker", seed)
		}
		killedWorkers[seed] = strings.Join(kills, ", ")
	}
	if len(points) != 3 {
		t.Errorf("ci arms crash points %v, want every one", points)
	}
	if killedWorkers[1] == killedWorkers[2] && killedWorkers[2] == killedWorkers[3] {
		t.Errorf("ci kills workers at %q whatever the seed", killedWorkers[1])
	}
	if _, err := os.Stat("plans/ci.yaml"); err != nil {
		t.Fatal(err)
	}
}
