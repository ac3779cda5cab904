package main

import (
	"context"
	"errors"
	"flag"
)

func benchCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return errors.New("bench: not implemented yet")
	}
}
