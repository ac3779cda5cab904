package matrix

import (
	"os"
	"slices"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
)

// TestCellTargetCarriesTheProfilesArguments: a profile's gateway and worker
// arguments (the replays profile's key TTL and two-tier dedupe) reach the
// stack of its clean run and of its bug's run alike, before the case's own.
func TestCellTargetCarriesTheProfilesArguments(t *testing.T) {
	runs, err := mutation.Plan([]string{"bloom-only-dedupe"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("%d runs, want the clean one and the bug's", len(runs))
	}
	o := Options{Scenario: gateScenario, Binary: "/opt/ledgerproof"}
	for _, run := range runs {
		t.Run(run.Label(), func(t *testing.T) {
			if len(run.Profile.GatewayArgs) == 0 || len(run.Profile.WorkerArgs) == 0 {
				t.Fatalf("profile %s has no gateway or worker arguments", run.Profile.Name)
			}
			target, err := cellTarget(o, run)
			if err != nil {
				t.Fatal(err)
			}
			if target.Config.Dir != "" {
				t.Cleanup(func() { _ = os.Remove(target.Config.Dir) })
			}
			for _, argument := range run.Profile.GatewayArgs {
				if !slices.Contains(target.Config.GatewayArgs, argument) {
					t.Errorf("gateway args %v lack the profile's %s", target.Config.GatewayArgs, argument)
				}
			}
			if !slices.Contains(target.Config.GatewayArgs, "--kdf-iterations=1") {
				t.Errorf("gateway args %v lost the cheap KDF", target.Config.GatewayArgs)
			}
			if !slices.Equal(target.Config.WorkerArgs, run.Profile.WorkerArgs) {
				t.Errorf("worker args %v, want the profile's %v", target.Config.WorkerArgs, run.Profile.WorkerArgs)
			}
		})
	}
}
