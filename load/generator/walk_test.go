package generator

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/load/client"
)

func TestRunWalkChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(*fakeSystem)
		// failing says which checks must fail (none: every check holds).
		failing  func(check string) bool
		exitCode int
	}{
		{name: "a correct system passes every check", configure: func(*fakeSystem) {},
			failing: func(string) bool { return false }, exitCode: ExitPassed},
		// Every balance read is 1 too high: each absolute balance check fails; the counterparty's credit, read
		// as a difference of two balances, still holds.
		{name: "a wrong balance fails the balance checks", configure: func(f *fakeSystem) { f.balanceOffset = 1 },
			failing: func(check string) bool { return strings.Contains(check, ": balance is ") }, exitCode: ExitThresholdsFailed},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			_, server := newFakeSystem(t, test.configure)
			s := parseScenario(t, `
name: walk
setup: {accounts: 2, funding: 100000, concurrency: 2, timeout: 20s}
schedule: {executor: closed, vus: 2, iterations: 2, max_duration: 1m}
workload: {kind: walk}
thresholds:
  checks: ["rate==1"]
  errors: ["rate==0"]
`)
			result, _ := runLoad(t, context.Background(), server, s, nil)
			if result.ExitCode != test.exitCode {
				t.Errorf("exit %d (%s), want %d", result.ExitCode, result.Problem, test.exitCode)
			}
			checks := readSummary(t, result.SummaryPath).Checks
			if len(checks) < 20 {
				t.Fatalf("%d checks counted, want the walk's every check: %v", len(checks), checks)
			}
			names := make([]string, 0, len(checks))
			for name := range checks {
				names = append(names, name)
			}
			sort.Strings(names)
			failed := 0
			for _, name := range names {
				counts := checks[name]
				// 4 iterations; the concurrent deposits' checks run twice per iteration.
				if counts.Passes+counts.Fails < 4 {
					t.Errorf("check %q ran %d times, want at least once per iteration (4)", name, counts.Passes+counts.Fails)
				}
				if test.failing(name) {
					failed++
					if counts.Passes != 0 {
						t.Errorf("check %q passed %d times against this system, want it to fail", name, counts.Passes)
					}
				} else if counts.Fails != 0 {
					t.Errorf("check %q failed %d times, want it to hold", name, counts.Fails)
				}
			}
			if expectFailures := test.exitCode != ExitPassed; expectFailures && failed == 0 {
				t.Errorf("no check was expected to fail among %v: the case checks nothing", names)
			}

			// The walk's money operations are journaled as the load's, by the loop that ran them.
			_, load := splitJournal(t, readJournal(t, result.JournalPath))
			kinds := map[string]int{}
			for _, entry := range load {
				kinds[entry.Kind]++
				if entry.VU < 1 || entry.VU > 2 || entry.Iter > 3 {
					t.Errorf("walk operation %+v: want VU 1 or 2 and iterations 0 to 3", entry)
				}
			}
			// Per iteration: a sign-up; deposit, replay, 2 concurrent deposits; withdrawal, overdraft; transfer.
			if kinds[client.KindSignup] != 4 || kinds[client.KindDeposit] != 16 || kinds[client.KindWithdrawal] != 8 || kinds[client.KindTransfer] != 4 {
				t.Errorf("walk journaled %v, want per iteration 1 sign-up, 4 deposits, 2 withdrawals, 1 transfer", kinds)
			}
		})
	}
}

// The walk is a workload like the mixed one: the open executors run it too (scenario files allow it).
func TestRunWalkOnAnArrivalRate(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	s := parseScenario(t, `
name: walk-open
setup: {accounts: 2, funding: 100000, concurrency: 2, timeout: 20s}
schedule: {executor: constant-arrival-rate, rate: 4, duration: 1s, graceful_stop: 5s}
workload: {kind: walk}
thresholds:
  checks: ["rate==1"]
`)
	result, _ := runLoad(t, context.Background(), server, s, nil)
	if result.ExitCode != ExitPassed {
		t.Errorf("exit %d (%s), want %d", result.ExitCode, result.Problem, ExitPassed)
	}
	summary := readSummary(t, result.SummaryPath)
	if started := figure(summary, "iterations", "count"); started != 4 || len(summary.Checks) == 0 {
		t.Errorf("%v iterations started, %d checks; want 4 walks, checked", started, len(summary.Checks))
	}
}
