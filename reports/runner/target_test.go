package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
)

// TestExternalSystemPrepareRefusesBadConfigurations: each mistake in how an
// external system is described is found by Prepare, before any endpoint is
// asked anything.
func TestExternalSystemPrepareRefusesBadConfigurations(t *testing.T) {
	dir := t.TempDir()
	badProfile := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(badProfile, []byte("name: half\namounts: {format: minor}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:1"
	cases := []struct {
		name   string
		system ExternalSystem
		want   string
	}{
		{"no base URL", ExternalSystem{PostgresURL: "postgres://x"}, "needs --base-url"},
		{"export without its command", ExternalSystem{BaseURLs: base, LedgerExport: dir}, "--export-command writes the --ledger-export directory after the load"},
		{"command without its export", ExternalSystem{BaseURLs: base, ExportCommand: "true"}, "--export-command writes the --ledger-export directory after the load"},
		{"no audit source", ExternalSystem{BaseURLs: base}, "one audit source"},
		{"two audit sources", ExternalSystem{BaseURLs: base, PostgresURL: "postgres://x", LedgerExport: dir, ExportCommand: "true"}, "one audit source"},
		{"missing SQL ledger file", ExternalSystem{BaseURLs: base, LedgerSQL: filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"invalid profile", ExternalSystem{BaseURLs: base, PostgresURL: "postgres://x", Profile: badProfile}, "idempotency_header: missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.system.Prepare(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Prepare: %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// TestExternalSystemTakesCommandSteps: a plan against an external system is
// made of command steps; any other is refused before the run, naming the
// system.
func TestExternalSystemTakesCommandSteps(t *testing.T) {
	system := &ExternalSystem{BaseURLs: "http://127.0.0.1:1", PostgresURL: "postgres://x"}
	inventory, err := system.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !inventory.CommandsOnly {
		t.Errorf("inventory %+v, want commands only", inventory)
	}
	command := chaos.Step{Source: "steps[0]", At: time.Second, Action: chaos.ActionCommand, Target: "ledger-worker",
		Params: chaos.Params{Run: "true"}}
	if err := system.CheckPlan("ok", []chaos.Step{command}); err != nil {
		t.Errorf("a command step is refused: %v", err)
	}
	kill := chaos.Step{Source: "steps[1]", At: 2 * time.Second, Action: chaos.ActionKill, Target: "broker"}
	err = system.CheckPlan("hurt", []chaos.Step{command, kill})
	if err == nil || !strings.Contains(err.Error(), "an external system takes command steps") ||
		!strings.Contains(err.Error(), "against external system http://127.0.0.1:1") {
		t.Errorf("a kill step: %v, want refused against external system http://127.0.0.1:1 as taking command steps", err)
	}
	if system.Executor().Describe() != "external system http://127.0.0.1:1" {
		t.Errorf("executor %q", system.Executor().Describe())
	}
}

// TestExternalSystemDescribesItself: what a run records, scrapes and audits
// of an external system comes from its flags, with nothing to recover.
func TestExternalSystemDescribesItself(t *testing.T) {
	system := &ExternalSystem{BaseURLs: "http://a:1, http://b:2", LedgerSQL: "ledger.yaml", RedisAddr: "r:6379", Brokers: "k:9092",
		MetricsURLs: "http://a:1/metrics,http://w:9/metrics"}
	stack := system.Stack()
	if stack.Kind != KindExternal || !slices.Equal(stack.Gateways, []string{"http://a:1", "http://b:2"}) || stack.StartedByRun {
		t.Errorf("stack %+v", stack)
	}
	targets := system.ScrapeTargets()
	if len(targets) != 2 || targets[0] != (ScrapeTarget{Name: "target-0", URL: "http://a:1/metrics"}) || targets[1].Name != "target-1" {
		t.Errorf("scrape targets %+v", targets)
	}
	if system.Recovery() != nil {
		t.Error("an external system has a recovery hook")
	}
	if version := system.PostgresVersion(context.Background()); version != "" {
		t.Errorf("Postgres version %q without a Postgres URL", version)
	}
	stop, err := system.Start(context.Background(), t.TempDir(), nil)
	if err != nil || stop == nil {
		t.Fatalf("Start: %v (stop %v)", err, stop != nil)
	}
	stop()
	source, err := system.Ledger(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if source != (LedgerSource{LedgerSQL: "ledger.yaml", RedisAddr: "r:6379", Brokers: "k:9092"}) {
		t.Errorf("ledger source %+v", source)
	}
}

// TestExternalSystemLedgerRunsTheExportCommand: an export ledger is written
// by its command before the audit; a command that fails leaves nothing to
// audit.
func TestExternalSystemLedgerRunsTheExportCommand(t *testing.T) {
	var output strings.Builder
	system := &ExternalSystem{BaseURLs: "http://a:1", LedgerExport: t.TempDir(), ExportCommand: "exit 3",
		QuietPeriod: 10 * time.Millisecond, DrainTimeout: time.Second}
	system.ExportCommand = "echo PGPASSWORD=s3cret >/dev/null; exit 3"
	_, err := system.Ledger(context.Background(), &output)
	if err == nil || !strings.Contains(err.Error(), "--export-command") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Ledger: %v, want the failed export command and its status", err)
	}
	// The command's text may hold a password: neither said nor kept.
	if !strings.Contains(output.String(), "ledger export: running --export-command") || strings.Contains(output.String()+err.Error(), "s3cret") {
		t.Errorf("output %q, error %v: want the export announced without the command's text", output.String(), err)
	}
}

// TestComposeProject: a missing compose file is a configuration error; the
// endpoints default to docker-compose.yml's published ones.
func TestComposeProject(t *testing.T) {
	project := &ComposeProject{File: filepath.Join(t.TempDir(), "docker-compose.yml"), Project: "ci"}
	if _, err := project.Prepare(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "--compose-file: ") {
		t.Errorf("Prepare: %v, want --compose-file: and why", err)
	}
	if want := "docker compose " + project.File + " (project ci)"; project.Describe() != want {
		t.Errorf("Describe %q, want %q", project.Describe(), want)
	}
	stack := project.Stack()
	if stack.Kind != KindCompose || stack.File != project.File || !slices.Equal(stack.Gateways, []string{ComposeBaseURL}) {
		t.Errorf("stack %+v", stack)
	}
	source, err := project.Ledger(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if source != (LedgerSource{PostgresURL: ComposePostgresURL, RedisAddr: ComposeRedisAddr, Brokers: ComposeBrokers, DailyDebitLimit: ComposeDailyDebitLimit}) {
		t.Errorf("ledger source %+v", source)
	}
	project.BaseURLs, project.PostgresURL = "http://lb:80", "postgres://other"
	if gateways := project.Stack().Gateways; !slices.Equal(gateways, []string{"http://lb:80"}) {
		t.Errorf("gateways %v, want --base-url's", gateways)
	}
	if source, _ := project.Ledger(context.Background(), nil); source.PostgresURL != "postgres://other" || source.Brokers != ComposeBrokers {
		t.Errorf("ledger source %+v, want --postgres-url's and the default brokers", source)
	}
	if project.Recovery() == nil || len(project.ScrapeTargets()) != 4 {
		t.Error("a compose project recovers through docker compose and has its four published metrics endpoints")
	}
}
