package proxy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunFileRefusesAMissingConfiguration(t *testing.T) {
	cases := []struct {
		name string
		path string
		want string
	}{
		{"no path", "", "--config is required"},
		{"no file", filepath.Join(t.TempDir(), "absent.json"), "read proxy config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := RunFile(context.Background(), c.path, Config{APIListen: "127.0.0.1:0"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}
