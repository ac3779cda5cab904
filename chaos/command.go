package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// commandOutputTail bounds how much of a failed command's output its error
// (and so the chaos log) keeps.
const commandOutputTail = 1024

// shellWaitDelay bounds the wait for a command's output once its process
// group was killed or its shell exited: a descendant that left the group
// (a daemon) and still holds the output pipe must not hold the run.
const shellWaitDelay = 5 * time.Second

// commandTimeout is how long a command step may take.
func commandTimeout(step Step) time.Duration {
	if step.Params.Timeout > 0 {
		return step.Params.Timeout
	}
	return DefaultCommandTimeout
}

// Shell is a user's shell command run by the harness (a plan's command
// step, a run's export command).
type Shell struct {
	// Command runs with sh -c, in a process group of its own.
	Command string
	// Env is added to the harness's environment.
	Env []string
	// Timeout bounds it; when it passes, or the context ends, the whole
	// process group is killed.
	Timeout time.Duration
	// Output, when set, receives the command's output as it comes.
	Output io.Writer
}

// Run runs the command. Its error, when it fails, says how (exit status,
// timed out, cancelled) and carries the last KiB of its output, never the
// command's text (it may hold a password).
func (s Shell) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	command := exec.CommandContext(ctx, "sh", "-c", s.Command)
	command.Env = append(os.Environ(), s.Env...)
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The group is ours: its leader is the shell started here.
	command.Cancel = func() error { return syscall.Kill(-command.Process.Pid, syscall.SIGKILL) }
	command.WaitDelay = shellWaitDelay
	tail := &tailWriter{limit: commandOutputTail, next: s.Output}
	command.Stdout, command.Stderr = tail, tail
	err := command.Run()
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("timed out after %s (its process group was killed)", s.Timeout)
	case ctx.Err() != nil:
		err = fmt.Errorf("cancelled (its process group was killed): %w", ctx.Err())
	}
	output := strings.TrimSpace(tail.String())
	if output == "" {
		output = "(no output)"
	}
	return fmt.Errorf("%v; output: %s", err, output)
}

// tailWriter keeps the last limit bytes written, passing everything on to
// next when set.
type tailWriter struct {
	mutex     sync.Mutex
	limit     int
	buffer    []byte
	truncated bool
	next      io.Writer
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mutex.Lock()
	defer t.mutex.Unlock()
	t.buffer = append(t.buffer, p...)
	if over := len(t.buffer) - t.limit; over > 0 {
		t.buffer = append(t.buffer[:0], t.buffer[over:]...)
		t.truncated = true
	}
	if t.next != nil {
		_, _ = t.next.Write(p)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mutex.Lock()
	defer t.mutex.Unlock()
	if t.truncated {
		return "..." + string(t.buffer)
	}
	return string(t.buffer)
}

// runCommandStep runs a command step's command. LEDGERPROOF_CHAOS_TARGET and
// LEDGERPROOF_CHAOS_SOURCE tell the command which step runs it.
func runCommandStep(ctx context.Context, step Step) error {
	err := Shell{Command: step.Params.Run, Timeout: commandTimeout(step),
		Env: []string{"LEDGERPROOF_CHAOS_TARGET=" + step.Target, "LEDGERPROOF_CHAOS_SOURCE=" + step.Source}}.Run(ctx)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	return nil
}
