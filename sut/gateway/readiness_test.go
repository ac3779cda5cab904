package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestWorkersCheck: the check fails without a member and when the group
// cannot be described, passes with one, and asks the broker at most once
// per cache period. (TestGatewayReadyOnlyWithWorkers in sut/e2e runs it
// against a real broker and worker.)
func TestWorkersCheck(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var members int
	var describeError error
	asked := 0
	check, err := NewWorkersCheck("ledger-workers", func(_ context.Context, group string) (int, error) {
		if group != "ledger-workers" {
			t.Fatalf("asked about group %q", group)
		}
		asked++
		return members, describeError
	}, time.Second, clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name          string
		members       int
		describeError error
		advance       time.Duration
		wantAsked     int
		wantError     string
	}{
		{"no member", 0, nil, 0, 1, "has no member"},
		{"cached within the period", 1, nil, 500 * time.Millisecond, 1, "has no member"},
		{"a member after the period", 1, nil, time.Second, 2, ""},
		{"the broker does not answer", 1, errors.New("connection refused"), time.Second, 3, "connection refused"},
		{"answers again", 2, nil, time.Second, 4, ""},
	}
	for _, step := range steps {
		members, describeError = step.members, step.describeError
		now = now.Add(step.advance)
		err := check.Check(ctx)
		if asked != step.wantAsked {
			t.Errorf("%s: asked %d times, want %d", step.name, asked, step.wantAsked)
		}
		if step.wantError == "" && err != nil || step.wantError != "" && (err == nil || !strings.Contains(err.Error(), step.wantError)) {
			t.Errorf("%s: error %v, want %q", step.name, err, step.wantError)
		}
	}
	for _, bad := range []struct {
		group    string
		members  func(context.Context, string) (int, error)
		cacheFor time.Duration
	}{
		{"", func(context.Context, string) (int, error) { return 1, nil }, 0},
		{"g", nil, 0},
		{"g", func(context.Context, string) (int, error) { return 1, nil }, -time.Second},
	} {
		if _, err := NewWorkersCheck(bad.group, bad.members, bad.cacheFor, nil); err == nil {
			t.Errorf("NewWorkersCheck(%q, members set %v, %s) accepted", bad.group, bad.members != nil, bad.cacheFor)
		}
	}
}
