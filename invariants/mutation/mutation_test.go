package mutation

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestJudge(t *testing.T) {
	bug := func(expected, violated []string, drained bool) Result {
		return Result{System: "some-bug", Profile: "p", Expected: expected, Violated: violated, Verdict: verdictOf(violated, drained), Drained: drained}
	}
	clean := func(violated []string, drained bool) Result {
		return Result{System: "clean", Profile: "p", Violated: violated, Verdict: verdictOf(violated, drained), Drained: drained}
	}
	cases := []struct {
		name         string
		result       Result
		caught, pass bool
		note         string
	}{
		{"bug caught by its only expected invariant", bug([]string{"exactly-once"}, []string{"exactly-once"}, true), true, true, ""},
		{"bug caught by one of several expected, others violated too", bug([]string{"durability", "exactly-once"},
			[]string{"conservation", "durability"}, true), true, true, ""},
		{"bug caught by a wrong invariant only", bug([]string{"no-overdraft"}, []string{"conservation", "balance-equals-postings"}, true),
			false, false, "not the expected no-overdraft"},
		{"bug not shown: nothing violated", bug([]string{"per-account-order"}, nil, true), false, false, "no invariant violated"},
		{"bug's expected invariant violated but not drained", bug([]string{"durability"}, []string{"durability"}, false),
			false, false, "did not drain"},
		{"bug run failed", Result{System: "b", Expected: []string{"durability"}, Error: "stack up: port in use"}, false, false, "port in use"},
		{"bug run without verdict", Result{System: "b", Expected: []string{"durability"}}, false, false, "no audit verdict"},
		{"bug caught on the setup's operations when setup gave up", withSetupProblem(bug([]string{"durability"}, []string{"durability"}, true)),
			true, true, ""},
		{"bug not shown and setup gave up", withSetupProblem(bug([]string{"durability"}, nil, true)), false, false, "setup did not finish"},
		{"clean passed", clean(nil, true), false, true, ""},
		{"clean audit passed but setup gave up", withSetupProblem(clean(nil, true)), false, false, "setup did not finish"},
		{"clean violated", clean([]string{"cache-coherence"}, true), false, false, "violated cache-coherence"},
		{"clean not drained", clean(nil, false), false, false, "did not drain"},
		{"clean run failed", Result{System: "clean", Error: "the load exited 2"}, false, false, "the load exited 2"},
		{"bug caught, the whole run exited 1", withRunExit(bug([]string{"no-overdraft"}, []string{"no-overdraft"}, true), 1), true, true, ""},
		{"bug caught, but the whole run exited 2", withRunExit(bug([]string{"no-overdraft"}, []string{"no-overdraft"}, true), 2),
			false, false, "the run exited 2, want 1"},
		{"clean passed, the whole run exited 0", withRunExit(clean(nil, true), 0), false, true, ""},
		{"clean audit passed, but the whole run exited 2", withRunExit(clean(nil, true), 2), false, false, "the run exited 2, want 0"},
		{"clean audit weak", Result{System: "clean", Verdict: invariants.VerdictWeak, Drained: true,
			Weak: []string{"duplicates required (scenario) but none happened, so exactly-once not exercised"}}, false, false, "the audit is weak: duplicates required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.result
			r.Judge()
			if r.Caught != c.caught || r.Pass != c.pass {
				t.Errorf("caught %v pass %v, want %v %v (note %q)", r.Caught, r.Pass, c.caught, c.pass, r.Note)
			}
			if c.note == "" && r.Note != "" || !strings.Contains(r.Note, c.note) {
				t.Errorf("note %q, want it to mention %q", r.Note, c.note)
			}
		})
	}
}

func withSetupProblem(r Result) Result {
	r.SetupProblem = "the load's setup did not finish (exit 2)"
	return r
}

func withRunExit(r Result, code int) Result {
	r.RunExit = &code
	return r
}

func verdictOf(violated []string, drained bool) string {
	switch {
	case len(violated) > 0:
		return invariants.VerdictViolated
	case !drained:
		return invariants.VerdictIncomplete
	default:
		return invariants.VerdictPassed
	}
}

func TestFromAudit(t *testing.T) {
	audit := &invariants.Result{Verdict: invariants.VerdictViolated, Drained: true,
		Operations: map[string]map[string]int64{"signup": {"ok": 50}, "deposit": {"ok": 10, "info": 1}, "transfer": {"ok": 5, "fail": 2}},
		Invariants: []invariants.InvariantResult{
			{Name: invariants.Conservation, Status: invariants.StatusPassed},
			{Name: invariants.ExactlyOnce, Status: invariants.StatusViolated, ViolationCount: 7},
			{Name: invariants.CacheCoherence, Status: invariants.StatusSkipped},
			{Name: invariants.KeyContract, Status: invariants.StatusViolated, ViolationCount: 2},
		}}
	r := Result{System: string(ledger.BugNoIdempotency), Expected: []string{invariants.KeyContract}}
	r.FromAudit(audit)
	r.Judge()
	if !slices.Equal(r.Violated, []string{invariants.ExactlyOnce, invariants.KeyContract}) || r.Violations[invariants.ExactlyOnce] != 7 {
		t.Errorf("violated %v %v", r.Violated, r.Violations)
	}
	if r.Operations["ok"] != 15 || r.Operations["fail"] != 2 || r.Operations["info"] != 1 {
		t.Errorf("operations %v: signups must not count", r.Operations)
	}
	if !r.Caught || !r.Pass {
		t.Errorf("caught %v pass %v: %s", r.Caught, r.Pass, r.Note)
	}
}

// TestCasesCoverTheCatalogue: every seeded bug of the catalogue has a case,
// under a profile that exists, expecting invariants that exist, and the
// profiles stay gate-sized.
func TestCasesCoverTheCatalogue(t *testing.T) {
	profiles := map[string]Profile{}
	for _, p := range Profiles() {
		if _, twice := profiles[p.Name]; twice {
			t.Errorf("profile %s defined twice", p.Name)
		}
		profiles[p.Name] = p
		if p.Duration <= 0 || p.Duration > 60*time.Second {
			t.Errorf("profile %s: duration %s, want (0, 60s]", p.Name, p.Duration)
		}
		for _, step := range p.Steps {
			// Load keeps running after the last fault, so a kill between a
			// commit and its cache update is healed by later batches.
			if step.At > p.Duration-6*time.Second {
				t.Errorf("profile %s: step %s less than 6s before the load ends", p.Name, step)
			}
			if step.Action != ActionKill && step.Action != ActionStart && step.Action != ActionStop {
				t.Errorf("profile %s: step %s has an unknown action", p.Name, step)
			}
		}
		if p.Summary == "" || !slices.ContainsFunc(p.Sets, func(set string) bool { return strings.HasPrefix(set, "schedule.rate=") }) {
			t.Errorf("profile %s: summary and schedule.rate required", p.Name)
		}
	}
	known := map[string]bool{}
	for _, entry := range invariants.Catalogue {
		known[entry.Name] = true
	}
	byBug := map[ledger.Bug]Case{}
	for _, c := range Cases() {
		byBug[c.Bug] = c
		if _, ok := profiles[c.Profile]; !ok {
			t.Errorf("%s: unknown profile %q", c.Bug, c.Profile)
		}
		if len(c.Expected) == 0 {
			t.Errorf("%s: no expected invariant", c.Bug)
		}
		for _, name := range c.Expected {
			if !known[name] {
				t.Errorf("%s: expected invariant %q is not in the auditor's catalogue", c.Bug, name)
			}
		}
	}
	for _, entry := range ledger.Catalogue() {
		if _, ok := byBug[entry.Bug]; !ok {
			t.Errorf("seeded bug %s has no case in the mutation matrix", entry.Bug)
		}
	}
	if len(byBug) != len(ledger.Catalogue()) {
		t.Errorf("%d cases for %d catalogue bugs", len(byBug), len(ledger.Catalogue()))
	}
}

// TestProfilesSetsAreAcceptedByTheGateScenario: every profile's overrides,
// with the schedule.duration the run adds, are accepted by scenarios/gate.yaml
// and give the load the profile describes, so a typo in a set is found here
// rather than by a matrix run that could not start.
func TestProfilesSetsAreAcceptedByTheGateScenario(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			sets := append(append([]string(nil), p.Sets...), "schedule.duration="+p.Duration.String())
			s, err := scenario.Load("../../scenarios/gate.yaml", sets)
			if err != nil {
				t.Fatal(err)
			}
			if s.Schedule.Rate != 150 || s.Schedule.Duration != p.Duration {
				t.Errorf("rate %v for %s, want 150/s for %s", s.Schedule.Rate, s.Schedule.Duration, p.Duration)
			}
			if p.Name != ProfileBursts {
				return
			}
			// Bursts: one owner slot per account, no wait and no polling after
			// a 202, so each slot issues its account's next command before the
			// last one is applied; low funding, so debits pile up against it.
			if s.Setup.Accounts != 20 || s.Workload.OwnerSlots != 20 || s.Schedule.MaxInFlight != 200 ||
				s.Client.Wait != 0 || s.Client.PollFor != 0 || s.Setup.FundingMinor != 3000 {
				t.Errorf("bursts: accounts %d, owner slots %d, max in flight %d, wait %s, poll for %s, funding %d",
					s.Setup.Accounts, s.Workload.OwnerSlots, s.Schedule.MaxInFlight, s.Client.Wait, s.Client.PollFor,
					s.Setup.FundingMinor)
			}
		})
	}
}

// TestExpectedMatchesSeededBugsDoc: the expected invariants are the "caught
// by" column of docs/seeded-bugs.md's catalogue table.
func TestExpectedMatchesSeededBugsDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/seeded-bugs.md")
	if err != nil {
		t.Fatalf("docs/seeded-bugs.md: %v", err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|.*\\| ([^|]+) \\|$")
	parenthesis := regexp.MustCompile(`\s*\([^)]*\)`)
	documented := map[string][]string{}
	for _, match := range row.FindAllStringSubmatch(string(doc), -1) {
		var names []string
		for _, name := range strings.Split(parenthesis.ReplaceAllString(match[2], ""), ",") {
			names = append(names, strings.TrimSpace(name))
		}
		documented[match[1]] = names
	}
	for _, c := range Cases() {
		want, ok := documented[string(c.Bug)]
		if !ok {
			t.Errorf("%s: not in the catalogue table of docs/seeded-bugs.md", c.Bug)
			continue
		}
		got := append([]string(nil), c.Expected...)
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: expected %v, docs/seeded-bugs.md says caught by %v", c.Bug, got, want)
		}
	}
}

func TestPlan(t *testing.T) {
	all, err := Plan(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	bugs, cleanProfiles := 0, map[string]bool{}
	for _, run := range all {
		// A profile's clean run once per stack: single, then sharded.
		stackProfile := run.Profile.Name
		if run.Shards > 1 {
			stackProfile += " sharded"
		}
		if run.Case == nil {
			if cleanProfiles[stackProfile] {
				t.Errorf("profile %s run clean twice", stackProfile)
			}
			cleanProfiles[stackProfile] = true
			continue
		}
		bugs++
		if !cleanProfiles[stackProfile] {
			t.Errorf("%s runs under %s before the clean system did", run.Case.Bug, run.Profile.Name)
		}
		if run.Case.Profile != run.Profile.Name {
			t.Errorf("%s planned under %s, its case says %s", run.Case.Bug, run.Profile.Name, run.Case.Profile)
		}
	}
	if bugs != len(ledger.Catalogue()) {
		t.Errorf("%d bug runs, want %d", bugs, len(ledger.Catalogue()))
	}
	for _, c := range Cases() {
		if !cleanProfiles[c.Profile] && !cleanProfiles[c.Profile+" sharded"] {
			t.Errorf("no clean run under %s (needed by %s)", c.Profile, c.Bug)
		}
	}

	some, err := Plan([]string{" trust-cache-balance", ""}, false)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, run := range some {
		labels = append(labels, run.Label()+"/"+run.Profile.Name)
	}
	if want := []string{"clean/" + ProfileBursts, "trust-cache-balance/" + ProfileBursts}; !slices.Equal(labels, want) {
		t.Errorf("plan %v, want %v", labels, want)
	}
	if _, err := Plan([]string{"no-such-bug"}, false); err == nil || !strings.Contains(err.Error(), "skip-dedupe") {
		t.Errorf("unknown bug: error %v, want one listing the known bugs", err)
	}
}

func sampleMatrix() *Matrix {
	m := &Matrix{Version: 1, StartedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Seconds: 425, Profiles: Profiles(),
		Cases: Cases(), Complete: true, CPUs: 2}
	m.Results = []Result{
		{System: "clean", Profile: ProfileBursts, Verdict: invariants.VerdictPassed, Drained: true,
			Operations: map[string]int64{"ok": 20, "info": 4000}},
		{System: "trust-cache-balance", Profile: ProfileBursts, Expected: []string{invariants.NoOverdraft},
			Verdict: invariants.VerdictViolated, Drained: true, Violated: []string{invariants.NoOverdraft},
			Violations: map[string]int64{invariants.NoOverdraft: 13}},
		{System: "concurrent-partition", Profile: ProfileBursts, Expected: []string{invariants.PerAccountOrder, invariants.OutcomeAgreement},
			Verdict: invariants.VerdictPassed, Drained: true},
	}
	m.Finish()
	return m
}

func TestMatrixRendering(t *testing.T) {
	m := sampleMatrix()
	if m.Passed || len(m.Failures) != 1 || !strings.Contains(m.Failures[0], "concurrent-partition under bursts: not caught") {
		t.Fatalf("passed %v failures %v", m.Passed, m.Failures)
	}
	text := m.Text()
	for _, want := range []string{"system", "no-overdraft (13)", "per-account-order or outcome-agreement", "NO", "passed", "20/0/4000"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	markdown := m.Markdown()
	for _, want := range []string{"| `trust-cache-balance` | bursts | no-overdraft (13) | no-overdraft | yes |",
		"| clean | bursts | none | none | passed |", "| **NO** |", "FAILED: ", "**bursts** (30s)",
		"Scenario sets: `schedule.rate=150` `setup.accounts=20`", "2 CPUs", "2026-01-02 03:04 UTC"} {
		if !strings.Contains(markdown, want) {
			t.Errorf("markdown lacks %q:\n%s", want, markdown)
		}
	}
	if strings.Contains(markdown, "**duplicates**") {
		t.Errorf("markdown lists a profile no row used:\n%s", markdown)
	}

	m.Results = m.Results[:2]
	m.Finish()
	if !m.Passed || len(m.Failures) != 0 {
		t.Errorf("passed %v failures %v", m.Passed, m.Failures)
	}
	m.Unfinished = true
	m.Finish()
	if m.Passed {
		t.Error("an interrupted matrix passed")
	}
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# Title\n\nintro\n\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\nhand-written tail\n"
	updated, err := ReplaceGenerated(doc, "new table\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nintro\n\n" + BeginMarker + "\nnew table\n" + EndMarker + "\n\nhand-written tail\n"
	if updated != want {
		t.Errorf("got\n%s\nwant\n%s", updated, want)
	}
	again, err := ReplaceGenerated(updated, "new table")
	if err != nil || again != updated {
		t.Errorf("regenerating is not idempotent: %v\n%s", err, again)
	}
	for _, bad := range []string{"no markers", EndMarker + "\n" + BeginMarker, BeginMarker + BeginMarker + EndMarker} {
		if _, err := ReplaceGenerated(bad, "x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDocHasMarkers: docs/mutation.md keeps the markers `make mutation`
// writes between.
func TestDocHasMarkers(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mutation.md")
	if err != nil {
		t.Fatalf("docs/mutation.md: %v", err)
	}
	if _, err := ReplaceGenerated(string(doc), "x"); err != nil {
		t.Error(err)
	}
}
