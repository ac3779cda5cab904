package capacity

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadSecondsP95: the hold's seconds with accepted operations, their median and worst p95 and how many reached
// the knee's target; seconds before or after the hold, or with nothing accepted, do not count; a malformed row is an
// error naming its line.
func TestReadSecondsP95(t *testing.T) {
	start := time.Unix(1796644700, 0)
	var rows []string
	row := func(second int64, accepted int, p95 float64) {
		rows = append(rows, fmt.Sprintf(`{"t":%d,"interval_seconds":1,"accepted":%d,"accept_p95_ms":%g}`, start.Unix()+second, accepted, p95))
	}
	row(-1, 500, 900) // the ramp
	row(0, 600, 40)
	row(1, 600, 120)
	row(2, 0, 0) // nothing accepted
	row(3, 600, 60)
	row(4, 600, 100)
	row(5, 600, 700) // after the hold
	path := filepath.Join(t.TempDir(), "load-timeseries.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	figures, err := readSecondsP95(path, start, start.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if figures == nil || figures.Seconds != 4 || figures.MedianMs != 80 || figures.WorstMs != 120 || figures.OverTarget != 2 {
		t.Fatalf("got %+v; want 4 seconds, median 80 (60 and 100), worst 120, 2 at or above 100 ms", figures)
	}
	if figures, err := readSecondsP95(path, start, start.Add(4*time.Second)); err != nil || figures.MedianMs != 60 || figures.Seconds != 3 {
		t.Errorf("three seconds: %+v, %v; want the middle one, 60", figures, err)
	}
	if figures, err := readSecondsP95(path, start.Add(time.Hour), start.Add(2*time.Hour)); err != nil || figures != nil {
		t.Errorf("a window without rows: %+v, %v; want none", figures, err)
	}
	if err := os.WriteFile(path, []byte(rows[0]+"\n{\"t\":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecondsP95(path, start, start.Add(5*time.Second)); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("a malformed second row: %v", err)
	}
	if _, err := readSecondsP95(filepath.Join(t.TempDir(), "absent"), start, start); err == nil {
		t.Error("a missing series: no error")
	}
	page := (&capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}, Steps: []capacityStep{
		{TargetTPS: 5000, Held: true, SecondsP95: figures}, {TargetTPS: 6000, Held: true}}}}}).markdown("/run")
	for _, want := range []string{"p95 accept per second: median / worst ms, seconds ≥ 100 ms | verdict |", "| 80.0 / 120.0, 2 of 4 | held |", "| – | held |"} {
		if !strings.Contains(page, want) {
			t.Errorf("capacity.md lacks %q:\n%s", want, page)
		}
	}
}

// TestSoakHoldSentences: the soak's report says what its hold's p95 was made of, second by second and autovacuum,
// as the knee's does; a soak whose figures were not read says neither.
func TestSoakHoldSentences(t *testing.T) {
	soak := soakResult{TargetTPS: 3500, Fraction: 0.7, HoldSeconds: 600, Passed: true, Reasons: []string{}, Step: &capacityStep{
		SecondsP95: &secondsP95{Seconds: 600, MedianMs: 71.2, WorstMs: 412.5, OverTarget: 31},
		Autovacuum: &autovacuumShare{Actions: 84, CPUSeconds: 7.25}}}
	page := soak.markdown()
	for _, want := range []string{"Second by second over the soak's hold, the p95 accept had a median of 71.2 ms and a worst of 412.5 ms; 31 of 600 seconds were at or above 100 ms.",
		"Postgres's autovacuum in the soak's hold: 84 action(s), 7.25 CPU seconds."} {
		if !strings.Contains(page, want) {
			t.Errorf("the soak's report lacks %q:\n%s", want, page)
		}
	}
	soak.Step = &capacityStep{}
	if page := soak.markdown(); strings.Contains(page, "Second by second") || strings.Contains(page, "autovacuum") {
		t.Errorf("a soak without the figures states them:\n%s", page)
	}
}
