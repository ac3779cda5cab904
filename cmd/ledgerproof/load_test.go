package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadRefusesBadInput: each mistake is refused before any load starts (nothing listens at the base URL,
// so a load that started would fail differently), exit 2, with the file and line or the flag that is wrong.
func TestLoadRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", "name: good\nschedule:\n  rate: 10\n  duration: 1s\n")
	cases := []struct {
		name    string
		options loadOptions
		want    []string
	}{
		{"unknown scenario field", loadOptions{scenario: write("unknown.yaml", "name: x\nschedule:\n  rate: 10\n  colour: blue\n")},
			[]string{"unknown.yaml:4", "colour"}},
		{"negative rate", loadOptions{scenario: write("negative.yaml", "name: x\nschedule:\n  rate: -5\n")},
			[]string{"negative.yaml:3", "rate"}},
		{"threshold on an unknown metric", loadOptions{scenario: write("metric.yaml", "name: x\nthresholds:\n  no_such_metric: [\"count==0\"]\n")},
			[]string{"metric.yaml:3", "no_such_metric"}},
		{"segment 3/2", loadOptions{scenario: good, segment: "3/2"}, []string{"--segment", "3/2"}},
		{"segment without N", loadOptions{scenario: good, segment: "1"}, []string{"--segment", "i/N"}},
		{"bad override", loadOptions{scenario: good, sets: stackArgumentList{"schedule.rat=5"}}, []string{"schedule.rat", "rat"}},
		{"missing scenario", loadOptions{scenario: filepath.Join(dir, "none.yaml")}, []string{"none.yaml"}},
		{"two ways to start", loadOptions{scenario: good, startAt: "1", readyFile: "r", startFile: "s"}, []string{"--start-at"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.options
			o.baseURL = "http://127.0.0.1:1"
			o.out = filepath.Join(t.TempDir(), "run")
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := loadMain(ctx, o, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			for _, want := range c.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
			if !strings.Contains(stderr.String(), "no load was started") {
				t.Errorf("stderr does not say no load was started:\n%s", stderr.String())
			}
			if _, err := os.Stat(o.out); !os.IsNotExist(err) {
				t.Errorf("the run directory exists after a refused load: %v", err)
			}
		})
	}
}
