package runner_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
	"github.com/ledgerproof/ledgerproof/sut/testsystem"
)

// serveTestSystem runs sut/testsystem on a loopback port of the test's and
// returns its base URL and an export command (this test binary, asking it
// to write its export into exportDir).
func serveTestSystem(t *testing.T, options testsystem.Options, exportDir string) (baseURL, exportCommand string) {
	t.Helper()
	system, err := testsystem.New(options)
	if err != nil {
		t.Fatal(err)
	}
	listener := stacktest.Listen(t)
	server := &http.Server{Handler: system.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() {
		server.Close()
		system.Close()
	})
	baseURL = "http://" + listener.Addr().String()
	binary, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	trigger := baseURL + "/admin/export?dir=" + url.QueryEscape(exportDir)
	return baseURL, "LEDGERPROOF_TEST_EXPORT_URL='" + trigger + "' '" + binary + "'"
}

// gateAgainst runs the default gate (scenarios/gate.yaml as it is: 60s at
// 200/s) against the test system through its export, and returns the exit
// code, the output and the run directory.
func gateAgainst(t *testing.T, options testsystem.Options, extra ...string) (int, string, string) {
	t.Helper()
	exportDir := filepath.Join(t.TempDir(), "export")
	baseURL, exportCommand := serveTestSystem(t, options, exportDir)
	out := filepath.Join(t.TempDir(), "run")
	args := append([]string{"--scenario", scenario, "--stack", "external", "--base-url", baseURL,
		"--ledger-export", exportDir, "--export-command", exportCommand, "--out", out}, extra...)
	code, output := ledgerproofRun(t, 4*time.Minute, args...)
	t.Logf("ledgerproof run:\n%s", output)
	return code, output, out
}

// TestAsynchronousSystemPassesTheGate: a correct system that answers 202
// and applies the money 3s later passes the default gate through an export
// command: the run exports again until the ledger stopped changing, so the
// operations still being applied when the load ended are not called lost.
func TestAsynchronousSystemPassesTheGate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for a minute")
	}
	code, output, out := gateAgainst(t, testsystem.Options{ApplyDelay: 3 * time.Second})
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0 (a correct system)", code)
	}
	if !strings.Contains(output, "export drained") {
		t.Errorf("the run does not say the export drained")
	}
	audit := readAudit(t, out)
	for _, invariant := range audit.Invariants {
		if invariant.Name == invariants.Durability && invariant.Checked["acknowledged keys"] == 0 {
			t.Errorf("durability checked nothing: %+v", invariant)
		}
	}
}

// TestDefaultGateCatchesBugsOfAnotherSystem: the default gate, unchanged,
// catches a lost update and a double apply in a system nobody here wrote,
// each by the invariant that names it.
func TestDefaultGateCatchesBugsOfAnotherSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load for a minute per bug")
	}
	for _, c := range []struct {
		bug, want, mention string
	}{
		{testsystem.BugLostUpdate, invariants.BalanceEqualsPostings, "lost update"},
		{testsystem.BugDoubleApply, invariants.ExactlyOnce, "took effect 2 times"},
	} {
		t.Run(c.bug, func(t *testing.T) {
			code, _, out := gateAgainst(t, testsystem.Options{Bug: c.bug})
			if code != runner.ExitInvariantViolated {
				t.Fatalf("exit %d, want %d (violated)", code, runner.ExitInvariantViolated)
			}
			audit := readAudit(t, out)
			if violated := violatedInvariants(audit); !contains(violated, c.want) {
				t.Fatalf("violated %v, want %s among them", violated, c.want)
			}
			// The culprits are named: the journal operations behind the
			// first violation, not only a total.
			for _, invariant := range audit.Invariants {
				if invariant.Name != c.want {
					continue
				}
				first := invariant.Violations[0]
				if len(first.Operations) == 0 || !strings.Contains(first.Summary, c.mention) {
					t.Errorf("%s's first violation names no operation or lacks %q: %+v", c.want, c.mention, first)
				}
			}
		})
	}
}
