package runner

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

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
		load, err := StartGatedLoad(context.Background(), binary, args, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		if err := load.WaitReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
		if err := load.Start(at); err != nil {
			t.Fatal(err)
		}
		if err := load.Wait(); err != nil || load.ExitCode() != 99 {
			t.Fatalf("wait: %v, exit %d, want 99", err, load.ExitCode())
		}
		content, _ := os.ReadFile(log.Name())
		if !strings.Contains(string(content), "2026-01-02T03:04:05.6Z\n") {
			t.Errorf("the load did not read the start time; its log:\n%s", content)
		}
	})
	t.Run("exits before its schedule", func(t *testing.T) {
		dir := t.TempDir()
		binary, args := fakeLoad(t, `echo setup failed; exit 2`)
		load, err := StartGatedLoad(context.Background(), binary, args, dir, logFile(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := load.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "exited 2 before its schedule") {
			t.Errorf("waitReady: %v, want the exit before the schedule", err)
		}
	})
	t.Run("asked to stop when the context ends", func(t *testing.T) {
		dir := t.TempDir()
		binary, args := fakeLoad(t, `trap 'exit 7' INT; touch "$2"; while :; do sleep 0.01; done`)
		ctx, cancel := context.WithCancel(context.Background())
		load, err := StartGatedLoad(ctx, binary, args, dir, logFile(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := load.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := load.Wait(); err != nil || load.ExitCode() != 7 {
			t.Errorf("wait: %v, exit %d, want 7 (the load's own exit on SIGINT)", err, load.ExitCode())
		}
	})
}

// fakeLoadBinary writes an executable shell script standing in for the ledgerproof binary of runner.Run (which
// calls it with `load --scenario ...`).
func fakeLoadBinary(t *testing.T, script string) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	path := filepath.Join(t.TempDir(), "ledgerproof")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// engineConfig is a run of binary with no stack: the audit says passed.
func engineConfig(t *testing.T, binary string, generators int) Config {
	return Config{
		RunDir: t.TempDir(), Scenario: "scenario.yaml", Binary: binary, Generators: generators,
		Gateways: []string{"http://127.0.0.1:1"}, Record: &RunFile{ID: "x"}, StopGrace: 5 * time.Second,
		ProgressInterval: time.Hour,
		Hooks: Hooks{Audit: func(context.Context, string, io.Writer) (string, error) {
			return invariants.VerdictPassed, nil
		}},
	}
}

// TestRunRecordsWhyItStoppedTheLoad: a load the engine stops at its setup or load bound, or on Ctrl-C, says so
// in run.json (load_stopped), whatever it exited with (here 99, as a load under faults may); a load that ends
// by itself has none.
func TestRunRecordsWhyItStoppedTheLoad(t *testing.T) {
	endless := fakeLoadBinary(t, `trap 'exit 99' INT; while :; do sleep 0.02; done`)
	cases := []struct {
		name   string
		binary string
		change func(*Config, context.CancelFunc)
		want   string
	}{
		{"setup timeout", endless, func(c *Config, _ context.CancelFunc) { c.SetupTimeout = 200 * time.Millisecond }, LoadStoppedSetupTimeout},
		{"load timeout", endless, func(c *Config, _ context.CancelFunc) { c.LoadTimeout = 200 * time.Millisecond }, LoadStoppedLoadTimeout},
		{"interrupted", endless, func(_ *Config, cancel context.CancelFunc) { time.AfterFunc(200*time.Millisecond, cancel) }, LoadStoppedInterrupted},
		{"ended by itself", fakeLoadBinary(t, `exit 99`), func(*Config, context.CancelFunc) {}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			config := engineConfig(t, c.binary, 1)
			c.change(&config, cancel)
			record, err := Run(ctx, config)
			if err != nil {
				t.Fatal(err)
			}
			if record.LoadStopped != c.want || record.LoadExitCode != 99 {
				t.Errorf("load_stopped %q, load exit %d; want %q and 99", record.LoadStopped, record.LoadExitCode, c.want)
			}
			written, err := ReadRunFile(config.RunDir)
			if err != nil || written.LoadStopped != c.want {
				t.Errorf("run.json: load_stopped %v (%v), want %q", written, err, c.want)
			}
		})
	}
}

// TestRunStartsGatedGeneratorsTogether: with several generators each is gated (its own ready file, the shared
// start file), and the run writes the start time once every one is ready.
func TestRunStartsGatedGeneratorsTogether(t *testing.T) {
	binary := fakeLoadBinary(t, `while [ $# -gt 0 ]; do
  case "$1" in --ready-file) ready=$2 ;; --start-file) start=$2 ;; esac
  shift
done
touch "$ready"
while [ ! -f "$start" ]; do sleep 0.01; done
cat "$start"`)
	config := engineConfig(t, binary, 2)
	record, err := Run(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	if record.LoadStopped != "" {
		t.Errorf("load_stopped %q", record.LoadStopped)
	}
	for segment := range 2 {
		content, _ := os.ReadFile(filepath.Join(config.RunDir, loadLogName(segment, 2)))
		if !strings.Contains(string(content), "--ready-file "+readyFile(config.RunDir, segment)) ||
			!regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT[0-9:.]+Z$`).Match(content) {
			t.Errorf("generator %d did not get its start time; its log:\n%s", segment, content)
		}
	}
}
