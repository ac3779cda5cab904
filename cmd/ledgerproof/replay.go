package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ledgerproof/ledgerproof/reports/runner"
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
		if mayHoldSecrets[f.Name] || runner.HoldsPassword(f.Value.String()) {
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

// replayOptions turns `ledgerproof run --replay DIR [--out OUT]` into the
// options of the run in DIR: its recorded flags and seed, its plan seed, and
// its own copies of the scenario and plan.
func replayOptions(flags *flag.FlagSet, given runFlags) (runFlags, error) {
	var others []string
	flags.Visit(func(f *flag.Flag) {
		if f.Name != "replay" && f.Name != "out" {
			others = append(others, "--"+f.Name)
		}
	})
	if len(others) > 0 {
		sort.Strings(others)
		return runFlags{}, fmt.Errorf("--replay takes every setting from the run it replays; only --out may be given with it (got %s)", strings.Join(others, ", "))
	}
	dir := given.replay
	record, err := runner.ReadReplay(dir)
	if err != nil {
		return runFlags{}, err
	}
	var o runFlags
	replayFlags := newRunFlags(&o)
	replayFlags.SetOutput(io.Discard)
	// The recorded flags, then LEDGERPROOF_* for the others: the withheld
	// ones (a URL with a password) come from there.
	if err := parseFlags(replayFlags, record.Replay.Args); err != nil {
		return runFlags{}, fmt.Errorf("--replay %s: its recorded flags %q: %w", dir, record.Replay.Args, err)
	}
	o.replay = "" // from LEDGERPROOF_REPLAY, not from the record (which never holds it)
	for _, name := range record.Replay.Withheld {
		if os.Getenv(envName(strings.TrimPrefix(name, "--"))) == "" {
			return runFlags{}, fmt.Errorf("--replay %s: the run's %s held a password and was not recorded: set %s for the replay",
				dir, name, envName(strings.TrimPrefix(name, "--")))
		}
	}
	o.job.GivenArgs, o.job.WithheldArgs = givenArguments(replayFlags)
	o.job.Replay(dir, record, given.job.Out)
	return o, nil
}
