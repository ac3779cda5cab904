package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExportDrainWaitsForAFinishedLedger: an exporter whose ledger still
// changes for its first three exports (a system applying what it answered
// 202) is run again until two exports agree; one that never settles is
// reported as not drained; one that fails is an error.
func TestExportDrainWaitsForAFinishedLedger(t *testing.T) {
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	counter := filepath.Join(dir, "runs")
	// Each run appends a line to a counter; the ledger's transactions are
	// the counter's first three lines: it stops changing after 3 runs.
	script := `mkdir -p ` + export + ` && echo x >> ` + counter + ` && head -n 3 ` + counter + ` > ` + export + `/transactions.jsonl && : > ` + export + `/accounts.jsonl && : > ` + export + `/postings.jsonl`
	var output strings.Builder
	note, err := ExportDrain{Command: script, Dir: export, QuietPeriod: 50 * time.Millisecond, Timeout: 30 * time.Second, Output: &output}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(counter)
	if runs := strings.Count(string(content), "\n"); runs != 4 || !strings.Contains(note, "drained") || strings.Contains(note, "NOT") {
		t.Errorf("%d exports, note %q: want 4 (the ledger changed 3 times, then stayed) and drained\n%s", runs, note, output.String())
	}

	changing := `mkdir -p ` + export + ` && date +%s%N > ` + export + `/transactions.jsonl && : > ` + export + `/accounts.jsonl && : > ` + export + `/postings.jsonl`
	note, err = ExportDrain{Command: changing, Dir: export, QuietPeriod: 50 * time.Millisecond, Timeout: 500 * time.Millisecond}.Run(context.Background())
	if err != nil || !strings.Contains(note, "NOT drained") {
		t.Errorf("an export that never settles: note %q, error %v; want NOT drained", note, err)
	}

	_, err = ExportDrain{Command: "echo cannot reach the ledger >&2; exit 4", Dir: export, QuietPeriod: 50 * time.Millisecond, Timeout: time.Second}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("a failing exporter: %v, want its exit status", err)
	}
	_, err = ExportDrain{Command: "true", Dir: filepath.Join(dir, "never-written"), QuietPeriod: 50 * time.Millisecond, Timeout: time.Second}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("an exporter that writes nothing: %v, want the export called incomplete", err)
	}
}
