package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// crashPointFlags are the --enable-crash-points, --crash-point and
// --crash-point-seed flags of gateway and worker (docs/crash-points.md).
type crashPointFlags struct {
	enabled bool
	armings armingList
	seed    uint64
}

func (c *crashPointFlags) register(flags *flag.FlagSet, process ledger.Process) {
	var names []string
	for _, point := range crash.Points() {
		if point.Process() == process {
			names = append(names, point.String())
		}
	}
	flags.BoolVar(&c.enabled, "enable-crash-points", false,
		fmt.Sprintf("allow crash points: --crash-point, and the endpoint %s (loopback callers only) that arms them at run time; an armed point makes the process exit with status %d on purpose (never in production)", crash.AdminPath, crash.ExitStatus))
	flags.Var(&c.armings, "crash-point", "crash point to arm at start, `NAME[:COUNT|@PROBABILITY]` (repeatable; refused without --enable-crash-points): fire on the next hit, the COUNT-th, or each hit with PROBABILITY; points: "+strings.Join(names, ", "))
	flags.Uint64Var(&c.seed, "crash-point-seed", 0, "seed of the crash points' probability draws (0: drawn at start and logged)")
}

// settings checks the flags: armings need --enable-crash-points.
func (c *crashPointFlags) settings() (crash.Settings, error) {
	if !c.enabled && len(c.armings) > 0 {
		return crash.Settings{}, fmt.Errorf("--crash-point %s is refused without --enable-crash-points (or %s=true): an armed crash point makes the process exit on purpose",
			strings.Join(c.armings, " --crash-point "), envName("enable-crash-points"))
	}
	return crash.Settings{Enabled: c.enabled, Armings: c.armings, Seed: c.seed}, nil
}

// armingList is the repeatable --crash-point flag; each value may itself be
// a comma-separated list.
type armingList []string

func (l *armingList) String() string { return strings.Join(*l, ",") }

func (l *armingList) Set(value string) error {
	for _, text := range strings.Split(value, ",") {
		if text = strings.TrimSpace(text); text != "" {
			*l = append(*l, text)
		}
	}
	return nil
}
