package scenario

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// update rewrites the field table of docs/scenarios.md from the field table of the code.
var update = flag.Bool("update", false, "rewrite the field table in docs/scenarios.md")

// parse parses content as the file test.yaml.
func parse(t *testing.T, content string, sets ...string) (*Scenario, error) {
	t.Helper()
	return Parse("test.yaml", []byte(content), sets)
}

// mustParse parses content and fails the test on an error.
func mustParse(t *testing.T, content string, sets ...string) *Scenario {
	t.Helper()
	scenario, err := parse(t, content, sets...)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return scenario
}

// thresholdNames lists the thresholds as reports name them.
func thresholdNames(thresholds []threshold.Threshold) []string {
	var names []string
	for _, t := range thresholds {
		names = append(names, t.Name())
	}
	return names
}

func TestShippedScenarios(t *testing.T) {
	tests := []struct {
		file       string
		check      func(t *testing.T, s *Scenario)
		thresholds []string
	}{
		{
			file: "smoke.yaml",
			check: func(t *testing.T, s *Scenario) {
				if s.Schedule.Executor != ExecutorClosed || s.Workload.Kind != WorkloadWalk || s.Schedule.VUs != 1 ||
					s.Schedule.Iterations != 3 || s.Setup.Accounts != 2 || s.Schedule.MaxInFlight != 1 {
					t.Errorf("smoke: %+v", s.Schedule)
				}
			},
			thresholds: []string{"checks: rate==1", "errors: rate==0"},
		},
		{
			file: "gate.yaml",
			check: func(t *testing.T, s *Scenario) {
				if s.Schedule.Executor != ExecutorConstantArrivalRate || s.Schedule.Rate != 200 || s.Schedule.Duration != time.Minute {
					t.Errorf("gate: %+v", s.Schedule)
				}
				// Every branch of the money path: rejections for insufficient funds, zero balances, the smallest
				// amount, pairs both ways, hot accounts, duplicates, key misuse, retries after early timeouts and
				// replays late enough to pass a short idempotency cache.
				w, c := s.Workload, s.Client
				if s.Setup.FundingMinor != 10000 || w.AmountMax != 1000 || w.OverdraftRate < 0.10 || w.OverdraftRate > 0.20 ||
					w.DrainRate <= 0 || w.MinimumRate <= 0 || w.PairRate <= 0 || w.Accounts != DistributionZipf {
					t.Errorf("gate workload: %+v, funding %d", w, s.Setup.FundingMinor)
				}
				if c.DuplicateRate <= 0 || c.DuplicateMode != DuplicateMixed || c.MisuseRate <= 0 || c.EarlyTimeoutRate <= 0 ||
					c.ReplayRate <= 0 || c.ReplayAfter != 15*time.Second {
					t.Errorf("gate client: %+v", c)
				}
			},
			thresholds: []string{"errors: rate<0.01", "accept_duration: p(95)<250", "dropped_iterations: count==0"},
		},
		{
			file: "capacity.yaml",
			check: func(t *testing.T, s *Scenario) {
				want := []float64{1000, 1500, 2000, 2500, 3000, 3600}
				if s.Schedule.Executor != ExecutorCapacitySteps || !slices.Equal(s.Schedule.Steps, want) ||
					s.Schedule.StepHold != 30*time.Second || s.Schedule.StepRamp != 5*time.Second ||
					s.Schedule.StepGap != 5*time.Second || s.Setup.Accounts != 2000 {
					t.Errorf("capacity: %+v", s.Schedule)
				}
			},
		},
		{
			file: "soak.yaml",
			check: func(t *testing.T, s *Scenario) {
				if s.Schedule.Rate != 500 || s.Schedule.Duration != 30*time.Minute {
					t.Errorf("soak: %+v", s.Schedule)
				}
			},
			thresholds: []string{"errors: rate<0.001", "accept_duration: p(95)<250", "accept_duration: p(99)<1000",
				"dropped_iterations: count==0"},
		},
		{
			file: "spike.yaml",
			check: func(t *testing.T, s *Scenario) {
				var spikes int
				for _, stage := range s.Schedule.Stages {
					if stage.Target == 12000 && stage.Duration == 30*time.Second {
						spikes++
					}
				}
				if s.Schedule.Executor != ExecutorRampingArrivalRate || s.Schedule.StartRate != 500 || spikes != 2 ||
					s.Schedule.HighestRate() != 12000 || s.Schedule.MaxInFlight != MaxInFlightLimit {
					t.Errorf("spike: %+v", s.Schedule)
				}
			},
			thresholds: []string{"errors: rate<0.01"},
		},
		{
			file: "retry-storm.yaml",
			check: func(t *testing.T, s *Scenario) {
				want := Client{Wait: time.Second, Timeout: 2 * time.Second, HTTPEngine: HTTPEngineStandard, PollInterval: 100 * time.Millisecond,
					PollFor: 10 * time.Second, RetryAttempts: 8, RetryBackoff: 10 * time.Millisecond,
					RetryMaxBackoff: 200 * time.Millisecond, RetryJitter: 0.9, DuplicateRate: 0.03,
					DuplicateMode: DuplicateMixed, DuplicateDelay: 100 * time.Millisecond, MisuseRate: 0.01,
					EarlyTimeoutMax: 50 * time.Millisecond, ReplayAfter: 30 * time.Second}
				if s.Client != want {
					t.Errorf("retry-storm client\n got %+v\nwant %+v", s.Client, want)
				}
			},
			thresholds: []string{"errors: rate<0.01", "accept_duration: p(95)<500", "dropped_iterations: count==0"},
		},
		{
			file: "hot-accounts.yaml",
			check: func(t *testing.T, s *Scenario) {
				if s.Schedule.Rate != 500 || s.Workload.Accounts != DistributionZipf || s.Workload.ZipfExponent != 1.1 ||
					s.Workload.Ownership || s.Workload.OwnerSlots != 0 || s.Workload.HotAccounts != 1 {
					t.Errorf("hot-accounts: %+v", s.Workload)
				}
			},
			thresholds: []string{"errors: rate<0.001", "accept_duration: p(95)<250", "dropped_iterations: count==0"},
		},
	}
	shipped, err := filepath.Glob("../../scenarios/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range shipped {
		if !slices.ContainsFunc(tests, func(test struct {
			file       string
			check      func(t *testing.T, s *Scenario)
			thresholds []string
		}) bool {
			return test.file == filepath.Base(path)
		}) {
			t.Errorf("%s is shipped but not tested here", path)
		}
	}
	for _, test := range tests {
		t.Run(test.file, func(t *testing.T) {
			path := filepath.Join("..", "..", "scenarios", test.file)
			scenario, err := Load(path, nil)
			if err != nil {
				t.Fatalf("Load:\n%v", err)
			}
			if want := strings.TrimSuffix(test.file, ".yaml"); scenario.Name != want || scenario.Path != path {
				t.Errorf("name %q path %q, want %q and %q", scenario.Name, scenario.Path, want, path)
			}
			content, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(content), "bin/ledgerproof load --scenario scenarios/"+test.file) {
				t.Errorf("%s does not say how to run it", test.file)
			}
			test.check(t, scenario)
			if got := thresholdNames(scenario.Thresholds); !slices.Equal(got, test.thresholds) {
				t.Errorf("thresholds %q, want %q", got, test.thresholds)
			}
		})
	}
}

// defaultClient is the client section of a scenario that leaves it out.
var defaultClient = Client{Wait: 5 * time.Second, Timeout: 10 * time.Second, HTTPEngine: HTTPEngineStandard, PollInterval: 100 * time.Millisecond,
	PollFor: 10 * time.Second, RetryAttempts: 3, RetryBackoff: 50 * time.Millisecond, RetryMaxBackoff: time.Second,
	RetryJitter: 0.5, DuplicateMode: DuplicateConcurrent, DuplicateDelay: 100 * time.Millisecond,
	EarlyTimeoutMax: 50 * time.Millisecond, ReplayAfter: 30 * time.Second}

func TestDefaults(t *testing.T) {
	got := mustParse(t, "description: all defaults\n")
	want := &Scenario{
		Path: "test.yaml", Name: "test", Description: "all defaults",
		Setup: Setup{Accounts: 100, FundingMinor: 1_000_000, Concurrency: 32, Timeout: 5 * time.Minute,
			Password: "ledgerproof-load-1", EmailPrefix: "load-test"},
		Schedule: Schedule{Executor: ExecutorConstantArrivalRate, Rate: 200, Duration: time.Minute, MaxInFlight: 2000,
			GracefulStop: 30 * time.Second},
		Workload: Workload{Kind: WorkloadMixed, Mix: Mix{Deposit: 3, Withdrawal: 2, Transfer: 5}, AmountMin: 1,
			AmountMax: 1000, Accounts: DistributionUniform, Ownership: true, OwnerSlots: 100},
		Client: defaultClient,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", got, want)
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name    string
		content string
		check   func(s *Scenario) bool
	}{
		{name: "max_in_flight at least 100", content: "schedule: {rate: 5}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == 100 }},
		{name: "max_in_flight ten seconds of the rate", content: "schedule: {rate: 2000.5}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == 20005 }},
		{name: "max_in_flight capped", content: "schedule: {rate: 20000}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == MaxInFlightLimit }},
		{name: "max_in_flight of the highest stage", content: "schedule: {executor: ramping-arrival-rate, start_rate: 50, stages: [{target: 300, duration: 1s}, {target: 20, duration: 1s}]}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == 3000 }},
		{name: "max_in_flight of the highest step", content: "schedule: {executor: capacity-steps, steps: [100, 400]}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == 4000 }},
		{name: "max_in_flight of the closed model is its loops", content: "schedule: {executor: closed, vus: 7}",
			check: func(s *Scenario) bool { return s.Schedule.MaxInFlight == 7 && s.Workload.OwnerSlots == 7 }},
		{name: "owner_slots bounded by accounts", content: "setup: {accounts: 30}",
			check: func(s *Scenario) bool { return s.Workload.OwnerSlots == 30 }},
		{name: "owner_slots bounded by max_in_flight", content: "setup: {accounts: 5000}\nschedule: {max_in_flight: 250}",
			check: func(s *Scenario) bool { return s.Workload.OwnerSlots == 250 }},
		{name: "no owner slots without ownership", content: "workload: {ownership: false}",
			check: func(s *Scenario) bool { return s.Workload.OwnerSlots == 0 }},
		{name: "hot_accounts at least 1", content: "workload: {accounts: zipf}",
			check: func(s *Scenario) bool { return s.Workload.HotAccounts == 1 && s.Workload.ZipfExponent == 1.1 }},
		{name: "hot_accounts one percent", content: "setup: {accounts: 1250}\nworkload: {accounts: zipf}",
			check: func(s *Scenario) bool { return s.Workload.HotAccounts == 12 }},
		{name: "no hot accounts with uniform accounts", content: "setup: {accounts: 1250}",
			check: func(s *Scenario) bool { return s.Workload.HotAccounts == 0 && s.Workload.ZipfExponent == 0 }},
		{name: "email prefix from the name", content: "name: nightly",
			check: func(s *Scenario) bool { return s.Setup.EmailPrefix == "load-nightly" }},
		{name: "a mix weight left out keeps its default", content: "workload: {mix: {transfer: 1}}",
			check: func(s *Scenario) bool { return s.Workload.Mix == Mix{Deposit: 3, Withdrawal: 2, Transfer: 1} }},
		{name: "closed defaults", content: "schedule: {executor: closed}",
			check: func(s *Scenario) bool {
				return reflect.DeepEqual(s.Schedule, Schedule{Executor: ExecutorClosed, VUs: 1, Iterations: 3,
					MaxDuration: 2 * time.Minute, MaxInFlight: 1, GracefulStop: 30 * time.Second})
			}},
		{name: "capacity defaults", content: "schedule: {executor: capacity-steps}",
			check: func(s *Scenario) bool {
				return slices.Equal(s.Schedule.Steps, []float64{1000, 1500, 2000, 2500, 3000, 3600}) &&
					s.Schedule.StepRamp == 5*time.Second && s.Schedule.StepHold == 30*time.Second &&
					s.Schedule.StepGap == 5*time.Second && s.Schedule.Rate == 0 && s.Schedule.Duration == 0
			}},
		{name: "walk leaves the mixed workload's fields zero", content: "workload: {kind: walk}",
			check: func(s *Scenario) bool {
				return s.Workload == Workload{Kind: WorkloadWalk} && s.Client.DuplicateMode == "" && s.Client.RetryAttempts == 3
			}},
		{name: "empty sections take every default", content: "client:\nworkload:\n",
			check: func(s *Scenario) bool { return s.Client == defaultClient }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			scenario := mustParse(t, test.content)
			if !test.check(scenario) {
				t.Fatalf("%s: schedule %+v workload %+v setup %+v", test.content, scenario.Schedule, scenario.Workload, scenario.Setup)
			}
		})
	}
}

func TestEveryFieldWritten(t *testing.T) {
	content := `
name: everything
description: every field of the constant executor and the mixed workload
seed: 42
setup:
  accounts: 500
  funding: 2000
  concurrency: 8
  timeout: 1m
  password: a-long-password
  email_prefix: everything.
schedule:
  executor: constant-arrival-rate
  rate: 12.5
  duration: 1m30s
  max_in_flight: 64
  graceful_stop: 0s
workload:
  kind: mixed
  mix: {deposit: 1, withdrawal: 0, transfer: 2.5}
  amount_min: 10
  amount_max: 20
  accounts: zipf
  zipf_exponent: 2
  hot_accounts: 7
  ownership: true
  owner_slots: 9
  overdraft_rate: 0.15
  drain_rate: 0.85
  minimum_rate: 0.02
  pair_rate: 1
client:
  wait: 0s
  timeout: 3s
  http_engine: fast
  poll_interval: 20ms
  poll_for: 0s
  retry: {attempts: 4, backoff: 1ms, max_backoff: 2ms, jitter: 0}
  duplicates: {rate: 0.5, mode: delayed, delay: 1s}
  misuse: {rate: 1}
  early_timeouts: {rate: 0.25, max: 2999ms}
  replays: {rate: 0.5, after: 1m}
thresholds:
  errors: ["rate<0.001"]
  "accept_duration{kind:transfer}": ["p(99.9) <= 250"]
  dropped_iterations:
    - "count==0"
    - {threshold: "count<10", abort_on_fail: true, delay_abort_eval: 10s}
`
	got := mustParse(t, content)
	want := &Scenario{
		Path: "test.yaml", Name: "everything", Description: "every field of the constant executor and the mixed workload",
		Seed:     42,
		Setup:    Setup{Accounts: 500, FundingMinor: 2000, Concurrency: 8, Timeout: time.Minute, Password: "a-long-password", EmailPrefix: "everything."},
		Schedule: Schedule{Executor: ExecutorConstantArrivalRate, Rate: 12.5, Duration: 90 * time.Second, MaxInFlight: 64},
		Workload: Workload{Kind: WorkloadMixed, Mix: Mix{Deposit: 1, Transfer: 2.5}, AmountMin: 10, AmountMax: 20,
			Accounts: DistributionZipf, ZipfExponent: 2, HotAccounts: 7, Ownership: true, OwnerSlots: 9,
			OverdraftRate: 0.15, DrainRate: 0.85, MinimumRate: 0.02, PairRate: 1},
		Client: Client{Timeout: 3 * time.Second, HTTPEngine: HTTPEngineFast, PollInterval: 20 * time.Millisecond, RetryAttempts: 4,
			RetryBackoff: time.Millisecond, RetryMaxBackoff: 2 * time.Millisecond, DuplicateRate: 0.5,
			DuplicateMode: DuplicateDelayed, DuplicateDelay: time.Second, MisuseRate: 1,
			EarlyTimeoutRate: 0.25, EarlyTimeoutMax: 2999 * time.Millisecond, ReplayRate: 0.5, ReplayAfter: time.Minute},
		Thresholds: []threshold.Threshold{
			{Source: "errors", Expression: "rate<0.001", Metric: threshold.Errors, Aggregate: "rate", Operator: threshold.Less, Value: 0.001},
			{Source: "accept_duration{kind:transfer}", Expression: "p(99.9) <= 250", Metric: threshold.AcceptDuration,
				Tags: map[string]string{"kind": "transfer"}, Aggregate: threshold.AggregatePercentile, Percentile: 99.9,
				Operator: threshold.LessEqual, Value: 250},
			{Source: "dropped_iterations", Expression: "count==0", Metric: threshold.DroppedIterations, Aggregate: "count",
				Operator: threshold.Equal, Value: 0},
			{Source: "dropped_iterations", Expression: "count<10", Metric: threshold.DroppedIterations, Aggregate: "count",
				Operator: threshold.Less, Value: 10, AbortOnFail: true, AbortDelaySeconds: 10},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("every field\n got %+v\nwant %+v", got, want)
	}
}

func TestRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content string
		// want are fragments of the error: the location first, then what is wrong; absent must not be in it.
		want   []string
		absent []string
	}{
		{name: "unknown top-level field", content: "name: x\nschedul: {rate: 5}",
			want: []string{`test.yaml:2: no field "schedul" in a scenario (fields: name, description, seed, setup, schedule, workload, client, thresholds)`}},
		{name: "unknown field in a section", content: "schedule:\n  rate: 5\n  rat: 6",
			want: []string{`test.yaml:3: no field "rat" in schedule (fields: executor, rate, duration, start_rate, stages,`}},
		{name: "unknown field in a nested section", content: "client:\n  retry:\n    tries: 3",
			want: []string{`test.yaml:3: no field "tries" in client.retry (fields: attempts, backoff, max_backoff, jitter)`}},
		{name: "duplicate field", content: "schedule:\n  rate: 5\n  rate: 6",
			want: []string{`test.yaml:3: schedule: duplicate field "rate" (first at line 2)`}},
		{name: "negative rate", content: "schedule:\n  rate: -5",
			want: []string{"test.yaml:2: schedule.rate: -5 is not above 0 and at most 1000000 per second"}},
		{name: "zero rate", content: "schedule: {rate: 0}", want: []string{"test.yaml:1: schedule.rate: 0 is not above 0"}},
		{name: "rate above the limit", content: "\nschedule: {rate: 1000001}", want: []string{"test.yaml:2: schedule.rate: 1000001 is not above 0"}},
		{name: "rate is text", content: "schedule: {rate: fast}", want: []string{`test.yaml:1: schedule.rate: want a number, got the text "fast"`}},
		{name: "quoted number", content: "schedule: {rate: \"200\"}", want: []string{`test.yaml:1: schedule.rate: want a number, got the text "200"`}},
		{name: "infinite rate", content: "schedule: {rate: .inf}", want: []string{"schedule.rate: want a finite number"}},
		{name: "fractional count", content: "setup:\n  accounts: 2.5", want: []string{"test.yaml:2: setup.accounts: want a whole number, got the number 2.5"}},
		{name: "boolean as text", content: "workload:\n  ownership: \"yes\"", want: []string{`test.yaml:2: workload.ownership: want true or false, got the text "yes"`}},
		{name: "password as a number", content: "setup: {password: 12345678}", want: []string{"setup.password: want text, got the number 12345678 (quote it"}},
		{name: "section as a list", content: "setup: [1, 2]", want: []string{"test.yaml:1: setup: want a mapping of fields (accounts, funding,", "got a list"}},
		{name: "scenario as a list", content: "- a\n- b", want: []string{"test.yaml:1: want a mapping of fields"}},
		{name: "value missing", content: "schedule:\n  rate:\n", want: []string{"test.yaml:2: schedule.rate: want a number, got nothing"}},
		{name: "bad duration", content: "schedule:\n  duration: 60", want: []string{`test.yaml:2: schedule.duration: "60" is not a duration (want e.g. 500ms, 30s, 1m30s)`}},
		{name: "duration with a bad unit", content: "client:\n  timeout: 10sec", want: []string{`test.yaml:2: client.timeout: "10sec" is not a duration`}},
		{name: "negative duration", content: "client:\n  poll_for: -1s", want: []string{`test.yaml:2: client.poll_for: "-1s" is negative`}},
		{name: "duration too long", content: "schedule:\n  duration: 25h", want: []string{`test.yaml:2: schedule.duration: "25h" is longer than 24h`}},
		{name: "zero duration", content: "schedule:\n  duration: 0s", want: []string{"test.yaml:2: schedule.duration: must be above 0"}},
		{name: "unknown executor", content: "schedule:\n  executor: ramp", want: []string{`test.yaml:2: schedule.executor: "ramp" is not one of constant-arrival-rate, ramping-arrival-rate, capacity-steps, closed`}},
		{name: "stages with the constant executor", content: "schedule:\n  stages: [{target: 5, duration: 1s}]",
			want: []string{"test.yaml:2: schedule.stages: only with executor ramping-arrival-rate; this scenario's executor is constant-arrival-rate"}},
		{name: "rate with the closed executor", content: "schedule:\n  executor: closed\n  rate: 5",
			want: []string{"test.yaml:3: schedule.rate: only with executor constant-arrival-rate; this scenario's executor is closed"}},
		{name: "max_in_flight with the closed executor", content: "schedule:\n  executor: closed\n  max_in_flight: 5",
			want: []string{"test.yaml:3: schedule.max_in_flight: only with executor constant-arrival-rate, ramping-arrival-rate, capacity-steps; this scenario's executor is closed"}},
		{name: "vus with capacity steps", content: "schedule:\n  executor: capacity-steps\n  vus: 5",
			want: []string{"test.yaml:3: schedule.vus: only with executor closed; this scenario's executor is capacity-steps"}},
		{name: "ramping without stages", content: "schedule:\n  executor: ramping-arrival-rate",
			want: []string{"test.yaml:2: schedule.stages: 0 stages: executor ramping-arrival-rate needs 1 to 1000"}},
		{name: "ramping to nothing", content: "schedule:\n  executor: ramping-arrival-rate\n  stages: [{target: 0, duration: 10s}]",
			want: []string{"test.yaml:3: schedule.stages: no target nor start_rate above 0"}},
		{name: "ramping of no length", content: "schedule:\n  executor: ramping-arrival-rate\n  stages: [{target: 5, duration: 0s}]",
			want: []string{"test.yaml:3: schedule.stages: every stage lasts 0"}},
		{name: "stage target negative", content: "schedule:\n  executor: ramping-arrival-rate\n  stages:\n    - {target: 5, duration: 1s}\n    - {target: -5, duration: 1s}",
			want: []string{"test.yaml:5: schedule.stages[1].target: -5 is not between 0 and 1000000"}},
		{name: "stage without duration", content: "schedule:\n  executor: ramping-arrival-rate\n  stages:\n    - target: 5",
			want: []string{"test.yaml:4: schedule.stages[0]: duration missing"}},
		{name: "stage with an unknown field", content: "schedule:\n  executor: ramping-arrival-rate\n  stages:\n    - {target: 5, duration: 1s, hold: 2s}",
			want: []string{`test.yaml:4: no field "hold" in schedule.stages[0] (fields: target, duration)`}},
		{name: "steps not increasing", content: "schedule:\n  executor: capacity-steps\n  steps:\n    - 1000\n    - 900",
			want: []string{"test.yaml:5: schedule.steps[1]: 900 is not above the step before it (1000)"}},
		{name: "step of zero", content: "schedule:\n  executor: capacity-steps\n  steps: [0, 5]",
			want: []string{"test.yaml:3: schedule.steps[0]: 0 is not above 0"}},
		{name: "no steps", content: "schedule:\n  executor: capacity-steps\n  steps: []",
			want: []string{"test.yaml:3: schedule.steps: 0 steps: executor capacity-steps needs 1 to 100"}},
		{name: "closed without loops", content: "schedule:\n  executor: closed\n  vus: 0", want: []string{"test.yaml:3: schedule.vus: 0 is not between 1 and 1000"}},
		{name: "max_in_flight above the limit", content: "schedule:\n  max_in_flight: 100001", want: []string{"test.yaml:2: schedule.max_in_flight: 100001 is not between 1 and 100000"}},
		{name: "one account", content: "setup:\n  accounts: 1", want: []string{"test.yaml:2: setup.accounts: 1 is not between 2 and 1000000"}},
		{name: "no funding", content: "setup:\n  funding: 0", want: []string{"test.yaml:2: setup.funding: 0 is not between 1 and 100000000000"}},
		{name: "funding too large", content: "setup:\n  funding: 100000000001", want: []string{"setup.funding: 100000000001 is not between"}},
		{name: "short password", content: "setup:\n  password: short", want: []string{"test.yaml:2: setup.password: 5 characters: want 8 to 256"}},
		{name: "email prefix with a space", content: "setup:\n  email_prefix: a b", want: []string{`test.yaml:2: setup.email_prefix: "a b": want lowercase`}},
		{name: "name with capitals", content: "name: Gate", want: []string{`test.yaml:1: name: "Gate": want lowercase`}},
		{name: "amount_min above amount_max", content: "workload:\n  amount_min: 50\n  amount_max: 40", want: []string{"test.yaml:2: workload.amount_min: 50 is above amount_max 40"}},
		{name: "amount_min above the default amount_max", content: "workload:\n  amount_min: 5000", want: []string{"test.yaml:2: workload.amount_min: 5000 is above amount_max 1000"}},
		{name: "amount of zero", content: "workload:\n  amount_min: 0", want: []string{"test.yaml:2: workload.amount_min: 0: an amount is at least 1 minor unit"}},
		{name: "amount too large", content: "workload:\n  amount_max: 100000000001", want: []string{"test.yaml:2: workload.amount_max: 100000000001 is above 100000000000"}},
		{name: "negative weight", content: "workload:\n  mix: {deposit: -1}", want: []string{"test.yaml:2: workload.mix.deposit: -1 is negative"}},
		{name: "every weight zero", content: "workload:\n  mix:\n    deposit: 0\n    withdrawal: 0\n    transfer: 0",
			want: []string{"test.yaml:3: workload.mix.deposit: every weight is 0"}},
		{name: "unknown operation in the mix", content: "workload:\n  mix: {refund: 1}", want: []string{`test.yaml:2: no field "refund" in workload.mix (fields: deposit, withdrawal, transfer)`}},
		{name: "zipf exponent zero", content: "workload:\n  accounts: zipf\n  zipf_exponent: 0", want: []string{"test.yaml:3: workload.zipf_exponent: 0 is not above 0 and at most 10"}},
		{name: "zipf exponent with uniform accounts", content: "workload:\n  zipf_exponent: 2",
			want: []string{"test.yaml:2: workload.zipf_exponent: only with accounts zipf; this scenario's accounts is uniform"}},
		{name: "more hot accounts than accounts", content: "setup: {accounts: 10}\nworkload: {accounts: zipf, hot_accounts: 11}",
			want: []string{"test.yaml:2: workload.hot_accounts: 11 is not between 1 and 10"}},
		{name: "owner slots without ownership", content: "workload:\n  ownership: false\n  owner_slots: 4",
			want: []string{"test.yaml:3: workload.owner_slots: only with ownership true; this scenario's ownership is false"}},
		{name: "more owner slots than accounts", content: "workload:\n  owner_slots: 101", want: []string{"test.yaml:2: workload.owner_slots: 101 is not between 1 and 100"}},
		{name: "mix with the walk", content: "workload:\n  kind: walk\n  mix: {deposit: 1}",
			want: []string{"test.yaml:3: workload.mix.deposit: only with workload kind mixed; this scenario's workload kind is walk"}},
		{name: "duplicates with the walk", content: "workload: {kind: walk}\nclient:\n  duplicates: {rate: 0.1}",
			want: []string{"test.yaml:3: client.duplicates.rate: only with workload kind mixed"}},
		{name: "wait not below timeout", content: "client:\n  wait: 10s", want: []string{"test.yaml:2: client.wait: wait 10s must be below timeout 10s"}},
		{name: "timeout below the default wait", content: "client:\n  timeout: 2s", want: []string{"test.yaml:2: client.wait: wait 5s must be below timeout 2s"}},
		{name: "duplicate rate above 1", content: "client:\n  duplicates: {rate: 1.5}", want: []string{"test.yaml:2: client.duplicates.rate: 1.5 is not a fraction between 0 and 1"}},
		{name: "negative misuse rate", content: "client:\n  misuse: {rate: -0.1}", want: []string{"test.yaml:2: client.misuse.rate: -0.1 is not a fraction"}},
		{name: "overdraft rate above 1", content: "workload:\n  overdraft_rate: 1.2", want: []string{"test.yaml:2: workload.overdraft_rate: 1.2 is not a fraction between 0 and 1"}},
		{name: "negative drain rate", content: "workload:\n  drain_rate: -0.5", want: []string{"test.yaml:2: workload.drain_rate: -0.5 is not a fraction"}},
		{name: "overdraft and drain above every debit", content: "workload:\n  overdraft_rate: 0.6\n  drain_rate: 0.5",
			want: []string{"test.yaml:2: workload.overdraft_rate: 0.6 with drain_rate 0.5 is above 1"}},
		{name: "limit race without a limit", content: "workload:\n  limit_race_rate: 0.5",
			want: []string{"test.yaml:2: workload.limit_race_rate: limit_race_rate 0.5 needs daily_limit above 0"}},
		{name: "negative daily limit", content: "workload:\n  daily_limit: -1", want: []string{"test.yaml:2: workload.daily_limit: -1 is not in [0, 1000000000000]"}},
		{name: "minimum rate above 1", content: "workload:\n  minimum_rate: 2", want: []string{"test.yaml:2: workload.minimum_rate: 2 is not a fraction"}},
		{name: "pair rate as text", content: "workload:\n  pair_rate: half", want: []string{`test.yaml:2: workload.pair_rate: want a number, got the text "half"`}},
		{name: "pair rate with the walk", content: "workload:\n  kind: walk\n  pair_rate: 0.5",
			want: []string{"test.yaml:3: workload.pair_rate: only with workload kind mixed"}},
		{name: "early timeout rate above 1", content: "client:\n  early_timeouts: {rate: 1.01}", want: []string{"test.yaml:2: client.early_timeouts.rate: 1.01 is not a fraction"}},
		{name: "early timeout of zero", content: "client:\n  early_timeouts: {max: 0s}", want: []string{"test.yaml:2: client.early_timeouts.max: must be above 0"}},
		{name: "early timeout not below the timeout", content: "client:\n  timeout: 6s\n  early_timeouts: {max: 6s}",
			want: []string{"test.yaml:3: client.early_timeouts.max: 6s must be below client.timeout 6s"}},
		{name: "early timeouts with the walk", content: "workload: {kind: walk}\nclient:\n  early_timeouts: {rate: 0.1}",
			want: []string{"test.yaml:3: client.early_timeouts.rate: only with workload kind mixed"}},
		{name: "negative replay rate", content: "client:\n  replays: {rate: -1}", want: []string{"test.yaml:2: client.replays.rate: -1 is not a fraction"}},
		{name: "replays due at once", content: "client:\n  replays: {after: 0s}", want: []string{"test.yaml:2: client.replays.after: must be above 0"}},
		{name: "unknown field in replays", content: "client:\n  replays: {delay: 1s}", want: []string{`test.yaml:2: no field "delay" in client.replays (fields: rate, after)`}},
		{name: "unknown duplicate mode", content: "client:\n  duplicates: {mode: twice}", want: []string{`test.yaml:2: client.duplicates.mode: "twice" is not one of concurrent, delayed, mixed`}},
		{name: "unknown HTTP engine", content: "client:\n  http_engine: curl", want: []string{`test.yaml:2: client.http_engine: "curl" is not one of std, fast`}},
		{name: "jitter above 1", content: "client:\n  retry: {jitter: 2}", want: []string{"test.yaml:2: client.retry.jitter: 2 is not between 0 and 1"}},
		{name: "no attempts", content: "client:\n  retry: {attempts: 0}", want: []string{"test.yaml:2: client.retry.attempts: 0 is not between 1 and 100"}},
		{name: "too many attempts", content: "client:\n  retry: {attempts: 101}", want: []string{"client.retry.attempts: 101 is not between 1 and 100"}},
		{name: "max backoff below backoff", content: "client:\n  retry: {backoff: 2s}", want: []string{"test.yaml:2: client.retry.max_backoff: max_backoff 1s is below backoff 2s"}},
		{name: "threshold on an unknown metric", content: "thresholds:\n  errors: [\"rate<0.1\"]\n  latency: [\"p(95)<250\"]",
			want: []string{`test.yaml:3: thresholds: unknown metric "latency" (metrics: accept_duration, checks,`}},
		{name: "threshold with an unknown tag", content: "thresholds:\n  \"errors{phase:calm}\": [\"rate<0.1\"]",
			want: []string{`test.yaml:2: thresholds: "errors{phase:calm}": metric errors has no tag "phase" (tags: kind, step)`}},
		{name: "threshold expression unknown aggregate", content: "thresholds:\n  accept_duration:\n    - \"p(95)<250\"\n    - \"p95<250\"",
			want: []string{`test.yaml:4: thresholds: accept_duration: "p95<250": unknown aggregate "p95"`}},
		{name: "threshold not a list", content: "thresholds:\n  errors: \"rate<0.1\"",
			want: []string{`test.yaml:2: thresholds.errors: want a list of expressions, e.g. ["rate<0.01"], got the text "rate<0.1"`}},
		{name: "threshold item without expression", content: "thresholds:\n  errors:\n    - {abort_on_fail: true}",
			want: []string{"test.yaml:3: thresholds.errors[0]: threshold missing"}},
		{name: "threshold item with an unknown field", content: "thresholds:\n  errors:\n    - {threshold: \"rate<0.1\", abortOnFail: true}",
			want: []string{`test.yaml:3: no field "abortOnFail" in thresholds.errors[0] (fields: threshold, abort_on_fail, delay_abort_eval)`}},
		{name: "abort delay without abort", content: "thresholds:\n  errors:\n    - {threshold: \"rate<0.1\", delay_abort_eval: 10s}",
			want: []string{"test.yaml:3: thresholds.errors[0]: delay_abort_eval has no effect without abort_on_fail: true"}},
		{name: "YAML syntax error", content: "schedule:\n  rate: 5\n rate: [", want: []string{"test.yaml:2: did not find expected key"}},
		{name: "two documents", content: "name: a\n---\nname: b\n", want: []string{"test.yaml:2: a second YAML document"}},
		{name: "empty file", content: "# nothing\n", want: []string{"test.yaml: empty"}},
		{name: "every problem at once", content: "schedule:\n  rate: fast\n  rat: 5\nsetup:\n  accounts: many",
			want: []string{`test.yaml:2: schedule.rate: want a number, got the text "fast"` + "\n" + `test.yaml:3: no field "rat"`,
				"\ntest.yaml:5: setup.accounts: want a whole number"}},
		{name: "problems in the file's order", content: "schedule:\n  executor: closed\n  max_in_flight: 5\n  rate: 4",
			want: []string{"test.yaml:3: schedule.max_in_flight: only with executor constant-arrival-rate, ramping-arrival-rate, capacity-steps; this scenario's executor is closed\n" +
				"test.yaml:4: schedule.rate: only with"}},
		{name: "no repeat of an accounts problem", content: "setup: {accounts: 0}\nworkload: {owner_slots: 5}",
			want: []string{"test.yaml:1: setup.accounts: 0 is not between 2 and 1000000"}, absent: []string{"owner_slots"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			scenario, err := parse(t, test.content)
			if err == nil {
				t.Fatalf("%q parsed: %+v", test.content, scenario)
			}
			var scenarioError *Error
			if !errors.As(err, &scenarioError) {
				t.Errorf("%v is a %T, want an *Error", err, err)
			}
			for _, fragment := range test.want {
				if !strings.Contains(err.Error(), fragment) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, fragment)
				}
			}
			for _, fragment := range test.absent {
				if strings.Contains(err.Error(), fragment) {
					t.Errorf("error\n%v\ncontains\n%s", err, fragment)
				}
			}
		})
	}
}

// TestFieldsOfOtherExecutorsRefused writes each executor's fields under every other executor.
func TestFieldsOfOtherExecutorsRefused(t *testing.T) {
	samples := map[string]string{"schedule.stages": "[{target: 5, duration: 1s}]", "schedule.max_in_flight": "5"}
	for _, f := range fields {
		for _, required := range f.Only {
			if required.name != "executor" {
				continue
			}
			value := f.Default
			if sample, ok := samples[f.Path]; ok {
				value = sample
			}
			for _, other := range executors {
				if slices.Contains(required.values, other) {
					continue
				}
				name := strings.TrimPrefix(f.Path, "schedule.")
				t.Run(f.Path+" with "+other, func(t *testing.T) {
					content := "schedule:\n  executor: " + other + "\n  " + name + ": " + value + "\n"
					_, err := parse(t, content)
					want := "test.yaml:3: " + f.Path + ": only with executor " + strings.Join(required.values, ", ") +
						"; this scenario's executor is " + other
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("%q: error %v, want %q", content, err, want)
					}
				})
			}
		}
	}
}

func TestSet(t *testing.T) {
	const file = `
schedule:
  rate: 100
workload:
  mix: {deposit: 1, withdrawal: 1, transfer: 1}
thresholds:
  errors: ["rate<0.001", "count<5"]
  dropped_iterations: ["count==0"]
`
	tests := []struct {
		name string
		// content is the file, when not the one above.
		content string
		sets    []string
		check   func(s *Scenario) bool
	}{
		{name: "replaces a value and what derives from it", sets: []string{"schedule.rate=500"},
			check: func(s *Scenario) bool { return s.Schedule.Rate == 500 && s.Schedule.MaxInFlight == 5000 }},
		{name: "adds a field of a section left out", sets: []string{"client.duplicates.rate=0.05"},
			check: func(s *Scenario) bool { return s.Client.DuplicateRate == 0.05 && s.Client.RetryAttempts == 3 }},
		{name: "adds a top-level field", sets: []string{"seed=42"}, check: func(s *Scenario) bool { return s.Seed == 42 }},
		{name: "one weight", sets: []string{"workload.mix.transfer=0"},
			check: func(s *Scenario) bool { return s.Workload.Mix == Mix{Deposit: 1, Withdrawal: 1} }},
		{name: "replaces a metric's thresholds", sets: []string{"thresholds.errors=rate<0.01"},
			check: func(s *Scenario) bool {
				return slices.Equal(thresholdNames(s.Thresholds), []string{"errors: rate<0.01", "dropped_iterations: count==0"})
			}},
		{name: "a list of thresholds", sets: []string{`thresholds.errors=["count<1", "rate<0.5"]`},
			check: func(s *Scenario) bool {
				return slices.Equal(thresholdNames(s.Thresholds), []string{"errors: count<1", "errors: rate<0.5", "dropped_iterations: count==0"})
			}},
		{name: "empties a metric's thresholds", sets: []string{"thresholds.errors="},
			check: func(s *Scenario) bool {
				return slices.Equal(thresholdNames(s.Thresholds), []string{"dropped_iterations: count==0"})
			}},
		{name: "adds a threshold with tags", sets: []string{"thresholds.accept_duration{kind:transfer}=p(95) < 100"},
			check: func(s *Scenario) bool {
				last := s.Thresholds[len(s.Thresholds)-1]
				return last.Name() == "accept_duration{kind:transfer}: p(95) < 100" && last.Tags["kind"] == "transfer"
			}},
		{name: "adds thresholds to a file without", content: "name: bare\n", sets: []string{"thresholds.checks=rate==1"},
			check: func(s *Scenario) bool { return slices.Equal(thresholdNames(s.Thresholds), []string{"checks: rate==1"}) }},
		{name: "another executor and a list", content: "name: steps\n",
			sets: []string{"schedule.executor=capacity-steps", "schedule.steps=[10, 20]"},
			check: func(s *Scenario) bool {
				return slices.Equal(s.Schedule.Steps, []float64{10, 20}) && s.Schedule.MaxInFlight == 200 && s.Schedule.Rate == 0
			}},
		{name: "an index into a list", content: "schedule:\n  executor: ramping-arrival-rate\n  stages: [{target: 5, duration: 1s}]\n",
			sets:  []string{"schedule.stages.0.target=800"},
			check: func(s *Scenario) bool { return s.Schedule.Stages[0] == Stage{Target: 800, Duration: time.Second} }},
		{name: "later sets win", sets: []string{"seed=1", "seed=2"}, check: func(s *Scenario) bool { return s.Seed == 2 }},
		{name: "durations", sets: []string{"client.timeout=30s", "client.wait=20s"},
			check: func(s *Scenario) bool { return s.Client.Timeout == 30*time.Second && s.Client.Wait == 20*time.Second }},
		{name: "into an empty section", content: "client:\n", sets: []string{"client.retry.attempts=9"},
			check: func(s *Scenario) bool { return s.Client.RetryAttempts == 9 }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			content := test.content
			if content == "" {
				content = file
			}
			scenario := mustParse(t, content, test.sets...)
			if !test.check(scenario) {
				t.Fatalf("sets %q: schedule %+v workload %+v client %+v thresholds %q", test.sets, scenario.Schedule,
					scenario.Workload, scenario.Client, thresholdNames(scenario.Thresholds))
			}
		})
	}
}

func TestSetRefuses(t *testing.T) {
	const file = "schedule:\n  rate: 100\nthresholds:\n  errors: [\"rate<0.1\"]\n"
	tests := []struct {
		name string
		set  string
		want string
	}{
		{name: "names no field", set: "schedule.rat=5",
			want: `--set schedule.rat=5: no field "rat" in schedule (fields: executor, rate, duration, start_rate, stages, steps, step_ramp, step_hold, step_gap, vus, iterations, max_duration, max_in_flight, graceful_stop)`},
		{name: "names no section", set: "schedul.rate=5", want: `--set schedul.rate=5: no field "schedul" in a scenario (fields:`},
		{name: "wrong type", set: "schedule.rate=abc", want: `--set schedule.rate=abc: schedule.rate: want a number, got the text "abc"`},
		{name: "a section given a value", set: "client=5", want: "--set client=5: client: want a mapping of fields (wait, timeout,"},
		{name: "out of range", set: "setup.accounts=1", want: "--set setup.accounts=1: setup.accounts: 1 is not between 2 and 1000000"},
		{name: "field of another executor", set: "schedule.vus=3", want: "--set schedule.vus=3: schedule.vus: only with executor closed"},
		{name: "unknown metric", set: "thresholds.eror=count==0", want: `--set thresholds.eror=count==0: thresholds: unknown metric "eror"`},
		{name: "bad expression", set: "thresholds.errors=rate<<1", want: `--set thresholds.errors=rate<<1: thresholds: errors: "rate<<1"`},
		{name: "into a value", set: "schedule.rate.low=1", want: `--set schedule.rate.low=1: schedule.rate is the number 100, not a section: it has no field "low"`},
		{name: "no equals sign", set: "seed", want: "--set seed: want key=value"},
		{name: "no key", set: "=5", want: "--set =5: want key=value"},
		{name: "empty name", set: "schedule..rate=5", want: `--set schedule..rate=5: "schedule..rate" has an empty field name`},
		{name: "value not YAML", set: "schedule.rate=[1,", want: "--set schedule.rate=[1,: the value is not YAML"},
		{name: "index out of range", set: "thresholds.errors.3=count<1", want: `--set thresholds.errors.3=count<1: thresholds.errors is a list of 1: "3" is not an index from 0 to 0`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := parse(t, file, test.set)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("--set %s: error\n%v\nwant\n%s", test.set, err, test.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	directory := t.TempDir()
	tests := []struct {
		name    string
		file    string
		content string
		want    string
	}{
		{name: "name from the file", file: "nightly-run.yaml", content: "schedule: {rate: 10}\n"},
		{name: "file name that is no scenario name", file: "Nightly Run.yaml", content: "schedule: {rate: 10}\n",
			want: `Nightly Run.yaml: name: "Nightly Run": want lowercase`},
		{name: "file too large", file: "large.yaml", content: "description: " + strings.Repeat("x", maxFileBytes) + "\n",
			want: "large.yaml: larger than 1048576 bytes"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := filepath.Join(directory, test.file)
			if err := os.WriteFile(path, []byte(test.content), 0o600); err != nil {
				t.Fatal(err)
			}
			scenario, err := Load(path, nil)
			switch {
			case test.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case test.want == "" && (scenario.Name != "nightly-run" || scenario.Setup.EmailPrefix != "load-nightly-run"):
				t.Fatalf("name %q, email prefix %q", scenario.Name, scenario.Setup.EmailPrefix)
			case test.want != "" && (err == nil || !strings.Contains(err.Error(), test.want)):
				t.Fatalf("Load: error %v, want %q", err, test.want)
			}
		})
	}
	if _, err := Load(filepath.Join(directory, "missing.yaml"), nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// TestFieldsDocumented keeps docs/scenarios.md's field table equal to the code's; -update rewrites it.
func TestFieldsDocumented(t *testing.T) {
	const (
		path  = "../../docs/scenarios.md"
		begin = "<!-- fields: generated from load/scenario/fields.go by `go test ./load/scenario -update`; do not edit -->\n"
		end   = "<!-- end of fields -->"
	)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(content)
	start, stop := strings.Index(text, begin), strings.Index(text, end)
	if start < 0 || stop < start {
		t.Fatalf("%s: no field table between %q and %q", path, begin, end)
	}
	documented, generated := text[start+len(begin):stop], fieldTable()
	if documented == generated {
		return
	}
	if !*update {
		t.Fatalf("%s: the field table differs from load/scenario/fields.go; run go test ./load/scenario -update\n"+
			"documented:\n%s\ngenerated:\n%s", path, documented, generated)
	}
	rewritten := text[:start+len(begin)] + generated + text[stop:]
	if err := os.WriteFile(path, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
}
