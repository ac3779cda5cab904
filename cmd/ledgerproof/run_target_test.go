package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// parseRunFlags returns the run options of a command line.
func parseRunFlags(t *testing.T, args ...string) runOptions {
	t.Helper()
	var o runOptions
	if err := newRunFlags(&o).Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestNewTarget: --stack and the flags make the system the run acts on, or
// a configuration error.
func TestNewTarget(t *testing.T) {
	refused := []struct {
		name string
		args []string
		bugs []string
		want string
	}{
		{"seeded bug on compose", []string{"--stack", "compose"}, []string{"no-idempotency"}, "--seeded-bug needs --stack local"},
		{"external endpoint on a local stack", []string{"--base-url", "http://x:1"}, nil, "are for --stack external (--base-url and --postgres-url also for compose)"},
		{"unknown kind", []string{"--stack", "k8s"}, nil, `--stack "k8s": want local, compose or external`},
	}
	for _, c := range refused {
		if _, err := newTarget(parseRunFlags(t, c.args...), c.bugs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	target, err := newTarget(parseRunFlags(t, "--stack", "compose", "--compose-project", "ci", "--postgres-url", "postgres://p"), nil)
	if compose, ok := target.(*runner.ComposeProject); err != nil || !ok || compose.File != "docker-compose.yml" || compose.Project != "ci" || compose.PostgresURL != "postgres://p" {
		t.Errorf("compose: %#v, %v", target, err)
	}
	target, err = newTarget(parseRunFlags(t, "--stack", "external", "--base-url", "http://a:1", "--ledger-export", "export",
		"--export-command", "make export", "--quiet-period", "3s"), nil)
	external, ok := target.(*runner.ExternalSystem)
	if err != nil || !ok || external.BaseURLs != "http://a:1" || external.LedgerExport != "export" || external.ExportCommand != "make export" ||
		external.QuietPeriod != 3*time.Second || external.DrainTimeout != time.Minute {
		t.Errorf("external: %#v, %v", target, err)
	}
	target, err = newTarget(parseRunFlags(t, "--stack-dir", "somewhere", "--gateways", "3", "--gateway-arg", "--x=1"), nil)
	local, ok := target.(*runner.LocalStack)
	if err != nil || !ok || local.Config.Dir != "somewhere" || local.Config.Gateways != 3 ||
		!slices.Equal(local.Config.GatewayArgs, append(append([]string{}, runKDFArgs...), "--x=1")) {
		t.Errorf("local: %#v, %v", target, err)
	}
}
