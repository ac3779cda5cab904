package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// CommandOptions are `ledgerproof bench-load`'s settings: the benchmark's
// Config, and what the command adds to it. With Serve or Bare the command
// is one of the processes the benchmark starts (the same binary): the
// trivial endpoint, or the bare client loop.
type CommandOptions struct {
	Config
	// Port is the endpoint's port on 127.0.0.1 (Config.Address); 0: a free
	// one below 32768.
	Port int
	// Output, when set, receives the results as JSON.
	Output string
	// Verbose prints the child processes' output (Config.Verbose).
	Verbose bool
	// Serve, when set, only runs the trivial endpoint on this
	// 127.0.0.1:port (the benchmark and the capacity calibration start it
	// as a process of their own).
	Serve string
	// Bare only runs the bare net/http client loop against Target (the
	// endpoint's base URL), with Config's rate, duration, workers, accounts
	// and seed.
	Bare   bool
	Target string
}

func (o *CommandOptions) validate() error {
	switch {
	case o.Serve != "" && o.Bare:
		return errors.New("--serve and --bare are two modes: give one")
	case o.Bare && o.Target == "":
		return errors.New("--bare needs --target, the endpoint's base URL")
	case !o.Bare && o.Target != "":
		return errors.New("--target is the bare client's (--bare)")
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("--port %d: want 0 (a free port) to 65535", o.Port)
	}
	return nil
}

// RunCommand is `ledgerproof bench-load` (`make bench-load`): Run against
// an endpoint on o.Port, the wall time, and the results written to
// o.Output; or, with Serve or Bare, only that process. It returns
// ErrTargetMissed when the target is missed.
func RunCommand(ctx context.Context, o CommandOptions, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	switch {
	case o.Serve != "":
		return Serve(ctx, o.Serve, out)
	case o.Bare:
		return Bare(ctx, BareConfig{BaseURL: o.Target, Rate: o.Rate, Duration: o.Duration, Workers: o.Workers,
			Accounts: o.Accounts, Seed: o.Seed}, out)
	}
	config := o.Config
	if config.Executable == "" {
		executable, err := os.Executable()
		if err != nil {
			return fmt.Errorf("the benchmark runs its own executable: %w", err)
		}
		config.Executable = executable
	}
	if o.Port == 0 {
		ports, err := runner.FreePorts(1, nil)
		if err != nil {
			return err
		}
		o.Port = ports[0]
	}
	config.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	if o.Verbose {
		config.Verbose = out
	}
	started := time.Now()
	result, runError := Run(ctx, config, out)
	if result != nil {
		fmt.Fprintf(out, "bench-load: %s of wall time\n", time.Since(started).Truncate(time.Second))
	}
	if o.Output != "" && result != nil {
		if err := writeJSON(o.Output, result); err != nil {
			return errors.Join(runError, err)
		}
		fmt.Fprintf(out, "bench-load: results written to %s\n", o.Output)
	}
	return runError
}

func writeJSON(path string, value any) error {
	content, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, append(content, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
