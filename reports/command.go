package reports

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgerproof/ledgerproof/load/metrics"
)

// Exit codes of `ledgerproof report` (docs/report.md).
const (
	// CommandExitOK: the report was written, or the comparison found
	// nothing that fails it.
	CommandExitOK = 0
	// CommandExitViolations: with --compare, the candidate run violates
	// invariants (the same code as `ledgerproof run`'s invariant-violated).
	CommandExitViolations = 1
	// CommandExitCannotRun: bad flags, an unreadable run directory, a file
	// that could not be written.
	CommandExitCannotRun = 2
	// CommandExitRegression: with --compare --max-regression, p95 latency
	// or mean throughput regressed beyond the limit.
	CommandExitRegression = 4
)

// CommandOptions are the settings of `ledgerproof report`, validated
// together: RunDir (--run) renders a run's report; Baseline and Candidate
// (--compare) compare two runs, with MaxRegression (a percentage, "":
// report only) and Output (a .json or .md file, "": none).
type CommandOptions struct {
	RunDir        string
	Baseline      string
	Candidate     string
	MaxRegression string
	Output        string
}

// validate rejects a combination of settings that is not one of the two
// uses, and a bad percentage or output file name.
func (o *CommandOptions) validate() error {
	switch {
	case o.RunDir != "" && o.Baseline != "":
		return errors.New("give --run DIR (render a report) or --compare BASELINE CANDIDATE (compare two runs), not both")
	case o.RunDir == "" && o.Baseline == "":
		return errors.New("--run DIR or --compare BASELINE CANDIDATE is required")
	case o.Baseline != "" && o.Candidate == "":
		return errors.New("--compare needs two run directories: --compare BASELINE CANDIDATE (or --candidate DIR)")
	case o.Baseline == "" && (o.MaxRegression != "" || o.Output != "" || o.Candidate != ""):
		return errors.New("--candidate, --max-regression and --output go with --compare")
	}
	if o.Output != "" {
		if _, err := comparisonFormat(o.Output); err != nil {
			return err
		}
	}
	if o.MaxRegression != "" {
		if _, err := ParsePercent(o.MaxRegression); err != nil {
			return fmt.Errorf("--max-regression: %w", err)
		}
	}
	return nil
}

// RunCommand is `ledgerproof report`: it renders the report of o.RunDir
// (merging the summaries of generators run apart first), or compares two
// runs; it returns its exit code, one of the CommandExit* codes.
func RunCommand(o CommandOptions, stdout, stderr io.Writer) int {
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
		return CommandExitCannotRun
	}
	if o.RunDir != "" {
		if metrics.SummaryMissing(o.RunDir) {
			// Generators run by hand or by a Kubernetes Job (--segment i/N) leave one summary each.
			merged, err := metrics.MergeSegments(o.RunDir, nil)
			if err != nil {
				fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
				return CommandExitCannotRun
			}
			fmt.Fprintf(stdout, "merged %d generator summaries into %s\n", len(merged.Segments), filepath.Join(o.RunDir, metrics.SummaryFile))
		}
		summary, err := Generate(o.RunDir)
		if err != nil {
			fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
			return CommandExitCannotRun
		}
		fmt.Fprintf(stdout, "verdict: %s (exit code %d)\n", summary.Verdict, summary.ExitCode)
		for _, reason := range summary.Reasons {
			fmt.Fprintf(stdout, "  - %s\n", reason)
		}
		fmt.Fprintf(stdout, "report:  %s\n", filepath.Join(o.RunDir, IndexFile))
		fmt.Fprintf(stdout, "junit:   %s\nsummary: %s\n", filepath.Join(o.RunDir, JUnitFile), filepath.Join(o.RunDir, SummaryFile))
		return CommandExitOK
	}

	options := CompareOptions{}
	if o.MaxRegression != "" {
		percent, _ := ParsePercent(o.MaxRegression) // validated
		options.MaxRegressionPercent = &percent
	}
	comparison, err := Compare(o.Baseline, o.Candidate, options)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof report: %v\n", err)
		return CommandExitCannotRun
	}
	fmt.Fprint(stdout, comparison.Text())
	if o.Output != "" {
		format, _ := comparisonFormat(o.Output) // validated
		var content []byte
		if format == "json" {
			content, err = comparison.JSON()
		} else {
			content = []byte(comparison.Markdown())
		}
		if err == nil {
			err = os.WriteFile(o.Output, content, 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ledgerproof report: --output: %v\n", err)
			return CommandExitCannotRun
		}
		fmt.Fprintf(stdout, "comparison written to %s\n", o.Output)
	}
	switch {
	case comparison.CandidateViolations > 0:
		return CommandExitViolations
	case comparison.Regressed:
		return CommandExitRegression
	}
	return CommandExitOK
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
