package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeDemoKeepsTheRunsExitCode: GNU make exits 2 for any failed recipe,
// so `make demo` writes the run's own code (1 violated, 2 could not run, 3
// threshold failed) to DEMO_EXIT, where .ci/run reads it. A stand-in binary
// exits with each code; the file must hold it, and make must fail.
func TestMakeDemoKeepsTheRunsExitCode(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"0", "1", "2", "3", "4"} {
		t.Run("exit "+code, func(t *testing.T) {
			dir := t.TempDir()
			binary := filepath.Join(dir, "ledgerproof")
			if err := os.WriteFile(binary, []byte("#!/bin/sh\necho \"$@\" > \""+dir+"/args\"\nexit "+code+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			exitFile := filepath.Join(dir, "exit-code")
			// -o deps: no installs; GO=true: the build step does nothing.
			command := exec.Command("make", "-s", "-o", "deps", "demo", "GO=true", "BIN="+binary,
				"DEMO_EXIT="+exitFile, "DEMO_DIR="+filepath.Join(dir, "stack"), "DEMO_RUN="+filepath.Join(dir, "run"),
				"DEMO_BUGS=trust-cache-balance")
			command.Dir = root
			// Not the make flags of an outer make (make -i test would
			// make this one ignore the failing recipe).
			command.Env = append(os.Environ(), "MAKEFLAGS=", "MFLAGS=", "MAKELEVEL=")
			output, err := command.CombinedOutput()
			var exitError *exec.ExitError
			switch {
			case code == "0" && err != nil:
				t.Fatalf("make demo failed for a passing run: %v\n%s", err, output)
			case code != "0" && !errors.As(err, &exitError):
				t.Fatalf("make demo did not fail for a run exiting %s: %v\n%s", code, err, output)
			}
			written, err := os.ReadFile(exitFile)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(written)); got != code {
				t.Errorf("DEMO_EXIT holds %q, want the run's %s\n%s", got, code, output)
			}
			args, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(args), "--unsafe-allow-seeded-bugs --seeded-bug trust-cache-balance") {
				t.Errorf("DEMO_BUGS did not reach the run: %s", args)
			}
		})
	}
}
