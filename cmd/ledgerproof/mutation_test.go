package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
)

func TestMutationLoadArgs(t *testing.T) {
	var bursts mutation.Profile
	for _, profile := range mutation.Profiles() {
		if profile.Name == mutation.ProfileBursts {
			bursts = profile
		}
	}
	o := mutationOptions{scenario: "scenarios/gate.yaml", seed: 42, duration: 45 * time.Second}
	args := strings.Join(mutationLoadArgs(o, "/runs/04-bursts-clean", []string{"http://a", "http://b"}, bursts), " ")
	for _, want := range []string{
		"load --scenario scenarios/gate.yaml --base-url http://a,http://b --out /runs/04-bursts-clean --seed 42",
		"--set client.wait=0s --set client.poll_for=0s",
		// The run's duration comes after the profile's sets, so it wins; --duration overrides the profile's.
		"--set setup.funding=3000 --set workload.accounts=uniform",
		"--set client.early_timeouts.rate=0 --set schedule.duration=45s --set setup.timeout=2m0s",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("arguments %q lack %q", args, want)
		}
	}
	if args := strings.Join(mutationLoadArgs(mutationOptions{scenario: "s.yaml"}, "/d", []string{"http://a"}, bursts), " "); strings.Contains(args, "--seed") ||
		!strings.Contains(args, "schedule.duration=30s") {
		t.Errorf("without --seed and --duration: arguments %q", args)
	}
}

// TestMutationRefusesBeforeAnyStack: a bad --duration, an unknown bug, and a scenario that refuses a profile's
// sets stop the matrix before any stack starts.
func TestMutationRefusesBeforeAnyStack(t *testing.T) {
	dir := t.TempDir()
	strict := filepath.Join(dir, "closed.yaml")
	if err := os.WriteFile(strict, []byte("name: closed\nschedule:\n  executor: closed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"duration above 60s", []string{"--duration", "2m"}, []string{"--duration 2m0s"}},
		{"unknown bug", []string{"--only", "lose-everything"}, []string{`unknown seeded bug "lose-everything"`}},
		{"missing scenario", []string{"--scenario", filepath.Join(dir, "none.yaml")}, []string{"profile duplicates", "none.yaml"}},
		{"scenario refusing the profiles' sets", []string{"--scenario", strict}, []string{"profile duplicates", "schedule.rate"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := startError(t, "mutation", append([]string{"--out", dir, "--doc", ""}, c.args...)...)
			if err == nil {
				t.Fatal("started")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if entries, _ := filepath.Glob(filepath.Join(dir, "mutation-*")); len(entries) > 0 {
				t.Errorf("a run folder was created: %v", entries)
			}
		})
	}
}

// fakeLoad is a shell script standing in for `ledgerproof load`: it is given the ready and start files as $2
// and $4 (after "-c script sh" the gated load appends --ready-file R --start-file S).
func fakeLoad(t *testing.T, script string) (string, []string) {
	t.Helper()
	shell, err := os.Stat("/bin/sh")
	if err != nil || shell.IsDir() {
		t.Skip("no /bin/sh")
	}
	return "/bin/sh", []string{"-c", script, "sh"}
}

func logFile(t *testing.T, dir string) *os.File {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, "load.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return log
}

func TestGatedLoad(t *testing.T) {
	t.Run("setup, start, exit status", func(t *testing.T) {
		dir := t.TempDir()
		binary, args := fakeLoad(t, `touch "$2"; while [ ! -f "$4" ]; do sleep 0.01; done; cat "$4"; exit 99`)
		log := logFile(t, dir)
		load, err := startGatedLoad(context.Background(), binary, args, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		if err := load.waitReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
		if err := load.start(at); err != nil {
			t.Fatal(err)
		}
		if err := load.wait(); err != nil || load.exitCode != 99 {
			t.Fatalf("wait: %v, exit %d, want 99", err, load.exitCode)
		}
		content, _ := os.ReadFile(log.Name())
		if !strings.Contains(string(content), "2026-01-02T03:04:05.6Z\n") {
			t.Errorf("the load did not read the start time; its log:\n%s", content)
		}
	})
	t.Run("exits before its schedule", func(t *testing.T) {
		dir := t.TempDir()
		binary, args := fakeLoad(t, `echo setup failed; exit 2`)
		load, err := startGatedLoad(context.Background(), binary, args, dir, logFile(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := load.waitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "exited 2 before its schedule") {
			t.Errorf("waitReady: %v, want the exit before the schedule", err)
		}
	})
	t.Run("asked to stop when the context ends", func(t *testing.T) {
		dir := t.TempDir()
		binary, args := fakeLoad(t, `trap 'exit 7' INT; touch "$2"; while :; do sleep 0.01; done`)
		ctx, cancel := context.WithCancel(context.Background())
		load, err := startGatedLoad(ctx, binary, args, dir, logFile(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := load.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := load.wait(); err != nil || load.exitCode != 7 {
			t.Errorf("wait: %v, exit %d, want 7 (the load's own exit on SIGINT)", err, load.exitCode)
		}
	})
}
