package capacity

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// validOptions are `ledgerproof capacity`'s defaults.
func validOptions() Options {
	return Options{Out: "out", Scenario: "../../scenarios/capacity.yaml", StackRoot: "stacks", Modes: []string{ModeBatched, ModeNaive},
		Steps: []int{250, 500, 1000}, Hold: 20 * time.Second, Ramp: 5 * time.Second, Accounts: 2000, Gateways: 1, Workers: 1,
		Partitions: 2, FailuresToStop: 2, ProfileSeconds: 15, PortBase: 23400, Calibrate: true}
}

// TestOptionsValidate: each bad setting is refused with an error naming it; the defaults pass.
func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"defaults", func(*Options) {}, ""},
		{"requirements with both modes", func(o *Options) { o.RequireTPS, o.RequireRatio, o.RequireCeilingFraction = 2000, 3, 0.3 }, ""},
		{"profile at a step", func(o *Options) { o.ProfileAt = 500 }, ""},
		{"no steps", func(o *Options) { o.Steps = nil }, "--steps: none"},
		{"a zero step", func(o *Options) { o.Steps = []int{0, 500} }, `--steps: "0" is not a positive rate`},
		{"steps descending", func(o *Options) { o.Steps = []int{500, 250} }, "--steps must ascend (250 after 500)"},
		{"steps repeated", func(o *Options) { o.Steps = []int{500, 500} }, "--steps must ascend (500 after 500)"},
		{"hold under a second", func(o *Options) { o.Hold = 500 * time.Millisecond }, "--step-duration must be at least 1s"},
		{"negative ramp", func(o *Options) { o.Ramp = -time.Second }, "--ramp-duration not negative"},
		{"no failures to stop", func(o *Options) { o.FailuresToStop = 0 }, "--stop-after-failures must be at least 1"},
		{"negative refine", func(o *Options) { o.Refine = -1 }, "--refine -1 must be between 0 and 4"},
		{"refine past its bound", func(o *Options) { o.Refine = MaximumRefine + 1 }, "--refine 5 must be between 0 and 4"},
		{"no gateway", func(o *Options) { o.Gateways = 0 }, "--gateways and --workers must be at least 1"},
		{"no worker", func(o *Options) { o.Workers = 0 }, "--gateways and --workers must be at least 1"},
		{"ceiling fraction above 1", func(o *Options) { o.RequireCeilingFraction = 1.5 }, "--require-ceiling-fraction must be between 0 and 1"},
		{"ceiling fraction without calibration", func(o *Options) { o.RequireCeilingFraction, o.Calibrate = 0.3, false },
			"--require-ceiling-fraction needs the calibration"},
		{"unknown mode", func(o *Options) { o.Modes = []string{"batched", "fast"} }, `--modes: unknown mode "fast"`},
		{"a mode twice", func(o *Options) { o.Modes = []string{"naive", "naive"} }, "--modes: naive twice"},
		{"no modes", func(o *Options) { o.Modes = nil }, "--modes: none"},
		{"no run directory", func(o *Options) { o.Out = "" }, "--out, --scenario and --stack-dir must not be empty"},
		{"no accounts", func(o *Options) { o.Accounts = 0 }, "--accounts and --partitions must be at least 1"},
		{"no partitions", func(o *Options) { o.Partitions = 0 }, "--accounts and --partitions must be at least 1"},
		{"negative required TPS", func(o *Options) { o.RequireTPS = -1 }, "--require-tps and --require-ratio must not be negative"},
		{"required TPS without batched", func(o *Options) { o.Modes, o.RequireTPS = []string{ModeNaive}, 2000 }, "--modes must include batched"},
		{"ceiling fraction without batched", func(o *Options) { o.Modes, o.RequireCeilingFraction = []string{ModeNaive}, 0.3 },
			"--modes must include batched"},
		{"ratio with one mode", func(o *Options) { o.Modes, o.RequireRatio = []string{ModeBatched}, 3 }, "--modes must include both"},
		{"profile at no step", func(o *Options) { o.ProfileAt = 750 }, "--profile-at 750 is not one of --steps"},
		{"profile as long as the hold", func(o *Options) { o.ProfileAt, o.ProfileSeconds = 500, 20 }, "--profile-seconds 20 must be at least 1 and below the hold"},
		{"load on every core", func(o *Options) { o.LoadMaxProcs = -1 }, ""},
		{"load max procs below -1", func(o *Options) { o.LoadMaxProcs = -2 }, "--load-max-procs -2"},
		{"negative port base", func(o *Options) { o.PortBase = -1 }, "--port-base -1"},
		{"ports past the last", func(o *Options) { o.PortBase = 65400 }, "--port-base 65400"},
		{"a step the scenario refuses", func(o *Options) { o.Steps = []int{1000, 2000000} }, "step 2000000"},
		{"no such scenario", func(o *Options) { o.Scenario = "missing.yaml" }, "missing.yaml"},
		{"a soak", func(o *Options) { o.Soak, o.SoakFraction = 10*time.Minute, 0.7 }, ""},
		{"negative soak", func(o *Options) { o.Soak = -time.Second }, "--soak -1s: 0 (no soak) or at least 10s"},
		{"soak too short", func(o *Options) { o.Soak, o.SoakFraction = 5*time.Second, 0.7 }, "--soak 5s: 0 (no soak) or at least 10s"},
		{"soak without batched", func(o *Options) { o.Modes, o.Soak, o.SoakFraction = []string{ModeNaive}, time.Minute, 0.7 }, "--soak runs at a fraction of the batched knee"},
		{"soak at no rate", func(o *Options) { o.Soak, o.SoakFraction = time.Minute, 0 }, "--soak-fraction 0 must be above 0 and at most 1"},
		{"a Postgres setting", func(o *Options) { o.PostgresSettings = []string{"autovacuum_vacuum_cost_delay=10ms"} }, ""},
		{"a Postgres setting without a value", func(o *Options) { o.PostgresSettings = []string{"autovacuum"} }, `--postgres-setting "autovacuum": want name=value`},
		{"fsync off", func(o *Options) { o.PostgresSettings = []string{"fsync=off"} }, "fsync is the stack's own"},
		{"autovacuum logged as the report reads it", func(o *Options) { o.PostgresSettings = []string{"log_autovacuum_min_duration=0"} }, ""},
		{"autovacuum logged less", func(o *Options) { o.PostgresSettings = []string{"log_autovacuum_min_duration=1s"} }, "reads each step's autovacuum"},
		{"the log in another zone", func(o *Options) { o.PostgresSettings = []string{"Log_Timezone=Europe/Paris"} }, "reads each step's autovacuum"},
		{"another log line prefix", func(o *Options) { o.PostgresSettings = []string{"log_line_prefix=%t "} }, "reads each step's autovacuum"},
		{"synchronous commit off", func(o *Options) { o.PostgresSettings = []string{" Synchronous_Commit =off"} }, "synchronous_commit is the stack's own"},
		{"soak above the knee", func(o *Options) { o.Soak, o.SoakFraction = time.Minute, 1.2 }, "--soak-fraction 1.2 must be above 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := validOptions()
			c.change(&o)
			err := o.validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestLoadMaxProcs: one P per LoadRatePerProc operations a second of the step's rate, at least one and at most
// the cores; a configured count wins; -1 leaves Go's default (no flag).
func TestLoadMaxProcs(t *testing.T) {
	for _, c := range []struct{ configured, rate, cores, want int }{
		{0, 250, 2, 1},
		{0, LoadRatePerProc, 2, 1},
		{0, LoadRatePerProc + 1, 2, 2},
		{0, 10000, 2, 1}, // the default ladder's top on one P
		{0, 2 * LoadRatePerProc, 2, 2},
		{0, 4 * LoadRatePerProc, 4, 4},
		{0, 8 * LoadRatePerProc, 16, 8},
		{0, 3000, 0, 1},
		{3, 250, 2, 3},
		{-1, 10000, 2, 0},
	} {
		if got := loadMaxProcs(c.configured, c.rate, c.cores); got != c.want {
			t.Errorf("loadMaxProcs(%d, %d, %d) = %d, want %d", c.configured, c.rate, c.cores, got, c.want)
		}
	}
}

// TestParseSteps: --steps is comma-separated positive rates, ascending.
func TestParseSteps(t *testing.T) {
	steps, err := ParseSteps("250, 500,1000,")
	if err != nil || len(steps) != 3 || steps[0] != 250 || steps[2] != 1000 {
		t.Fatalf("steps %v, error %v; want [250 500 1000]", steps, err)
	}
	for text, want := range map[string]string{"250,abc": `"abc" is not a positive rate`, "-5": `"-5" is not a positive rate`,
		"500,250": "--steps must ascend (250 after 500)"} {
		if _, err := ParseSteps(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one saying %q", text, err, want)
		}
	}
}

// TestDefaultStepsResolution: the default ladder parses, starts at 250, reaches 10,000, and from 1,000 up no
// step is more than a quarter above the one before it (the last a third), so a knee of either mode is stated to
// within that much.
func TestDefaultStepsResolution(t *testing.T) {
	steps, err := ParseSteps(DefaultSteps)
	if err != nil {
		t.Fatal(err)
	}
	if steps[0] != 250 || steps[len(steps)-1] != 10000 {
		t.Fatalf("default steps %v: want 250 to 10000", steps)
	}
	for i := 1; i < len(steps); i++ {
		if steps[i-1] < 1000 {
			continue
		}
		limit := 1.25
		if i == len(steps)-1 {
			limit = 4.0 / 3
		}
		if ratio := float64(steps[i]) / float64(steps[i-1]); ratio > limit+1e-9 {
			t.Errorf("step %d is %.2f× the step %d before it; the ladder allows %.2f×", steps[i], ratio, steps[i-1], limit)
		}
	}
}

// TestRetentionOptions: --retention is 0 (the reference's defaults) or at least the minimum, and reaches the
// gateways, workers and broker as their own flags.
func TestRetentionOptions(t *testing.T) {
	for _, c := range []struct {
		retention time.Duration
		want      string
	}{{0, ""}, {MinimumRetention, ""}, {DefaultRetention, ""}, {-time.Second, "--retention -1s"}, {10 * time.Second, "--retention 10s: 0 (the reference's defaults) or at least 30s"}} {
		o := validOptions()
		o.Retention = c.retention
		err := o.validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("retention %s: error %v, want %q", c.retention, err, c.want)
		}
	}
	gateway, worker, broker := retentionArgs(90 * time.Second)
	if strings.Join(gateway, " ") != "--idempotency-ttl 1m30s" || strings.Join(worker, " ") != "--outcome-ttl 1m30s" || strings.Join(broker, " ") != "--retention 1m30s" {
		t.Errorf("retention arguments: %v, %v, %v", gateway, worker, broker)
	}
	if gateway, worker, broker := retentionArgs(0); gateway != nil || worker != nil || broker != nil {
		t.Errorf("no retention: arguments %v, %v, %v, want none", gateway, worker, broker)
	}
}

// TestRedisFootprintProjection: a transaction's bytes are its idem: and outcome: records' means, and a day of them
// at a rate is bytes × rate × 86,400 s; other prefixes (sessions, balances) are reported but not counted.
func TestRedisFootprintProjection(t *testing.T) {
	f := redisFootprint{Keys: 30, UsedMiB: 3, Prefixes: []redisPrefix{{Prefix: "idem", Keys: 10, Sampled: 10, MeanBytes: 400},
		{Prefix: "outcome", Keys: 10, Sampled: 10, MeanBytes: 200}, {Prefix: "session", Keys: 10, Sampled: 10, MeanBytes: 150}}}
	f.project([]redisProjection{{Label: "the soak's rate", TPS: 1000}, {Label: "none", TPS: 0}})
	if f.BytesPerTransaction != 600 || len(f.Projections) != 1 || f.Projections[0].GiB != round3(600*1000*86400.0/(1<<30)) {
		t.Fatalf("footprint %+v", f)
	}
	text := f.markdown(time.Minute)
	for _, want := range []string{"kept 1m0s", "idem: 10 × 400 B", "Each transaction keeps 600 B", "**48.28 GiB** at the soak's rate (1000 TPS)"} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q:\n%s", want, text)
		}
	}
}

// TestCapacityPortsFromTheBase: with a port base, every listening port of
// both modes' stacks lies at or above it, below the ephemeral range, and
// no two of them are the same.
func TestCapacityPortsFromTheBase(t *testing.T) {
	seen := map[int]string{}
	for modeIndex := range 2 {
		config := stack.DefaultConfig()
		capacityPorts(&config, 23400, modeIndex)
		ports := map[string]int{"postgres": config.PostgresPort, "redis": config.RedisPort, "broker": config.BrokerPort,
			"gateway": config.GatewayPort, "gateway internal": config.GatewayInternalPort, "worker metrics": config.WorkerMetricsPort,
			"relay": config.SettlementPort, "settler": config.SettlementPort + 1}
		for name, port := range ports {
			if port < 23400 || port >= 32768 {
				t.Errorf("mode %d: the %s port %d is outside [23400, 32768)", modeIndex, name, port)
			}
			if other, ok := seen[port]; ok {
				t.Errorf("mode %d: the %s port %d is also %s's", modeIndex, name, port, other)
			}
			seen[port] = fmt.Sprintf("mode %d's %s", modeIndex, name)
		}
	}
}
