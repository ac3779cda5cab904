package bench

import (
	"slices"
	"strings"
	"testing"
)

// TestParseBatchSizes: --batch-sizes reads what JoinBatchSizes writes, spaces allowed, and refuses what is not a
// list of integers (Run checks their bounds).
func TestParseBatchSizes(t *testing.T) {
	defaults := DefaultConfig().BatchSizes
	cases := []struct {
		name, list string
		want       []int
		err        string
	}{
		{"the defaults", JoinBatchSizes(defaults), defaults, ""},
		{"spaces", " 1, 16 ,128", []int{1, 16, 128}, ""},
		{"a word", "1,many", nil, `"1,many" is not a comma-separated list of integers`},
		{"an empty item", "1,,16", nil, "not a comma-separated list"},
		{"nothing", "", nil, "not a comma-separated list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sizes, err := ParseBatchSizes(c.list)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("sizes %v, error %v; want an error saying %q", sizes, err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(sizes, c.want) {
				t.Fatalf("sizes %v, error %v; want %v", sizes, err, c.want)
			}
		})
	}
}
