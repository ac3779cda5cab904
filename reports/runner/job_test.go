package runner

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// cliJobOptions are JobOptions as the CLI's defaults make them, with the
// changes of change.
func cliJobOptions(change func(o *JobOptions)) JobOptions {
	o := JobOptions{Scenario: "scenarios/gate.yaml", Stack: KindLocal, StackDir: ".ledgerproof/stack", ComposeFile: "docker-compose.yml",
		Generators: 1, SetupTimeout: DefaultSetupTimeout, DrainTimeout: time.Minute, QuietPeriod: 2 * time.Second}
	if change != nil {
		change(&o)
	}
	return o
}

// TestJobOptionsValidate: each contradiction or out-of-range setting is
// refused with an error naming the flags; good settings of each kind of
// system pass.
func TestJobOptionsValidate(t *testing.T) {
	refused := []struct {
		name   string
		change func(o *JobOptions)
		want   string
	}{
		{"rate not a number", func(o *JobOptions) { o.Rate = "fast" }, `--rate "fast": want a positive whole number`},
		{"rate zero", func(o *JobOptions) { o.Rate = "0" }, `--rate "0": want a positive whole number`},
		{"no generators", func(o *JobOptions) { o.Generators = 0 }, "--generators 0: want 1 to 64"},
		{"too many generators", func(o *JobOptions) { o.Generators = 65 }, "--generators 65: want 1 to 64"},
		{"seed not a number", func(o *JobOptions) { o.Seed = "x" }, `--seed "x": want a positive integer`},
		{"negative seed", func(o *JobOptions) { o.Seed = "-3" }, `--seed "-3": want a positive integer`},
		{"withheld flags without their variables", func(o *JobOptions) { o.WithheldArgs = []string{"--postgres-url"} }, "without EnvName"},
		{"seeded bug on compose", func(o *JobOptions) { o.Stack, o.SeededBugs = KindCompose, []string{"no-idempotency"} }, "--seeded-bug needs --stack local"},
		{"seeded bug on an external system", func(o *JobOptions) {
			o.Stack, o.BaseURL, o.PostgresURL, o.SeededBugs = KindExternal, "http://a:1", "postgres://p", []string{"no-idempotency"}
		}, "--seeded-bug needs --stack local"},
		{"drain timeout zero", func(o *JobOptions) { o.DrainTimeout = 0 }, "--drain-timeout 0s and --quiet-period 2s must be positive"},
		{"quiet period negative", func(o *JobOptions) { o.QuietPeriod = -time.Second }, "--quiet-period -1s must be positive"},
		{"base URL on a local stack", func(o *JobOptions) { o.BaseURL = "http://x:1" }, "are for --stack external (--base-url and --postgres-url also for compose)"},
		{"postgres URL on a local stack", func(o *JobOptions) { o.PostgresURL = "postgres://p" }, "are for --stack external"},
		{"ledger export on a local stack", func(o *JobOptions) { o.LedgerExport = "export" }, "are for --stack external"},
		{"ledger SQL on a local stack", func(o *JobOptions) { o.LedgerSQL = "ledger.yaml" }, "are for --stack external"},
		{"metrics URL on a local stack", func(o *JobOptions) { o.MetricsURLs = "http://m:1/metrics" }, "are for --stack external"},
		{"profile on a local stack", func(o *JobOptions) { o.Profile = "p.yaml" }, "are for --stack external"},
		{"ledger export on compose", func(o *JobOptions) { o.Stack, o.LedgerExport = KindCompose, "export" }, "are for --stack external; the compose project"},
		{"export command on compose", func(o *JobOptions) { o.Stack, o.ExportCommand = KindCompose, "make export" }, "are for --stack external; the compose project"},
		{"ledger SQL on compose", func(o *JobOptions) { o.Stack, o.LedgerSQL = KindCompose, "ledger.yaml" }, "are for --stack external; the compose project"},
		{"metrics URL on compose", func(o *JobOptions) { o.Stack, o.MetricsURLs = KindCompose, "http://m:1/metrics" }, "are for --stack external; the compose project"},
		{"profile on compose", func(o *JobOptions) { o.Stack, o.Profile = KindCompose, "p.yaml" }, "are for --stack external; the compose project"},
		{"external without base URL", func(o *JobOptions) { o.Stack, o.PostgresURL = KindExternal, "postgres://p" }, "--stack external needs --base-url"},
		{"ledger export without export command", func(o *JobOptions) { o.Stack, o.BaseURL, o.LedgerExport = KindExternal, "http://a:1", "export" },
			"--export-command writes the --ledger-export directory after the load: give both"},
		{"export command without ledger export", func(o *JobOptions) {
			o.Stack, o.BaseURL, o.PostgresURL, o.ExportCommand = KindExternal, "http://a:1", "postgres://p", "make export"
		}, "give both"},
		{"external without audit source", func(o *JobOptions) { o.Stack, o.BaseURL = KindExternal, "http://a:1" }, "--stack external needs one audit source"},
		{"external with two audit sources", func(o *JobOptions) {
			o.Stack, o.BaseURL, o.PostgresURL, o.LedgerSQL = KindExternal, "http://a:1", "postgres://p", "ledger.yaml"
		}, "--stack external needs one audit source"},
		{"brokers with ledger SQL", func(o *JobOptions) {
			o.Stack, o.BaseURL, o.LedgerSQL, o.Brokers = KindExternal, "http://a:1", "ledger.yaml", "k:9092"
		}, "--brokers drains the reference pipeline's topic"},
		{"unknown kind", func(o *JobOptions) { o.Stack = "k8s" }, `--stack "k8s": want local, compose or external`},
	}
	for _, c := range refused {
		o := cliJobOptions(c.change)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	good := []struct {
		name   string
		change func(o *JobOptions)
	}{
		{"the CLI's defaults", nil},
		{"a local stack with seeded bugs, overrides and a seed", func(o *JobOptions) {
			o.SeededBugs, o.Rate, o.Duration, o.Seed, o.Generators = []string{"no-idempotency"}, "50", "10s", "42", 64
		}},
		{"compose with its endpoints", func(o *JobOptions) { o.Stack, o.BaseURL, o.PostgresURL = KindCompose, "http://a:1", "postgres://p" }},
		{"external with a database", func(o *JobOptions) { o.Stack, o.BaseURL, o.PostgresURL = KindExternal, "http://a:1", "postgres://p" }},
		{"external with an export", func(o *JobOptions) {
			o.Stack, o.BaseURL, o.LedgerExport, o.ExportCommand = KindExternal, "http://a:1", "export", "make export"
		}},
		{"withheld flags with their variables", func(o *JobOptions) {
			o.WithheldArgs, o.EnvName = []string{"--postgres-url"}, func(flag string) string { return "LEDGERPROOF_" + flag }
		}},
	}
	for _, c := range good {
		o := cliJobOptions(c.change)
		if err := o.validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestNewTarget: --stack and the options make the system the run acts on.
func TestNewTarget(t *testing.T) {
	target := newTarget(cliJobOptions(func(o *JobOptions) { o.Stack, o.ComposeProject, o.PostgresURL = KindCompose, "ci", "postgres://p" }))
	if compose, ok := target.(*ComposeProject); !ok || compose.File != "docker-compose.yml" || compose.Project != "ci" || compose.PostgresURL != "postgres://p" {
		t.Errorf("compose: %#v", target)
	}
	target = newTarget(cliJobOptions(func(o *JobOptions) {
		o.Stack, o.BaseURL, o.LedgerExport, o.ExportCommand, o.QuietPeriod = KindExternal, "http://a:1", "export", "make export", 3*time.Second
	}))
	external, ok := target.(*ExternalSystem)
	if !ok || external.BaseURLs != "http://a:1" || external.LedgerExport != "export" || external.ExportCommand != "make export" ||
		external.QuietPeriod != 3*time.Second || external.DrainTimeout != time.Minute {
		t.Errorf("external: %#v", target)
	}
	target = newTarget(cliJobOptions(func(o *JobOptions) { o.StackDir, o.Gateways, o.GatewayArgs = "somewhere", 3, []string{"--x=1"} }))
	local, ok := target.(*LocalStack)
	if !ok || local.Config.Dir != "somewhere" || local.Config.Gateways != 3 ||
		!slices.Equal(local.Config.GatewayArgs, append(append([]string{}, RunKDFArgs...), "--x=1")) {
		t.Errorf("local: %#v", target)
	}
}
