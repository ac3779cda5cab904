// Package mutation is the logic of `ledgerproof mutation` (`make mutation`): the
// fault profiles, which seeded bug runs under which profile and which
// invariants must catch it, the verdict of each run (expected invariants
// against the violated ones), and the matrix as text, Markdown and JSON. It
// does not start stacks or load: reports/matrix does, through the run engine
// (reports/runner), so this package's tests stay fast.
package mutation

import (
	"fmt"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Fault actions, as stack.Operate takes them.
const (
	ActionKill  = "kill"
	ActionStart = "start"
	ActionStop  = "stop"
)

// Step is one fault of a profile: at At after the load started, apply Action
// to each of Components (stack component names: worker-0, broker, ...).
type Step struct {
	At         time.Duration `json:"at"`
	Action     string        `json:"action"`
	Components []string      `json:"components"`
}

func (s Step) String() string {
	return fmt.Sprintf("t+%s %s %s", s.At, s.Action, strings.Join(s.Components, ","))
}

// Profile is a load and the faults injected during it. Every profile is run
// twice or more: once on the clean system and once per seeded bug that needs
// it, with the same load and the same faults.
type Profile struct {
	Name    string `json:"name"`
	Summary string `json:"summary"`
	// Duration is the schedule's length (schedule.duration); setup before
	// it and the drain after it come on top.
	Duration time.Duration `json:"duration"`
	// Sets are the overrides of the scenario (`ledgerproof load --set`, in
	// this order, on scenarios/gate.yaml by default: docs/scenarios.md),
	// before schedule.duration=Duration, which the run adds.
	Sets []string `json:"sets"`
	// Steps are the faults, in time order, timed from the schedule's start
	// (after setup).
	Steps []Step `json:"steps,omitempty"`
	// RestartExited restarts a gateway or worker that exited on its own
	// (a seeded crash) a moment later, as a process supervisor would.
	RestartExited bool `json:"restart_exited,omitempty"`
	// GatewayArgs and WorkerArgs are extra arguments of every gateway and
	// worker of the profile's runs, the clean one included (unlike
	// Case.WorkerArgs): a setting of the system the profile tests.
	GatewayArgs []string `json:"gateway_args,omitempty"`
	WorkerArgs  []string `json:"worker_args,omitempty"`
	// Shards, when above 1, runs the profile only on a sharded stack of
	// this many shards (its steps name a shard's processes); 0: on every
	// stack of the matrix, single and sharded.
	Shards int `json:"shards,omitempty"`
	// EveryShard: on a sharded stack, a step naming worker-<j> names worker
	// j of every shard (worker-s<i>-<j>) as well. Without it the steps hit
	// shard 0's workers only.
	EveryShard bool `json:"every_shard,omitempty"`
}

// Case is one seeded bug of the matrix: the profile it runs under, the
// invariants that must catch it, and any fault that only exists with the bug.
type Case struct {
	Bug     ledger.Bug `json:"bug"`
	Profile string     `json:"profile"`
	// Expected are the invariants that catch the bug (docs/seeded-bugs.md,
	// "caught by"); the bug is caught when at least one of them is violated.
	Expected []string `json:"expected"`
	// WorkerArgs are extra worker arguments of this bug's run only: the
	// in-process crash between a split commit, which the clean worker
	// refuses (it has no "between"); its clean run gets the profile's kills.
	WorkerArgs []string `json:"worker_args,omitempty"`
	// Why says why this profile lets the bug show itself.
	Why string `json:"why"`
	// Shards, when above 1, runs the bug only on a sharded stack of this
	// many shards (a saga bug: one ledger runs no saga, and its worker
	// refuses the bug); 0: on the single stack.
	Shards int `json:"shards,omitempty"`
}

// Run is one cell of the matrix to execute: a profile on the clean system
// (Bug empty) or with one seeded bug.
type Run struct {
	Profile Profile
	Case    *Case // nil: the clean system
	// Shards is the number of ledger shards of the run's stack; 0 or 1:
	// one ledger.
	Shards int
}

// Label names the system under test of a run: the bug, or "clean".
func (r Run) Label() string {
	if r.Case == nil {
		return "clean"
	}
	return string(r.Case.Bug)
}

// Profile names.
const (
	ProfileDuplicates  = "duplicates"
	ProfileWorkerKills = "worker-kills"
	ProfileBrokerOut   = "broker-outage"
	ProfileBursts      = "bursts"
	ProfileReplays     = "replays"
	ProfileDailyLimit  = "daily-limit"
	// ProfileSettlementKills kills the processes of the settlement
	// pipeline (docs/settlement.md): workers, relay and settler.
	ProfileSettlementKills = "settlement-kills"
	// ProfileShardKills kills the processes of a sharded stack's shard 1
	// (its Postgres, workers and relay) under transfers to missing
	// accounts, whose sagas are compensated (docs/sharding.md).
	ProfileShardKills = "shard-kills"
)

// gatewayCount is how many gateways and workers each run's stack has (the
// profiles' steps name them).
const (
	Gateways = 2
	Workers  = 2
)

// Profiles returns the fault profiles, in the order the matrix runs them.
func Profiles() []Profile {
	gate := func(extra ...string) []string {
		return append([]string{"schedule.rate=150", "setup.accounts=50"}, extra...)
	}
	return []Profile{
		{
			Name: ProfileDuplicates,
			Summary: "gate load 150/s, 50 accounts; 5% same-key duplicates (mixed concurrent/delayed), 1% key misuse; " +
				"no process faults",
			Duration: 30 * time.Second,
			Sets:     gate("client.duplicates.rate=0.05", "client.duplicates.mode=mixed", "client.misuse.rate=0.01"),
		},
		{
			Name: ProfileWorkerKills,
			Summary: "gate load 150/s, 50 accounts; kill -9 worker-0 at 6s (restarted at 8s), worker-1 at 14s (restarted " +
				"at 16s), both at 22s (restarted at 24s); a worker that exits on its own is restarted after 1s",
			Duration: 30 * time.Second,
			Sets:     gate(),
			Steps: []Step{
				{6 * time.Second, ActionKill, []string{"worker-0"}},
				{8 * time.Second, ActionStart, []string{"worker-0"}},
				{14 * time.Second, ActionKill, []string{"worker-1"}},
				{16 * time.Second, ActionStart, []string{"worker-1"}},
				{22 * time.Second, ActionKill, []string{"worker-0", "worker-1"}},
				{24 * time.Second, ActionStart, []string{"worker-0", "worker-1"}},
			},
			RestartExited: true,
		},
		{
			Name: ProfileBrokerOut,
			Summary: "gate load 150/s, 50 accounts, a 1s wait for the outcome; kill -9 the broker at 8s, kill -9 both " +
				"gateways at 13s (broker still down), broker restarted at 15s, gateways at 16s",
			Duration: 30 * time.Second,
			Sets:     gate("client.wait=1s"),
			Steps: []Step{
				{8 * time.Second, ActionKill, []string{"broker"}},
				{13 * time.Second, ActionKill, []string{"gateway-0", "gateway-1"}},
				{15 * time.Second, ActionStart, []string{"broker"}},
				{16 * time.Second, ActionStart, []string{"gateway-0", "gateway-1"}},
			},
		},
		{
			Name: ProfileBursts,
			Summary: "150/s on 20 accounts, one owner slot per account (up to 200 iterations in flight), no wait and " +
				"no polling (202 at once: each slot issues its account's next command before the last one is " +
				"applied), funding 3000, amounts 1..1000, two deposits, two withdrawals and five transfers in nine (money " +
				"in and out balance, so balances walk without drifting up); kill -9 both workers at 6s and 18s, restarted 6s later " +
				"(a backlog, so batches of many commands per account); on a sharded stack every shard's workers",
			Duration:   30 * time.Second,
			EveryShard: true,
			// client.poll_for=0s: after a 202 the client would otherwise ask
			// for the outcome until it is final, and the slot would wait for
			// the account's last command to be applied.
			//
			// The gate's edge debits, replays, duplicates and early timeouts
			// are turned off: with every outcome unknown (no wait, no
			// polling) the generator could not size debits from what the
			// accounts hold, and plain amounts of 1..1000 against a funding
			// of 3,000 race each other into overdrafts by themselves, on
			// accounts chosen uniformly.
			//
			// Two deposits for two withdrawals and five transfers (the
			// gate's mix has three deposits): money in and out balance, so
			// the accounts' balances walk from the funding without drifting
			// up, and at each outage some accounts hold a little while
			// their backlog holds several debits. With the gate's mix the
			// balances drifted upwards, few accounts were low at an outage,
			// and trust-cache-balance was caught 2-13 times a run and once
			// not at all (CI, 7 December); with this mix 9, 12 and 19 times
			// in three runs, over 5-9 of the 16 partitions each. (One
			// deposit for two withdrawals drained every account to zero
			// before the second outage, where soft refusals then stopped
			// the debits at the gateway: 11-16 times, nearly all at the
			// first outage.)
			Sets: []string{"schedule.rate=150", "setup.accounts=20", "workload.owner_slots=20",
				"schedule.max_in_flight=200", "client.wait=0s", "client.poll_for=0s", "setup.funding=3000",
				"workload.mix.deposit=2", "workload.mix.withdrawal=2", "workload.mix.transfer=5",
				"workload.accounts=uniform", "workload.overdraft_rate=0", "workload.drain_rate=0", "workload.race_rate=0", "workload.limit_race_rate=0", "workload.minimum_rate=0",
				"workload.pair_rate=0", "client.duplicates.rate=0", "client.misuse.rate=0", "client.replays.rate=0",
				"client.early_timeouts.rate=0"},
			Steps: []Step{
				{6 * time.Second, ActionKill, []string{"worker-0", "worker-1"}},
				{12 * time.Second, ActionStart, []string{"worker-0", "worker-1"}},
				{18 * time.Second, ActionKill, []string{"worker-0", "worker-1"}},
				{24 * time.Second, ActionStart, []string{"worker-0", "worker-1"}},
			},
		},
		{
			// Replays are the copies of a command that reach a worker at new
			// offsets on the clean system: the gateways' key TTL is cut to
			// 10 s (as `make demo` does) so the gate's replays, 15 s after
			// their answer, pass the gateways and meet the workers' own
			// dedupe; the workers restart in between, so what a worker
			// remembers in memory (its Bloom filter) is not what the
			// ledger holds. The workers run the two-tier dedupe.
			Name: ProfileReplays,
			Summary: "gate load 150/s, 50 accounts; gateways forget an answered key after 10s, so the gate's 6% replays " +
				"(15s after their answer) reach the workers' dedupe; workers with the two-tier dedupe (--bloom-dedupe); " +
				"kill -9 worker-0 at 5s and worker-1 at 10s, each restarted 2s later",
			Duration: 30 * time.Second,
			Sets:     gate(),
			Steps: []Step{
				{5 * time.Second, ActionKill, []string{"worker-0"}},
				{7 * time.Second, ActionStart, []string{"worker-0"}},
				{10 * time.Second, ActionKill, []string{"worker-1"}},
				{12 * time.Second, ActionStart, []string{"worker-1"}},
			},
			GatewayArgs: []string{"--idempotency-ttl=10s"},
			WorkerArgs:  []string{"--bloom-dedupe"},
		},
		{
			Name: ProfileDailyLimit,
			Summary: "150/s on 20 accounts, one owner slot per account, no wait and no polling (202 at once), funding " +
				"100,000, amounts 1..10,000, so every account passes the stack's daily debit limit (100,000) within " +
				"seconds; kill -9 both workers at 1s, restarted at 5s, before any account reached it",
			Duration: 30 * time.Second,
			// As bursts, but with amounts and funding large enough that each
			// account's debits of the day reach the local stack's limit
			// (ledger.DefaultDailyDebitLimitMinor) a few seconds in. The
			// workers' outage, from 1s to 5s, freezes the settled totals the
			// gateways check while every account's debits keep coming, about
			// 25,000 a second each: once the workers are back they settle
			// past the limit what the gateways let through, unless they
			// check it themselves. (A first version killed the workers at
			// 10s, after every account had reached the limit: the gateways'
			// check of the totals, a few milliseconds behind, then refused
			// nearly everything, and the bug was not caught.) No wait and no
			// polling keep the debits coming during the outage. The gate's
			// edge debits, replays, duplicates and early timeouts are off for
			// bursts' reason: with every outcome unknown the generator cannot
			// size debits.
			Sets: []string{"schedule.rate=150", "setup.accounts=20", "workload.owner_slots=20",
				"schedule.max_in_flight=200", "client.wait=0s", "client.poll_for=0s", "setup.funding=100000",
				"workload.amount_max=10000", "workload.accounts=uniform", "workload.overdraft_rate=0", "workload.drain_rate=0",
				"workload.race_rate=0", "workload.limit_race_rate=0", "workload.minimum_rate=0", "workload.pair_rate=0", "client.duplicates.rate=0",
				"client.misuse.rate=0", "client.replays.rate=0", "client.early_timeouts.rate=0"},
			Steps: []Step{
				{1 * time.Second, ActionKill, []string{"worker-0", "worker-1"}},
				{5 * time.Second, ActionStart, []string{"worker-0", "worker-1"}},
			},
		},
		{
			Name: ProfileSettlementKills,
			Summary: "gate load 150/s, 50 accounts; kill -9 worker-0 at 5s (restarted at 7s), the relay at 9s (restarted " +
				"at 11s), the settler at 13s (restarted at 15s), worker-1 at 18s (restarted at 20s), relay and settler at " +
				"22s (restarted at 24s); a worker that exits on its own is restarted after 1s",
			Duration: 30 * time.Second,
			Sets:     gate(),
			Steps: []Step{
				{5 * time.Second, ActionKill, []string{"worker-0"}},
				{7 * time.Second, ActionStart, []string{"worker-0"}},
				{9 * time.Second, ActionKill, []string{"relay"}},
				{11 * time.Second, ActionStart, []string{"relay"}},
				{13 * time.Second, ActionKill, []string{"settler"}},
				{15 * time.Second, ActionStart, []string{"settler"}},
				{18 * time.Second, ActionKill, []string{"worker-1"}},
				{20 * time.Second, ActionStart, []string{"worker-1"}},
				{22 * time.Second, ActionKill, []string{"relay", "settler"}},
				{24 * time.Second, ActionStart, []string{"relay", "settler"}},
			},
			RestartExited: true,
		},
		shardKillsProfile(gate),
	}
}

// Cases returns every seeded bug of ledger.Catalogue() with its profile and
// expected invariants, in the catalogue's order.
func Cases() []Case {
	return []Case{
		{Bug: ledger.BugSkipDedupe, Profile: ProfileWorkerKills, Expected: []string{invariants.ExactlyOnce},
			WorkerArgs: []string{"--crash-between-commits-probability=0.005"},
			Why:        "a worker dying between the postings' commit and the offset's redelivers the batch, which is applied again"},
		{Bug: ledger.BugReadModifyWriteWithoutLock, Profile: ProfileDuplicates,
			Expected: []string{invariants.BalanceEqualsPostings, invariants.Conservation},
			Why:      "transfers between accounts of different partitions: concurrent batches overwrite each other's balance"},
		{Bug: ledger.BugAcknowledgeBeforeCommit, Profile: ProfileBrokerOut,
			Expected: []string{invariants.Durability, invariants.ExactlyOnce},
			Why:      "202s given while the broker is down are lost with the gateways' buffers when the gateways are killed"},
		{Bug: ledger.BugOffsetBeforePostings, Profile: ProfileWorkerKills,
			Expected:   []string{invariants.Durability, invariants.ExactlyOnce},
			WorkerArgs: []string{"--crash-between-commits-probability=0.005"},
			Why:        "a worker dying after the offset's commit and before the postings' loses the batch"},
		{Bug: ledger.BugConcurrentPartition, Profile: ProfileBursts,
			Expected: []string{invariants.PerAccountOrder, invariants.OutcomeAgreement, invariants.Durability},
			Why:      "a backlog gives batches with several commands per account, whose parallel chunks commit in any order"},
		{Bug: ledger.BugTrustCacheBalance, Profile: ProfileBursts, Expected: []string{invariants.NoOverdraft, invariants.JustifiedRejection},
			Why: "several debits of one low account in one batch all pass against the same cached balance; a cached balance below the row's refuses a debit the ledger could pay"},
		{Bug: ledger.BugNoIdempotency, Profile: ProfileDuplicates,
			Expected: []string{invariants.ExactlyOnce, invariants.KeyContract, invariants.OutcomeAgreement},
			Why:      "every duplicate or misuse of a key is applied as a new transaction"},
		{Bug: ledger.BugBloomOnlyDedupe, Profile: ProfileReplays, Expected: []string{invariants.ExactlyOnce},
			Why: "a replay of a command applied before its worker restarted meets an empty filter, is called new, and no key refuses it"},
		{Bug: ledger.BugLimitRace, Profile: ProfileDailyLimit, Expected: []string{invariants.LimitsRespected},
			Why: "debits of one account in flight together all pass the gateways' check of the lagging settled total, and the workers no longer check: the day's settled debits pass the limit"},
		{Bug: ledger.BugOutboxOutsideTx, Profile: ProfileSettlementKills, Expected: []string{invariants.SettlementExactlyOnce},
			Why: "a worker killed under load dies with the settlement events of its last committed batches still in memory"},
		{Bug: ledger.BugSettlementNoDedupe, Profile: ProfileSettlementKills, Expected: []string{invariants.SettlementExactlyOnce},
			Why: "a settler killed under load reads again, when restarted, the events applied since its last offset commit, and applies them again"},
		{Bug: ledger.BugSagaNoCompensation, Profile: ProfileShardKills, Shards: ShardedStack,
			Expected: []string{invariants.SagaAtomicity, invariants.Conservation},
			Why:      "transfers to missing accounts of the other shard are sagas whose credit is cancelled: the bug keeps their debits"},
		{Bug: ledger.BugSagaDoubleCompensation, Profile: ProfileShardKills, Shards: ShardedStack,
			Expected: []string{invariants.SagaAtomicity, invariants.Conservation},
			Why:      "the compensated sagas of the transfers to missing accounts are refunded again by every recovery pass (every 5s, and at each worker's restart)"},
	}
}

// Plan returns the runs of the matrix: PlanFor one ledger, then PlanFor a
// stack of ShardedStack shards (PlanEveryBug with everyBugSharded).
func Plan(only []string, everyBugSharded bool) ([]Run, error) {
	single, err := PlanFor(only, 1)
	if err != nil {
		return nil, err
	}
	sharded, err := plan(only, ShardedStack, everyBugSharded)
	return append(single, sharded...), err
}

// PlanEveryBug is PlanFor, except that a sharded stack runs every bug, the
// single ledger's too, each under its profile: the bugs live in code the
// sharded pipeline runs as well (each shard's batch apply, the gateways),
// and must be caught there too. On one ledger it is PlanFor.
func PlanEveryBug(only []string, shards int) ([]Run, error) { return plan(only, shards, true) }

// PlanFor returns the runs of the matrix on stacks of shards shards: for
// every profile some selected bug of that stack needs, the clean system
// first, then each selected bug of that profile. One shard runs the bugs
// and profiles without Shards; more, the others (the saga bugs), and the
// clean system under every profile. only selects bugs by name (empty:
// all); an unknown name is an error.
func PlanFor(only []string, shards int) ([]Run, error) { return plan(only, shards, false) }

// plan is PlanFor and PlanEveryBug.
func plan(only []string, shards int, everyBugSharded bool) ([]Run, error) {
	if shards < 1 {
		return nil, fmt.Errorf("mutation plan: %d shards", shards)
	}
	cases := Cases()
	selected := map[ledger.Bug]bool{}
	for _, name := range only {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		found := false
		for _, c := range cases {
			if string(c.Bug) == name {
				selected[c.Bug], found = true, true
			}
		}
		if !found {
			var known []string
			for _, c := range cases {
				known = append(known, string(c.Bug))
			}
			return nil, fmt.Errorf("unknown seeded bug %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
	sharded := shards > 1
	var runs []Run
	for _, profile := range Profiles() {
		if profile.Shards > 1 && !sharded {
			continue // a sharded stack's profile, on one ledger
		}
		var bugRuns []Run
		for i := range cases {
			c := &cases[i]
			onThisStack := (c.Shards > 1) == sharded || (sharded && everyBugSharded)
			if c.Profile == profile.Name && onThisStack && (len(selected) == 0 || selected[c.Bug]) {
				bugRuns = append(bugRuns, Run{Profile: profile, Case: c, Shards: shards})
			}
		}
		// A sharded stack runs the clean system under every profile (not
		// only the saga bugs'), unless bugs were selected.
		if len(bugRuns) > 0 || (sharded && len(selected) == 0) {
			runs = append(runs, Run{Profile: profile, Shards: shards})
			runs = append(runs, bugRuns...)
		}
	}
	return runs, nil
}

// Result is the outcome of one run of the matrix.
type Result struct {
	// System is the bug's name, or "clean".
	System  string `json:"system"`
	Profile string `json:"profile"`
	// Shards is the number of ledger shards of the run's stack; 0: one.
	Shards int `json:"shards,omitempty"`
	// Expected are the invariants that must catch the bug; empty for clean.
	Expected []string `json:"expected"`
	// Violated are the invariants the audit found violated, with counts.
	Violated   []string         `json:"violated"`
	Violations map[string]int64 `json:"violations,omitempty"`
	// Verdict is the audit's (passed, violated, incomplete, weak); empty
	// when the audit did not run.
	Verdict string `json:"verdict"`
	Drained bool   `json:"drained"`
	// Weak lists the required coverage classes the run did not exercise
	// (the audit's verdict weak), as sentences.
	Weak []string `json:"weak,omitempty"`
	// Operations counts the money operations journaled, by outcome.
	Operations map[string]int64 `json:"operations,omitempty"`
	// LoadExit is the load's exit status (`ledgerproof load`: 99 a threshold
	// failed, expected under faults, the auditor judges the money; -1 it
	// did not run or was stopped).
	LoadExit int `json:"load_exit"`
	// SetupProblem says that the load's setup gave up (a sign-up or funding
	// deposit never settled): no schedule ran, the setup's own operations
	// were drained and audited. A bug may be caught on them; the clean
	// system fails.
	SetupProblem string `json:"setup_problem,omitempty"`
	// Faults lists what the fault plan did, with times.
	Faults []string `json:"faults,omitempty"`
	// Error says why the run could not be judged (stack, load, audit failed).
	Error string `json:"error,omitempty"`
	// RunExit is the exit status of the whole run (`ledgerproof run`, as
	// `make demo` runs it), when the row is one: a bug's run must exit 1
	// (invariant violated), the clean system's 0. Nil: not a whole run (the
	// mutation matrix drives the load and the audit itself).
	RunExit *int `json:"run_exit,omitempty"`
	// Dir is the run's folder (journal, audit, load summary, stack logs).
	Dir     string  `json:"dir"`
	Seconds float64 `json:"seconds"`

	// Caught: for a bug, an expected invariant was violated on a drained
	// pipeline. Pass: the row is as it must be (bug caught, or clean passed).
	Caught bool   `json:"caught"`
	Pass   bool   `json:"pass"`
	Note   string `json:"note,omitempty"`
}

// Clean reports whether the row is the clean system's.
func (r *Result) Clean() bool { return r.System == "clean" }

// FromAudit fills the violated invariants, verdict, drain and operation
// counts from an audit result.
func (r *Result) FromAudit(audit *invariants.Result) {
	r.Verdict, r.Drained = audit.Verdict, audit.Drained
	r.Weak = audit.Coverage.Missing()
	r.Violated, r.Violations = nil, map[string]int64{}
	for _, inv := range audit.Invariants {
		if inv.Status == invariants.StatusViolated {
			r.Violated = append(r.Violated, inv.Name)
			r.Violations[inv.Name] = inv.ViolationCount
		}
	}
	r.Operations = map[string]int64{}
	for kind, outcomes := range audit.Operations {
		if kind == "signup" {
			continue
		}
		for outcome, n := range outcomes {
			r.Operations[outcome] += n
		}
	}
}

// Judge decides Caught, Pass and Note from the run's fields:
//   - a run that could not be judged (Error, no verdict) passes nothing;
//   - the clean system passes only with verdict "passed" (no invariant
//     violated, pipeline drained, every required coverage class exercised:
//     a weak audit is no pass);
//   - a bug is caught when at least one of its expected invariants is
//     violated and the pipeline was drained (otherwise a "lost" operation may
//     be one still queued). Other violated invariants are reported, not
//     required;
//   - a whole run (RunExit set) passes only with the exit status its
//     verdict owes: 0 for the clean system, 1 for a bug.
func (r *Result) Judge() {
	r.judgeAudit()
	if r.RunExit == nil || !r.Pass {
		return
	}
	want := 1
	if r.Clean() {
		want = 0
	}
	if *r.RunExit != want {
		r.Caught, r.Pass = false, false
		r.Note = fmt.Sprintf("the run exited %d, want %d", *r.RunExit, want)
	}
}

func (r *Result) judgeAudit() {
	r.Caught, r.Pass, r.Note = false, false, ""
	switch {
	case r.Error != "":
		r.Note = "not judged: " + r.Error
		return
	case r.Verdict == "":
		r.Note = "not judged: no audit verdict"
		return
	}
	if r.Clean() {
		r.Pass = r.Verdict == invariants.VerdictPassed && len(r.Violated) == 0 && r.Drained && r.SetupProblem == ""
		switch {
		case r.Pass:
		case len(r.Violated) == 0 && r.SetupProblem != "":
			r.Note = r.SetupProblem
		case !r.Drained && len(r.Violated) == 0:
			r.Note = "the pipeline did not drain: the audit is incomplete"
		case r.Verdict == invariants.VerdictWeak && len(r.Violated) == 0:
			r.Note = "the audit is weak: " + list(r.Weak, "a required class was not exercised")
		default:
			r.Note = "the clean system violated " + strings.Join(r.Violated, ", ")
		}
		return
	}
	hit := intersect(r.Expected, r.Violated)
	switch {
	case !r.Drained:
		r.Note = "the pipeline did not drain: violations may be work still queued"
	case len(hit) == 0 && len(r.Violated) == 0 && r.SetupProblem != "":
		r.Note = r.SetupProblem + ", and no invariant was violated"
	case len(hit) == 0 && len(r.Violated) == 0:
		r.Note = "no invariant violated: the fault profile did not make the bug show itself, or the auditor missed it"
	case len(hit) == 0:
		r.Note = "violated only " + strings.Join(r.Violated, ", ") + ", not the expected " + strings.Join(r.Expected, " or ")
	default:
		r.Caught, r.Pass = true, true
	}
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// Matrix is the whole run, written as matrix.json.
type Matrix struct {
	Version    int       `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	Seconds    float64   `json:"seconds"`
	Dir        string    `json:"dir"`
	Profiles   []Profile `json:"profiles"`
	Cases      []Case    `json:"cases"`
	Results    []Result  `json:"results"`
	Complete   bool      `json:"complete"` // every bug of the catalogue ran
	Passed     bool      `json:"passed"`
	Failures   []string  `json:"failures,omitempty"`
	Command    string    `json:"command"`
	GoVersion  string    `json:"go_version,omitempty"`
	Commit     string    `json:"commit,omitempty"`
	Hostname   string    `json:"host,omitempty"`
	CPUs       int       `json:"cpus,omitempty"`
	Unfinished bool      `json:"unfinished,omitempty"` // interrupted before every run ended
	// Generator is the command that made the matrix, named in its Markdown
	// (default make mutation).
	Generator string `json:"generator,omitempty"`
}

// Finish judges every result and sets Passed and Failures.
func (m *Matrix) Finish() {
	m.Failures = nil
	for i := range m.Results {
		r := &m.Results[i]
		r.Judge()
		if !r.Pass {
			what := r.System + " under " + r.profileText()
			if r.Clean() {
				m.Failures = append(m.Failures, what+": clean system failed ("+r.Note+")")
			} else {
				m.Failures = append(m.Failures, what+": not caught ("+r.Note+")")
			}
		}
	}
	m.Passed = len(m.Failures) == 0 && len(m.Results) > 0 && !m.Unfinished
}

func list(names []string, empty string) string {
	if len(names) == 0 {
		return empty
	}
	return strings.Join(names, ", ")
}

// violatedText lists violated invariants with their counts.
func (r *Result) violatedText() string {
	if r.Error != "" && r.Verdict == "" {
		return "(not audited)"
	}
	if len(r.Violated) == 0 {
		if !r.Drained {
			return "none (not drained)"
		}
		return "none"
	}
	parts := make([]string, 0, len(r.Violated))
	for _, name := range r.Violated {
		parts = append(parts, fmt.Sprintf("%s (%d)", name, r.Violations[name]))
	}
	text := strings.Join(parts, ", ")
	if !r.Drained {
		text += " (not drained)"
	}
	return text
}

func (r *Result) verdictText() string {
	switch {
	case r.Clean() && r.Pass:
		return "passed"
	case r.Clean():
		return "FAILED"
	case r.Caught:
		return "yes"
	default:
		return "NO"
	}
}

func (r *Result) expectedText() string {
	if r.Clean() {
		return "none"
	}
	return strings.Join(r.Expected, " or ")
}

// Text renders the matrix as an aligned table for the terminal.
func (m *Matrix) Text() string {
	header := []string{"system", "fault profile", "invariants violated (count)", "expected", "caught", "ops ok/fail/info"}
	rows := [][]string{header}
	for i := range m.Results {
		r := &m.Results[i]
		rows = append(rows, []string{r.System, r.profileText(), r.violatedText(), r.expectedText(), r.verdictText(), r.opsText()})
	}
	widths := make([]int, len(header))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	var b strings.Builder
	for n, row := range rows {
		for i, cell := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(cell)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(cell))))
			}
		}
		b.WriteString("\n")
		if n == 0 {
			for i, w := range widths {
				if i > 0 {
					b.WriteString("  ")
				}
				b.WriteString(strings.Repeat("-", w))
			}
			b.WriteString("\n")
		}
	}
	for i := range m.Results {
		if note := m.Results[i].Note; note != "" {
			fmt.Fprintf(&b, "  %s under %s: %s\n", m.Results[i].System, m.Results[i].profileText(), note)
		}
	}
	return b.String()
}

func (r *Result) opsText() string {
	if r.Operations == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d/%d", r.Operations["ok"], r.Operations["fail"], r.Operations["info"])
}

// Markdown renders the matrix (and the profiles it used) for docs/mutation.md.
func (m *Matrix) Markdown() string {
	var b strings.Builder
	status := "every seeded bug caught by an expected invariant, the clean system passed every profile"
	if !m.Passed {
		status = fmt.Sprintf("FAILED: %s", strings.Join(m.Failures, "; "))
	}
	generator := m.Generator
	if generator == "" {
		generator = "make mutation"
	}
	fmt.Fprintf(&b, "Generated by `%s` on %s (%d runs, %s in total%s). Result: %s.\n\n",
		generator, m.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), len(m.Results), (time.Duration(m.Seconds) * time.Second).String(),
		m.hostText(), status)
	b.WriteString("| system | fault profile | invariants violated (count) | expected | caught | ops ok/fail/info |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for i := range m.Results {
		r := &m.Results[i]
		system := "`" + r.System + "`"
		if r.Clean() {
			system = "clean"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", system, r.profileText(), r.violatedText(), r.expectedText(),
			bold(r.verdictText()), r.opsText())
	}
	var notes []string
	for i := range m.Results {
		if note := m.Results[i].Note; note != "" {
			notes = append(notes, fmt.Sprintf("- %s under %s: %s", m.Results[i].System, m.Results[i].profileText(), note))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	used := map[string]bool{}
	for _, r := range m.Results {
		used[r.Profile] = true
	}
	var profiles []string
	for _, p := range m.Profiles {
		if used[p.Name] {
			profiles = append(profiles, fmt.Sprintf("- **%s** (%s): %s. Scenario sets: %s.%s\n", p.Name, p.Duration, p.Summary, SetsText(p.Sets),
				processArgsText(p)))
		}
	}
	if len(profiles) > 0 {
		b.WriteString("\nProfiles of this run:\n\n" + strings.Join(profiles, ""))
	}
	var extra []string
	for _, c := range m.Cases {
		if len(c.WorkerArgs) > 0 {
			extra = append(extra, fmt.Sprintf("`%s` also runs its workers with `%s`", c.Bug, strings.Join(c.WorkerArgs, " ")))
		}
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "\nBug-only fault: %s (the clean worker refuses the flag: it has no second commit to crash between; its run of the profile gets the same kills).\n",
			strings.Join(extra, "; "))
	}
	return b.String()
}

func (m *Matrix) hostText() string {
	if m.CPUs == 0 {
		return ""
	}
	return fmt.Sprintf(", %d CPUs", m.CPUs)
}

func bold(s string) string {
	if s == "NO" || s == "FAILED" {
		return "**" + s + "**"
	}
	return s
}

// SetsText lists scenario overrides as code spans, in the order they apply.
func SetsText(sets []string) string {
	parts := make([]string, 0, len(sets))
	for _, set := range sets {
		parts = append(parts, "`"+set+"`")
	}
	return strings.Join(parts, " ")
}

// Markers delimit the generated matrix in docs/mutation.md.
const (
	BeginMarker = "<!-- mutation-matrix:begin (generated by `make mutation`; edit outside the markers) -->"
	EndMarker   = "<!-- mutation-matrix:end -->"
)

// ReplaceGenerated returns doc with the text between the markers replaced by
// generated. The markers must each appear once, begin before end.
func ReplaceGenerated(doc, generated string) (string, error) {
	return ReplaceBetween(doc, BeginMarker, EndMarker, generated)
}

// ReplaceBetween returns doc with the text between the markers beginMarker
// and endMarker replaced by generated. The markers must each appear once,
// begin before end.
func ReplaceBetween(doc, beginMarker, endMarker, generated string) (string, error) {
	begin := strings.Index(doc, beginMarker)
	end := strings.Index(doc, endMarker)
	if begin < 0 || end < 0 {
		return "", fmt.Errorf("markers not found (want %q and %q)", beginMarker, endMarker)
	}
	if strings.Count(doc, beginMarker) != 1 || strings.Count(doc, endMarker) != 1 || end < begin {
		return "", fmt.Errorf("markers must appear once each, begin before end")
	}
	head := doc[:begin+len(beginMarker)]
	return head + "\n" + strings.TrimRight(generated, "\n") + "\n" + doc[end:], nil
}

// processArgsText names a profile's gateway and worker arguments, "" when
// it has none.
func processArgsText(p Profile) string {
	var parts []string
	if len(p.GatewayArgs) > 0 {
		parts = append(parts, " Gateways run with `"+strings.Join(p.GatewayArgs, " ")+"`.")
	}
	if len(p.WorkerArgs) > 0 {
		parts = append(parts, " Workers run with `"+strings.Join(p.WorkerArgs, " ")+"`.")
	}
	return strings.Join(parts, "")
}
