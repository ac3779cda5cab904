package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// RunCommand is `ledgerproof bench` (`make bench`): Run, then the results
// written as JSON to outputFile ("": none). They are written when the run
// completed, also when the required ratio was not met: that is when they
// are most needed.
func RunCommand(ctx context.Context, config Config, outputFile string, out io.Writer) error {
	result, runError := Run(ctx, config, out)
	if outputFile != "" && (runError == nil || errors.Is(runError, ErrRatioNotMet)) {
		if err := writeJSON(outputFile, result); err != nil {
			return errors.Join(runError, err)
		}
		fmt.Fprintf(out, "bench: results written to %s\n", outputFile)
	}
	return runError
}

func writeJSON(path string, value any) error {
	content, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, append(content, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// JoinBatchSizes writes batch sizes as ParseBatchSizes reads them.
func JoinBatchSizes(values []int) string {
	parts := make([]string, len(values))
	for i, value := range values {
		parts[i] = strconv.Itoa(value)
	}
	return strings.Join(parts, ",")
}

// ParseBatchSizes reads a comma-separated list of batch sizes (the flag
// --batch-sizes); Run checks their bounds.
func ParseBatchSizes(list string) ([]int, error) {
	var values []int
	for _, part := range strings.Split(list, ",") {
		value, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%q is not a comma-separated list of integers", list)
		}
		values = append(values, value)
	}
	return values, nil
}
