package invariants

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestDeadLetterOfAnAcknowledgedOperationIsLost: a command whose
// transaction id the client was answered (202 accepted, or a final answer)
// and that the system set aside as a dead letter never takes effect: a
// durability violation naming the operation and the dead letter.
func TestDeadLetterOfAnAcknowledgedOperationIsLost(t *testing.T) {
	cases := []struct {
		name string
		// mutate returns the transaction id the client was answered.
		mutate func(s *scenario) string
		// only says durability must be the only violated invariant.
		only    bool
		mention []string
	}{
		{"accepted, then set aside", func(s *scenario) string {
			entry := &s.journal[s.infoLost]
			entry.Status, entry.Tx, entry.Statuses = StatusAccepted, "tx-k-13-103", []int{202}
			return entry.Tx
		}, true, []string{"k-13", "status accepted"}},
		{"accepted, set aside, then told rejected", func(s *scenario) string {
			entry := &s.journal[s.infoLost]
			entry.Outcome, entry.Status, entry.Reason, entry.Tx = OutcomeFail, StatusRejected, "dead_lettered", "tx-k-13-103"
			entry.Statuses = []int{202}
			return entry.Tx
		}, true, []string{"k-13", "status rejected"}},
		{"told settled, its row lost and its command set aside", func(s *scenario) string {
			tx := s.journal[s.lastWithdrawal].Tx
			s.dropRow(s.row(s.lastWithdrawal))
			return tx
		}, false, []string{"k-15", "(ok,"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScenario()
			tx := c.mutate(s)
			s.deadLetters = []DeadLetter{{ID: 7, Topic: DefaultTopic, Partition: 2, Offset: 41,
				Raw: []byte(`{"transaction_id":"` + tx + `","kind":"withdrawal"}`), Reason: "apply_error: account 3 is closed", TransactionID: tx}}
			result := s.audit(t, nil)
			violated := result.violated()
			if result.Verdict != VerdictViolated || !slices.Contains(violated, Durability) {
				t.Fatalf("verdict %s, violated %v, want durability\n%s", result.Verdict, violated, result.summary())
			}
			if c.only && len(violated) != 1 {
				t.Errorf("violated %v, want only durability\n%s", violated, result.summary())
			}
			explanation := result.explanation(Durability)
			for _, want := range append(c.mention, "dead letter", "partition 2, offset 41", "apply_error: account 3 is closed", tx,
				`"table":"dead_letters"`, `"offset":41`) {
				if !strings.Contains(explanation, want) {
					t.Errorf("the explanation does not mention %q:\n%s", want, explanation)
				}
			}
			dead := result.DeadLetters
			if dead == nil || !dead.Available || dead.Count == nil || *dead.Count != 1 || dead.Journaled != 1 || dead.Lost != 1 ||
				len(dead.First) != 1 || !dead.First[0].Lost {
				t.Fatalf("dead letters %+v", dead)
			}
			summary := result.summary()
			for _, want := range []string{"dead letters — 1 record(s) set aside", "1 lost (durability violations)",
				`partition 2 offset 41 (id 7) reason "apply_error: account 3 is closed" tx=` + tx, "[acknowledged to a client and lost"} {
				if !strings.Contains(summary, want) {
					t.Errorf("summary lacks %q:\n%s", want, summary)
				}
			}
		})
	}
}

// TestUnrelatedDeadLettersAreReported: garbage nobody journaled, a command
// no client was answered, and a second copy of a command the ledger did
// apply are reported (count, by reason, the first ones with a printable
// excerpt) but violate nothing.
func TestUnrelatedDeadLettersAreReported(t *testing.T) {
	s := newScenario()
	garbage := append([]byte("\x00\x1b[31mPK\x03\x04\\"), 0xff, 0xfe)
	garbage = append(garbage, "\u202eévil\n"+strings.Repeat("é", 200)...)
	s.deadLetters = []DeadLetter{
		{ID: 1, Partition: 0, Offset: 3, Raw: garbage, Reason: "undecodable: invalid character '\\x00'"},
		{ID: 2, Partition: 1, Offset: 9, Raw: []byte(`{"transaction_id":"tx-nobody"}`), Reason: "key_collision", TransactionID: "tx-nobody"},
		{ID: 3, Partition: 1, Offset: 12, Raw: []byte(`{"kind":"deposit"}`), Reason: "apply_error: redelivered",
			TransactionID: s.journal[s.deposit].Tx},
		{ID: 4, Partition: 3, Offset: 0, Raw: []byte("\x00\x00"), RawBytes: 5_000_000, Reason: "undecodable: invalid character '\\x00'"},
	}
	result := s.audit(t, nil)
	if result.Verdict != VerdictPassed {
		t.Fatalf("verdict %s, violated %v\n%s", result.Verdict, result.violated(), result.summary())
	}
	dead := result.DeadLetters
	if dead == nil || !dead.Available || dead.Count == nil || *dead.Count != 4 || dead.WithoutTransaction != 2 ||
		dead.Journaled != 1 || dead.Lost != 0 || len(dead.First) != 4 {
		t.Fatalf("dead letters %+v", dead)
	}
	wantReasons := map[string]int64{`undecodable: invalid character '\\x00'`: 2, "key_collision": 1, "apply_error: redelivered": 1}
	if !equalCounts(dead.ByReason, wantReasons) {
		t.Errorf("by reason %v, want %v", dead.ByReason, wantReasons)
	}
	if !dead.First[2].Journaled || dead.First[2].Lost || dead.First[1].Journaled {
		t.Errorf("journaled/lost flags: %+v", dead.First)
	}
	if got := result.invariant(Durability).Checked["dead letters"]; got != 4 {
		t.Errorf("durability checked %d dead letters, want 4", got)
	}
	excerpt := dead.First[0].RawExcerpt
	if !utf8.ValidString(excerpt) || strings.ContainsFunc(excerpt, func(r rune) bool { return unicode.IsControl(r) || r == '\u202e' }) {
		t.Errorf("excerpt is not safe to print: %q", excerpt)
	}
	for _, want := range []string{`\x00\x1b[31mPK\x03\x04\\\xff\xfe\u202eévil\x0aéé`, "…"} {
		if !strings.Contains(excerpt, want) {
			t.Errorf("excerpt %q lacks %q", excerpt, want)
		}
	}
	if dead.First[0].RawBytes != int64(len(garbage)) || dead.First[3].RawBytes != 5_000_000 {
		t.Errorf("raw bytes %d and %d", dead.First[0].RawBytes, dead.First[3].RawBytes)
	}
	summary := result.summary()
	for _, want := range []string{"dead letters — 4 record(s) set aside: 2 named no transaction, 1 a journaled operation's, 0 lost",
		`by reason: "undecodable: invalid character '\\\\x00'" 2, "apply_error: redelivered" 1, "key_collision" 1`,
		"[journaled; the ledger holds its key's transaction]", "raw 5000000 byte(s): \\x00\\x00"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	content, err := json.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(content), `"dead_letters":{"available":true,"count":4,`) {
		t.Errorf("audit.json's dead letters: %s", content)
	}
}

// TestDeadLettersNotAvailable: an export without dead_letters.jsonl (other
// systems' exports) says nothing about dead letters: "not available", and
// a null count, never 0.
func TestDeadLettersNotAvailable(t *testing.T) {
	result := newScenario().audit(t, nil)
	if result.Verdict != VerdictPassed {
		t.Fatalf("verdict %s, violated %v", result.Verdict, result.violated())
	}
	dead := result.DeadLetters
	if dead == nil || dead.Available || dead.Count != nil || !strings.HasPrefix(dead.Note, "not available") {
		t.Fatalf("dead letters %+v", dead)
	}
	content, err := json.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(content), `"count":null`) {
		t.Errorf("dead letters in audit.json: %s", content)
	}
	if _, counted := result.invariant(Durability).Checked["dead letters"]; counted {
		t.Errorf("durability counts dead letters it could not read: %v", result.invariant(Durability).Checked)
	}
	if summary := result.summary(); !strings.Contains(summary, "dead letters: not available: the export has no dead_letters.jsonl") {
		t.Errorf("summary:\n%s", summary)
	}

	// An empty dead_letters.jsonl is a ledger that set nothing aside.
	s := newScenario()
	s.deadLetters = []DeadLetter{}
	result = s.audit(t, nil)
	if dead := result.DeadLetters; !dead.Available || dead.Count == nil || *dead.Count != 0 {
		t.Fatalf("dead letters %+v", dead)
	}
	summary := result.summary()
	if strings.Contains(summary, "\ndead letters") || !strings.Contains(summary, "0 dead letters") {
		t.Errorf("the summary lists dead letters when there are none, or durability does not say it read them:\n%s", summary)
	}
}

func TestPrintable(t *testing.T) {
	cases := []struct {
		name  string
		raw   string
		limit int
		want  string
	}{
		{"text", `{"kind":"deposit"}`, 100, `{"kind":"deposit"}`},
		{"control characters", "a\x00b\tc\nd\x7f", 100, `a\x00b\x09c\x0ad\x7f`},
		{"invalid UTF-8", "a\xff\xfeb", 100, `a\xff\xfeb`},
		{"a backslash is doubled", `a\x00`, 100, `a\\x00`},
		{"invisible and bidirectional characters", "a\u200bb\u202ec\U000e0001", 100, `a\u200bb\u202ec\U000e0001`},
		{"printable Unicode", "été ₿ 日本", 100, "été ₿ 日本"},
		{"cut", "abcdef", 3, "abc…"},
		{"cut inside a character", "aé", 2, "a…"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := printable([]byte(c.raw), c.limit)
			if got != c.want {
				t.Errorf("printable(%q, %d) = %q, want %q", c.raw, c.limit, got, c.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("%q is not valid UTF-8", got)
			}
		})
	}
}

func TestDeadLetterReasonsAreBounded(t *testing.T) {
	m := newModel(1)
	m.deadLetters = []DeadLetter{}
	for i := 0; i < 3*maxDeadLetterReasons; i++ {
		m.deadLetters = append(m.deadLetters, DeadLetter{ID: int64(i + 1), Offset: int64(i), Raw: []byte("?"),
			Reason: "apply_error: " + strings.Repeat("x", i) + strings.Repeat("long ", 100)})
	}
	result := m.audit(t, nil)
	dead := result.DeadLetters
	if len(dead.ByReason) != maxDeadLetterReasons+1 || dead.ByReason[otherDeadLetterReasons] != 2*maxDeadLetterReasons {
		t.Fatalf("%d reasons, %d other", len(dead.ByReason), dead.ByReason[otherDeadLetterReasons])
	}
	for reason := range dead.ByReason {
		if len(reason) > maxDeadLetterReasonBytes+len("…") {
			t.Errorf("reason of %d bytes", len(reason))
		}
	}
	if len(dead.First) != 20 {
		t.Errorf("%d dead letters listed, want the first 20", len(dead.First))
	}
}

func equalCounts(got, want map[string]int64) bool {
	if len(got) != len(want) {
		return false
	}
	for key, n := range want {
		if got[key] != n {
			return false
		}
	}
	return true
}
