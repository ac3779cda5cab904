package mutation

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestGateSystems: make gate-bugs runs every bug of the catalogue, then the
// clean system, and the gate's cases carry no bug-only flag.
func TestGateSystems(t *testing.T) {
	systems := GateSystems()
	sagaBugs := len(ledger.SagaBugs()) // need shards: the default gate's stack has one ledger
	if len(systems) != len(ledger.Catalogue())-sagaBugs+1 || systems[len(systems)-1] != Clean {
		t.Fatalf("systems %v: want every bug of the catalogue but the saga bugs, then clean", systems)
	}
	for _, bug := range ledger.Catalogue() {
		if ledger.SagaBugs().Has(bug.Bug) {
			if slices.Contains(systems, string(bug.Bug)) {
				t.Errorf("%s is run by make gate-bugs on one ledger", bug.Bug)
			}
			continue
		}
		if !slices.Contains(systems, string(bug.Bug)) {
			t.Errorf("%s is not run by make gate-bugs", bug.Bug)
		}
	}
	for _, c := range GateCases() {
		if len(c.WorkerArgs) > 0 || c.Profile != GateProfile {
			t.Errorf("%s: the default gate runs it with %v under %q", c.Bug, c.WorkerArgs, c.Profile)
		}
	}
}

// TestGateResult reads one system's folder as make gate-bugs writes it.
func TestGateResult(t *testing.T) {
	write := func(t *testing.T, dir, system, exit string, audit *invariants.Result) {
		t.Helper()
		folder := filepath.Join(dir, system)
		if err := os.MkdirAll(folder, 0o755); err != nil {
			t.Fatal(err)
		}
		if exit != "" {
			if err := os.WriteFile(filepath.Join(folder, GateExitFile), []byte(exit+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if audit != nil {
			audit.RunDir = folder
			if err := audit.WriteFiles(); err != nil {
				t.Fatal(err)
			}
		}
	}
	violated := func(names ...string) *invariants.Result {
		audit := &invariants.Result{Verdict: invariants.VerdictViolated, Drained: true}
		for _, name := range names {
			audit.Invariants = append(audit.Invariants, invariants.InvariantResult{Name: name, Status: invariants.StatusViolated, ViolationCount: 3})
		}
		return audit
	}
	overdraft := string(ledger.BugTrustCacheBalance)
	cases := []struct {
		name   string
		system string
		exit   string
		audit  *invariants.Result
		pass   bool
		note   string
	}{
		{"caught by its invariant, exit 1", overdraft, "1", violated(invariants.NoOverdraft), true, ""},
		{"caught by another invariant only", overdraft, "1", violated(invariants.Durability), false, "not the expected no-overdraft"},
		{"caught by its second invariant", overdraft, "1", violated(invariants.JustifiedRejection), true, ""},
		{"caught, but the run could not run", overdraft, "2", violated(invariants.NoOverdraft), false, "the run exited 2, want 1"},
		{"no exit code", overdraft, "", violated(invariants.NoOverdraft), false, "no exit status"},
		{"no audit", overdraft, "2", nil, false, "wrote no audit"},
		{"clean passed", Clean, "0", &invariants.Result{Verdict: invariants.VerdictPassed, Drained: true}, true, ""},
		{"clean violated", Clean, "1", violated(invariants.Durability), false, "violated durability"},
		{"not a bug", "no-such-bug", "1", violated(invariants.NoOverdraft), false, "not a seeded bug"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.system, c.exit, c.audit)
			result := GateResult(dir, c.system)
			if result.Pass != c.pass || result.Profile != GateProfile {
				t.Errorf("pass %v under %q, want %v (note %q, error %q)", result.Pass, result.Profile, c.pass, result.Note, result.Error)
			}
			if c.note == "" && result.Note != "" || !strings.Contains(result.Note, c.note) {
				t.Errorf("note %q, want it to mention %q", result.Note, c.note)
			}
		})
	}
}

// TestCIDocHasGateMarkers: docs/ci.md keeps the markers make gate-bugs
// writes between.
func TestCIDocHasGateMarkers(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ci.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReplaceBetween(string(doc), GateBeginMarker, GateEndMarker, "x"); err != nil {
		t.Error(err)
	}
}
