package stack_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// TestPlanGivesOneDailyDebitLimitToGatewaysAndWorkers: every gateway and
// worker gets the stack's daily debit limit (the default one unless told),
// none without a limit; a negative limit is refused.
func TestPlanGivesOneDailyDebitLimitToGatewaysAndWorkers(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name  string
		limit int64
		want  string
	}{
		{"default", ledger.DefaultDailyDebitLimitMinor, "--daily-debit-limit 100000"},
		{"other", 250, "--daily-debit-limit 250"},
		{"none", 0, ""},
	} {
		t.Run(test.name, func(t *testing.T) {
			config := stack.DefaultConfig()
			config.Binary = "/bin/ledgerproof"
			config.DailyDebitLimitMinor = test.limit
			file := &stack.File{}
			seen := 0
			for _, component := range stack.PlanWithFileForTest(config, t.TempDir(), file) {
				if component.Kind != stack.KindGateway && component.Kind != stack.KindWorker {
					continue
				}
				seen++
				argv := strings.Join(component.Argv, " ")
				if has := strings.Contains(argv, "--daily-debit-limit"); test.want == "" && has || test.want != "" && !strings.Contains(argv, test.want) {
					t.Errorf("%s: argv %q, want %q", component.Name, argv, test.want)
				}
			}
			if seen != config.Gateways+config.Workers {
				t.Errorf("%d gateways and workers, want %d", seen, config.Gateways+config.Workers)
			}
		})
	}
	config := stack.DefaultConfig()
	config.Dir = t.TempDir()
	config.DailyDebitLimitMinor = -1
	if _, err := stack.Up(context.Background(), config); err == nil || !strings.Contains(err.Error(), "daily debit limit -1") {
		t.Errorf("a negative limit: %v, want it refused", err)
	}
}
