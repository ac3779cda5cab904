package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
)

// LoadLogFileName is the load generator's log in the run directory; with several generators each writes
// load-<i>.log.
const LoadLogFileName = "load.log"

// LoadSummaryFileName is the load's summary (docs/load-summary.md); with several generators each writes
// load-summary-<i>.json and the run merges them into this file.
const LoadSummaryFileName = "load-summary.json"

// loadExitThresholds is the load generator's exit status when a threshold failed.
const loadExitThresholds = 99

// LoadArgs is the command line of one generator process (`ledgerproof load`): the scenario, the system, the
// run directory, the seed, the overrides in the order given, and for one of several generators its segment and
// the files of the shared start.
func LoadArgs(runDir, scenario string, baseURLs, sets []string, seed int64, segment, segments int) []string {
	args := []string{"load", "--scenario", scenario, "--base-url", strings.Join(baseURLs, ","), "--out", runDir,
		"--seed", strconv.FormatInt(seed, 10)}
	for _, set := range sets {
		args = append(args, "--set", set)
	}
	if segments > 1 {
		args = append(args, "--segment", fmt.Sprintf("%d/%d", segment, segments),
			"--ready-file", readyFile(runDir, segment), "--start-file", startFile(runDir))
	}
	return args
}

// readyFile is where generator segment i says its setup is done; startFile is where the run writes the
// shared start time once every generator is ready.
func readyFile(runDir string, segment int) string {
	return runDir + "/.load-ready-" + strconv.Itoa(segment)
}

func startFile(runDir string) string { return runDir + "/.load-start" }

// loadLogName is generator i's log file name.
func loadLogName(segment, segments int) string {
	if segments > 1 {
		return "load-" + strconv.Itoa(segment) + ".log"
	}
	return LoadLogFileName
}

// LoadProcess is a running `ledgerproof load` process: the engine's generators (runner.Run) and a capacity
// step's load (StartGatedLoad) are both one. It runs in a process group of its own, so the terminal's Ctrl-C
// reaches only this process, which then stops the load once, gracefully (SIGINT: it ends the schedule, lets
// the operations in flight finish and be journaled, and writes its summary), and kills it if it has not exited
// within a grace; it gets SIGKILL if this process dies.
//
// A gated load (--ready-file, --start-file) runs its setup at once and waits for a start time: its caller
// knows to the millisecond when the schedule starts, so what it times from there (a fault plan, a CPU window)
// lines up with the load.
type LoadProcess struct {
	command *exec.Cmd
	done    chan struct{}
	// exitCode is set when done is closed: the load's status, or -1 if it was killed by a signal or could not
	// be waited for; waitErr is what waiting returned (nil for exit 0).
	exitCode int
	waitErr  error
	log      string
	// readyFile and startFile are the gate (in the command line already); "" for a load whose schedule
	// starts at once, or whose start the caller writes (several generators share one start file).
	readyFile, startFile string
}

// startLoad starts `binary args...` with its output in log (after the command line).
func startLoad(binary string, args []string, log *os.File) (*LoadProcess, error) {
	command := exec.Command(binary, args...)
	command.Stdout, command.Stderr = log, log
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "$ %s %s\n", binary, strings.Join(args, " "))
	if err := command.Start(); err != nil {
		return nil, err
	}
	process := &LoadProcess{command: command, done: make(chan struct{}), exitCode: -1, log: log.Name()}
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

// StartGatedLoad starts `binary args...` gated by a ready file and a start file in runDir (it adds
// --ready-file and --start-file to args); its output goes to log. When ctx ends the load is asked to stop and
// killed after DefaultStopGrace, as Stop does.
func StartGatedLoad(ctx context.Context, binary string, args []string, runDir string, log *os.File) (*LoadProcess, error) {
	readyFile, startFile := filepath.Join(runDir, ".load-ready"), filepath.Join(runDir, ".load-start")
	for _, path := range []string{readyFile, startFile} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start the load: %w", err)
	}
	args = append(append([]string(nil), args...), "--ready-file", readyFile, "--start-file", startFile)
	load, err := startLoad(binary, args, log)
	if err != nil {
		return nil, fmt.Errorf("start the load: %w", err)
	}
	load.readyFile, load.startFile = readyFile, startFile
	go func() {
		select {
		case <-ctx.Done():
			load.stop(DefaultStopGrace)
		case <-load.done:
		}
	}()
	return load, nil
}

// PID is the load process's id.
func (p *LoadProcess) PID() int { return p.command.Process.Pid }

// ExitCode is the load's exit status once Wait returned (-1: killed by a signal, or never waited for).
func (p *LoadProcess) ExitCode() int {
	select {
	case <-p.done:
		return p.exitCode
	default:
		return -1
	}
}

// ready reports whether the gated load's setup is done (it wrote its ready file).
func (p *LoadProcess) ready() bool {
	if p.readyFile == "" {
		return false
	}
	_, err := os.Stat(p.readyFile)
	return err == nil
}

// WaitReady waits until the gated load's setup is done. It fails when the load exited first (setup could not
// prepare the accounts within setup.timeout: exit 2, the log names them) or ctx ended.
func (p *LoadProcess) WaitReady(ctx context.Context) error {
	if p.readyFile == "" {
		return errors.New("the load has no ready file")
	}
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		if p.ready() {
			return nil
		}
		select {
		case <-p.done:
			if p.exitCode < 0 {
				return fmt.Errorf("the load ended before its schedule: %w", p.waitErr)
			}
			return fmt.Errorf("the load exited %d before its schedule", p.exitCode)
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// Start gives the gated load its schedule's start time.
func (p *LoadProcess) Start(at time.Time) error {
	if p.startFile == "" {
		return errors.New("start the load's schedule: the load has no start file")
	}
	if err := writeStartTime(p.startFile, at); err != nil {
		return fmt.Errorf("start the load's schedule: %w", err)
	}
	return nil
}

// writeStartTime writes a schedule's start time into a start file whole (renamed into place): a load reads it
// as soon as it exists.
func writeStartTime(path string, at time.Time) error {
	return renameio.WriteFile(path, []byte(at.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}

// Wait waits for the load to exit; the error is for a load that could not be waited for or was killed
// (exit code -1), not for its exit status.
func (p *LoadProcess) Wait() error {
	<-p.done
	switch {
	case p.exitCode >= 0:
		return nil
	case p.waitErr != nil:
		return fmt.Errorf("the load: %w", p.waitErr)
	}
	return errors.New("the load was killed")
}

// Stop asks the load to stop (SIGINT), kills it if it has not exited within DefaultStopGrace, and waits for it.
func (p *LoadProcess) Stop() { p.stop(DefaultStopGrace) }

// stop asks the load to stop (SIGINT) and kills it if it has not exited within grace.
func (p *LoadProcess) stop(grace time.Duration) {
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
