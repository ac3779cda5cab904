package invariants

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStaleExportIsRefused: an export whose files were written before the
// run's load ended (an earlier run's, left in the directory) is refused,
// one written after is accepted.
func TestStaleExportIsRefused(t *testing.T) {
	runDir, exportDir := t.TempDir(), t.TempDir()
	journal := filepath.Join(runDir, "journal.jsonl")
	for _, path := range []string{journal, filepath.Join(exportDir, AccountsFile), filepath.Join(exportDir, TransactionsFile), filepath.Join(exportDir, PostingsFile)} {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loadEnd := time.Now()
	if err := os.Chtimes(journal, loadEnd, loadEnd); err != nil {
		t.Fatal(err)
	}
	setExportTime := func(at time.Time) {
		for _, name := range []string{AccountsFile, TransactionsFile, PostingsFile} {
			if err := os.Chtimes(filepath.Join(exportDir, name), at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	setExportTime(loadEnd.Add(-time.Hour))
	err := CheckExportFresh(exportDir, runDir)
	if err == nil || !strings.Contains(err.Error(), "before this run's load ended") {
		t.Errorf("an export an hour older than the load: %v, want it refused", err)
	}
	setExportTime(loadEnd.Add(time.Second))
	if err := CheckExportFresh(exportDir, runDir); err != nil {
		t.Errorf("an export written after the load: %v", err)
	}
}
