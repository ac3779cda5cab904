package runner

import (
	"slices"
	"strings"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// crashPointsSwitch is the gateway's and the worker's flag that allows crash points (docs/crash-points.md).
const crashPointsSwitch = "--enable-crash-points"

// enableCrashPointsForPlan gives a stack the run is about to start the crash points its plan arms: when the
// timeline has a crash-point step, every gateway and worker gets the switch (unless its arguments have it),
// and the inventory the plan is checked against lists the points. The switch only opens the loopback endpoint
// the plan arms through; nothing is armed until a step arms it. A stack the run attaches to is left as it was
// started.
func enableCrashPointsForPlan(timeline []chaos.Step, config *stack.Config, inventory *chaos.Inventory) {
	if !slices.ContainsFunc(timeline, func(step chaos.Step) bool { return step.Action == chaos.ActionCrashPoint }) {
		return
	}
	for _, arguments := range []*[]string{&config.GatewayArgs, &config.WorkerArgs} {
		if !slices.ContainsFunc(*arguments, func(argument string) bool { return strings.HasPrefix(argument, crashPointsSwitch) }) {
			*arguments = append(*arguments, crashPointsSwitch)
		}
	}
	inventory.CrashPoints = (&crash.Armer{}).CrashPoints()
}
