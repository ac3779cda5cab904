package runner

import (
	"slices"
	"testing"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

func TestEnableCrashPointsForPlan(t *testing.T) {
	kill := chaos.Step{Action: chaos.ActionKill, Target: "worker-0"}
	arm := chaos.Step{Action: chaos.ActionCrashPoint, Target: "worker-0", Params: chaos.Params{Point: "worker.mid-batch"}}

	config := stack.Config{GatewayArgs: []string{"--kdf-iterations=1"}}
	var inventory chaos.Inventory
	enableCrashPointsForPlan([]chaos.Step{kill}, &config, &inventory)
	if len(config.WorkerArgs) != 0 || len(config.GatewayArgs) != 1 || len(inventory.CrashPoints) != 0 {
		t.Errorf("a plan without crash points changed the stack: %v %v %v", config.GatewayArgs, config.WorkerArgs, inventory.CrashPoints)
	}

	enableCrashPointsForPlan([]chaos.Step{kill, arm}, &config, &inventory)
	enableCrashPointsForPlan([]chaos.Step{arm}, &config, &inventory)
	if !slices.Equal(config.GatewayArgs, []string{"--kdf-iterations=1", "--enable-crash-points"}) ||
		!slices.Equal(config.WorkerArgs, []string{"--enable-crash-points"}) {
		t.Errorf("gateway args %v, worker args %v: want the switch once each", config.GatewayArgs, config.WorkerArgs)
	}
	if !slices.Contains(inventory.CrashPoints, "worker.mid-batch") || !slices.Equal(inventory.CrashPoints, (&crash.Armer{}).CrashPoints()) {
		t.Errorf("inventory crash points %v, want every point by its full name", inventory.CrashPoints)
	}
	timeline := []chaos.Step{arm}
	if err := chaos.ValidateTargets("ci", timeline, chaos.Inventory{Processes: []string{"worker-0"}, CrashPoints: inventory.CrashPoints}); err != nil {
		t.Errorf("the plan is refused against the stack the run starts: %v", err)
	}
}
