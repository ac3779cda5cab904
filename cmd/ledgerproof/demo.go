package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/demo"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// demoCommand walks a scripted flow over HTTP against a running stack and
// checks each answer, so `make demo` fails loudly if the system misbehaves.
func demoCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o demo.Options
	flags.StringVar(&o.Dir, "dir", stack.DefaultConfig().Dir, "stack directory whose first gateway the demo calls")
	flags.StringVar(&o.Gateway, "gateway", "", "gateway base URL (overrides --dir)")
	flags.DurationVar(&o.Wait, "wait", 10*time.Second, "bounded wait for each outcome (Prefer: wait)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return demo.Run(ctx, o, os.Stdout)
	}
}
