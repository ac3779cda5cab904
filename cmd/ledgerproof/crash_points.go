package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
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

// activate checks the flags, and under --enable-crash-points builds the
// process's registry, arms the points given, installs it (crash.Hit consults
// it from then on) and returns it; without the switch it returns nil and the
// points cost one atomic load each.
func (c *crashPointFlags) activate(process ledger.Process, logger *slog.Logger) (*crash.Registry, error) {
	if !c.enabled {
		if len(c.armings) > 0 {
			return nil, fmt.Errorf("--crash-point %s is refused without --enable-crash-points (or %s=true): an armed crash point makes the process exit on purpose",
				strings.Join(c.armings, " --crash-point "), envName("enable-crash-points"))
		}
		return nil, nil
	}
	var armings []crash.Arming
	for _, text := range c.armings {
		arming, err := crash.ParseArming(text, process)
		if err != nil {
			return nil, fmt.Errorf("--crash-point: %w", err)
		}
		if arming.Point.Process() != process {
			return nil, fmt.Errorf("--crash-point %s: the point lives in the %s, and this process is a %s", text, arming.Point.Process(), process)
		}
		armings = append(armings, arming)
	}
	registry, err := crash.NewRegistry(crash.Options{Process: process, Seed: c.seed, Logger: logger})
	if err != nil {
		return nil, err
	}
	logger.Warn("CRASH POINTS ENABLED: an armed point makes this process exit on purpose", "endpoint", crash.AdminPath,
		"crash_point_seed", registry.Seed(), "exit_status", crash.ExitStatus)
	for _, arming := range armings {
		if _, err := registry.Arm(arming); err != nil {
			return nil, fmt.Errorf("--crash-point: %w", err)
		}
	}
	crash.Install(registry)
	return registry, nil
}

// withCrashPoints serves the registry's endpoint in front of handler; with
// no registry (crash points disabled) it returns handler unchanged, so the
// endpoint is a 404 like any unknown route.
func withCrashPoints(handler http.Handler, registry *crash.Registry) http.Handler {
	if registry == nil {
		return handler
	}
	mux := http.NewServeMux()
	mux.Handle(crash.AdminPath, registry.Handler())
	mux.Handle("/", handler)
	return mux
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
