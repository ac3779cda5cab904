package runner

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgerproof/ledgerproof/reports"
)

// Replay files: the scenario and plan as the run read them, kept in its
// run directory.
const (
	replayScenarioFile = "scenario.yaml"
	replayPlanFile     = "plan.yaml"
	replayProfileFile  = "profile.yaml"
)

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
