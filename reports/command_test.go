package reports

import (
	"strings"
	"testing"
)

// TestCommandOptionsValidate: the report command's settings are one of its
// two uses (--run, or --compare with a candidate), with a percentage and an
// output file it can read; each mistake is named.
func TestCommandOptionsValidate(t *testing.T) {
	refused := []struct {
		name    string
		options CommandOptions
		want    string
	}{
		{"both uses", CommandOptions{RunDir: "a", Baseline: "b", Candidate: "c"}, "give --run DIR (render a report) or --compare BASELINE CANDIDATE"},
		{"neither use", CommandOptions{}, "--run DIR or --compare BASELINE CANDIDATE is required"},
		{"compare without candidate", CommandOptions{Baseline: "b"}, "--compare needs two run directories"},
		{"max regression without compare", CommandOptions{RunDir: "a", MaxRegression: "10%"}, "go with --compare"},
		{"output without compare", CommandOptions{RunDir: "a", Output: "x.json"}, "go with --compare"},
		{"candidate without compare", CommandOptions{RunDir: "a", Candidate: "c"}, "go with --compare"},
		{"output of an unknown format", CommandOptions{Baseline: "b", Candidate: "c", Output: "x.txt"}, "--output x.txt: want a .json or .md file"},
		{"bad percentage", CommandOptions{Baseline: "b", Candidate: "c", MaxRegression: "lots"}, "--max-regression:"},
	}
	for _, c := range refused {
		if err := c.options.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	for _, good := range []CommandOptions{
		{RunDir: "a"},
		{Baseline: "b", Candidate: "c"},
		{Baseline: "b", Candidate: "c", MaxRegression: "10%", Output: "x.md"},
		{Baseline: "b", Candidate: "c", Output: "x.JSON"},
	} {
		if err := good.validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
}
