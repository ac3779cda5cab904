package main

import (
	"slices"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// parseRunFlags returns the run options of a command line.
func parseRunFlags(t *testing.T, args ...string) runner.JobOptions {
	t.Helper()
	var o runFlags
	if err := newRunFlags(&o).Parse(args); err != nil {
		t.Fatal(err)
	}
	return o.job
}

// TestRunFlags: the run command's flags fill runner.JobOptions, with the
// defaults the docs give; repeatable flags keep every value in order. (The
// checks of the options are runner's: TestJobOptionsValidate.)
func TestRunFlags(t *testing.T) {
	o := parseRunFlags(t)
	if o.Stack != runner.KindLocal || o.Scenario != "scenarios/gate.yaml" || o.ComposeFile != "docker-compose.yml" ||
		o.Generators != 1 || o.DrainTimeout != time.Minute || o.QuietPeriod != 2*time.Second || o.SetupTimeout != runner.DefaultSetupTimeout {
		t.Errorf("defaults: %+v", o)
	}
	o = parseRunFlags(t, "--stack", "compose", "--compose-project", "ci", "--postgres-url", "postgres://p",
		"--gateway-arg", "--x=1", "--gateway-arg", "--y=2", "--set", "a=1", "--set", "b=2", "--quiet-period", "3s")
	if o.Stack != runner.KindCompose || o.ComposeProject != "ci" || o.PostgresURL != "postgres://p" || o.QuietPeriod != 3*time.Second ||
		!slices.Equal(o.GatewayArgs, []string{"--x=1", "--y=2"}) || !slices.Equal(o.Sets, []string{"a=1", "b=2"}) {
		t.Errorf("given: %+v", o)
	}
}
