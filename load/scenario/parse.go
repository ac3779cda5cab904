package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// maxFileBytes bounds a scenario file; the shipped ones are below 4 KiB.
const maxFileBytes = 1 << 20

// maxProblems bounds the problems an Error lists; the rest are counted, since past a screenful a file is better
// fixed from its first mistakes.
const maxProblems = 50

// Error is every problem found in a scenario, each as `file:line: field: message`, or as
// `--set key=value: message` when an override is at fault.
type Error struct {
	Problems []string
}

// Error lists the problems, one a line.
func (e *Error) Error() string {
	if len(e.Problems) <= maxProblems {
		return strings.Join(e.Problems, "\n")
	}
	return strings.Join(e.Problems[:maxProblems], "\n") + fmt.Sprintf("\n(and %d more)", len(e.Problems)-maxProblems)
}

// Load reads the scenario file at path, applies sets (the `--set key=value` overrides, in order) and returns the
// scenario with every default applied, or an *Error naming the file and line of each problem.
func Load(path string, sets []string) (*Scenario, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	defer file.Close()
	content, err := io.ReadAll(io.LimitReader(file, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read scenario %s: %w", path, err)
	}
	return Parse(path, content, sets)
}

// Parse decodes a scenario from content; name is the file it came from, which messages name and whose base
// name is the scenario's default name. sets are `dotted.path=value` overrides applied before decoding, so
// their values are checked like the file's: `schedule.rate=500`, `client.duplicates.rate=0.05`,
// `thresholds.errors=rate<0.01` (which replaces that metric's list with one expression). A value is read as
// YAML (`schedule.steps=[1000,2000]`); a numeric path element indexes a list (`schedule.stages.1.target=800`).
//
// The decoding is strict: an unknown field, a field of another executor, a wrong type, a duplicate key, a
// duration that does not parse and every value out of its range is a problem, and all problems are returned
// at once in an *Error.
func Parse(name string, content []byte, sets []string) (*Scenario, error) {
	if len(content) > maxFileBytes {
		return nil, &Error{Problems: []string{fmt.Sprintf("%s: larger than %d bytes", name, maxFileBytes)}}
	}
	root, err := parseDocument(name, content)
	if err != nil {
		return nil, err
	}
	d := &decoder{
		file:     name,
		scenario: &Scenario{Path: name},
		origins:  map[*yaml.Node]string{},
		written:  map[string]written{},
	}
	for _, set := range sets {
		d.applySet(root, set)
	}
	d.section(root, "")
	// Defaults and validation read the decoded values; after a type error they would only add noise.
	if len(d.problems) == 0 {
		d.complete()
	}
	if len(d.problems) == 0 {
		d.validate()
	}
	if len(d.problems) > 0 {
		return nil, &Error{Problems: d.sortedProblems()}
	}
	return d.scenario, nil
}

// sortedProblems orders the problems as a reader fixes them: those of the overrides and of the whole file
// first, then by line (defaults and validation find them in the order of the field table, not of the file).
func (d *decoder) sortedProblems() []string {
	lineOf := func(problem string) int {
		rest, inFile := strings.CutPrefix(problem, d.file+":")
		if !inFile {
			return 0
		}
		digits, _, _ := strings.Cut(rest, ":")
		line, err := strconv.Atoi(digits)
		if err != nil {
			return 0
		}
		return line
	}
	sorted := slices.Clone(d.problems)
	slices.SortStableFunc(sorted, func(a, b string) int { return lineOf(a) - lineOf(b) })
	return sorted
}

// yamlLine finds the line in yaml.v3's syntax errors ("yaml: line 4: did not find expected key").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument reads content as one YAML document whose top level is a mapping.
func parseDocument(name string, content []byte) (*yaml.Node, error) {
	fail := func(format string, args ...any) error {
		return &Error{Problems: []string{fmt.Sprintf(format, args...)}}
	}
	decoder := yaml.NewDecoder(bytes.NewReader(content))
	var document yaml.Node
	if err := decoder.Decode(&document); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail("%s: empty: a scenario needs at least one field (e.g. schedule)", name)
		}
		if match := yamlLine.FindStringSubmatch(err.Error()); match != nil {
			return nil, fail("%s:%s: %s", name, match[1], match[2])
		}
		return nil, fail("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := decoder.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail("%s:%d: a second YAML document: a scenario file holds one", name, max(extra.Line, 1))
	}
	root := document.Content[0]
	if isNull(root) {
		return nil, fail("%s: empty: a scenario needs at least one field (e.g. schedule)", name)
	}
	return root, nil
}

// written is where the file (or a --set) gave a field: its key's and its value's locations.
type written struct {
	key, value string
}

// decoder turns the YAML tree into the scenario, recording where each field was written, so that defaults
// apply to what was not and every problem names its line.
type decoder struct {
	file     string
	scenario *Scenario
	// origins marks the nodes a --set made, with the set's text: their problems name it instead of a line.
	origins  map[*yaml.Node]string
	written  map[string]written
	problems []string
}

// where is how a message names a node's location: `file:line`, or `--set key=value`.
func (d *decoder) where(node *yaml.Node) string {
	if set, ok := d.origins[node]; ok {
		return "--set " + set
	}
	return fmt.Sprintf("%s:%d", d.file, node.Line)
}

// problemAt records a problem of the field at path, located at node.
func (d *decoder) problemAt(node *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, d.where(node)+": "+prefix(path)+fmt.Sprintf(format, args...))
}

// problemOf records a problem of a decoded field, located where the first of paths that was written is (the
// file itself when all were defaulted).
func (d *decoder) problemOf(paths []string, format string, args ...any) {
	location := d.file
	for _, path := range paths {
		if at, ok := d.written[path]; ok {
			location = at.value
			break
		}
	}
	d.problems = append(d.problems, location+": "+prefix(paths[0])+fmt.Sprintf(format, args...))
}

// prefix starts a message with the field's path.
func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// sectionName names a mapping in messages.
func sectionName(path string) string {
	if path == "" {
		return "a scenario"
	}
	return path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// resolve follows an alias to the node it names.
func resolve(node *yaml.Node) *yaml.Node {
	for node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	return node
}

func isNull(node *yaml.Node) bool {
	return node.Kind == 0 || (node.Kind == yaml.ScalarNode && node.ShortTag() == "!!null")
}

// describe names a value in messages: "a list", "the number 5", "the text \"x\"".
func describe(node *yaml.Node) string {
	switch {
	case node.Kind == yaml.MappingNode:
		return "a mapping"
	case node.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(node):
		return "nothing"
	}
	switch node.ShortTag() {
	case "!!int", "!!float":
		return "the number " + node.Value
	case "!!bool":
		return node.Value
	}
	return fmt.Sprintf("the text %q", node.Value)
}

// entry is one key and value of a mapping.
type entry struct {
	name       string
	key, value *yaml.Node
}

// mapping returns a mapping's entries after refusing duplicate keys and, when allowed is not nil, keys not in
// it. Nothing (`client:` with no fields) is an empty mapping.
func (d *decoder) mapping(node *yaml.Node, path string, allowed []string) ([]entry, bool) {
	node = resolve(node)
	if isNull(node) {
		return nil, true
	}
	if node.Kind != yaml.MappingNode {
		if allowed != nil {
			d.problemAt(node, path, "want a mapping of fields (%s), got %s", strings.Join(allowed, ", "), describe(node))
		} else {
			d.problemAt(node, path, "want a mapping, got %s", describe(node))
		}
		return nil, false
	}
	var entries []entry
	first := map[string]*yaml.Node{}
	for index := 0; index+1 < len(node.Content); index += 2 {
		key, value := resolve(node.Content[index]), node.Content[index+1]
		if key.Kind != yaml.ScalarNode {
			d.problemAt(key, path, "a key must be a name, not %s", describe(key))
			continue
		}
		name := key.Value
		if earlier, repeated := first[name]; repeated {
			d.problemAt(key, path, "duplicate field %q (first at line %d)", name, earlier.Line)
			continue
		}
		first[name] = key
		if allowed != nil && !slices.Contains(allowed, name) {
			d.problemAt(key, "", "no field %q in %s (fields: %s)", name, sectionName(path), strings.Join(allowed, ", "))
			continue
		}
		entries = append(entries, entry{name: name, key: key, value: value})
	}
	return entries, true
}

// section decodes a mapping of the field table: a key that is a field is assigned, a key that is a section
// is walked.
func (d *decoder) section(node *yaml.Node, path string) {
	entries, _ := d.mapping(node, path, childNames(path))
	for _, e := range entries {
		childPath := join(path, e.name)
		if _, leaf := fieldAt(childPath); leaf {
			d.record(childPath, e)
			d.assign(childPath, e.value)
		} else {
			d.section(e.value, childPath)
		}
	}
}

// record notes where a field was written.
func (d *decoder) record(path string, e entry) {
	d.written[path] = written{key: d.where(e.key), value: d.where(resolve(e.value))}
}

// assign decodes one field of the table into the scenario. Every leaf of the table has a case; the default
// branch is a field added to the table and not here.
func (d *decoder) assign(path string, node *yaml.Node) {
	s := d.scenario
	switch path {
	case "name":
		d.text(node, path, &s.Name)
	case "description":
		d.text(node, path, &s.Description)
	case "seed":
		d.integer(node, path, &s.Seed)

	case "setup.accounts":
		d.count(node, path, &s.Setup.Accounts)
	case "setup.funding":
		d.integer(node, path, &s.Setup.FundingMinor)
	case "setup.concurrency":
		d.count(node, path, &s.Setup.Concurrency)
	case "setup.timeout":
		d.duration(node, path, &s.Setup.Timeout)
	case "setup.password":
		d.text(node, path, &s.Setup.Password)
	case "setup.email_prefix":
		d.text(node, path, &s.Setup.EmailPrefix)

	case "schedule.executor":
		d.choice(node, path, executors, &s.Schedule.Executor)
	case "schedule.rate":
		d.number(node, path, &s.Schedule.Rate)
	case "schedule.duration":
		d.duration(node, path, &s.Schedule.Duration)
	case "schedule.start_rate":
		d.number(node, path, &s.Schedule.StartRate)
	case "schedule.stages":
		d.stages(node, path)
	case "schedule.steps":
		d.numbers(node, path, &s.Schedule.Steps)
	case "schedule.step_ramp":
		d.duration(node, path, &s.Schedule.StepRamp)
	case "schedule.step_hold":
		d.duration(node, path, &s.Schedule.StepHold)
	case "schedule.step_gap":
		d.duration(node, path, &s.Schedule.StepGap)
	case "schedule.vus":
		d.count(node, path, &s.Schedule.VUs)
	case "schedule.iterations":
		d.count(node, path, &s.Schedule.Iterations)
	case "schedule.max_duration":
		d.duration(node, path, &s.Schedule.MaxDuration)
	case "schedule.max_in_flight":
		d.count(node, path, &s.Schedule.MaxInFlight)
	case "schedule.graceful_stop":
		d.duration(node, path, &s.Schedule.GracefulStop)

	case "workload.kind":
		d.choice(node, path, workloadKinds, &s.Workload.Kind)
	case "workload.mix.deposit":
		d.number(node, path, &s.Workload.Mix.Deposit)
	case "workload.mix.withdrawal":
		d.number(node, path, &s.Workload.Mix.Withdrawal)
	case "workload.mix.transfer":
		d.number(node, path, &s.Workload.Mix.Transfer)
	case "workload.amount_min":
		d.integer(node, path, &s.Workload.AmountMin)
	case "workload.amount_max":
		d.integer(node, path, &s.Workload.AmountMax)
	case "workload.accounts":
		d.choice(node, path, distributions, &s.Workload.Accounts)
	case "workload.zipf_exponent":
		d.number(node, path, &s.Workload.ZipfExponent)
	case "workload.hot_accounts":
		d.count(node, path, &s.Workload.HotAccounts)
	case "workload.ownership":
		d.boolean(node, path, &s.Workload.Ownership)
	case "workload.owner_slots":
		d.count(node, path, &s.Workload.OwnerSlots)
	case "workload.overdraft_rate":
		d.number(node, path, &s.Workload.OverdraftRate)
	case "workload.drain_rate":
		d.number(node, path, &s.Workload.DrainRate)
	case "workload.minimum_rate":
		d.number(node, path, &s.Workload.MinimumRate)
	case "workload.race_rate":
		d.number(node, path, &s.Workload.RaceRate)
	case "workload.pair_rate":
		d.number(node, path, &s.Workload.PairRate)
	case "workload.missing_rate":
		d.number(node, path, &s.Workload.MissingRate)
	case "workload.daily_limit":
		d.integer(node, path, &s.Workload.DailyLimit)
	case "workload.limit_race_rate":
		d.number(node, path, &s.Workload.LimitRaceRate)

	case "client.wait":
		d.duration(node, path, &s.Client.Wait)
	case "client.timeout":
		d.duration(node, path, &s.Client.Timeout)
	case "client.http_engine":
		d.choice(node, path, httpEngines, &s.Client.HTTPEngine)
	case "client.poll_interval":
		d.duration(node, path, &s.Client.PollInterval)
	case "client.poll_for":
		d.duration(node, path, &s.Client.PollFor)
	case "client.retry.attempts":
		d.count(node, path, &s.Client.RetryAttempts)
	case "client.retry.backoff":
		d.duration(node, path, &s.Client.RetryBackoff)
	case "client.retry.max_backoff":
		d.duration(node, path, &s.Client.RetryMaxBackoff)
	case "client.retry.jitter":
		d.number(node, path, &s.Client.RetryJitter)
	case "client.duplicates.rate":
		d.number(node, path, &s.Client.DuplicateRate)
	case "client.duplicates.mode":
		d.choice(node, path, duplicateModes, &s.Client.DuplicateMode)
	case "client.duplicates.delay":
		d.duration(node, path, &s.Client.DuplicateDelay)
	case "client.misuse.rate":
		d.number(node, path, &s.Client.MisuseRate)
	case "client.early_timeouts.rate":
		d.number(node, path, &s.Client.EarlyTimeoutRate)
	case "client.early_timeouts.max":
		d.duration(node, path, &s.Client.EarlyTimeoutMax)
	case "client.replays.rate":
		d.number(node, path, &s.Client.ReplayRate)
	case "client.replays.after":
		d.duration(node, path, &s.Client.ReplayAfter)

	case "thresholds":
		d.thresholds(node, path)
	default:
		panic("scenario: field " + path + " is in the table but not decoded")
	}
}

// complete applies the defaults of the fields the file left out, in table order, and refuses the fields set
// where they do not apply (another executor's, the mixed workload's under walk).
func (d *decoder) complete() {
	for _, f := range fields {
		if f.isItemField() {
			continue
		}
		at, set := d.written[f.Path]
		required, unmet := f.unmet(d.scenario)
		switch {
		case set && unmet:
			d.problems = append(d.problems, fmt.Sprintf("%s: %s: only with %s; this scenario's %s is %s",
				at.key, f.Path, required.describe(), required.name, required.actual(d.scenario)))
		case !set && !unmet && f.Default != "":
			var node yaml.Node
			if err := yaml.Unmarshal([]byte(f.Default), &node); err != nil {
				panic(fmt.Sprintf("scenario: default of %s: %v", f.Path, err))
			}
			before := len(d.problems)
			d.assign(f.Path, node.Content[0])
			if len(d.problems) > before {
				panic("scenario: default of " + f.Path + " refused: " + d.problems[before])
			}
		}
		if !set && f.derive != nil {
			f.derive(d.scenario)
		}
	}
}

// scalar returns a node if it is a value (not a list, a mapping or nothing).
func (d *decoder) scalar(node *yaml.Node, path, want string) (*yaml.Node, bool) {
	node = resolve(node)
	if node.Kind != yaml.ScalarNode || isNull(node) {
		d.problemAt(node, path, "want %s, got %s", want, describe(node))
		return nil, false
	}
	return node, true
}

func (d *decoder) text(node *yaml.Node, path string, target *string) {
	node, ok := d.scalar(node, path, "text")
	if !ok {
		return
	}
	if node.ShortTag() != "!!str" {
		d.problemAt(node, path, "want text, got %s (quote it to make it text)", describe(node))
		return
	}
	*target = node.Value
}

func (d *decoder) choice(node *yaml.Node, path string, choices []string, target *string) {
	var value string
	before := len(d.problems)
	d.text(node, path, &value)
	if len(d.problems) > before {
		return
	}
	if !slices.Contains(choices, value) {
		d.problemAt(node, path, "%q is not one of %s", value, strings.Join(choices, ", "))
		return
	}
	*target = value
}

func (d *decoder) integer(node *yaml.Node, path string, target *int64) {
	node, ok := d.scalar(node, path, "a whole number")
	if !ok {
		return
	}
	if node.ShortTag() != "!!int" {
		d.problemAt(node, path, "want a whole number, got %s", describe(node))
		return
	}
	var value int64
	if err := node.Decode(&value); err != nil {
		d.problemAt(node, path, "%s is out of range", node.Value)
		return
	}
	*target = value
}

func (d *decoder) count(node *yaml.Node, path string, target *int) {
	var value int64
	before := len(d.problems)
	d.integer(node, path, &value)
	if len(d.problems) > before {
		return
	}
	if value < math.MinInt32 || value > math.MaxInt32 {
		d.problemAt(node, path, "%d is out of range", value)
		return
	}
	*target = int(value)
}

func (d *decoder) number(node *yaml.Node, path string, target *float64) {
	node, ok := d.scalar(node, path, "a number")
	if !ok {
		return
	}
	var value float64
	if tag := node.ShortTag(); (tag != "!!int" && tag != "!!float") || node.Decode(&value) != nil {
		d.problemAt(node, path, "want a number, got %s", describe(node))
		return
	}
	if math.IsInf(value, 0) || math.IsNaN(value) {
		d.problemAt(node, path, "want a finite number, got %s", node.Value)
		return
	}
	*target = value
}

func (d *decoder) boolean(node *yaml.Node, path string, target *bool) {
	node, ok := d.scalar(node, path, "true or false")
	if !ok {
		return
	}
	if node.ShortTag() != "!!bool" || node.Decode(target) != nil {
		d.problemAt(node, path, "want true or false, got %s", describe(node))
	}
}

// duration reads a Go duration ("500ms", "30s", "1m30s"): never negative, never above MaxDuration.
func (d *decoder) duration(node *yaml.Node, path string, target *time.Duration) {
	const want = "a duration such as 500ms, 30s, 1m30s"
	node, ok := d.scalar(node, path, want)
	if !ok {
		return
	}
	value, err := time.ParseDuration(strings.TrimSpace(node.Value))
	switch {
	case err != nil:
		d.problemAt(node, path, "%q is not a duration (want e.g. 500ms, 30s, 1m30s)", node.Value)
	case value < 0:
		d.problemAt(node, path, "%q is negative", node.Value)
	case value > MaxDuration:
		d.problemAt(node, path, "%q is longer than %s, the longest a scenario's durations may be", node.Value, "24h")
	default:
		*target = value
	}
}

// list returns a sequence's items; nothing is an empty list.
func (d *decoder) list(node *yaml.Node, path, want string) ([]*yaml.Node, bool) {
	node = resolve(node)
	if isNull(node) {
		return nil, true
	}
	if node.Kind != yaml.SequenceNode {
		d.problemAt(node, path, "want %s, got %s", want, describe(node))
		return nil, false
	}
	return node.Content, true
}

func (d *decoder) numbers(node *yaml.Node, path string, target *[]float64) {
	items, ok := d.list(node, path, "a list of numbers, e.g. [1000, 1500, 2000]")
	if !ok {
		return
	}
	values := make([]float64, len(items))
	for index, item := range items {
		itemPath := fmt.Sprintf("%s[%d]", path, index)
		d.written[itemPath] = written{key: d.where(item), value: d.where(resolve(item))}
		d.number(item, itemPath, &values[index])
	}
	*target = values
}

// stages decodes schedule.stages: a list of {target, duration}, both required.
func (d *decoder) stages(node *yaml.Node, path string) {
	items, ok := d.list(node, path, "a list of stages ({target: 500, duration: 10s})")
	if !ok {
		return
	}
	stages := make([]Stage, len(items))
	for index, item := range items {
		itemPath := fmt.Sprintf("%s[%d]", path, index)
		entries, ok := d.mapping(item, itemPath, childNames(path+"[]"))
		if !ok {
			continue
		}
		given := map[string]bool{}
		for _, e := range entries {
			fieldPath := itemPath + "." + e.name
			given[e.name] = true
			d.record(fieldPath, e)
			switch e.name {
			case "target":
				d.number(e.value, fieldPath, &stages[index].Target)
			case "duration":
				d.duration(e.value, fieldPath, &stages[index].Duration)
			}
		}
		for _, name := range childNames(path + "[]") {
			if !given[name] {
				d.problemAt(resolve(item), itemPath, "%s missing (a stage is {target: 500, duration: 10s})", name)
			}
		}
	}
	d.scenario.Schedule.Stages = stages
}

// thresholds decodes the thresholds mapping: metric (with tags) → list of expressions, each either the
// expression or {threshold, abort_on_fail, delay_abort_eval}. Thresholds keep the file's order.
func (d *decoder) thresholds(node *yaml.Node, path string) {
	sources, _ := d.mapping(node, path, nil)
	for _, source := range sources {
		if _, _, err := threshold.ParseSource(source.name); err != nil {
			d.problemAt(source.key, path, "%v", err)
			continue
		}
		sourcePath := path + "." + source.name
		items, ok := d.list(source.value, sourcePath, `a list of expressions, e.g. ["rate<0.01"]`)
		if !ok {
			continue
		}
		for index, item := range items {
			itemPath := fmt.Sprintf("%s[%d]", sourcePath, index)
			if parsed, ok := d.thresholdItem(source.name, resolve(item), itemPath); ok {
				d.scenario.Thresholds = append(d.scenario.Thresholds, parsed)
			}
		}
	}
}

// thresholdItem decodes one expression of a metric's list.
func (d *decoder) thresholdItem(source string, item *yaml.Node, itemPath string) (threshold.Threshold, bool) {
	var expression string
	var abortOnFail bool
	var abortDelay time.Duration
	var delayNode *yaml.Node
	before := len(d.problems)
	switch item.Kind {
	case yaml.ScalarNode:
		d.text(item, itemPath, &expression)
	case yaml.MappingNode:
		entries, _ := d.mapping(item, itemPath, childNames("thresholds.<metric>[]"))
		for _, e := range entries {
			switch e.name {
			case "threshold":
				d.text(e.value, itemPath+".threshold", &expression)
			case "abort_on_fail":
				d.boolean(e.value, itemPath+".abort_on_fail", &abortOnFail)
			case "delay_abort_eval":
				delayNode = resolve(e.value)
				d.duration(e.value, itemPath+".delay_abort_eval", &abortDelay)
			}
		}
		if len(d.problems) == before && expression == "" {
			d.problemAt(item, itemPath, "threshold missing (e.g. {threshold: \"count<10\", abort_on_fail: true})")
		}
		if delayNode != nil && !abortOnFail {
			d.problemAt(delayNode, itemPath, "delay_abort_eval has no effect without abort_on_fail: true")
		}
	default:
		d.problemAt(item, itemPath, `want an expression ("p(95)<250") or {threshold, abort_on_fail, delay_abort_eval}, got %s`,
			describe(item))
	}
	if len(d.problems) > before {
		return threshold.Threshold{}, false
	}
	parsed, err := threshold.Parse(source, expression)
	if err != nil {
		d.problemAt(item, "thresholds", "%v", err)
		return threshold.Threshold{}, false
	}
	parsed.AbortOnFail = abortOnFail
	parsed.AbortDelaySeconds = abortDelay.Seconds()
	return parsed, true
}

// applySet applies one `dotted.path=value` override to the YAML tree: it replaces the value at the path, or
// adds the field (and the sections above it) when the file left it out. Whether the path names a field is
// checked by decoding, as for the file's own keys.
func (d *decoder) applySet(root *yaml.Node, set string) {
	problem := func(format string, args ...any) {
		d.problems = append(d.problems, "--set "+set+": "+fmt.Sprintf(format, args...))
	}
	pathText, valueText, found := strings.Cut(set, "=")
	pathText = strings.TrimSpace(pathText)
	if !found || pathText == "" {
		problem("want key=value, e.g. schedule.rate=500")
		return
	}
	names, err := splitPath(pathText)
	if err != nil {
		problem("%v", err)
		return
	}
	value, err := parseSetValue(valueText)
	if err != nil {
		problem("%v", err)
		return
	}
	if len(names) == 2 && names[0] == "thresholds" && value.Kind == yaml.ScalarNode {
		// `thresholds.errors=rate<0.01` replaces the metric's list with that one expression;
		// `thresholds.errors=` empties it.
		list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if value.Value != "" {
			list.Content = []*yaml.Node{value}
		}
		value = list
	}
	d.markSet(value, set)

	node, walked := root, ""
	for index, name := range names {
		last := index == len(names)-1
		var slot **yaml.Node
		switch node.Kind {
		case yaml.MappingNode:
			for position := 0; position+1 < len(node.Content); position += 2 {
				if key := resolve(node.Content[position]); key.Kind == yaml.ScalarNode && key.Value == name {
					slot = &node.Content[position+1]
					break
				}
			}
			if slot == nil {
				key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}
				d.origins[key] = set
				node.Content = append(node.Content, key, nil)
				slot = &node.Content[len(node.Content)-1]
			}
		case yaml.SequenceNode:
			position, err := strconv.Atoi(name)
			if err != nil || position < 0 || position >= len(node.Content) {
				problem("%s is a list of %d: %q is not an index from 0 to %d", walked, len(node.Content), name, len(node.Content)-1)
				return
			}
			slot = &node.Content[position]
		default:
			problem("%s is %s, not a section: it has no field %q", walked, describe(node), name)
			return
		}
		walked = join(walked, name)
		if last {
			*slot = value
			return
		}
		switch {
		case *slot == nil || isNull(*slot):
			*slot = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			d.origins[*slot] = set
		case (*slot).Kind == yaml.AliasNode:
			problem("%s is an alias (*%s): set the anchored field instead", walked, (*slot).Value)
			return
		}
		node = *slot
	}
}

// markSet marks a set's value, and everything in it, as coming from the set.
func (d *decoder) markSet(node *yaml.Node, set string) {
	d.origins[node] = set
	for _, child := range node.Content {
		d.markSet(child, set)
	}
}

// splitPath splits a --set path at its dots, except inside a threshold's tags
// (`thresholds.accept_duration{route:/v1.2}`).
func splitPath(path string) ([]string, error) {
	var names []string
	depth, start := 0, 0
	for index, character := range path {
		switch character {
		case '{':
			depth++
		case '}':
			depth--
		case '.':
			if depth == 0 {
				names = append(names, path[start:index])
				start = index + 1
			}
		}
	}
	names = append(names, path[start:])
	for _, name := range names {
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%q has an empty field name", path)
		}
	}
	return names, nil
}

// parseSetValue reads a set's value as YAML, so that `5` is a number, `true` a boolean and `[1, 2]` a list;
// an empty value is empty text.
func parseSetValue(text string) (*yaml.Node, error) {
	if strings.TrimSpace(text) == "" {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
	}
	var document yaml.Node
	if err := yaml.Unmarshal([]byte(text), &document); err != nil {
		return nil, fmt.Errorf("the value is not YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(document.Content) != 1 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
	}
	return document.Content[0], nil
}
