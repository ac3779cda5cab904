package mutation

import (
	"slices"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestShardedPlan: the saga bugs run only on a sharded stack, under
// shard-kills, expecting saga-atomicity; the single stack's plan has
// neither them nor shard-kills; the sharded plan runs the clean system
// under every profile, and with a selection only what it needs; a
// selection that has nothing on a stack gives no run there.
func TestShardedPlan(t *testing.T) {
	single, err := PlanFor(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range single {
		if run.Shards > 1 || run.Profile.Shards > 1 || (run.Case != nil && ledger.SagaBugs().Has(run.Case.Bug)) {
			t.Errorf("the single stack runs %s under %s on %d shards", run.Label(), run.Profile.Name, run.Shards)
		}
	}
	sharded, err := PlanFor(nil, ShardedStack)
	if err != nil {
		t.Fatal(err)
	}
	cleanProfiles := map[string]bool{}
	var sagaBugs []string
	for _, run := range sharded {
		if run.Shards != ShardedStack {
			t.Errorf("%s under %s: %d shards, want %d", run.Label(), run.Profile.Name, run.Shards, ShardedStack)
		}
		if run.Case == nil {
			cleanProfiles[run.Profile.Name] = true
			continue
		}
		if !ledger.SagaBugs().Has(run.Case.Bug) || run.Profile.Name != ProfileShardKills || !slices.Contains(run.Case.Expected, invariants.SagaAtomicity) {
			t.Errorf("sharded stack: %s under %s expecting %v", run.Case.Bug, run.Profile.Name, run.Case.Expected)
		}
		sagaBugs = append(sagaBugs, string(run.Case.Bug))
	}
	if len(sagaBugs) != len(ledger.SagaBugs()) {
		t.Errorf("sharded stack runs the bugs %v, want the saga bugs %v", sagaBugs, ledger.SagaBugs())
	}
	for _, profile := range Profiles() {
		if !cleanProfiles[profile.Name] {
			t.Errorf("no clean run under %s on the sharded stack", profile.Name)
		}
	}
	all, err := Plan(nil, false)
	if err != nil || len(all) != len(single)+len(sharded) {
		t.Fatalf("Plan: %d runs (%v), want the single stack's %d and the sharded stack's %d", len(all), err, len(single), len(sharded))
	}
	selected, err := PlanFor([]string{string(ledger.BugSagaNoCompensation)}, ShardedStack)
	if err != nil || len(selected) != 2 || selected[0].Case != nil || selected[1].Case.Bug != ledger.BugSagaNoCompensation {
		t.Fatalf("--only saga-no-compensation on shards: %v %v, want the clean shard-kills and the bug", selected, err)
	}
	if none, err := PlanFor([]string{string(ledger.BugSagaNoCompensation)}, 1); err != nil || len(none) != 0 {
		t.Errorf("a saga bug on the single stack: %v %v, want no run", none, err)
	}
	if none, err := PlanFor([]string{string(ledger.BugSkipDedupe)}, ShardedStack); err != nil || len(none) != 0 {
		t.Errorf("skip-dedupe on the sharded stack: %v %v, want no run", none, err)
	}
	if _, err := PlanFor(nil, 0); err == nil {
		t.Error("a plan of 0 shards accepted")
	}
}

// TestPlanEveryBugRunsEveryBugOnTheShardedStack: with every bug on the
// sharded stack, each case runs there once, under its own profile, after the
// clean system under that profile; the single stack's plan is unchanged and
// still runs no saga bug.
func TestPlanEveryBugRunsEveryBugOnTheShardedStack(t *testing.T) {
	sharded, err := PlanEveryBug(nil, ShardedStack)
	if err != nil {
		t.Fatal(err)
	}
	bugs := map[ledger.Bug]int{}
	cleanSeen := map[string]bool{}
	for _, run := range sharded {
		if run.Shards != ShardedStack {
			t.Errorf("run %+v on %d shards", run, run.Shards)
		}
		if run.Case == nil {
			cleanSeen[run.Profile.Name] = true
			continue
		}
		if !cleanSeen[run.Profile.Name] || run.Case.Profile != run.Profile.Name {
			t.Errorf("%s under %s: not after the clean run of its own profile", run.Case.Bug, run.Profile.Name)
		}
		bugs[run.Case.Bug]++
	}
	for _, c := range Cases() {
		if bugs[c.Bug] != 1 {
			t.Errorf("%s runs %d times on the sharded stack, want once", c.Bug, bugs[c.Bug])
		}
	}
	single, err := PlanEveryBug(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range single {
		if run.Case != nil && ledger.SagaBugs().Has(run.Case.Bug) {
			t.Errorf("saga bug %s on the single stack", run.Case.Bug)
		}
	}
	if all, err := Plan(nil, true); err != nil || len(all) != len(single)+len(sharded) {
		t.Errorf("Plan(every bug sharded): %d runs (%v), want %d + %d", len(all), err, len(single), len(sharded))
	}
}
