package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// GatedLoad is a `ledgerproof load` process whose schedule waits for a start
// time (--ready-file, --start-file): its setup runs at once, and the caller
// knows to the millisecond when the schedule starts, so what it times from
// there (a fault plan, a CPU window) lines up with the load.
type GatedLoad struct {
	command              *exec.Cmd
	readyFile, startFile string
	done                 chan struct{}
	// exitCode is the load's status once done is closed (-1: killed by a
	// signal, or never waited for); waitErr is why it could not be waited for.
	exitCode int
	waitErr  error
}

// ExitCode is the load's exit status once Wait returned (-1: killed by a signal, or never waited for).
func (l *GatedLoad) ExitCode() int { return l.exitCode }

// GatedLoadStopGrace bounds the load's graceful stop (the scenario's
// graceful_stop, 30 s by default, and the summary) once asked to stop; then
// it is killed.
const GatedLoadStopGrace = 45 * time.Second

// StartGatedLoad starts `binary args...` with a ready file and a start file in
// runDir; its output goes to log. When ctx ends the load is asked to stop
// (SIGINT: it ends the schedule, lets the operations in flight finish and be
// journaled, and writes its summary), and killed after GatedLoadStopGrace.
// It runs in a process group of its own, so a Ctrl-C reaches it once, through
// ctx, and it dies with this process.
func StartGatedLoad(ctx context.Context, binary string, args []string, runDir string, log *os.File) (*GatedLoad, error) {
	load := &GatedLoad{readyFile: filepath.Join(runDir, ".load-ready"), startFile: filepath.Join(runDir, ".load-start"),
		done: make(chan struct{}), exitCode: -1}
	for _, path := range []string{load.readyFile, load.startFile} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	args = append(append([]string(nil), args...), "--ready-file", load.readyFile, "--start-file", load.startFile)
	command := exec.CommandContext(ctx, binary, args...)
	command.Stdout, command.Stderr = log, log
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	command.Cancel = func() error { return command.Process.Signal(os.Interrupt) }
	command.WaitDelay = GatedLoadStopGrace
	fmt.Fprintf(log, "$ %s %s\n", binary, strings.Join(args, " "))
	if err := command.Start(); err != nil {
		return nil, fmt.Errorf("start the load: %w", err)
	}
	load.command = command
	go func() {
		defer close(load.done)
		err := command.Wait()
		var exitError *exec.ExitError
		switch {
		case err == nil:
			load.exitCode = 0
		case errors.As(err, &exitError) && exitError.ExitCode() >= 0:
			load.exitCode = exitError.ExitCode()
		default:
			load.waitErr = err
		}
	}()
	return load, nil
}

// PID is the load process's id.
func (l *GatedLoad) PID() int { return l.command.Process.Pid }

// WaitReady waits until the load's setup is done. It fails when the load
// exited first (setup could not prepare the accounts within setup.timeout:
// exit 2, the log names them) or ctx ended.
func (l *GatedLoad) WaitReady(ctx context.Context) error {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		if _, err := os.Stat(l.readyFile); err == nil {
			return nil
		}
		select {
		case <-l.done:
			if l.waitErr != nil {
				return fmt.Errorf("the load ended before its schedule: %w", l.waitErr)
			}
			return fmt.Errorf("the load exited %d before its schedule", l.exitCode)
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// Start gives the load its schedule's start time. The file is written whole
// (renamed into place): the load reads it as soon as it exists.
func (l *GatedLoad) Start(at time.Time) error {
	temporary := l.startFile + ".tmp"
	if err := os.WriteFile(temporary, []byte(at.UTC().Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
		return fmt.Errorf("start the load's schedule: %w", err)
	}
	if err := os.Rename(temporary, l.startFile); err != nil {
		return fmt.Errorf("start the load's schedule: %w", err)
	}
	return nil
}

// Wait waits for the load to exit; the error is for a load that could not be
// waited for or was killed (exitCode -1), not for its exit status.
func (l *GatedLoad) Wait() error {
	<-l.done
	if l.waitErr != nil {
		return fmt.Errorf("the load: %w", l.waitErr)
	}
	if l.exitCode < 0 {
		return errors.New("the load was killed")
	}
	return nil
}

// Stop asks the load to stop (SIGINT), kills it if it has not exited within
// GatedLoadStopGrace, and waits for it.
func (l *GatedLoad) Stop() {
	select {
	case <-l.done:
		return
	default:
	}
	_ = l.command.Process.Signal(os.Interrupt)
	timer := time.NewTimer(GatedLoadStopGrace)
	defer timer.Stop()
	select {
	case <-l.done:
	case <-timer.C:
		_ = l.command.Process.Kill()
		<-l.done
	}
}
