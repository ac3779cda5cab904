package main

import (
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
