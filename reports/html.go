package reports

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"sort"
	"strings"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// The page's assets, embedded so the report is one file that opens
// offline: uPlot (assets/README.md says which version and from where), the
// page's own script and style, and its template.
//
//go:embed assets/uPlot.iife.min.js assets/uPlot.min.css assets/report.js assets/report.css assets/report.html.tmpl
var assets embed.FS

// faultColors are the fault windows' colours, one per target, the same in
// the charts and in the legend.
// They differ from every series colour, so a test can tell shading from lines.
var faultColors = []string{"#e15759", "#b07aa1", "#9c755f", "#76b7b2", "#edc948", "#ff9da7", "#59a14f", "#bab0ac"}

// page is what the template renders.
type page struct {
	Title        string
	RunID        string
	Dir          string
	Summary      Summary
	VerdictTitle string
	VerdictClass string
	Audit        *invariants.Result
	AuditOps     []kindCounts
	Invariants   []invariantView
	Charts       chartData
	Faults       []faultView
	ChaosActions []chaosView
	ChaosPlan    string
	ChaosSeed    string
	Trends       []latencyTrend
	HasJournal   bool
	HasMetrics   bool
	LagPeak      float64
	Operations   []kindCounts
	StatusCodes  []int
	StatusRows   []statusRow
	Reasons      []reasonRow
	Config       [][2]string
	ScenarioSets [][2]string
	Versions     [][2]string
	// Replay is the command that runs the same load and chaos again.
	Replay      string
	LoadHeaders []loadHeader
	// LoadFields are load-summary.json's top-level figures (scenario,
	// seed, segment, times, aborted).
	LoadFields [][2]string
	Thresholds []Threshold
	HasLoad    bool
	Inputs     [][2]string
	UPlotJS    template.JS
	UPlotCSS   template.CSS
	ReportJS   template.JS
	ReportCSS  template.CSS
	// DeadLetters is set when the audit read any; DeadLettersLine says in
	// one line what the audit knows of them (count, not available...).
	DeadLetters     *deadLettersView
	DeadLettersLine string
	// Coverage is what the run exercised, when the audit says.
	Coverage *coverageView
}

// coverageView is the page's view of the audit's coverage.
type coverageView struct {
	*invariants.Coverage
	Kinds []kindCoverageRow
	// Duplicate answers, duplicate sends, rejections, on one line each.
	DuplicatesSent, DuplicateAnswers  string
	RejectedLedger, RejectedBefore    string
	NotDecidable, NotJudged           string
	HasNotDecidable, HasNotJudgedText bool
	// WorkerDuplicates is the workers' own count, when scraped.
	WorkerDuplicates    int64
	HasWorkerDuplicates bool
	// MinExpected is invariants.MinExpectedToRequire.
	MinExpected int
}

type kindCoverageRow struct {
	Kind string
	*invariants.KindCoverage
	RejectedTotal int64
	RejectedText  string
}

type kindCounts struct {
	Kind                  string
	OK, Fail, Info, Other int64
	Total                 int64
}

type statusRow struct {
	Kind   string
	Counts []int64
}

type reasonRow struct {
	Kind, Outcome, Reason string
	Count                 int64
}

type invariantView struct {
	invariants.InvariantResult
	CheckedText string
	// StatusText is the status for people ("not exercised").
	StatusText  string
	Explanation string
	Listed      int
}

// deadLettersView is the dead letters the page lists.
type deadLettersView struct {
	*invariants.DeadLetters
	Count    int64
	Listed   int
	ByReason []reasonCount
}

type reasonCount struct {
	Reason string
	Count  int64
}

type faultView struct {
	Number int
	// Observed is what the fault was seen to do; NoEffect flags a fault
	// that did not bite.
	Observed string
	NoEffect bool
	Label    string
	Target   string
	Action   string
	Recovery string
	From     string
	To       string
	Duration string
	Color    string
}

type chaosView struct {
	Offset   string
	Action   string
	Target   string
	Params   string
	Result   string
	Duration string
	Source   string
}

// chartData is the page's data for its script (window.ledgerproofReport):
// the series and the fault windows it shades.
type chartData struct {
	XMin         float64       `json:"xMin"`
	XMax         float64       `json:"xMax"`
	Origin       string        `json:"origin"`
	Throughput   *series       `json:"throughput"`
	Latency      *series       `json:"latency"`
	Lag          *series       `json:"lag"`
	Batch        *series       `json:"batch"`
	FaultWindows []chartWindow `json:"faultWindows"`
}

type chartWindow struct {
	FaultWindow
	Number int    `json:"number"`
	Color  string `json:"color"`
}

func (a *analysis) html() ([]byte, error) {
	read := func(name string) string {
		content, err := assets.ReadFile("assets/" + name)
		if err != nil {
			// The assets are embedded at build time: a missing one is a
			// broken build, not a runtime condition.
			panic(fmt.Sprintf("reports: embedded asset %s: %v", name, err))
		}
		return string(content)
	}
	funcs := template.FuncMap{
		"number":  formatCount,
		"decimal": func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"ms":      formatMs,
		"msp":     func(v *float64) string { return formatMsPointer(v) },
		"percent": func(v float64) string { return fmt.Sprintf("%.2f %%", v*100) },
		"observed": func(v *float64) string {
			if v == nil {
				return "—"
			}
			return formatNumber(*v)
		},
		"upper":     strings.ToUpper,
		"deref":     func(v *float64) float64 { return *v },
		"rowFields": rowFields,
		"compact":   compactJSON,
	}
	tmpl, err := template.New("report").Funcs(funcs).Parse(read("report.html.tmpl"))
	if err != nil {
		return nil, fmt.Errorf("report template: %w", err)
	}
	p := a.page()
	p.UPlotJS = template.JS(read("uPlot.iife.min.js"))
	p.UPlotCSS = template.CSS(read("uPlot.min.css"))
	p.ReportJS = template.JS(read("report.js"))
	p.ReportCSS = template.CSS(read("report.css"))
	var out bytes.Buffer
	if err := tmpl.Execute(&out, p); err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return out.Bytes(), nil
}

var verdictTitles = map[string]string{
	VerdictPassed:            "Passed",
	VerdictInvariantViolated: "Invariant violated",
	VerdictThresholdFailed:   "Thresholds failed",
	VerdictCouldNotRun:       "Could not run",
	VerdictWeak:              "Weak: not exercised",
}

func (a *analysis) page() page {
	s := a.summary
	p := page{
		Summary: s, RunID: nonEmpty(s.RunID, a.in.dir), Dir: a.in.dir,
		VerdictTitle: nonEmpty(verdictTitles[s.Verdict], s.Verdict), VerdictClass: s.Verdict,
		Audit: a.in.audit, HasJournal: len(a.journal.files) > 0, HasMetrics: a.metrics != nil,
		Trends: a.in.load.trends(), Thresholds: s.Thresholds, HasLoad: a.in.load != nil, LoadHeaders: a.in.loadHeaders,
	}
	p.Title = fmt.Sprintf("Ledgerproof %s — %s", p.RunID, p.VerdictTitle)

	if audit := a.in.audit; audit != nil {
		p.AuditOps = countsByKind(audit.Operations)
		for _, invariant := range audit.Invariants {
			view := invariantView{InvariantResult: invariant, CheckedText: formatChecked(invariant.Checked), Listed: len(invariant.Violations),
				StatusText: strings.ReplaceAll(invariant.Status, "-", " ")}
			if invariant.Status == invariants.StatusViolated {
				view.Explanation = explainInvariant(invariant)
			}
			p.Invariants = append(p.Invariants, view)
		}
		p.DeadLetters, p.DeadLettersLine = deadLettersOf(audit.DeadLetters)
		p.Coverage = coverageOf(audit.Coverage, s.WorkerDuplicates)
	}

	// Faults: one colour per target.
	colors := map[string]string{}
	p.Charts = chartData{XMin: a.timeline.XMin, XMax: a.timeline.XMax, Throughput: a.timeline.Throughput,
		Latency: a.timeline.Latency, Lag: a.timeline.Lag, Batch: a.timeline.Batch, FaultWindows: []chartWindow{}}
	if !a.origin.IsZero() {
		p.Charts.Origin = a.origin.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	if a.timeline.Lag != nil {
		for _, point := range a.timeline.Lag.Lines[0] {
			if point != nil {
				p.LagPeak = max(p.LagPeak, *point)
			}
		}
	}
	for i, window := range a.timeline.faults {
		color, ok := colors[window.Target]
		if !ok {
			color = faultColors[len(colors)%len(faultColors)]
			colors[window.Target] = color
		}
		p.Charts.FaultWindows = append(p.Charts.FaultWindows, chartWindow{FaultWindow: window, Number: i + 1, Color: color})
		view := faultView{Number: i + 1, Label: window.Label, Target: window.Target, Action: window.Action,
			Recovery: nonEmpty(window.Recovery, "—"), From: fmt.Sprintf("%.1f s", window.StartSeconds), Color: color}
		if window.Effect != nil {
			view.Observed, view.NoEffect = window.Effect.Observed, !window.Effect.Bit
		} else {
			view.Observed = "not recorded (no journal)"
		}
		switch {
		case window.Marker:
			view.To, view.Duration = "—", "instant (no start followed)"
		case window.OpenEnded:
			view.To, view.Duration = "end of run", fmt.Sprintf("≥ %.1f s (never undone)", window.EndSeconds-window.StartSeconds)
		default:
			view.To, view.Duration = fmt.Sprintf("%.1f s", window.EndSeconds), fmt.Sprintf("%.1f s", window.EndSeconds-window.StartSeconds)
		}
		p.Faults = append(p.Faults, view)
	}
	for _, record := range a.in.chaos {
		target := record.Target
		if record.Resolved != "" && record.Resolved != record.Target {
			target += " → " + record.Resolved
		}
		result := nonEmpty(record.Result, "ok")
		if record.Error != "" {
			result += ": " + record.Error
		}
		var params []string
		for _, key := range sortedKeys(record.Params) {
			params = append(params, key+"="+record.Params[key])
		}
		source := record.Source
		if record.Cleanup {
			source += " (cleanup)"
		}
		p.ChaosActions = append(p.ChaosActions, chaosView{
			Offset: fmt.Sprintf("%.1f s", record.Time.Sub(a.origin).Seconds()), Action: record.Action, Target: target,
			Params: strings.Join(params, " "), Result: result, Duration: fmt.Sprintf("%d ms", record.DurationMs), Source: source,
		})
		if p.ChaosPlan == "" {
			p.ChaosPlan, p.ChaosSeed = record.Plan, fmt.Sprint(record.Seed)
		}
	}

	// Errors.
	p.Operations = countsByKind(a.journal.operations)
	statusSet := map[int]bool{}
	for _, byStatus := range a.journal.statuses {
		for status := range byStatus {
			statusSet[status] = true
		}
	}
	for status := range statusSet {
		p.StatusCodes = append(p.StatusCodes, status)
	}
	sort.Ints(p.StatusCodes)
	for _, kind := range sortedKeys(a.journal.statuses) {
		row := statusRow{Kind: kind}
		for _, status := range p.StatusCodes {
			row.Counts = append(row.Counts, a.journal.statuses[kind][status])
		}
		p.StatusRows = append(p.StatusRows, row)
	}
	for key, n := range a.journal.reasons {
		p.Reasons = append(p.Reasons, reasonRow{Kind: key.kind, Outcome: key.outcome, Reason: nonEmpty(key.reason, "(none given)"), Count: n})
	}
	sort.Slice(p.Reasons, func(i, j int) bool {
		if p.Reasons[i].Count != p.Reasons[j].Count {
			return p.Reasons[i].Count > p.Reasons[j].Count
		}
		return fmt.Sprint(p.Reasons[i]) < fmt.Sprint(p.Reasons[j])
	})

	// Configuration.
	if run := a.in.run; run != nil {
		add := func(name, value string) {
			if value != "" {
				p.Config = append(p.Config, [2]string{name, value})
			}
		}
		add("run id", run.ID)
		if !run.StartedAt.IsZero() {
			add("started", run.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
		if !run.FinishedAt.IsZero() {
			add("finished", run.FinishedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
		add("scenario", run.Scenario)
		add("load seed", fmt.Sprint(run.Seed))
		if run.Generators > 0 {
			add("load generators", fmt.Sprint(run.Generators))
		}
		add("chaos plan", run.Plan)
		add("chaos plan name", run.PlanName)
		add("chaos plan seed", fmt.Sprint(run.PlanSeed))
		bugs := "none"
		if len(run.SeededBugs) > 0 {
			bugs = strings.Join(run.SeededBugs, ", ")
		}
		add("seeded bugs", bugs)
		if raw, ok := a.in.runRaw["stack"]; ok {
			add("stack", compactJSON(raw))
		}
		if run.LoadExitCode != nil {
			add("load exit code", fmt.Sprint(*run.LoadExitCode))
		}
		add("audit verdict (run.json)", run.AuditVerdict)
		add("verdict (run.json)", run.Verdict)
		if run.ExitCode != nil {
			add("exit code (run.json)", fmt.Sprint(*run.ExitCode))
		}
		add("note", run.Note)
		for _, set := range run.ScenarioSets {
			key, value, _ := strings.Cut(set, "=")
			p.ScenarioSets = append(p.ScenarioSets, [2]string{key, value})
		}
		for _, key := range sortedKeys(run.Versions) {
			p.Versions = append(p.Versions, [2]string{key, run.Versions[key]})
		}
	}
	p.Replay = a.replayCommand()
	for _, key := range sortedKeys(a.in.loadRaw) {
		raw := bytes.TrimSpace(a.in.loadRaw[key])
		if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
			// The metrics, the thresholds and the like have tables of
			// their own, or none.
			continue
		}
		if text := rawText(raw); text != "" {
			p.LoadFields = append(p.LoadFields, [2]string{key, text})
		}
	}
	for _, name := range sortedKeys(a.in.status) {
		p.Inputs = append(p.Inputs, [2]string{name, a.in.status[name]})
	}
	return p
}

// coverageOf returns the page's view of the audit's coverage, nil when the
// audit predates coverage.
func coverageOf(coverage *invariants.Coverage, workerDuplicates *int64) *coverageView {
	if coverage == nil {
		return nil
	}
	view := &coverageView{Coverage: coverage, MinExpected: invariants.MinExpectedToRequire,
		DuplicatesSent: invariants.FormatCounts(coverage.Duplicates.Sent), DuplicateAnswers: invariants.FormatCounts(coverage.Duplicates.Answers),
		RejectedLedger: invariants.FormatCounts(coverage.Rejections.Ledger), RejectedBefore: invariants.FormatCounts(coverage.Rejections.BeforeLedger),
		NotDecidable: invariants.FormatCounts(coverage.Rejections.NotDecidable), NotJudged: invariants.FormatCounts(coverage.Rejections.NotJudged)}
	view.HasNotDecidable, view.HasNotJudgedText = len(coverage.Rejections.NotDecidable) > 0, len(coverage.Rejections.NotJudged) > 0
	if workerDuplicates != nil {
		view.WorkerDuplicates, view.HasWorkerDuplicates = *workerDuplicates, true
	}
	for _, kind := range sortedKeys(coverage.Kinds) {
		counts := coverage.Kinds[kind]
		if counts == nil {
			continue
		}
		row := kindCoverageRow{Kind: kind, KindCoverage: counts, RejectedText: invariants.FormatCounts(counts.Rejected)}
		for _, n := range counts.Rejected {
			row.RejectedTotal += n
		}
		view.Kinds = append(view.Kinds, row)
	}
	return view
}

// deadLettersOf returns the view of the dead letters when there are any,
// and one line saying what the audit knows of them ("" for an audit that
// predates dead letters).
func deadLettersOf(dead *invariants.DeadLetters) (*deadLettersView, string) {
	switch {
	case dead == nil:
		return nil, ""
	case !dead.Available || dead.Count == nil:
		return nil, nonEmpty(dead.Note, "not available")
	case *dead.Count == 0:
		if dead.Note != "" {
			return nil, "none — " + dead.Note
		}
		return nil, "none"
	}
	view := &deadLettersView{DeadLetters: dead, Count: *dead.Count, Listed: len(dead.First)}
	for reason, n := range dead.ByReason {
		view.ByReason = append(view.ByReason, reasonCount{Reason: reason, Count: n})
	}
	sort.Slice(view.ByReason, func(i, j int) bool {
		if view.ByReason[i].Count != view.ByReason[j].Count {
			return view.ByReason[i].Count > view.ByReason[j].Count
		}
		return view.ByReason[i].Reason < view.ByReason[j].Reason
	})
	return view, fmt.Sprintf("%d record(s) set aside, listed above", *dead.Count)
}

// replayCommand is the `ledgerproof run` command line that runs the same
// scenario with the same seed, overrides, generators, chaos plan and seeded
// bugs; the system's flags (--stack...) are the original run's to repeat.
// It comes from run.json, else from load-summary.json's scenario and seed;
// "" when neither says.
func (a *analysis) replayCommand() string {
	args := []string{"bin/ledgerproof", "run"}
	if run := a.in.run; run != nil && run.Replay != nil && len(run.Replay.Args) > 0 {
		// The run's own flags and seed (`ledgerproof run --replay DIR` runs
		// them with the run directory's copies of the scenario and plan).
		args = append(args, run.Replay.Args...)
	} else if run := a.in.run; run != nil && run.Scenario != "" {
		args = append(args, "--scenario", run.Scenario, "--seed", fmt.Sprint(run.Seed))
		for _, set := range run.ScenarioSets {
			args = append(args, "--set", set)
		}
		if run.Generators > 1 {
			args = append(args, "--generators", fmt.Sprint(run.Generators))
		}
		if run.Plan != "" {
			args = append(args, "--plan", run.Plan)
		}
		for _, bug := range run.SeededBugs {
			args = append(args, "--seeded-bug", bug)
		}
	} else if scenario, seed := rawText(a.in.loadRaw["scenario_path"]), rawText(a.in.loadRaw["seed"]); scenario != "" && seed != "" {
		args = append(args, "--scenario", scenario, "--seed", seed)
	} else {
		return ""
	}
	for i, arg := range args {
		args[i] = ShellQuote(arg)
	}
	return strings.Join(args, " ")
}

// ShellQuote quotes an argument for a POSIX shell when it needs it.
func ShellQuote(arg string) string {
	if arg != "" && strings.Trim(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return arg
	}
	return "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
}

func countsByKind(operations map[string]map[string]int64) []kindCounts {
	var rows []kindCounts
	var total kindCounts
	total.Kind = "total"
	for _, kind := range sortedKeys(operations) {
		row := kindCounts{Kind: kind}
		for outcome, n := range operations[kind] {
			switch outcome {
			case invariants.OutcomeOK:
				row.OK += n
			case invariants.OutcomeFail:
				row.Fail += n
			case invariants.OutcomeInfo:
				row.Info += n
			default:
				row.Other += n
			}
			row.Total += n
		}
		total.OK += row.OK
		total.Fail += row.Fail
		total.Info += row.Info
		total.Other += row.Other
		total.Total += row.Total
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		rows = append(rows, total)
	}
	return rows
}

// formatCount writes an integer with thin spaces between thousands.
func formatCount(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	digits := fmt.Sprint(n)
	var out []string
	for len(digits) > 3 {
		out = append([]string{digits[len(digits)-3:]}, out...)
		digits = digits[:len(digits)-3]
	}
	out = append([]string{digits}, out...)
	return sign + strings.Join(out, "\u202f")
}

func formatMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func formatMsPointer(v *float64) string {
	if v == nil {
		return "—"
	}
	return formatMs(*v)
}
