package bench

import (
	"fmt"
	"strconv"
	"strings"
)

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
