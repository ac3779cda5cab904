package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// K6SummaryFileName and K6LogFileName are k6's files in the run directory.
const (
	K6SummaryFileName = "k6-summary.json"
	K6LogFileName     = "k6.log"
)

// K6Args is k6's command line for a run: no usage report, no colours in the
// log, no REST API server (the run does not use it, and two k6 on one
// machine would fight over its port 6565), the summary exported into the run
// directory, and every variable of env as -e KEY=VALUE in name order (so the
// command line is reproducible).
func K6Args(runDir, scenario string, env map[string]string) []string {
	args := []string{"run", "--no-usage-report", "--no-color", "--address=", "--summary-export", runDir + "/" + K6SummaryFileName}
	keys := make([]string, 0, len(env))
	for key := range env {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		args = append(args, "-e", key+"="+env[key])
	}
	return append(args, scenario)
}

// K6Version runs `k6 version` (bounded to 10s) and returns its first line.
// It is also the up-front check that the binary runs at all.
func K6Version(ctx context.Context, binary string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	output, err := exec.CommandContext(ctx, binary, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s version: %w: %s", binary, err, strings.TrimSpace(string(output)))
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(output)), "\n")
	return line, nil
}

// k6Process is a running k6.
type k6Process struct {
	command *exec.Cmd
	done    chan struct{}
	// exitCode is set when done is closed: k6's status, or -1 if it was
	// killed by a signal or could not be waited for.
	exitCode int
	waitErr  error
}

// startK6 starts k6 in a process group of its own, so the terminal's Ctrl-C
// reaches only ledgerproof, which then stops k6 once, gracefully (a second
// SIGINT would make k6 abort without its teardown and summary). k6 gets
// SIGKILL if ledgerproof dies.
func startK6(binary string, args []string, log *os.File) (*k6Process, error) {
	command := exec.Command(binary, args...)
	command.Stdout, command.Stderr = log, log
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "$ %s %s\n", binary, strings.Join(args, " "))
	if err := command.Start(); err != nil {
		return nil, fmt.Errorf("start k6: %w", err)
	}
	process := &k6Process{command: command, done: make(chan struct{})}
	go func() {
		err := command.Wait()
		process.waitErr = err
		var exitError *exec.ExitError
		switch {
		case err == nil:
			process.exitCode = 0
		case errors.As(err, &exitError) && exitError.ExitCode() >= 0:
			process.exitCode = exitError.ExitCode()
		default:
			process.exitCode = -1
		}
		close(process.done)
	}()
	return process, nil
}

// stop asks k6 to stop (SIGINT: it ends the load, runs teardown and writes
// its summary) and kills it if it has not exited within grace.
func (p *k6Process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.command.Process.Signal(syscall.SIGINT)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.command.Process.Kill()
		<-p.done
	}
}
