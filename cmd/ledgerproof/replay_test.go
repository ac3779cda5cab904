package main

import (
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// A run records its command-line flags (one per value of a repeatable flag)
// without --out and --seed, and never a password: a URL holding one is
// withheld, and its replay takes it from the environment.
func TestReplayRecordsFlagsWithoutPasswords(t *testing.T) {
	var o runFlags
	flags := newRunFlags(&o)
	args := []string{"--stack", "external", "--base-url", "http://ledger@127.0.0.1:1", "--postgres-url", "postgres://ledger:s3cret@127.0.0.1:5432/ledger",
		"--export-command", "PGPASSWORD=s3cret pg_dump ledger", "--worker-arg=--postgres-url=postgres://ledger:s3cret@h/db",
		"--redis-addr", "127.0.0.1:6379?password=s3cret",
		"--set", "schedule.rate=5", "--set", "thresholds.errors=rate<0.1", "--seeded-bug", "no-idempotency", "--out", "/tmp/x", "--seed", "9"}
	if err := flags.Parse(args); err != nil {
		t.Fatal(err)
	}
	recorded, withheld := givenArguments(flags)
	want := []string{"--base-url=http://ledger@127.0.0.1:1", "--seeded-bug=no-idempotency", "--set=schedule.rate=5", "--set=thresholds.errors=rate<0.1", "--stack=external"}
	wantWithheld := []string{"--export-command", "--postgres-url", "--redis-addr", "--worker-arg"}
	if !slices.Equal(recorded, want) || !slices.Equal(withheld, wantWithheld) {
		t.Errorf("recorded %q, withheld %q; want %q and %q", recorded, withheld, want, wantWithheld)
	}
	if strings.Contains(strings.Join(recorded, " "), "s3cret") {
		t.Error("the password was recorded")
	}
}

// --replay DIR takes the recorded flags, the run directory's copies of the
// scenario and plan, the recorded plan seed, and a withheld flag from
// LEDGERPROOF_<FLAG> (refused, saying which, when it is not set); no other
// flag than --out may come with it.
func TestReplayOptions(t *testing.T) {
	dir := t.TempDir()
	record := &runner.RunFile{ID: "run-1", Seed: 77, PlanSeed: 1234, Replay: &runner.Replay{
		Args:     []string{"--stack=external", "--base-url=http://127.0.0.1:1", "--set=schedule.rate=5", "--seed=77", "--profile=/elsewhere/p.yaml"},
		Withheld: []string{"--postgres-url"}, ScenarioFile: "scenario.yaml", PlanFile: "plan.yaml", ProfileFile: "profile.yaml"}}
	if err := record.Write(dir); err != nil {
		t.Fatal(err)
	}
	outer := func(args ...string) (*flag.FlagSet, runFlags) {
		var o runFlags
		flags := newRunFlags(&o)
		if err := flags.Parse(args); err != nil {
			t.Fatal(err)
		}
		return flags, o
	}
	flags, given := outer("--replay", dir, "--out", "/tmp/replayed")
	t.Setenv("LEDGERPROOF_POSTGRES_URL", "")
	if _, err := replayOptions(flags, given); err == nil || !strings.Contains(err.Error(), "set LEDGERPROOF_POSTGRES_URL") {
		t.Errorf("withheld flag without its variable: %v, want an error naming LEDGERPROOF_POSTGRES_URL", err)
	}
	t.Setenv("LEDGERPROOF_POSTGRES_URL", "postgres://ledger:s3cret@127.0.0.1:5432/ledger")
	o, err := replayOptions(flags, given)
	if err != nil {
		t.Fatal(err)
	}
	job := o.job
	if job.Stack != "external" || job.Seed != "77" || job.PlanSeed != 1234 || job.PostgresURL != "postgres://ledger:s3cret@127.0.0.1:5432/ledger" ||
		job.Scenario != filepath.Join(dir, "scenario.yaml") || job.Plan != filepath.Join(dir, "plan.yaml") || job.Out != "/tmp/replayed" ||
		job.Profile != filepath.Join(dir, "profile.yaml") ||
		!slices.Equal(job.Sets, []string{"schedule.rate=5"}) || !slices.Equal(job.WithheldArgs, []string{"--postgres-url"}) {
		t.Errorf("replay options %+v", job)
	}
	flags, given = outer("--replay", dir, "--rate", "9")
	if _, err := replayOptions(flags, given); err == nil || !strings.Contains(err.Error(), "only --out may be given with it (got --rate)") {
		t.Errorf("--replay with --rate: %v", err)
	}
}
