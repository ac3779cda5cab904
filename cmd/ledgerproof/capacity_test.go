package main

import (
	"strings"
	"testing"
)

// TestCapacityRefusesAStepTheScenarioRefuses: a step the scenario cannot run is refused before any stack starts.
func TestCapacityRefusesAStepTheScenarioRefuses(t *testing.T) {
	err := startError(t, "capacity", "--scenario", "../../scenarios/capacity.yaml", "--steps", "1000,2000000",
		"--out", t.TempDir(), "--stack-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "step 2000000") || !strings.Contains(err.Error(), "schedule.steps") {
		t.Errorf("error %v, want the step and the field refused", err)
	}
}
