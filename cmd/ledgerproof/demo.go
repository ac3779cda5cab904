package main

import (
	"context"
	"errors"
	"flag"
)

func demoCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return errors.New("demo: not implemented yet")
	}
}
