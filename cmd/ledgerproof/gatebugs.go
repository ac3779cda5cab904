package main

import (
	"context"
	"flag"
	"os"

	"github.com/ledgerproof/ledgerproof/reports/matrix"
)

// gateBugsCommand judges the runs `make gate-bugs` made: the default gate
// (`make demo`) once per seeded bug and once clean, each run directory
// named after its system under one folder. With --list it prints the
// systems to run, one per line, for the Makefile's loop.
func gateBugsCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("gate-bugs", flag.ContinueOnError)
	var o matrix.GateBugsOptions
	flags.BoolVar(&o.List, "list", false, "print the systems make gate-bugs runs (every seeded bug, then clean), one per line, and exit")
	flags.StringVar(&o.Dir, "dir", "", "folder holding one run directory per system (<dir>/<bug>/audit.json and exit-code), as make gate-bugs writes it")
	flags.StringVar(&o.Doc, "doc", "docs/ci.md", "Markdown file whose generated gate-bugs section (between its markers) receives the matrix when every system ran; empty: none")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return matrix.GateBugs(o, os.Stdout)
	}
}
