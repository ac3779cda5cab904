package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// SegmentSummaryPaths lists the summaries of a run's generator segments (load-summary-<i>.json) in segment
// order; none for a run of one process.
func SegmentSummaryPaths(runDir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(runDir, "load-summary-*.json"))
	if err != nil {
		return nil, err
	}
	type numbered struct {
		index int
		path  string
	}
	var found []numbered
	for _, path := range matches {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "load-summary-"), ".json")
		index, err := strconv.Atoi(name)
		if err != nil || index < 0 {
			continue // not a segment's summary
		}
		found = append(found, numbered{index, path})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].index < found[j].index })
	paths := make([]string, len(found))
	for i, f := range found {
		paths[i] = f.path
	}
	return paths, nil
}

// MergeSegments merges the segment summaries of runDir into its load-summary.json (percentiles from the merged
// histograms, thresholds judged on the whole load) and returns the merged summary. thresholds are the
// scenario's; nil takes them from the segments' own verdicts (each segment judged the same thresholds), which
// is how a run directory assembled from a Kubernetes Job is merged after the fact.
func MergeSegments(runDir string, thresholds []threshold.Threshold) (*Summary, error) {
	paths, err := SegmentSummaryPaths(runDir)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s has no segment summaries (load-summary-<i>.json)", runDir)
	}
	summaries := make([]*Summary, 0, len(paths))
	for _, path := range paths {
		summary, err := ReadSummary(path)
		if err != nil {
			return nil, err
		}
		summaries = append(summaries, summary)
	}
	if thresholds == nil {
		if thresholds, err = thresholdsOf(summaries[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", paths[0], err)
		}
	}
	merged, err := Merge(summaries, thresholds)
	if err != nil {
		return nil, err
	}
	if err := WriteSummary(filepath.Join(runDir, SummaryFile), merged); err != nil {
		return nil, err
	}
	return merged, nil
}

// thresholdsOf rebuilds the thresholds a summary judged from its verdicts.
func thresholdsOf(summary *Summary) ([]threshold.Threshold, error) {
	thresholds := make([]threshold.Threshold, 0, len(summary.Thresholds))
	var problems []error
	for _, verdict := range summary.Thresholds {
		parsed, err := threshold.Parse(verdict.Metric, verdict.Expression)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		parsed.AbortOnFail = verdict.AbortOnFail
		thresholds = append(thresholds, parsed)
	}
	return thresholds, errors.Join(problems...)
}

// SummaryMissing reports whether runDir has segment summaries but no merged one.
func SummaryMissing(runDir string) bool {
	if _, err := os.Stat(filepath.Join(runDir, SummaryFile)); err == nil {
		return false
	}
	paths, err := SegmentSummaryPaths(runDir)
	return err == nil && len(paths) > 0
}
