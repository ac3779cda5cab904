package main

import (
	"context"
	"flag"
	"os"
	"strings"

	"github.com/ledgerproof/ledgerproof/reports"
)

// compareFlag is --compare BASELINE CANDIDATE. The CLI's parser takes no
// positional arguments, so the flag takes its second value itself: when
// the argument after BASELINE is not a flag, it is the candidate, and the
// rest of the command line is parsed again from after it.
type compareFlag struct {
	options *reports.CommandOptions
	flags   *flag.FlagSet
}

func (c *compareFlag) String() string {
	if c.options == nil {
		return ""
	}
	return c.options.Baseline
}

func (c *compareFlag) Set(baseline string) error {
	c.options.Baseline = baseline
	rest := c.flags.Args() // what follows BASELINE, not yet parsed
	if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
		return nil
	}
	c.options.Candidate = rest[0]
	return c.flags.Parse(rest[1:])
}

func reportCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("report", flag.ContinueOnError)
	var o reports.CommandOptions
	flags.StringVar(&o.RunDir, "run", "", "run directory: write index.html, junit.xml and summary.json into it")
	flags.Var(&compareFlag{options: &o, flags: flags}, "compare", "`BASELINE CANDIDATE`: compare two run directories (throughput, latency, errors, violations); exit 1 when the candidate violates invariants, 4 when it regressed beyond --max-regression")
	flags.StringVar(&o.Candidate, "candidate", "", "the candidate run directory of --compare (same as the second argument of --compare)")
	flags.StringVar(&o.MaxRegression, "max-regression", "", "with --compare: the largest allowed regression of p95 latency and mean throughput, in percent (10%); none: report only")
	flags.StringVar(&o.Output, "output", "", "with --compare: also write the comparison to this file, as JSON (.json) or Markdown (.md)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		// The report has more outcomes than the generic error path's exit 1,
		// and has said which on its outputs.
		return exitWith(reports.RunCommand(o, os.Stdout, os.Stderr), nil)
	}
}
