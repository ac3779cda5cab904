package main

import (
	"context"
	"flag"
	"os"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// downCommand stops every process of the local stack, in reverse order of
// dependence, signalling only processes whose identity matches the stack
// file. Data and logs are kept unless --purge.
func downCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("down", flag.ContinueOnError)
	dir := flags.String("dir", stack.DefaultConfig().Dir, "stack directory")
	purge := flags.Bool("purge", false, "also remove the stack directory (data and logs)")
	stopTimeout := flags.Duration("stop-timeout", stack.DefaultStopTimeout, "how long each process gets to exit before SIGKILL")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return stack.Down(ctx, *dir, stack.DownOptions{Purge: *purge, StopTimeout: *stopTimeout, Output: os.Stdout})
	}
}
