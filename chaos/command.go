package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// commandOutputTail bounds how much of a failed command's output its error
// (and so the chaos log) keeps.
const commandOutputTail = 1024

// commandTimeout is how long a command step may take.
func commandTimeout(step Step) time.Duration {
	if step.Params.Timeout > 0 {
		return step.Params.Timeout
	}
	return DefaultCommandTimeout
}

// runCommandStep runs a command step's shell command (sh -c) in its own
// process group, bounded by the step's timeout and ctx: when either ends,
// the whole group is killed, so a command that started children does not
// outlive its step. A command that exits non-zero, or is killed, is an
// error carrying the tail of its output. LEDGERPROOF_CHAOS_TARGET and
// LEDGERPROOF_CHAOS_SOURCE tell the command which step runs it.
func runCommandStep(ctx context.Context, step Step) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout(step))
	defer cancel()
	command := exec.Command("sh", "-c", step.Params.Run)
	command.Env = append(os.Environ(), "LEDGERPROOF_CHAOS_TARGET="+step.Target, "LEDGERPROOF_CHAOS_SOURCE="+step.Source)
	var output bytes.Buffer
	command.Stdout, command.Stderr = &output, &output
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := command.Start(); err != nil {
		return fmt.Errorf("command %q: %w", step.Params.Run, err)
	}
	done := make(chan error, 1)
	go func() { done <- command.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// The group is ours: its leader is the shell this step started.
		_ = syscall.Kill(-command.Process.Pid, syscall.SIGKILL)
		<-done
		err = fmt.Errorf("timed out after %s (its process group was killed)", commandTimeout(step))
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("cancelled: %w (its process group was killed)", ctx.Err())
		}
	}
	if err == nil {
		return nil
	}
	tail := strings.TrimSpace(output.String())
	if len(tail) > commandOutputTail {
		tail = "..." + tail[len(tail)-commandOutputTail:]
	}
	if tail == "" {
		tail = "(no output)"
	}
	return fmt.Errorf("command %q: %v; output: %s", step.Params.Run, err, tail)
}
