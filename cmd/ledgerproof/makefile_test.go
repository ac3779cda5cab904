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

// TestMakeDemoShards: `make demo SHARDS=2` runs the gate on a 2-shard stack
// under the sharded plan with transfers to missing accounts; `make demo`
// passes neither.
func TestMakeDemoShards(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, shards := range []string{"", "2"} {
		dir := t.TempDir()
		binary := filepath.Join(dir, "ledgerproof")
		if err := os.WriteFile(binary, []byte("#!/bin/sh\necho \"$@\" > \""+dir+"/args\"\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		arguments := []string{"-s", "-o", "deps", "demo", "GO=true", "BIN=" + binary, "DEMO_EXIT=" + filepath.Join(dir, "exit-code"),
			"DEMO_DIR=" + filepath.Join(dir, "stack"), "DEMO_RUN=" + filepath.Join(dir, "run")}
		if shards != "" {
			arguments = append(arguments, "SHARDS="+shards)
		}
		command := exec.Command("make", arguments...)
		command.Dir = root
		command.Env = append(os.Environ(), "MAKEFLAGS=", "MFLAGS=", "MAKELEVEL=")
		if output, err := command.CombinedOutput(); err != nil {
			t.Fatalf("make demo SHARDS=%s: %v\n%s", shards, err, output)
		}
		args, err := os.ReadFile(filepath.Join(dir, "args"))
		if err != nil {
			t.Fatal(err)
		}
		sharded := strings.Contains(string(args), "--shards 2") && strings.Contains(string(args), "--plan chaos/plans/sharded.yaml") &&
			strings.Contains(string(args), "workload.missing_rate=")
		single := !strings.Contains(string(args), "--shards") && strings.Contains(string(args), "--plan chaos/plans/ci.yaml") &&
			!strings.Contains(string(args), "missing_rate")
		if (shards == "2" && !sharded) || (shards == "" && !single) {
			t.Errorf("make demo SHARDS=%q ran: %s", shards, args)
		}
	}
}
