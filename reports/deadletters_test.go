package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// TestDeadLettersInTheReport: the page, junit.xml and summary.json show the
// audit's dead letters (count, by reason, the first ones) when there are
// any, say "not available" when the ledger could not tell, and say nothing
// for an audit that predates them.
func TestDeadLettersInTheReport(t *testing.T) {
	deadAt := time.Date(2026, 12, 4, 15, 0, 1, 0, time.UTC)
	cases := []struct {
		name        string
		deadLetters *invariants.DeadLetters
		page        []string
		notInPage   []string
		property    string
		junit       []string
	}{
		{"dead letters", &invariants.DeadLetters{Available: true, Count: ptr(int64(3)), WithoutTransaction: 1, Journaled: 1, Lost: 1,
			ByReason: map[string]int64{"undecodable": 1, "key_collision": 1, "apply_error: account frozen": 1},
			First: []invariants.DeadLetterRef{
				{ID: 1, Partition: 1, Offset: 7, Reason: "undecodable", RawBytes: 4010, RawExcerpt: `<script>alert(1)</script>\x00…`, DeadAt: &deadAt},
				{ID: 2, Partition: 2, Offset: 11, Reason: "apply_error: account frozen", TransactionID: "tx-lost-1", RawBytes: 60,
					RawExcerpt: `{"kind":"withdrawal"}`, Journaled: true, Lost: true},
			}},
			[]string{`id="dead-letters"`, `data-dead-letters="3"`, "Dead letters — 3 record(s) the system set aside, the first 2 listed",
				"1 acknowledged to a client and lost", "apply_error: account frozen", "key_collision", "tx-lost-1",
				`&lt;script&gt;alert(1)&lt;/script&gt;\x00…`, "15:00:01.000Z", "Dead letters: 3 record(s) set aside, listed above."},
			[]string{"<script>alert(1)"}, "3",
			[]string{"dead letters: 3 record(s) set aside", "&#34;apply_error: account frozen&#34; 1",
				"partition 2 offset 11 (id 2) reason &#34;apply_error: account frozen&#34; tx=tx-lost-1 [acknowledged to a client and lost"}},
		{"not available", &invariants.DeadLetters{Note: "not available: the export has no dead_letters.jsonl (optional in the export format)"},
			[]string{"Dead letters: not available: the export has no dead_letters.jsonl"}, []string{`id="dead-letters"`}, "not available", nil},
		{"an audit from before dead letters", nil, nil, []string{`id="dead-letters"`, "Dead letters"}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDir := copyRun(t, t.TempDir())
			result := readAudit(t, runDir)
			result.DeadLetters = c.deadLetters
			writeAudit(t, runDir, result)
			summary, err := Generate(runDir)
			if err != nil {
				t.Fatal(err)
			}
			page := readText(t, filepath.Join(runDir, IndexFile))
			for _, want := range c.page {
				if !strings.Contains(page, want) {
					t.Errorf("index.html does not show %q", want)
				}
			}
			for _, unwanted := range c.notInPage {
				if strings.Contains(page, unwanted) {
					t.Errorf("index.html shows %q", unwanted)
				}
			}
			junit := readText(t, filepath.Join(runDir, JUnitFile))
			if property := `<property name="dead_letters" value="` + c.property + `">`; c.property != "" && !strings.Contains(junit, property) {
				t.Errorf("junit.xml lacks %s", property)
			}
			if c.property == "" && strings.Contains(junit, "dead_letters") {
				t.Errorf("junit.xml mentions dead letters the audit did not report")
			}
			for _, want := range c.junit {
				if !strings.Contains(junit, want) {
					t.Errorf("junit.xml lacks %q:\n%s", want, junit)
				}
			}
			var written Summary
			if err := json.Unmarshal([]byte(readText(t, filepath.Join(runDir, SummaryFile))), &written); err != nil {
				t.Fatal(err)
			}
			if (written.DeadLetters == nil) != (c.deadLetters == nil) || (summary.DeadLetters == nil) != (c.deadLetters == nil) {
				t.Fatalf("summary.json's dead letters %+v", written.DeadLetters)
			}
			if c.deadLetters != nil && c.deadLetters.Count != nil && (written.DeadLetters.Count == nil ||
				*written.DeadLetters.Count != *c.deadLetters.Count || len(written.DeadLetters.First) != len(c.deadLetters.First)) {
				t.Errorf("summary.json's dead letters %+v", written.DeadLetters)
			}
		})
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(content)
}

func ptr[T any](value T) *T { return &value }
