package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
