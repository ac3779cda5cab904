package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/reports"
)

// Exit codes of `ledgerproof report` (docs/report.md).
const (
	reportExitOK = 0
	// reportExitViolations: with --compare, the candidate run violates
	// invariants (the same code as `ledgerproof run`'s invariant-violated).
	reportExitViolations = 1
	// reportExitCannotRun: bad flags, an unreadable run directory, a file
	// that could not be written.
	reportExitCannotRun = 2
	// reportExitRegression: with --compare --max-regression, p95 latency
	// or mean throughput regressed beyond the limit.
	reportExitRegression = 4
)

// reportOptions are the report command's flags, validated together.
type reportOptions struct {
	runDir        string
	baseline      string
	candidate     string
	maxRegression string
	output        string
}

func (o *reportOptions) validate() error {
	switch {
	case o.runDir != "" && o.baseline != "":
		return errors.New("give --run DIR (render a report) or --compare BASELINE CANDIDATE (compare two runs), not both")
	case o.runDir == "" && o.baseline == "":
		return errors.New("--run DIR or --compare BASELINE CANDIDATE is required")
	case o.baseline != "" && o.candidate == "":
		return errors.New("--compare needs two run directories: --compare BASELINE CANDIDATE (or --candidate DIR)")
	case o.baseline == "" && (o.maxRegression != "" || o.output != "" || o.candidate != ""):
		return errors.New("--candidate, --max-regression and --output go with --compare")
	}
	if o.output != "" {
		if _, err := comparisonFormat(o.output); err != nil {
			return err
		}
	}
	if o.maxRegression != "" {
		if _, err := reports.ParsePercent(o.maxRegression); err != nil {
			return fmt.Errorf("--max-regression: %w", err)
		}
	}
	return nil
}

// compareFlag is --compare BASELINE CANDIDATE. The CLI's parser takes no
// positional arguments, so the flag takes its second value itself: when
// the argument after BASELINE is not a flag, it is the candidate, and the
// rest of the command line is parsed again from after it.
type compareFlag struct {
	options *reportOptions
	flags   *flag.FlagSet
}

func (c *compareFlag) String() string {
	if c.options == nil {
		return ""
	}
	return c.options.baseline
}

func (c *compareFlag) Set(baseline string) error {
	c.options.baseline = baseline
	rest := c.flags.Args() // what follows BASELINE, not yet parsed
	if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
		return nil
	}
	c.options.candidate = rest[0]
	return c.flags.Parse(rest[1:])
}

func reportCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("report", flag.ContinueOnError)
	var o reportOptions
	flags.StringVar(&o.runDir, "run", "", "run directory: write index.html, junit.xml and summary.json into it")
	flags.Var(&compareFlag{options: &o, flags: flags}, "compare", "`BASELINE CANDIDATE`: compare two run directories (throughput, latency, errors, violations); exit 1 when the candidate violates invariants, 4 when it regressed beyond --max-regression")
	flags.StringVar(&o.candidate, "candidate", "", "the candidate run directory of --compare (same as the second argument of --compare)")
	flags.StringVar(&o.maxRegression, "max-regression", "", "with --compare: the largest allowed regression of p95 latency and mean throughput, in percent (10%); none: report only")
	flags.StringVar(&o.output, "output", "", "with --compare: also write the comparison to this file, as JSON (.json) or Markdown (.md)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		code := runReport(o, os.Stdout, os.Stderr)
		if code != reportExitOK {
			// The CLI's generic error path exits 1; the report has more
			// outcomes, so it exits itself.
			os.Exit(code)
		}
		return nil
	}
}

// runReport runs the command and returns its exit code.
func runReport(o reportOptions, stdout, stderr io.Writer) int {
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
		return reportExitCannotRun
	}
	if o.runDir != "" {
		if metrics.SummaryMissing(o.runDir) {
			// Generators run by hand or by a Kubernetes Job (--segment i/N) leave one summary each.
			merged, err := metrics.MergeSegments(o.runDir, nil)
			if err != nil {
				fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
				return reportExitCannotRun
			}
			fmt.Fprintf(stdout, "merged %d generator summaries into %s\n", len(merged.Segments), filepath.Join(o.runDir, metrics.SummaryFile))
		}
		summary, err := reports.Generate(o.runDir)
		if err != nil {
			fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
			return reportExitCannotRun
		}
		fmt.Fprintf(stdout, "verdict: %s (exit code %d)\n", summary.Verdict, summary.ExitCode)
		for _, reason := range summary.Reasons {
			fmt.Fprintf(stdout, "  - %s\n", reason)
		}
		fmt.Fprintf(stdout, "report:  %s\n", filepath.Join(o.runDir, reports.IndexFile))
		fmt.Fprintf(stdout, "junit:   %s\nsummary: %s\n", filepath.Join(o.runDir, reports.JUnitFile), filepath.Join(o.runDir, reports.SummaryFile))
		return reportExitOK
	}

	options := reports.CompareOptions{}
	if o.maxRegression != "" {
		percent, _ := reports.ParsePercent(o.maxRegression) // validated
		options.MaxRegressionPercent = &percent
	}
	comparison, err := reports.Compare(o.baseline, o.candidate, options)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
		return reportExitCannotRun
	}
	fmt.Fprint(stdout, comparison.Text())
	if o.output != "" {
		format, _ := comparisonFormat(o.output) // validated
		var content []byte
		if format == "json" {
			content, err = comparison.JSON()
		} else {
			content = []byte(comparison.Markdown())
		}
		if err == nil {
			err = os.WriteFile(o.output, content, 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ledgerproof report: --output: %v\n", err)
			return reportExitCannotRun
		}
		fmt.Fprintf(stdout, "comparison written to %s\n", o.output)
	}
	switch {
	case comparison.CandidateViolations > 0:
		return reportExitViolations
	case comparison.Regressed:
		return reportExitRegression
	}
	return reportExitOK
}

// comparisonFormat is the --output file's format, by its extension.
func comparisonFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return "json", nil
	case ".md", ".markdown":
		return "markdown", nil
	}
	return "", fmt.Errorf("--output %s: want a .json or .md file", path)
}
