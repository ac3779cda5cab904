package stack_test

import (
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// TestPlanPassesBrokerArgsToTheBrokerOnly: Config.BrokerArgs end the
// broker's command line (after --sync, so they may override nothing the
// stack needs) and reach no other component; without them the broker's
// command line is as before.
func TestPlanPassesBrokerArgsToTheBrokerOnly(t *testing.T) {
	t.Parallel()
	config := stack.DefaultConfig()
	config.Binary = "/bin/ledgerproof"
	config.BrokerSync = true
	config.BrokerArgs = []string{"--retention", "1m0s"}
	brokers := 0
	for _, component := range stack.PlanForTest(config, t.TempDir()) {
		argv := strings.Join(component.Argv, " ")
		if component.Kind == stack.KindBroker {
			brokers++
			if !strings.HasSuffix(argv, "--sync --retention 1m0s") {
				t.Errorf("broker: argv %q, want it to end with --sync --retention 1m0s", argv)
			}
		} else if strings.Contains(argv, "--retention") {
			t.Errorf("%s: argv %q carries the broker's arguments", component.Name, argv)
		}
	}
	if brokers != 1 {
		t.Fatalf("%d brokers planned, want 1", brokers)
	}
	config.BrokerArgs = nil
	for _, component := range stack.PlanForTest(config, t.TempDir()) {
		if component.Kind == stack.KindBroker && !strings.HasSuffix(strings.Join(component.Argv, " "), "--sync") {
			t.Errorf("broker without BrokerArgs: argv %q", component.Argv)
		}
	}
}
