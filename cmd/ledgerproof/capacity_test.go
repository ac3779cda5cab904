package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCapacityRefusesAStepTheScenarioRefuses: a step the scenario cannot run is refused before any stack
// starts, with capacity.Run's exit code 2 (could not run), not the generic 1 (an audit failed).
func TestCapacityRefusesAStepTheScenarioRefuses(t *testing.T) {
	err := startError(t, "capacity", "--scenario", "../../scenarios/capacity.yaml", "--steps", "1000,2000000",
		"--out", t.TempDir(), "--stack-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "step 2000000") || !strings.Contains(err.Error(), "schedule.steps") {
		t.Errorf("error %v, want the step and the field refused", err)
	}
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != 2 || exit.err == nil {
		t.Errorf("error %#v, want exit 2 with the refusal to print", err)
	}
}

// TestCapacityBadStepsExitTwo: --steps that do not ascend are refused by
// the command line itself: the message printed once, exit 2, no run folder.
func TestCapacityBadStepsExitTwo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "capacity")
	code, _, stderr := runCLI(t, "capacity", "--steps", "2000,1000", "--out", out)
	if want := "ledgerproof capacity: --steps must ascend (1000 after 2000)\n"; code != 2 || stderr != want {
		t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run folder %s: %v, want none", out, err)
	}
}
