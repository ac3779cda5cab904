package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/reports"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// Replay files: the scenario and plan as the run read them, kept in its
// run directory.
const (
	replayScenarioFile = "scenario.yaml"
	replayPlanFile     = "plan.yaml"
	replayProfileFile  = "profile.yaml"
)

// givenArguments returns the flags set on flags' command line as
// --name=value, one per value of a repeatable flag, in name order, without
// those a replay sets itself (--out, --seed, --replay). A flag whose value is
// a URL with a password is withheld (its name is returned apart): run.json is
// an artifact, and the replay takes it from LEDGERPROOF_<FLAG> instead.
// Flags set through LEDGERPROOF_* variables are not on the command line and
// are not recorded either.
func givenArguments(flags *flag.FlagSet) (arguments, withheld []string) {
	flags.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "out", "seed", "replay":
			return
		}
		if mayHoldSecrets[f.Name] || holdsPassword(f.Value.String()) {
			withheld = append(withheld, "--"+f.Name)
			return
		}
		switch value := f.Value.(type) {
		case *stackArgumentList:
			for _, element := range *value {
				arguments = append(arguments, "--"+f.Name+"="+element)
			}
		case *bugNameList:
			for _, element := range *value {
				arguments = append(arguments, "--"+f.Name+"="+element)
			}
		default:
			arguments = append(arguments, "--"+f.Name+"="+f.Value.String())
		}
	})
	return arguments, withheld
}

// mayHoldSecrets are the flags whose values are commands: whatever they
// hold (a PGPASSWORD=..., a connection string), they are never recorded.
var mayHoldSecrets = map[string]bool{"export-command": true}

// holdsPassword reports whether value looks like it holds a password: a
// URL with one (in its user part or its query), or a password= or
// PGPASSWORD setting, anywhere in it (a --gateway-arg=--x=postgres://u:p@h,
// a key=value connection string).
func holdsPassword(value string) bool {
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

// replayOptions turns `ledgerproof run --replay DIR [--out OUT]` into the
// options of the run in DIR: its recorded flags and seed, its plan seed, and
// its own copies of the scenario and plan.
func replayOptions(flags *flag.FlagSet, given runOptions) (runOptions, error) {
	var others []string
	flags.Visit(func(f *flag.Flag) {
		if f.Name != "replay" && f.Name != "out" {
			others = append(others, "--"+f.Name)
		}
	})
	if len(others) > 0 {
		sort.Strings(others)
		return runOptions{}, fmt.Errorf("--replay takes every setting from the run it replays; only --out may be given with it (got %s)", strings.Join(others, ", "))
	}
	dir := given.replay
	record, err := runner.ReadRunFile(dir)
	if err != nil {
		return runOptions{}, fmt.Errorf("--replay %s: %w (want a run directory with its run.json)", dir, err)
	}
	if record.Replay == nil {
		return runOptions{}, fmt.Errorf("--replay %s: its run.json has no replay section (an older ledgerproof wrote it): run it again with its flags and --seed %d", dir, record.Seed)
	}
	var o runOptions
	replayFlags := newRunFlags(&o)
	replayFlags.SetOutput(io.Discard)
	// The recorded flags, then LEDGERPROOF_* for the others: the withheld
	// ones (a URL with a password) come from there.
	if err := parseFlags(replayFlags, record.Replay.Args); err != nil {
		return runOptions{}, fmt.Errorf("--replay %s: its recorded flags %q: %w", dir, record.Replay.Args, err)
	}
	o.replay = "" // from LEDGERPROOF_REPLAY, not from the record (which never holds it)
	for _, name := range record.Replay.Withheld {
		if os.Getenv(envName(strings.TrimPrefix(name, "--"))) == "" {
			return runOptions{}, fmt.Errorf("--replay %s: the run's %s held a password and was not recorded: set %s for the replay",
				dir, name, envName(strings.TrimPrefix(name, "--")))
		}
	}
	o.givenArgs, o.withheldArgs = givenArguments(replayFlags)
	o.withheldArgs = append(o.withheldArgs, record.Replay.Withheld...)
	if record.Replay.ScenarioFile != "" {
		o.scenario = filepath.Join(dir, record.Replay.ScenarioFile)
	}
	if record.Replay.PlanFile != "" {
		o.plan = filepath.Join(dir, record.Replay.PlanFile)
	}
	if record.Replay.ProfileFile != "" {
		o.profile = filepath.Join(dir, record.Replay.ProfileFile)
	}
	o.planSeed = record.PlanSeed
	o.out = given.out
	if o.out == "" {
		o.out = filepath.Join("reports", "runs", time.Now().UTC().Format("20060102T150405Z")+"-replay-"+record.ID)
	}
	return o, nil
}

// keepReplayFiles copies the scenario, the plan and the profile into the run directory and
// names them in the run's replay section.
func (p *preparedRun) keepReplayFiles() error {
	o := p.options
	copyInto := func(from, name string) error {
		if err := copyFile(from, filepath.Join(o.out, name)); err != nil {
			return fmt.Errorf("keeping %s for replays: %w", from, err)
		}
		return nil
	}
	if p.record.Replay == nil {
		return errors.New("the run has no replay section (a bug)")
	}
	if err := copyInto(o.scenario, replayScenarioFile); err != nil {
		return err
	}
	p.record.Replay.ScenarioFile = replayScenarioFile
	if o.plan != "" {
		if err := copyInto(o.plan, replayPlanFile); err != nil {
			return err
		}
		p.record.Replay.PlanFile = replayPlanFile
	}
	if o.profile != "" {
		// A profile holds no secret (the ledger query file may: it stays
		// where it is, named by its flag).
		if err := copyInto(o.profile, replayProfileFile); err != nil {
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
