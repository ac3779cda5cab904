package runner

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReplay: a replay reads the run's run.json, refusing one without a
// replay section, and takes the run directory's copies of the files, the
// plan seed and the withheld flags; without --out its directory is named
// after the run it replays.
func TestReplay(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadReplay(dir); err == nil || !strings.Contains(err.Error(), "want a run directory with its run.json") {
		t.Errorf("no run.json: %v", err)
	}
	if err := (&RunFile{ID: "old", Seed: 5}).Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReplay(dir); err == nil || !strings.Contains(err.Error(), "no replay section") || !strings.Contains(err.Error(), "--seed 5") {
		t.Errorf("no replay section: %v", err)
	}
	record := &RunFile{ID: "run-1", Seed: 77, PlanSeed: 1234, Replay: &Replay{Args: []string{"--seed=77"}, Withheld: []string{"--postgres-url"},
		ScenarioFile: replayScenarioFile, PlanFile: replayPlanFile}}
	if err := record.Write(dir); err != nil {
		t.Fatal(err)
	}
	read, err := ReadReplay(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := JobOptions{Scenario: "scenarios/gate.yaml", Profile: "p.yaml"}
	o.Replay(dir, read, "")
	if o.Scenario != filepath.Join(dir, replayScenarioFile) || o.Plan != filepath.Join(dir, replayPlanFile) || o.Profile != "p.yaml" ||
		o.PlanSeed != 1234 || !slices.Equal(o.WithheldArgs, []string{"--postgres-url"}) ||
		!strings.HasPrefix(o.Out, filepath.Join("reports", "runs")) || !strings.HasSuffix(o.Out, "-replay-run-1") {
		t.Errorf("replay options %+v", o)
	}
	o.Replay(dir, read, "/tmp/replayed")
	if o.Out != "/tmp/replayed" {
		t.Errorf("--out %s, want /tmp/replayed", o.Out)
	}
}

// TestHoldsPassword: a value holding a password anywhere is recognised;
// a URL with only a user is not.
func TestHoldsPassword(t *testing.T) {
	for value, want := range map[string]bool{
		"postgres://ledger:s3cret@h/db":          true,
		"--x=postgres://u:p@h":                   true,
		"host=h password=s3cret":                 true,
		"PGPASSWORD=x pg_dump":                   true,
		"http://ledger@127.0.0.1:1":              false,
		"schedule.rate=5":                        false,
		"http://a:1,postgres://u:p@127.0.0.1:1/": true,
	} {
		if HoldsPassword(value) != want {
			t.Errorf("HoldsPassword(%q) = %v, want %v", value, !want, want)
		}
	}
}
