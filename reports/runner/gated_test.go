package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
