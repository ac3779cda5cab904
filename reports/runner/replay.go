package runner

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/reports"
)

// Replay files: the scenario and plan as the run read them, kept in its
// run directory.
const (
	replayScenarioFile = "scenario.yaml"
	replayPlanFile     = "plan.yaml"
	replayProfileFile  = "profile.yaml"
)

// ReadReplay reads the run.json of the run directory dir for a replay: it
// must have a replay section.
func ReadReplay(dir string) (*RunFile, error) {
	record, err := ReadRunFile(dir)
	if err != nil {
		return nil, fmt.Errorf("--replay %s: %w (want a run directory with its run.json)", dir, err)
	}
	if record.Replay == nil {
		return nil, fmt.Errorf("--replay %s: its run.json has no replay section (an older ledgerproof wrote it): run it again with its flags and --seed %d", dir, record.Seed)
	}
	return record, nil
}

// Replay makes o, the options of record's recorded flags, the replay of
// the run in dir (read by ReadReplay): its withheld flags, the run
// directory's copies of the scenario, plan and profile, its plan seed, and
// out as the run directory ("": reports/runs/<UTC timestamp>-replay-<id>).
func (o *JobOptions) Replay(dir string, record *RunFile, out string) {
	o.WithheldArgs = append(o.WithheldArgs, record.Replay.Withheld...)
	if record.Replay.ScenarioFile != "" {
		o.Scenario = filepath.Join(dir, record.Replay.ScenarioFile)
	}
	if record.Replay.PlanFile != "" {
		o.Plan = filepath.Join(dir, record.Replay.PlanFile)
	}
	if record.Replay.ProfileFile != "" {
		o.Profile = filepath.Join(dir, record.Replay.ProfileFile)
	}
	o.PlanSeed = record.PlanSeed
	o.Out = out
	if o.Out == "" {
		o.Out = filepath.Join("reports", "runs", time.Now().UTC().Format("20060102T150405Z")+"-replay-"+record.ID)
	}
}

// HoldsPassword reports whether value looks like it holds a password: a
// URL with one (in its user part or its query), or a password= or
// PGPASSWORD setting, anywhere in it (a --gateway-arg=--x=postgres://u:p@h,
// a key=value connection string).
func HoldsPassword(value string) bool {
	lower := strings.ToLower(value)
	if strings.Contains(lower, "password=") || strings.Contains(lower, "pgpassword") {
		return true
	}
	for _, word := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '=' }) {
		if parsed, err := url.Parse(word); err == nil && parsed.User != nil {
			if _, set := parsed.User.Password(); set {
				return true
			}
		}
	}
	return false
}

// keepReplayFiles copies the scenario, the plan and the profile into the run directory and
// names them in the run's replay section.
func (p *preparedRun) keepReplayFiles() error {
	o := p.options
	copyInto := func(from, name string) error {
		if err := copyFile(from, filepath.Join(o.Out, name)); err != nil {
			return fmt.Errorf("keeping %s for replays: %w", from, err)
		}
		return nil
	}
	if p.record.Replay == nil {
		return errors.New("the run has no replay section (a bug)")
	}
	if err := copyInto(o.Scenario, replayScenarioFile); err != nil {
		return err
	}
	p.record.Replay.ScenarioFile = replayScenarioFile
	if o.Plan != "" {
		if err := copyInto(o.Plan, replayPlanFile); err != nil {
			return err
		}
		p.record.Replay.PlanFile = replayPlanFile
	}
	if o.Profile != "" {
		// A profile holds no secret (the ledger query file may: it stays
		// where it is, named by its flag).
		if err := copyInto(o.Profile, replayProfileFile); err != nil {
			return err
		}
		p.record.Replay.ProfileFile = replayProfileFile
	}
	return nil
}

// shellJoin quotes each word for a shell and joins them with spaces.
func shellJoin(words []string) string {
	quoted := make([]string, len(words))
	for i, word := range words {
		quoted[i] = reports.ShellQuote(word)
	}
	return strings.Join(quoted, " ")
}

// copyFile copies a file, making the directory it goes to.
func copyFile(from, to string) error {
	content, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, content, 0o644)
}
