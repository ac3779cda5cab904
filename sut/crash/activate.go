package crash

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Settings are the crash points an operator asks a process to start with
// (the --enable-crash-points, --crash-point and --crash-point-seed flags of
// gateway and worker; docs/crash-points.md).
type Settings struct {
	// Enabled allows crash points: the armings below, and the endpoint
	// AdminPath that arms them at run time. Default false: no registry, and
	// each point costs one atomic load.
	Enabled bool
	// Armings are the points to arm at start, each NAME[:COUNT|@PROBABILITY]
	// (ParseArming). Refused unless Enabled. Default none.
	Armings []string
	// Seed seeds the probability draws. Default 0: drawn at start and
	// logged.
	Seed uint64
}

// errNotEnabled refuses armings without the switch; the command line
// says the same with the names of its flags before Activate is called.
var errNotEnabled = errors.New("crash points are armed but not enabled: an armed crash point makes the process exit on purpose")

// Activate checks settings and, when they enable crash points, builds the
// process's registry, arms the points given, installs it (Hit consults it
// from then on) and returns it; without the switch it returns nil and the
// points cost one atomic load each.
func Activate(settings Settings, process ledger.Process, logger *slog.Logger) (*Registry, error) {
	if !settings.Enabled {
		if len(settings.Armings) > 0 {
			return nil, errNotEnabled
		}
		return nil, nil
	}
	var armings []Arming
	for _, text := range settings.Armings {
		arming, err := ParseArming(text, process)
		if err != nil {
			return nil, fmt.Errorf("--crash-point: %w", err)
		}
		if arming.Point.Process() != process {
			return nil, fmt.Errorf("--crash-point %s: the point lives in the %s, and this process is a %s", text, arming.Point.Process(), process)
		}
		armings = append(armings, arming)
	}
	registry, err := NewRegistry(Options{Process: process, Seed: settings.Seed, Logger: logger})
	if err != nil {
		return nil, err
	}
	logger.Warn("CRASH POINTS ENABLED: an armed point makes this process exit on purpose", "endpoint", AdminPath,
		"crash_point_seed", registry.Seed(), "exit_status", ExitStatus)
	for _, arming := range armings {
		if _, err := registry.Arm(arming); err != nil {
			return nil, fmt.Errorf("--crash-point: %w", err)
		}
	}
	Install(registry)
	return registry, nil
}

// WithAdmin serves the registry's endpoint in front of handler; with no
// registry (crash points disabled) it returns handler unchanged, so the
// endpoint is a 404 like any unknown route.
func WithAdmin(handler http.Handler, registry *Registry) http.Handler {
	if registry == nil {
		return handler
	}
	mux := http.NewServeMux()
	mux.Handle(AdminPath, registry.Handler())
	mux.Handle("/", handler)
	return mux
}
