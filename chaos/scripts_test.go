package chaos

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShellcheck runs shellcheck on the wrappers when it is installed
// (.ci/deps.sh installs it; without it the test fails rather than skip).
func TestShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not on PATH, so the chaos wrappers cannot be checked: run .ci/deps.sh (it installs shellcheck)")
	}
	scripts, err := filepath.Glob("*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts (%v)", err)
	}
	output, err := exec.Command(shellcheck, append([]string{"--external-sources", "--severity=style"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck %v: %v\n%s", scripts, err, output)
	}
}

// TestWrappersCallTheCLI runs the wrappers with a fake ledgerproof that
// records its arguments and standard input.
func TestWrappersCallTheCLI(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "ledgerproof")
	script := "#!/usr/bin/env bash\necho \"$*\" >> " + record + "\nif [ \"$1\" = chaos ]; then cat >> " + record + "; fi\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		os.Remove(record)
		command := exec.Command("bash", args...)
		command.Env = append(os.Environ(), "LEDGERPROOF_CLI="+fake, "LEDGERPROOF_STACK_DIR=/tmp/st")
		output, err := command.CombinedOutput()
		calls, _ := os.ReadFile(record)
		if err != nil {
			return string(output), err
		}
		return string(calls), nil
	}
	calls, err := run("kill-worker.sh", "1", "1")
	if err != nil {
		t.Fatalf("kill-worker.sh 1 1: %v\n%s", err, calls)
	}
	want := "stack --dir /tmp/st --action kill --component worker-1\nstack --dir /tmp/st --action start --component worker-1\n"
	if calls != want {
		t.Errorf("kill-worker.sh 1 1 ran:\n%s\nwant:\n%s", calls, want)
	}
	calls, err = run("kill-broker.sh")
	if err != nil || calls != "stack --dir /tmp/st --action kill --component broker\n" {
		t.Errorf("kill-broker.sh: %v %q", err, calls)
	}
	calls, err = run("cut-link.sh", "worker->postgres", "7")
	if err != nil {
		t.Fatalf("cut-link.sh: %v\n%s", err, calls)
	}
	if !strings.HasPrefix(calls, "chaos --stack /tmp/st --plan -\n") {
		t.Errorf("cut-link.sh ran %q", calls)
	}
	plan, err := ParsePlan([]byte(strings.SplitN(calls, "\n", 2)[1]), "stdin")
	if err != nil {
		t.Fatalf("cut-link.sh's plan: %v", err)
	}
	timeline, _ := plan.Timeline(0, fullInventory)
	if len(timeline) != 2 || timeline[0].Target != "worker->postgres" || timeline[1].Params.Fault != FaultHeal || timeline[1].At.Seconds() != 7 {
		t.Errorf("cut-link.sh's timeline %v", timeline)
	}
	calls, err = run("failover.sh")
	if err != nil || !strings.Contains(calls, "action: failover") {
		t.Errorf("failover.sh: %v %q", err, calls)
	}
	for _, bad := range [][]string{{"cut-link.sh", "gateway->postgres"}, {"kill-worker.sh", "x"}, {"kill-redis.sh", "0"}, {"failover.sh", "now"}} {
		if output, err := run(bad...); err == nil {
			t.Errorf("%v succeeded:\n%s", bad, output)
		} else if !strings.Contains(output, "usage") && !strings.Contains(output, "error") {
			t.Errorf("%v: no usage or error text:\n%s", bad, output)
		}
	}
}
