package invariants

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/renameio/v2"
)

// The files an audit writes into the run directory.
const (
	ResultFile  = "audit.json"
	SummaryFile = "audit.txt"
)

// WriteFiles writes audit.json and audit.txt into the run directory.
func (r *Result) WriteFiles() error {
	content, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode audit result: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(r.RunDir, ResultFile), append(content, '\n'), 0o644); err != nil {
		return err
	}
	var summary strings.Builder
	r.WriteSummary(&summary)
	return renameio.WriteFile(filepath.Join(r.RunDir, SummaryFile), []byte(summary.String()), 0o644)
}

// WriteSummary writes the human summary: the verdict, what was read, the
// operations by kind and outcome, every invariant with what it checked,
// each listed violation with its counterexample, and the dead letters.
func (r *Result) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "AUDIT %s — %s\n", strings.ToUpper(r.Verdict), r.RunDir)
	for _, missing := range r.Coverage.Missing() {
		fmt.Fprintf(w, "weak:    %s\n", missing)
	}
	fmt.Fprintf(w, "journal: %s, %d line(s)", strings.Join(r.Journals, ", "), r.JournalLines)
	if r.InvalidJournalLines > 0 {
		fmt.Fprintf(w, ", %d invalid", r.InvalidJournalLines)
	}
	fmt.Fprintf(w, "\nledger:  %s — %d account(s), %d transaction(s) (%d settled, %d rejected), %d posting(s)\n",
		r.Ledger, r.LedgerCounts["accounts"], r.LedgerCounts["transactions"], r.LedgerCounts["settled"],
		r.LedgerCounts["rejected"], r.LedgerCounts["postings"])
	fmt.Fprintf(w, "drain:   %s\n", r.DrainNote)

	fmt.Fprintf(w, "\noperations seen (kind: ok / fail / info):\n")
	kinds := make([]string, 0, len(r.Operations))
	for kind := range r.Operations {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	var total [3]int64
	for _, kind := range kinds {
		counts := r.Operations[kind]
		fmt.Fprintf(w, "  %-10s %8d / %8d / %8d", kind, counts[OutcomeOK], counts[OutcomeFail], counts[OutcomeInfo])
		total[0] += counts[OutcomeOK]
		total[1] += counts[OutcomeFail]
		total[2] += counts[OutcomeInfo]
		var other []string
		for outcome, n := range counts {
			if outcome != OutcomeOK && outcome != OutcomeFail && outcome != OutcomeInfo {
				other = append(other, fmt.Sprintf("%q: %d", outcome, n))
			}
		}
		if len(other) > 0 {
			sort.Strings(other)
			fmt.Fprintf(w, "  (other outcomes %s)", strings.Join(other, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  %-10s %8d / %8d / %8d\n", "total", total[0], total[1], total[2])
	info := r.InfoResolution
	fmt.Fprintf(w, "unknown outcomes (info) resolved by key: %d operation(s): %d settled, %d rejected, %d absent\n",
		info.Operations, info.Settled, info.Rejected, info.Absent)

	fmt.Fprintf(w, "\ninvariants:\n")
	for _, invariant := range r.Invariants {
		fmt.Fprintf(w, "  %-13s %-24s checked %s", StatusText(invariant.Status), invariant.Name, formatChecked(invariant.Checked))
		if invariant.ViolationCount > 0 {
			fmt.Fprintf(w, "; %d violation(s)", invariant.ViolationCount)
		}
		if invariant.Note != "" {
			fmt.Fprintf(w, " — %s", invariant.Note)
		}
		fmt.Fprintln(w)
	}
	r.writeCoverage(w)
	staleness := r.Staleness
	if staleness.Recorded {
		fmt.Fprintf(w, "cache staleness during the run: %d sample(s), %d stale, lag max %d ms, p99 ≤ %d ms %s\n",
			staleness.Samples, staleness.StaleSamples, staleness.LagMaxMs, staleness.LagP99Ms, staleness.Note)
	} else {
		fmt.Fprintf(w, "cache staleness during the run: %s\n", staleness.Note)
	}

	for _, invariant := range r.Invariants {
		if len(invariant.Violations) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s — %d violation(s)", invariant.Name, invariant.ViolationCount)
		if int64(len(invariant.Violations)) < invariant.ViolationCount {
			fmt.Fprintf(w, ", the first %d:", len(invariant.Violations))
		}
		fmt.Fprintln(w)
		for i, violation := range invariant.Violations {
			fmt.Fprintf(w, "  %d. %s\n", i+1, violation.Summary)
			for _, op := range violation.Operations {
				fmt.Fprintf(w, "       op  %s\n", describeEntry(op))
			}
			for _, row := range violation.Rows {
				fmt.Fprintf(w, "       row %s\n", describeRow(row))
			}
		}
	}
	r.writeDeadLetters(w)
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nwarnings:")
		for _, warning := range r.Warnings {
			fmt.Fprintf(w, "  - %s\n", warning)
		}
	}
	fmt.Fprintf(w, "\ntimings (ms): drain %d, journal %d, ledger %d, checks %d, cache %d, total %d\n",
		r.TimingsMs["drain"], r.TimingsMs["journal"], r.TimingsMs["ledger"], r.TimingsMs["checks"], r.TimingsMs["cache"], r.TimingsMs["total"])
}

// StatusText is an invariant's status for people: "PASSED", "NOT EXERCISED".
func StatusText(status string) string {
	return strings.ToUpper(strings.ReplaceAll(status, "-", " "))
}

// writeCoverage writes what the run exercised: outcome classes per kind,
// duplicates, rejections, and the required classes.
func (r *Result) writeCoverage(w io.Writer) {
	c := r.Coverage
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\ncoverage (kind: settled / rejected / conflict / in flight / unknown; replayed, retried, duplicates sent):\n")
	kinds := make([]string, 0, len(c.Kinds))
	for kind := range c.Kinds {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		k := c.Kinds[kind]
		var rejected int64
		for _, n := range k.Rejected {
			rejected += n
		}
		fmt.Fprintf(w, "  %-10s %8d / %8d / %8d / %8d / %8d; replayed %d, retried %d, duplicates sent %d",
			kind, k.Settled, rejected, k.Conflict, k.InFlight, k.Unknown, k.Replayed, k.Retried, k.DuplicatesSent)
		if k.Setup > 0 {
			fmt.Fprintf(w, " (%d of them setup's)", k.Setup)
		}
		fmt.Fprintln(w)
		if rejected > 0 {
			fmt.Fprintf(w, "             rejected by reason: %s\n", FormatCounts(k.Rejected))
		}
	}
	d := c.Duplicates
	fmt.Fprintf(w, "duplicates: %s sent; answered %s; %d key(s): %d applied once, %d more than once, %d without a transaction; %d key(s) with a transaction sent more than once in any way (%d replayed, %d retried)\n",
		FormatCounts(d.Sent), FormatCounts(d.Answers), d.Keys, d.AppliedOnce, d.AppliedMoreThanOnce, d.WithoutTransaction,
		d.KeysSentMoreThanOnce, d.ReplayedKeys, d.RetriedKeys)
	rejections := c.Rejections
	fmt.Fprintf(w, "rejections: ledger %s; before the ledger %s; %d judged", FormatCounts(rejections.Ledger),
		FormatCounts(rejections.BeforeLedger), rejections.Judged)
	if len(rejections.NotDecidable) > 0 {
		fmt.Fprintf(w, "; not decidable: %s", FormatCounts(rejections.NotDecidable))
	}
	if len(rejections.NotJudged) > 0 {
		fmt.Fprintf(w, "; not judged (no decision about money): %s", FormatCounts(rejections.NotJudged))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "required classes:\n")
	for _, class := range c.Required {
		state := "met"
		switch {
		case class.Waived != "" && class.Observed == 0:
			state = "waived: " + class.Waived
		case !class.Met:
			state = "NOT MET: " + strings.Join(class.Invariants, ", ") + " not exercised"
		}
		expected := ""
		if class.Expected != nil {
			expected = fmt.Sprintf(" (%.1f expected)", *class.Expected)
		}
		fmt.Fprintf(w, "  %-20s %8d%s  %s — %s\n", class.Class, class.Observed, expected, state, class.Why)
	}
	if c.Note != "" {
		fmt.Fprintf(w, "  (%s)\n", c.Note)
	}
}

func formatChecked(checked map[string]int64) string {
	if len(checked) == 0 {
		return "nothing"
	}
	units := make([]string, 0, len(checked))
	for unit := range checked {
		units = append(units, unit)
	}
	sort.Strings(units)
	parts := make([]string, 0, len(units))
	for _, unit := range units {
		parts = append(parts, fmt.Sprintf("%d %s", checked[unit], unit))
	}
	return strings.Join(parts, ", ")
}

// describeEntry renders a quoted journal line on one line for people.
func describeEntry(ref OperationRef) string {
	var entry JournalEntry
	if err := json.Unmarshal(ref.Entry, &entry); err != nil || entry.Op == "" {
		return string(ref.Entry)
	}
	text := fmt.Sprintf("%s %s key=%q user=%d %d→%d amount=%d outcome=%s", entry.Op, entry.Kind, entry.Key, entry.User,
		entry.From, entry.To, entry.Amount, entry.Outcome)
	if entry.Status != "" {
		text += " status=" + entry.Status
	}
	if entry.Reason != "" {
		text += " reason=" + entry.Reason
	}
	if entry.Tx != "" {
		text += " tx=" + entry.Tx
	}
	if entry.Dup != "" {
		text += " dup=" + entry.Dup
	}
	if entry.MisuseOf != "" {
		text += " misuse_of=" + entry.MisuseOf
	}
	return text + fmt.Sprintf(" invoke=%s complete=%s attempts=%d (%s@%d)", formatMicros(entry.Invoke),
		formatMicros(entry.Complete), entry.Attempts, ref.Journal, ref.Offset)
}

// describeRow renders a quoted ledger row on one line for people.
func describeRow(row RowRef) string {
	var parts []string
	add := func(name string, value any) { parts = append(parts, fmt.Sprintf("%s=%v", name, value)) }
	add(row.Table, row.ID)
	if row.UserID != nil {
		add("user", *row.UserID)
	}
	if row.IdempotencyKey != "" {
		add("key", fmt.Sprintf("%q", row.IdempotencyKey))
	}
	if row.Kind != "" {
		add("kind", row.Kind)
	}
	if row.Source != nil && row.Destination != nil {
		parts = append(parts, fmt.Sprintf("%d→%d", *row.Source, *row.Destination))
	}
	if row.TransactionID != "" {
		add("transaction", row.TransactionID)
	}
	if row.AccountID != nil {
		add("account", *row.AccountID)
	}
	if row.Amount != nil {
		add("amount", *row.Amount)
	}
	if row.Status != "" {
		add("status", row.Status)
	}
	if row.Reason != "" {
		add("reason", row.Reason)
	}
	if row.Partition != nil && row.AppliedOrder != nil {
		parts = append(parts, fmt.Sprintf("applied=%d/%d", *row.Partition, *row.AppliedOrder))
	}
	if row.Partition != nil && row.Offset != nil {
		parts = append(parts, fmt.Sprintf("partition=%d offset=%d", *row.Partition, *row.Offset))
	}
	if row.Balance != nil {
		add("balance", *row.Balance)
	}
	if row.BalanceAfter != nil {
		add("balance_after", *row.BalanceAfter)
	}
	if row.Cached != nil {
		add("cached", *row.Cached)
	}
	if row.Note != "" {
		parts = append(parts, "("+row.Note+")")
	}
	return strings.Join(parts, " ")
}

// writeDeadLetters writes the dead letters when there are any (count, by
// reason, the first ones), or one line when they are not available or the
// ledger said something about them.
func (r *Result) writeDeadLetters(w io.Writer) {
	d := r.DeadLetters
	switch {
	case d == nil:
		return
	case !d.Available || d.Count == nil:
		fmt.Fprintf(w, "\ndead letters: %s\n", d.Note)
		return
	case *d.Count == 0:
		if d.Note != "" {
			fmt.Fprintf(w, "\ndead letters: none — %s\n", d.Note)
		}
		return
	}
	fmt.Fprintf(w, "\ndead letters — %d record(s) set aside: %d named no transaction, %d a journaled operation's, %d lost (durability violations)\n",
		*d.Count, d.WithoutTransaction, d.Journaled, d.Lost)
	if d.Note != "" {
		fmt.Fprintf(w, "  %s\n", d.Note)
	}
	fmt.Fprintf(w, "  by reason: %s\n", FormatDeadLetterReasons(d.ByReason))
	if int64(len(d.First)) < *d.Count {
		fmt.Fprintf(w, "  the first %d:\n", len(d.First))
	}
	for i, letter := range d.First {
		fmt.Fprintf(w, "  %d. %s\n", i+1, DescribeDeadLetter(letter))
	}
}

// FormatDeadLetterReasons renders counts by reason on one line, the most
// frequent first.
func FormatDeadLetterReasons(byReason map[string]int64) string {
	reasons := make([]string, 0, len(byReason))
	for reason := range byReason {
		reasons = append(reasons, reason)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if byReason[reasons[i]] != byReason[reasons[j]] {
			return byReason[reasons[i]] > byReason[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, 0, len(reasons))
	for _, reason := range reasons {
		parts = append(parts, fmt.Sprintf("%q %d", reason, byReason[reason]))
	}
	return strings.Join(parts, ", ")
}

// DescribeDeadLetter renders a quoted dead letter on one line for people.
func DescribeDeadLetter(letter DeadLetterRef) string {
	text := fmt.Sprintf("partition %d offset %d (id %d) reason %q", letter.Partition, letter.Offset, letter.ID, letter.Reason)
	if letter.TransactionID != "" {
		text += " tx=" + letter.TransactionID
	}
	switch {
	case letter.Lost:
		text += " [acknowledged to a client and lost: durability]"
	case letter.Journaled:
		text += " [journaled; the ledger holds its key's transaction]"
	}
	return text + fmt.Sprintf(" raw %d byte(s): %s", letter.RawBytes, letter.RawExcerpt)
}
