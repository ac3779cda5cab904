// Package stack starts and supervises the processes of the local stack:
// Postgres, redis-server, the Kafka-protocol broker, gateways and workers. It
// is used by `ledgerproof up/down/stack`, by the chaos executors (stop, kill,
// start one component by name) and by the test support package stacktest,
// which starts the same services for integration tests.
//
// Every process is identified by its PID and by its start time read from
// /proc/PID/stat, so a PID reused by an unrelated process is never signalled.
// The package therefore needs Linux.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessSpec describes how to start one long-running process.
type ProcessSpec struct {
	// Argv is the command line; Argv[0] is the program (a path, or a name
	// looked up in PATH).
	Argv []string
	// Env holds KEY=VALUE entries added to the environment. The child gets
	// this process's environment without its LEDGERPROOF_* variables (they
	// would silently set the child's flags), plus Env.
	Env []string
	// WorkDir is the child's working directory; empty means the current one.
	WorkDir string
	// LogFile receives the child's stdout and stderr; it is opened for
	// appending so a restarted process continues the same log. Required.
	LogFile string
	// User is the OS user to run as; empty means the current user. Postgres
	// refuses to run as root, so callers running as root pass "postgres".
	User string
	// NewSession starts the child in its own session (setsid) so it survives
	// the exit of the starting process and is not hit by the terminal's ^C.
	NewSession bool
	// ParentDeathSignal, when non-zero, is delivered to the child if the
	// starting process dies. Tests use it so a crashed test binary does not
	// leave servers behind.
	ParentDeathSignal syscall.Signal
}

// Process is a started process: its PID and its start time, which together
// identify it even after the PID is reused.
type Process struct {
	PID       int
	StartTime uint64
	// exited is closed when the process has been reaped by this process (only
	// for processes started by this process); exitStatus is its exit status
	// then (-1: killed by a signal).
	exited     chan struct{}
	exitStatus int
}

// ExitStatus is the process's exit status once Exited is closed (-1 when a
// signal ended it); ok is false before.
func (p *Process) ExitStatus() (status int, ok bool) {
	select {
	case <-p.exited:
		return p.exitStatus, true
	default:
		return 0, false
	}
}

// Exited returns a channel closed once the process has exited and was
// reaped. It is nil for processes this process did not start.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// StartProcess starts spec's process and returns once it runs. The child is
// reaped by a goroutine, so a killed child never lingers as a zombie of the
// starting process.
func StartProcess(spec ProcessSpec) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("start process: empty command line")
	}
	if spec.LogFile == "" {
		return nil, errors.New("start process: no log file")
	}
	logFile, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", spec.Argv[0], err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n==== %s ledgerproof starts: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(spec.Argv, " "))

	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = childEnvironment(spec.Env)
	cmd.Dir = spec.WorkDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	attributes := &syscall.SysProcAttr{Setsid: spec.NewSession, Pdeathsig: spec.ParentDeathSignal}
	if spec.User != "" {
		credential, err := lookupCredential(spec.User)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.Argv[0], err)
		}
		if credential.Uid != uint32(os.Geteuid()) {
			attributes.Credential = credential
		}
	}
	cmd.SysProcAttr = attributes
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	process := &Process{PID: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		process.exitStatus = cmd.ProcessState.ExitCode()
		close(process.exited)
	}()
	startTime, err := processStartTime(process.PID)
	if err != nil {
		// The process exited (and may already be reaped) before its start time
		// could be read: it failed at once.
		return nil, fmt.Errorf("start %s: exited immediately; log %s:\n%s", spec.Argv[0], spec.LogFile, RunLogExcerpt(spec.LogFile))
	}
	process.StartTime = startTime
	return process, nil
}

// childEnvironment is the environment of a started process: ours without the
// LEDGERPROOF_* variables, then extra.
func childEnvironment(extra []string) []string {
	var environment []string
	for _, entry := range os.Environ() {
		if strings.HasPrefix(entry, "LEDGERPROOF_") {
			continue
		}
		environment = append(environment, entry)
	}
	return append(environment, extra...)
}

// lookupCredential returns the uid/gid (and groups) of an OS user.
func lookupCredential(name string) (*syscall.Credential, error) {
	account, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up OS user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(account.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: uid %q: %w", name, account.Uid, err)
	}
	gid, err := strconv.ParseUint(account.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: gid %q: %w", name, account.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}, nil
}

// chownToUser gives paths to an OS user (no-op for the empty user or when the
// user is the current one).
func chownToUser(name string, paths ...string) error {
	if name == "" {
		return nil
	}
	credential, err := lookupCredential(name)
	if err != nil {
		return err
	}
	if credential.Uid == uint32(os.Geteuid()) {
		return nil
	}
	for _, path := range paths {
		if err := os.Chown(path, int(credential.Uid), int(credential.Gid)); err != nil {
			return fmt.Errorf("give %s to OS user %s: %w", path, name, err)
		}
	}
	return nil
}

// procStat is the part of /proc/PID/stat this package reads.
type procStat struct {
	state     byte
	pgid      int
	startTime uint64
}

// readProcStat parses /proc/PID/stat. The command name (field 2) may contain
// spaces and parentheses, so fields are counted after its last ')'.
func readProcStat(pid int) (procStat, error) {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	end := bytes.LastIndexByte(content, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(string(content[end+1:]))
	// fields[0] is field 3 (state); field 5 is pgrp, field 22 is starttime.
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	pgid, err := strconv.Atoi(fields[2])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat pgrp: %w", pid, err)
	}
	startTime, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat starttime: %w", pid, err)
	}
	return procStat{state: fields[0][0], pgid: pgid, startTime: startTime}, nil
}

// processStartTime returns the start time of a live (non-zombie) process, in
// clock ticks since boot.
func processStartTime(pid int) (uint64, error) {
	stat, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	if stat.state == 'Z' || stat.state == 'X' {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return stat.startTime, nil
}

// ProcessAlive reports whether the process pid runs and is the one that
// started at startTime (not a later process that reused the PID). Zombies
// count as dead.
func ProcessAlive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	current, err := processStartTime(pid)
	return err == nil && current == startTime
}

// SignalProcess sends sig to the process if, and only if, it is still the
// process identified by pid and startTime. It returns ErrNotRunning otherwise.
func SignalProcess(pid int, startTime uint64, sig syscall.Signal) error {
	if !ProcessAlive(pid, startTime) {
		return ErrNotRunning
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("signal %v to PID %d: %w", sig, pid, err)
	}
	return nil
}

// ErrNotRunning says the process is not (or no longer) running.
var ErrNotRunning = errors.New("process not running")

// WaitProcessExit polls until the identified process is gone or ctx ends.
func WaitProcessExit(ctx context.Context, pid int, startTime uint64) error {
	return poll(ctx, 20*time.Millisecond, func() error {
		if ProcessAlive(pid, startTime) {
			return fmt.Errorf("PID %d still running", pid)
		}
		return nil
	})
}

// StopProcess sends sig, waits up to timeout for the process to exit, then
// kills it with SIGKILL and waits again (bounded). Stopping a process that is
// not running is not an error.
func StopProcess(pid int, startTime uint64, sig syscall.Signal, timeout time.Duration) error {
	if err := SignalProcess(pid, startTime, sig); err != nil {
		if errors.Is(err, ErrNotRunning) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if WaitProcessExit(ctx, pid, startTime) == nil {
		return nil
	}
	if err := SignalProcess(pid, startTime, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	killCtx, killCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer killCancel()
	if err := WaitProcessExit(killCtx, pid, startTime); err != nil {
		return fmt.Errorf("PID %d survived SIGKILL: %w", pid, err)
	}
	return nil
}

// poll calls check every interval until it succeeds or ctx ends; the error
// then wraps check's last error.
func poll(ctx context.Context, interval time.Duration, check func() error) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// startMarker begins the lines StartProcess writes into a log before each
// start, so the output of the latest run can be found.
const startMarker = "\n==== "

// RunLogExcerpt returns the output of the latest run in a log file (since the
// last start marker), for error messages: the first lines (where a failing
// program usually says why) and the last lines, with the middle elided.
func RunLogExcerpt(path string) string {
	tail := LogTail(path, 400)
	if marker := strings.LastIndex(tail, startMarker); marker >= 0 {
		tail = tail[marker+1:]
	}
	lines := strings.Split(tail, "\n")
	const head, last = 12, 30
	if len(lines) > head+last+1 {
		elided := fmt.Sprintf("... (%d lines elided) ...", len(lines)-head-last)
		lines = append(append(lines[:head:head], elided), lines[len(lines)-last:]...)
	}
	return strings.Join(lines, "\n")
}

// LogTail returns the last lines of a log file, for error messages.
func LogTail(path string, lines int) string {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log %s: %v)", path, err)
	}
	defer file.Close()
	const maximumBytes = 64 << 10
	info, err := file.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log %s: %v)", path, err)
	}
	offset := info.Size() - maximumBytes
	if offset < 0 {
		offset = 0
	}
	buffer := make([]byte, info.Size()-offset)
	if _, err := file.ReadAt(buffer, offset); err != nil && len(buffer) > 0 {
		return fmt.Sprintf("(cannot read log %s: %v)", path, err)
	}
	all := strings.Split(strings.TrimRight(string(buffer), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// newCredentialAttributes runs a child as another user.
func newCredentialAttributes(credential *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: credential}
}

// canTraverse reports whether a user with credential may enter directory
// info (search permission), judged from its owner, group and mode bits.
func canTraverse(info os.FileInfo, credential *syscall.Credential) bool {
	stat, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := info.Mode().Perm()
	switch {
	case stat.Uid == credential.Uid:
		return mode&0o100 != 0
	case stat.Gid == credential.Gid:
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}
