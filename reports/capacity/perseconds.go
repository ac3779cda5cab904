package capacity

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/load/metrics"
)

// secondsP95 is a step's p95 accept second by second over its hold, from
// the load's time series. The p95 of a hold can come from every second or
// from a few seconds of an episode (a stall, an autovacuum pass); these
// figures tell which.
type secondsP95 struct {
	// Seconds counts the hold's seconds with accepted operations.
	Seconds int `json:"seconds"`
	// MedianMs and WorstMs are the median and the highest of their p95s.
	MedianMs float64 `json:"median_ms"`
	WorstMs  float64 `json:"worst_ms"`
	// OverTarget counts the seconds whose p95 was at or above the knee's
	// target (kneeP95AcceptTargetMs).
	OverTarget int `json:"over_target"`
}

// readSecondsP95 reads the rows of a load time series whose second began in
// [from, to), to the whole second (a row's t is), and had accepted
// operations; nil when none did.
func readSecondsP95(path string, from, to time.Time) (*secondsP95, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var p95s []float64
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; scanner.Scan(); line++ {
		var row metrics.Second
		if err := json.Unmarshal(scanner.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if row.Accepted == 0 || row.T < from.Unix() || row.T >= to.Unix() {
			continue
		}
		p95s = append(p95s, row.AcceptP95Milliseconds)
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(p95s) == 0 {
		return nil, nil
	}
	figures := &secondsP95{Seconds: len(p95s), MedianMs: median(p95s), WorstMs: slices.Max(p95s)}
	for _, p95 := range p95s {
		if p95 >= kneeP95AcceptTargetMs {
			figures.OverTarget++
		}
	}
	return figures, nil
}

// formatSecondsP95 is a step's per-second cell: "median / worst, n of m",
// or "–" when the series was not read.
func formatSecondsP95(figures *secondsP95) string {
	if figures == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f, %d of %d", figures.MedianMs, figures.WorstMs, figures.OverTarget, figures.Seconds)
}

// holdSentences says what a hold's p95 was made of: its p95 second by
// second and Postgres's autovacuum in it, each when it was read.
func holdSentences(step *capacityStep, hold string) string {
	var b strings.Builder
	if p95 := step.SecondsP95; p95 != nil {
		fmt.Fprintf(&b, "Second by second over %s, the p95 accept had a median of %.1f ms and a worst of %.1f ms; %d of %d seconds were at or above %d ms.\n",
			hold, p95.MedianMs, p95.WorstMs, p95.OverTarget, p95.Seconds, kneeP95AcceptTargetMs)
	}
	if vacuum := step.Autovacuum; vacuum != nil {
		fmt.Fprintf(&b, "Postgres's autovacuum in %s: %d action(s), %.2f CPU seconds.\n", hold, vacuum.Actions, vacuum.CPUSeconds)
	}
	return b.String()
}
