package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// loadProcess is a running generator.
type loadProcess struct {
	command *exec.Cmd
	done    chan struct{}
	// exitCode is set when done is closed: the generator's status, or -1 if it was killed by a signal or
	// could not be waited for.
	exitCode int
	waitErr  error
	log      string
}

// startLoad starts a generator in a process group of its own, so the terminal's Ctrl-C reaches only
// ledgerproof run, which then stops the generator once, gracefully (it ends the schedule, lets the operations
// in flight finish and writes its summary). The generator gets SIGKILL if the run dies.
func startLoad(binary string, args []string, log *os.File) (*loadProcess, error) {
	command := exec.Command(binary, args...)
	command.Stdout, command.Stderr = log, log
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "$ %s %s\n", binary, strings.Join(args, " "))
	if err := command.Start(); err != nil {
		return nil, fmt.Errorf("start the load generator: %w", err)
	}
	process := &loadProcess{command: command, done: make(chan struct{}), log: log.Name()}
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

// stop asks the generator to stop (SIGINT) and kills it if it has not exited within grace.
func (p *loadProcess) stop(grace time.Duration) {
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
