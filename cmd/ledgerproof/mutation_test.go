package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMutationRefusesBeforeAnyStack: the mutation command's flags reach
// matrix.Options, whose checks (reports/matrix TestOptionsValidate) refuse a
// bad --duration before any stack starts or any run folder is made.
func TestMutationRefusesBeforeAnyStack(t *testing.T) {
	dir := t.TempDir()
	err := startError(t, "mutation", "--out", dir, "--doc", "", "--duration", "2m")
	if err == nil || !strings.Contains(err.Error(), "--duration 2m0s") {
		t.Fatalf("error %v, want --duration 2m0s refused", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "mutation-*")); len(entries) > 0 {
		t.Errorf("a run folder was created: %v", entries)
	}
}
