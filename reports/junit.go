package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// JUnit XML as CI systems read it (the Ant/Jenkins schema): one suite, one
// test case per invariant and per threshold of the load.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *junitSkipped `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

// JUnit test case class names.
const (
	junitInvariantClass = "ledgerproof.invariants"
	junitThresholdClass = "ledgerproof.thresholds"
	junitRunClass       = "ledgerproof.run"
	junitCoverageClass  = "ledgerproof.coverage"
)

func (a *analysis) junit() ([]byte, error) {
	summary := a.summary
	suite := junitSuite{Name: "ledgerproof " + nonEmpty(summary.RunID, a.in.dir)}
	if !a.origin.IsZero() {
		suite.Timestamp = a.origin.UTC().Format("2006-01-02T15:04:05")
	}
	suite.Properties = []junitProperty{
		{"verdict", summary.Verdict},
		{"exit_code", fmt.Sprint(summary.ExitCode)},
		{"audit_verdict", nonEmpty(summary.AuditVerdict, notRecorded)},
	}
	if run := a.in.run; run != nil {
		suite.Properties = append(suite.Properties,
			junitProperty{"scenario", run.Scenario}, junitProperty{"plan", run.Plan},
			junitProperty{"seed", fmt.Sprint(run.Seed)}, junitProperty{"plan_seed", fmt.Sprint(run.PlanSeed)})
	}

	if audit := a.in.audit; audit != nil {
		if audit.DeadLetters != nil {
			suite.Properties = append(suite.Properties, junitProperty{"dead_letters", deadLetterCount(audit.DeadLetters)})
		}
		for _, invariant := range audit.Invariants {
			test := junitCase{Name: invariant.Name, Classname: junitInvariantClass, Time: "0",
				SystemOut: fmt.Sprintf("%s\nchecked: %s", invariant.Description, formatChecked(invariant.Checked))}
			if invariant.Name == invariants.Durability {
				// Dead letters are where acknowledged commands get lost:
				// the durability case lists them, violated or not.
				test.SystemOut += explainDeadLetters(audit.DeadLetters)
			}
			switch invariant.Status {
			case invariants.StatusViolated:
				test.Failure = &junitProblem{
					Message: fmt.Sprintf("%d violation(s): %s", invariant.ViolationCount, firstSummary(invariant)),
					Type:    "invariant-violated",
					Text:    explainInvariant(invariant),
				}
			case invariants.StatusSkipped:
				test.Skipped = &junitSkipped{Message: nonEmpty(invariant.Note, "skipped by the audit")}
			case invariants.StatusNotExercised:
				// Not a pass: the run never produced what it is about.
				test.Skipped = &junitSkipped{Message: nonEmpty(invariant.Note, "not exercised")}
			}
			suite.Cases = append(suite.Cases, test)
		}
		if coverage := audit.Coverage; coverage != nil {
			// One case per required class: a class the run was required
			// to exercise and did not fails it (verdict weak).
			for _, class := range coverage.Required {
				test := junitCase{Name: class.Class, Classname: junitCoverageClass, Time: "0",
					SystemOut: fmt.Sprintf("required: %s\nobserved: %d\ninvariants not exercised without it: %s",
						class.Why, class.Observed, strings.Join(class.Invariants, ", "))}
				switch {
				case !class.Met:
					test.Failure = &junitProblem{Message: fmt.Sprintf("%s required (%s) but none happened", class.Class, class.Why),
						Type: VerdictWeak, Text: strings.Join(coverage.Missing(), "\n")}
				case class.Waived != "" && class.Observed == 0:
					test.Skipped = &junitSkipped{Message: "waived: " + class.Waived}
				}
				suite.Cases = append(suite.Cases, test)
			}
		}
		if audit.Verdict == invariants.VerdictIncomplete {
			suite.Cases = append(suite.Cases, junitCase{Name: "audit complete", Classname: junitRunClass, Time: "0",
				Error: &junitProblem{Message: "the audit is incomplete", Type: "could-not-run", Text: audit.DrainNote}})
		}
	} else {
		suite.Cases = append(suite.Cases, junitCase{Name: "audit", Classname: junitRunClass, Time: "0",
			Error: &junitProblem{Message: "audit.json not recorded: the run was not audited", Type: "could-not-run"}})
	}

	for _, threshold := range summary.Thresholds {
		test := junitCase{Name: threshold.Name(), Classname: junitThresholdClass, Time: "0"}
		switch {
		case threshold.NotObserved:
			// Not a pass: nothing was measured to hold the threshold to.
			test.Skipped = &junitSkipped{Message: "not exercised: " + threshold.Metric + " had no samples"}
		case !threshold.Passed:
			message := "threshold crossed: " + threshold.Expression
			if threshold.Observed != nil {
				message += fmt.Sprintf(" (observed %s)", formatNumber(*threshold.Observed))
			}
			test.Failure = &junitProblem{Message: message, Type: "threshold-crossed",
				Text: fmt.Sprintf("metric %s: the threshold %s was crossed", threshold.Metric, threshold.Expression)}
		}
		suite.Cases = append(suite.Cases, test)
	}

	for _, test := range suite.Cases {
		suite.Tests++
		switch {
		case test.Failure != nil:
			suite.Failures++
		case test.Error != nil:
			suite.Errors++
		case test.Skipped != nil:
			suite.Skipped++
		}
	}
	document := junitSuites{Name: "ledgerproof", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors,
		Skipped: suite.Skipped, Suites: []junitSuite{suite}}
	content, err := xml.MarshalIndent(document, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("junit: %w", err)
	}
	return append([]byte(xml.Header), append(content, '\n')...), nil
}

// deadLetterCount is the number of dead letters, or why there is none.
func deadLetterCount(dead *invariants.DeadLetters) string {
	if !dead.Available || dead.Count == nil {
		return "not available"
	}
	return fmt.Sprint(*dead.Count)
}

// explainDeadLetters is the dead letters as text, when there are any: the
// count, by reason, and the first ones listed; "" otherwise.
func explainDeadLetters(dead *invariants.DeadLetters) string {
	if dead == nil || !dead.Available || dead.Count == nil || *dead.Count == 0 {
		return ""
	}
	var text strings.Builder
	fmt.Fprintf(&text, "\ndead letters: %d record(s) set aside: %d named no transaction, %d a journaled operation's, %d lost (durability violations)\n",
		*dead.Count, dead.WithoutTransaction, dead.Journaled, dead.Lost)
	fmt.Fprintf(&text, "by reason: %s\n", invariants.FormatDeadLetterReasons(dead.ByReason))
	if int64(len(dead.First)) < *dead.Count {
		fmt.Fprintf(&text, "the first %d:\n", len(dead.First))
	}
	for i, letter := range dead.First {
		fmt.Fprintf(&text, "%d. %s\n", i+1, invariants.DescribeDeadLetter(letter))
	}
	return text.String()
}

func firstSummary(invariant invariants.InvariantResult) string {
	if len(invariant.Violations) == 0 {
		return "(no counterexample listed)"
	}
	return invariant.Violations[0].Summary
}

// explainInvariant is a violated invariant's explanation as text: each
// listed violation's summary, keys, accounts, the journal lines quoted and
// the ledger rows.
func explainInvariant(invariant invariants.InvariantResult) string {
	var text strings.Builder
	fmt.Fprintf(&text, "%s — %d violation(s)", invariant.Name, invariant.ViolationCount)
	if int64(len(invariant.Violations)) < invariant.ViolationCount {
		fmt.Fprintf(&text, ", the first %d", len(invariant.Violations))
	}
	text.WriteString("\n")
	for i, violation := range invariant.Violations {
		fmt.Fprintf(&text, "%d. %s\n", i+1, violation.Summary)
		if len(violation.Keys) > 0 {
			fmt.Fprintf(&text, "   keys: %s\n", strings.Join(violation.Keys, ", "))
		}
		if len(violation.Accounts) > 0 {
			fmt.Fprintf(&text, "   accounts: %s\n", strings.Trim(fmt.Sprint(violation.Accounts), "[]"))
		}
		for _, op := range violation.Operations {
			fmt.Fprintf(&text, "   op  %s@%d %s\n", op.Journal, op.Offset, compactJSON(op.Entry))
		}
		for _, row := range violation.Rows {
			fmt.Fprintf(&text, "   row %s\n", describeRow(row))
		}
	}
	return text.String()
}

// describeRow renders a ledger row on one line: table=id, then its fields.
func describeRow(row invariants.RowRef) string {
	return strings.TrimSpace(row.Table + "=" + row.ID + " " + rowFields(row))
}

// rowFields renders a ledger row's set fields (all but table and id) as
// name=value, in name order.
func rowFields(row invariants.RowRef) string {
	fields, err := json.Marshal(row)
	if err != nil {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(fields, &m) != nil {
		return ""
	}
	delete(m, "table")
	delete(m, "id")
	parts := make([]string, 0, len(m))
	for _, key := range sortedKeys(m) {
		parts = append(parts, key+"="+string(m[key]))
	}
	return strings.Join(parts, " ")
}

// compactJSON returns a quoted journal line on one line, its fields in the
// journal's order.
func compactJSON(raw json.RawMessage) string {
	var buffer bytes.Buffer
	if json.Compact(&buffer, raw) != nil {
		return string(raw)
	}
	return buffer.String()
}

func formatChecked(checked map[string]int64) string {
	if len(checked) == 0 {
		return "nothing"
	}
	var parts []string
	for _, unit := range sortedKeys(checked) {
		parts = append(parts, fmt.Sprintf("%d %s", checked[unit], unit))
	}
	return strings.Join(parts, ", ")
}

func formatNumber(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.4g", v)
}

func nonEmpty(value, otherwise string) string {
	if value == "" {
		return otherwise
	}
	return value
}
