package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

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
// an endpoint on o.Port and the wall time; or, with Serve or Bare, only that
// process (no result). It returns ErrTargetMissed when the target is missed,
// with the result: that is when the figures are most needed.
func RunCommand(ctx context.Context, o CommandOptions, out io.Writer) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	switch {
	case o.Serve != "":
		return nil, Serve(ctx, o.Serve, out)
	case o.Bare:
		return nil, Bare(ctx, BareConfig{BaseURL: o.Target, Rate: o.Rate, Duration: o.Duration, Workers: o.Workers,
			Accounts: o.Accounts, Seed: o.Seed}, out)
	}
	config := o.Config
	if config.Executable == "" {
		executable, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("the benchmark runs its own executable: %w", err)
		}
		config.Executable = executable
	}
	if o.Port == 0 {
		ports, err := runner.FreePorts(1, nil)
		if err != nil {
			return nil, err
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
	return result, runError
}
