package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// stackCommand shows the local stack, or applies one action to one
// component. Positional arguments are not accepted by the CLI's flag
// parsing, so the action and the component are flags:
//
//	ledgerproof stack --dir D                                  # show
//	ledgerproof stack --dir D --action kill --component broker # act
func stackCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("stack", flag.ContinueOnError)
	var options stack.ControlOptions
	flags.StringVar(&options.Dir, "dir", stack.DefaultConfig().Dir, "stack directory")
	flags.StringVar(&options.Action, "action", "", "stop (clean shutdown), kill (SIGKILL), start, or restart a --component; failover (kill the Postgres primary, promote the standby); empty shows the stack")
	flags.StringVar(&options.Component, "component", "", "component to act on: postgres, redis, broker, gateway-N, worker-N")
	flags.DurationVar(&options.ReadyTimeout, "ready-timeout", stack.DefaultReadyTimeout, "how long start/restart wait for readiness")
	flags.BoolVar(&options.JSON, "json", false, "show the stack file as JSON, with each component's live state")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: ledgerproof stack [--dir D] [--json]\n       ledgerproof stack [--dir D] --action stop|kill|start|restart --component NAME\n       ledgerproof stack [--dir D] --action failover\n\nflags:")
		flags.PrintDefaults()
	}
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return stack.Control(ctx, options, os.Stdout)
	}
}
