package mutation

import (
	"strings"
	"testing"
)

// TestProfileArgumentsAreRendered: the matrix names a profile's gateway and
// worker arguments beside its scenario sets, so a reader sees the system's
// settings the clean run passed with.
func TestProfileArgumentsAreRendered(t *testing.T) {
	var replays Profile
	for _, p := range Profiles() {
		if p.Name == ProfileReplays {
			replays = p
		}
	}
	if replays.Name == "" {
		t.Fatal("no replays profile")
	}
	m := &Matrix{Version: 1, Profiles: Profiles(), Cases: Cases(), Results: []Result{{System: "clean", Profile: ProfileReplays}}}
	m.Finish()
	text := m.Markdown()
	for _, want := range []string{"Gateways run with `--idempotency-ttl=10s`.", "Workers run with `--bloom-dedupe`."} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	if got := processArgsText(Profile{Name: "bare"}); got != "" {
		t.Errorf("a profile without arguments rendered %q", got)
	}
}
