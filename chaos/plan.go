// Package chaos is the nemesis of the harness: plans (timelines of faults,
// written in YAML, or drawn at random from a seed), the executors that apply
// them to a running stack (the local stack of `ledgerproof up`, a docker
// compose project), and the runner that applies a plan's steps at their
// offsets and writes every applied fault to the run's chaos log.
//
// The plan format, the targets and the chaos log are documented in
// docs/chaos.md.
package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Action is what a step does.
type Action string

// The actions of a plan step.
const (
	// ActionKill sends SIGKILL (Postgres: to the postmaster, an immediate
	// crash).
	ActionKill Action = "kill"
	// ActionStop asks for a clean shutdown (SIGTERM; SIGINT for Postgres).
	ActionStop Action = "stop"
	// ActionStart starts a stopped or killed process and waits until ready
	// (a process that crashes on purpose first counts as started:
	// stack.ErrCrashedOnPurpose).
	ActionStart Action = "start"
	// ActionRestart is stop then start.
	ActionRestart Action = "restart"
	// ActionPause freezes a process and its children (SIGSTOP).
	ActionPause Action = "pause"
	// ActionResume thaws a paused process (SIGCONT).
	ActionResume Action = "resume"
	// ActionFailover kills the Postgres primary and promotes the standby.
	ActionFailover Action = "failover"
	// ActionLink applies a link fault (params.fault).
	ActionLink Action = "link"
	// ActionCrashPoint arms a crash point in a gateway or worker.
	ActionCrashPoint Action = "crash-point"
	// ActionCommand runs a command of the user's (params.run: docker kill,
	// systemctl restart, kubectl delete pod...): the fault of any system,
	// the only kind an external target takes. Its target is a name of the
	// user's for what the command acts on, shown in the report.
	ActionCommand Action = "command"
)

// Actions lists every action, in the order docs and errors show them.
var Actions = []Action{ActionKill, ActionStop, ActionStart, ActionRestart, ActionPause, ActionResume,
	ActionFailover, ActionLink, ActionCrashPoint, ActionCommand}

// processActions act on one process through Executor.Process.
var processActions = map[Action]bool{ActionKill: true, ActionStop: true, ActionStart: true,
	ActionRestart: true, ActionPause: true, ActionResume: true}

// recoveryOf is the action that undoes a fault, used when a step has a
// `duration` parameter and by random plans.
var recoveryOf = map[Action]Action{ActionKill: ActionStart, ActionStop: ActionStart, ActionPause: ActionResume}

// Links lists the link targets, in the order docs and errors show them.
var Links = []string{"gateway->broker", "worker->broker", "worker->postgres", "gateway->redis", "worker->redis"}

// linkFaults are the values of a link step's `fault` parameter.
var linkFaults = []string{FaultLatency, FaultCut, FaultBandwidth, FaultReset, FaultHeal}

// Roles of process targets.
const (
	roleBroker          = "broker"
	rolePostgres        = "postgres"
	rolePostgresStandby = "postgres-standby"
	roleRedis           = "redis"
	roleWorker          = "worker"
	roleGateway         = "gateway"
	// The settlement pipeline's processes (docs/settlement.md), one each.
	roleRelay   = "relay"
	roleSettler = "settler"
)

// Limits of a plan. A plan is written by a person or drawn at random; these
// bound what the runner schedules.
const (
	// MaxPlanDuration bounds a plan's duration: a soak is 30 minutes.
	MaxPlanDuration = 24 * time.Hour
	// MaxSteps bounds the steps of a plan, after expansion.
	MaxSteps = 10000
	// MaxRandomFaults bounds the faults a random section draws.
	MaxRandomFaults = 1000
	// minimumMeanInterval keeps a random plan from being a fault storm that
	// no stack recovers from between faults.
	minimumMeanInterval = time.Second
	// randomTimeResolution rounds random times, so timelines read well.
	randomTimeResolution = 100 * time.Millisecond
	// defaultRecoverAfter is a random plan's recover_after when not given:
	// long enough for clients to notice, short enough for a CI run.
	defaultRecoverAfter = 5 * time.Second
	// randomLinkLatency and randomLinkJitter are the latency-link fault.
	randomLinkLatency = 200 * time.Millisecond
	randomLinkJitter  = 50 * time.Millisecond
)

// Params are a step's parameters, typed. Which ones an action takes is
// documented in docs/chaos.md and enforced by validation.
type Params struct {
	// Duration, on kill, stop, pause and link faults, adds a recovery step
	// (start, resume, heal) that much later.
	Duration time.Duration
	// Fault is the link fault: latency, cut, bandwidth, reset, heal.
	Fault string
	// Latency and Jitter shape a latency fault.
	Latency time.Duration
	Jitter  time.Duration
	// RateKilobytesPerSecond caps a bandwidth fault (parameter `rate`).
	RateKilobytesPerSecond int
	// Point names a crash point.
	Point string
	// Run is a command step's shell command; Recover the command its
	// recovery step runs `duration` later (both run with sh -c).
	Run     string
	Recover string
	// Timeout bounds a command step (and its recovery); default 60s.
	Timeout time.Duration
}

// Map renders the parameters as the plan writes them, for logs.
func (p Params) Map() map[string]string {
	values := map[string]string{}
	if p.Duration > 0 {
		values["duration"] = p.Duration.String()
	}
	if p.Fault != "" {
		values["fault"] = p.Fault
	}
	if p.Latency > 0 {
		values["latency"] = p.Latency.String()
	}
	if p.Jitter > 0 {
		values["jitter"] = p.Jitter.String()
	}
	if p.RateKilobytesPerSecond > 0 {
		values["rate"] = strconv.Itoa(p.RateKilobytesPerSecond)
	}
	if p.Point != "" {
		values["point"] = p.Point
	}
	if p.Run != "" {
		values["run"] = p.Run
	}
	if p.Recover != "" {
		values["recover"] = p.Recover
	}
	if p.Timeout > 0 {
		values["timeout"] = p.Timeout.String()
	}
	return values
}

// String renders the parameters as sorted key=value pairs.
func (p Params) String() string {
	values := p.Map()
	keys := make([]string, 0, len(values))
	for key := range values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, key := range keys {
		parts = append(parts, key+"="+values[key])
	}
	return strings.Join(parts, " ")
}

// Step is one fault at an offset from the start of the run.
type Step struct {
	At     time.Duration
	Action Action
	// Target is a process target, a link, or (worker:partition=N) the
	// worker owning a partition, resolved when the step runs.
	Target string
	Params Params
	// Source says where the step came from: "steps[2]", "steps[2]
	// recovery", "random #3".
	Source string
}

// String renders the step for timelines and logs.
func (s Step) String() string {
	text := fmt.Sprintf("t+%-8s %-11s %s", s.At, s.Action, s.Target)
	if params := s.Params.String(); params != "" {
		text += " " + params
	}
	return text
}

// Plan is a validated chaos plan.
type Plan struct {
	// Name defaults to the file's base name.
	Name        string
	Description string
	// Duration is the plan's whole length; every step falls within it.
	Duration time.Duration
	// Seed, if set, seeds the random section (unless it has its own).
	Seed *uint64
	// Steps are the written steps, validated, in file order.
	Steps []Step
	// Random draws more steps from a seed; nil for none.
	Random *Random
}

// Random is a random plan section: faults of the given kinds, the first at
// Start, then at exponentially distributed gaps of mean MeanInterval (a
// Poisson process), never two at once.
type Random struct {
	// Seed overrides the plan's seed for this section.
	Seed *uint64
	// MeanInterval is the mean gap between the starts of two faults.
	MeanInterval time.Duration
	// Kinds are drawn uniformly: ACTION-ROLE (kill-broker, pause-redis...),
	// failover-postgres, cut-link, latency-link.
	Kinds []string
	// Start and Stop bound the times faults start (Stop defaults to the
	// plan's duration).
	Start, Stop time.Duration
	// RecoverAfter is how long each fault lasts before its recovery (start,
	// resume, heal). Default 5s.
	RecoverAfter time.Duration
}

// RandomKinds lists every kind a random section may draw.
func RandomKinds() []string {
	var kinds []string
	for _, action := range []Action{ActionKill, ActionStop, ActionPause, ActionRestart} {
		for _, role := range []string{roleBroker, rolePostgres, roleRedis, roleWorker, roleGateway} {
			kinds = append(kinds, string(action)+"-"+role)
		}
	}
	return append(kinds, "failover-postgres", "cut-link", "latency-link")
}

// The YAML form of a plan; every field is read as text so validation can
// name the step and the field of each mistake.
type planFile struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description"`
	Duration    string      `yaml:"duration"`
	Seed        *uint64     `yaml:"seed"`
	Steps       []stepFile  `yaml:"steps"`
	Random      *randomFile `yaml:"random"`
}

type stepFile struct {
	At     *string           `yaml:"at"`
	Action string            `yaml:"action"`
	Target string            `yaml:"target"`
	Params map[string]string `yaml:"params"`
}

type randomFile struct {
	Seed         *uint64  `yaml:"seed"`
	MeanInterval string   `yaml:"mean_interval"`
	Kinds        []string `yaml:"kinds"`
	Start        string   `yaml:"start"`
	Stop         string   `yaml:"stop"`
	RecoverAfter string   `yaml:"recover_after"`
}

// PlanError lists every problem of a plan.
type PlanError struct {
	Plan     string
	Problems []string
}

func (e *PlanError) Error() string {
	return fmt.Sprintf("plan %q is invalid:\n  - %s", e.Plan, strings.Join(e.Problems, "\n  - "))
}

// LoadPlan reads and validates a plan file; "-" reads standard input.
func LoadPlan(path string) (*Plan, error) {
	var content []byte
	var err error
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if path == "-" {
		content, err = io.ReadAll(io.LimitReader(os.Stdin, maxPlanBytes+1))
		name = "stdin"
	} else {
		content, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	return ParsePlan(content, name)
}

// maxPlanBytes bounds a plan file.
const maxPlanBytes = 1 << 20

// ParsePlan decodes a plan strictly (unknown fields are errors) and
// validates it; defaultName names it when it has no name.
func ParsePlan(content []byte, defaultName string) (*Plan, error) {
	if len(content) > maxPlanBytes {
		return nil, fmt.Errorf("plan %q: larger than %d bytes", defaultName, maxPlanBytes)
	}
	decoder := yaml.NewDecoder(bytes.NewReader(content))
	decoder.KnownFields(true)
	var file planFile
	if err := decoder.Decode(&file); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("plan %q: empty", defaultName)
		}
		return nil, fmt.Errorf("plan %q: %w", defaultName, err)
	}
	var extra any
	if err := decoder.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("plan %q: more than one YAML document", defaultName)
	}
	if file.Name == "" {
		file.Name = defaultName
	}
	return file.validate()
}

// validate checks everything that does not depend on the stack and returns
// the typed plan, or a PlanError listing every problem.
func (f planFile) validate() (*Plan, error) {
	plan := &Plan{Name: f.Name, Description: f.Description, Seed: f.Seed}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	switch duration, err := parseDuration(f.Duration); {
	case f.Duration == "":
		problem("duration: missing (the plan's whole length, e.g. 90s)")
	case err != nil:
		problem("duration: %v", err)
	case duration <= 0 || duration > MaxPlanDuration:
		problem("duration: %s not in (0, %s]", duration, MaxPlanDuration)
	default:
		plan.Duration = duration
	}
	if len(f.Steps) == 0 && f.Random == nil {
		problem("no steps and no random section: nothing to do")
	}
	if len(f.Steps) > MaxSteps {
		problem("steps: %d, at most %d", len(f.Steps), MaxSteps)
	}
	for index, raw := range f.Steps {
		step, stepProblems := raw.validate(index, plan.Duration)
		problems = append(problems, stepProblems...)
		if len(stepProblems) == 0 {
			plan.Steps = append(plan.Steps, step)
		}
	}
	if f.Random != nil {
		random, randomProblems := f.Random.validate(plan.Duration)
		problems = append(problems, randomProblems...)
		plan.Random = random
	}
	if len(problems) > 0 {
		return nil, &PlanError{Plan: f.Name, Problems: problems}
	}
	return plan, nil
}

// parseDuration reads a Go duration ("20s", "1m30s"), with a message that
// shows the expected form.
func parseDuration(text string) (time.Duration, error) {
	duration, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 500ms, 20s, 1m30s)", text)
	}
	return duration, nil
}

// allowedParams lists the parameters each action takes.
var allowedParams = map[Action][]string{
	ActionKill:       {"duration"},
	ActionStop:       {"duration"},
	ActionPause:      {"duration"},
	ActionStart:      nil,
	ActionRestart:    nil,
	ActionResume:     nil,
	ActionFailover:   nil,
	ActionLink:       {"fault", "latency", "jitter", "rate", "duration"},
	ActionCrashPoint: {"point", "process"},
	ActionCommand:    {"run", "timeout", "duration", "recover"},
}

// Bounds of a command step.
const (
	// DefaultCommandTimeout bounds a command step without params.timeout.
	DefaultCommandTimeout = time.Minute
	// MaxCommandTimeout bounds params.timeout.
	MaxCommandTimeout = 30 * time.Minute
	// maxCommandBytes bounds params.run and params.recover.
	maxCommandBytes = 4096
)

// commandTarget is the form of a command step's target: a name of the
// user's for what it acts on (payments-worker, db/primary, pod:ledger-0).
var commandTarget = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@=-]{0,99}$`)

// crashPointName is the form of a crash point's name.
var crashPointName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// validate checks one written step.
func (s stepFile) validate(index int, planDuration time.Duration) (Step, []string) {
	where := fmt.Sprintf("steps[%d]", index)
	if s.At != nil {
		where += fmt.Sprintf(" (at %s)", *s.At)
	}
	var problems []string
	problem := func(format string, args ...any) {
		problems = append(problems, where+": "+fmt.Sprintf(format, args...))
	}
	step := Step{Action: Action(s.Action), Target: s.Target, Source: fmt.Sprintf("steps[%d]", index)}

	switch {
	case s.At == nil:
		problem("at: missing (the offset from the start, e.g. 20s)")
	default:
		at, err := parseDuration(*s.At)
		switch {
		case err != nil:
			problem("at: %v", err)
		case at < 0:
			problem("at: %s is negative", at)
		case planDuration > 0 && at > planDuration:
			problem("at: %s is after the plan's duration %s", at, planDuration)
		default:
			step.At = at
		}
	}

	allowed, known := allowedParams[step.Action]
	switch {
	case s.Action == "":
		problem("action: missing (want one of %s)", joinActions())
		return step, problems
	case !known:
		problem("action: %q unknown (want one of %s)", s.Action, joinActions())
		return step, problems
	}
	for key := range s.Params {
		if !contains(allowed, key) {
			if len(allowed) == 0 {
				problem("params: %q not allowed: %s takes no parameters", key, step.Action)
			} else {
				problem("params: %q not allowed for %s (allowed: %s)", key, step.Action, strings.Join(allowed, ", "))
			}
		}
	}
	durationParam := func(key string) time.Duration {
		text, given := s.Params[key]
		if !given {
			return 0
		}
		value, err := parseDuration(text)
		switch {
		case err != nil:
			problem("params.%s: %v", key, err)
		case value <= 0:
			problem("params.%s: %s must be positive", key, value)
		default:
			return value
		}
		return 0
	}
	if contains(allowed, "duration") {
		step.Params.Duration = durationParam("duration")
		if step.Params.Duration > 0 && planDuration > 0 && step.At+step.Params.Duration > planDuration {
			problem("params.duration: the recovery at %s would be after the plan's duration %s", step.At+step.Params.Duration, planDuration)
		}
	}

	// The target, by action.
	switch {
	case processActions[step.Action]:
		if s.Target == "" {
			problem("target: missing (want a process: %s)", processTargetForms)
		} else if parsed, err := parseTarget(s.Target); err != nil {
			problem("target: %v", err)
		} else if parsed.link {
			problem("target: %q is a link; %s acts on a process (%s); links take action link", s.Target, step.Action, processTargetForms)
		}
	case step.Action == ActionFailover:
		if s.Target == "" {
			step.Target = rolePostgres
		} else if s.Target != rolePostgres {
			problem("target: %q: failover acts on postgres (the primary; or leave target out)", s.Target)
		}
	case step.Action == ActionLink:
		if s.Target == "" {
			problem("target: missing (want a link: %s)", strings.Join(Links, ", "))
		} else if !contains(Links, s.Target) {
			problem("target: %q is not a link (want %s)", s.Target, strings.Join(Links, ", "))
		}
		step.Params.Fault = s.Params["fault"]
		switch step.Params.Fault {
		case "":
			problem("params.fault: missing (want %s)", strings.Join(linkFaults, ", "))
		case FaultLatency:
			step.Params.Latency = durationParam("latency")
			step.Params.Jitter = durationParam("jitter")
			if step.Params.Latency == 0 {
				problem("params.latency: missing (a latency fault adds e.g. latency: 200ms)")
			}
		case FaultBandwidth:
			rate, given := s.Params["rate"]
			value, err := strconv.Atoi(rate)
			if !given {
				problem("params.rate: missing (a bandwidth fault caps the link at rate kilobytes per second)")
			} else if err != nil || value <= 0 {
				problem("params.rate: %q is not a positive number of kilobytes per second", rate)
			} else {
				step.Params.RateKilobytesPerSecond = value
			}
		case FaultCut, FaultReset, FaultHeal:
		default:
			problem("params.fault: %q unknown (want %s)", step.Params.Fault, strings.Join(linkFaults, ", "))
		}
		for _, key := range []string{"latency", "jitter"} {
			if _, given := s.Params[key]; given && step.Params.Fault != FaultLatency {
				problem("params.%s: only for fault latency", key)
			}
		}
		if _, given := s.Params["rate"]; given && step.Params.Fault != FaultBandwidth {
			problem("params.rate: only for fault bandwidth")
		}
		if step.Params.Fault == FaultHeal && step.Params.Duration > 0 {
			problem("params.duration: heal removes faults; it has no duration")
		}
	case step.Action == ActionCommand:
		switch {
		case s.Target == "":
			problem("target: missing (a name for what the command acts on, e.g. payments-worker; the report shows it)")
		case !commandTarget.MatchString(s.Target):
			problem("target: %q: want a name of letters, digits and . _ : / @ = - (at most 100), e.g. payments-worker", s.Target)
		}
		command := func(key string) string {
			text := strings.TrimSpace(s.Params[key])
			if len(text) > maxCommandBytes {
				problem("params.%s: longer than %d bytes (put a long procedure in a script and run the script)", key, maxCommandBytes)
			}
			return text
		}
		step.Params.Run = command("run")
		step.Params.Recover = command("recover")
		if step.Params.Run == "" {
			problem("params.run: missing (the shell command that applies the fault, e.g. docker kill payments-worker-1)")
		}
		if _, given := s.Params["recover"]; given && step.Params.Recover == "" {
			problem("params.recover: empty")
		}
		if (step.Params.Recover != "") != (step.Params.Duration > 0) && len(problems) == 0 {
			problem("params: recover and duration go together (recover runs duration after the fault)")
		}
		if _, given := s.Params["timeout"]; given {
			step.Params.Timeout = durationParam("timeout")
			if step.Params.Timeout > MaxCommandTimeout {
				problem("params.timeout: %s is above %s", step.Params.Timeout, MaxCommandTimeout)
			}
		}
	case step.Action == ActionCrashPoint:
		process := s.Params["process"]
		switch {
		case s.Target == "" && process == "":
			problem("target: missing (the process to arm: worker-N, gateway-N or worker:partition=N; or params.process)")
		case s.Target != "" && process != "" && s.Target != process:
			problem("params.process: %q contradicts target %q (give one of them)", process, s.Target)
		case s.Target == "":
			step.Target = process
		}
		if step.Target != "" {
			parsed, err := parseTarget(step.Target)
			if err != nil {
				problem("target: %v", err)
			} else if parsed.role != roleWorker && parsed.role != roleGateway {
				problem("target: %q: crash points are armed in a gateway or a worker (gateway-N, worker-N, worker:partition=N)", step.Target)
			}
		}
		step.Params.Point = s.Params["point"]
		switch {
		case step.Params.Point == "":
			problem("params.point: missing (the crash point's name, see docs/chaos.md)")
		case !crashPointName.MatchString(step.Params.Point):
			problem("params.point: %q is not a crash point name (lowercase letters, digits, dots and dashes, e.g. worker.mid-batch)", step.Params.Point)
		}
	}
	return step, problems
}

// validate checks a random section.
func (r randomFile) validate(planDuration time.Duration) (*Random, []string) {
	var problems []string
	problem := func(format string, args ...any) {
		problems = append(problems, "random: "+fmt.Sprintf(format, args...))
	}
	random := &Random{Seed: r.Seed, Stop: planDuration, RecoverAfter: defaultRecoverAfter}
	durationField := func(name, text string, target *time.Duration) {
		if text == "" {
			return
		}
		value, err := parseDuration(text)
		switch {
		case err != nil:
			problem("%s: %v", name, err)
		case value < 0:
			problem("%s: %s is negative", name, value)
		default:
			*target = value
		}
	}
	if r.MeanInterval == "" {
		problem("mean_interval: missing (the mean gap between faults, e.g. 15s)")
	}
	durationField("mean_interval", r.MeanInterval, &random.MeanInterval)
	durationField("start", r.Start, &random.Start)
	durationField("stop", r.Stop, &random.Stop)
	durationField("recover_after", r.RecoverAfter, &random.RecoverAfter)
	if r.MeanInterval != "" && random.MeanInterval < minimumMeanInterval && len(problems) == 0 {
		problem("mean_interval: %s is below %s", random.MeanInterval, minimumMeanInterval)
	}
	if r.RecoverAfter != "" && random.RecoverAfter == 0 && len(problems) == 0 {
		problem("recover_after: must be positive")
	}
	if planDuration > 0 {
		if random.Stop > planDuration {
			problem("stop: %s is after the plan's duration %s", random.Stop, planDuration)
		}
		if random.Start >= random.Stop {
			problem("start %s is not before stop %s", random.Start, random.Stop)
		}
		if random.Start+random.RecoverAfter > planDuration {
			problem("start %s + recover_after %s is after the plan's duration %s", random.Start, random.RecoverAfter, planDuration)
		}
	}
	if len(r.Kinds) == 0 {
		problem("kinds: missing (want some of %s)", strings.Join(RandomKinds(), ", "))
	}
	known := RandomKinds()
	for index, kind := range r.Kinds {
		if !contains(known, kind) {
			problem("kinds[%d]: %q unknown (want %s)", index, kind, strings.Join(known, ", "))
		}
	}
	random.Kinds = r.Kinds
	return random, problems
}

// ResolveSeed returns the seed of the plan's random choices: override (from
// --seed) first, then the random section's seed, then the plan's, else a
// fresh one drawn from the clock. source says which, for printing.
func (p *Plan) ResolveSeed(override *uint64, now func() time.Time) (seed uint64, source string) {
	switch {
	case override != nil:
		return *override, "--seed"
	case p.Random != nil && p.Random.Seed != nil:
		return *p.Random.Seed, "random.seed"
	case p.Seed != nil:
		return *p.Seed, "seed"
	}
	return uint64(now().UnixNano()) & (1<<53 - 1), "drawn"
}

// Timeline expands the plan into the steps the runner applies, sorted by
// time (written order within one time): the written steps, a recovery step
// for each `duration` parameter, and the random section's faults drawn from
// seed against the stack's inventory (the same seed and the same stack
// shape give the same steps).
func (p *Plan) Timeline(seed uint64, inventory Inventory) ([]Step, error) {
	var timeline []Step
	for _, step := range p.Steps {
		timeline = append(timeline, step)
		if recovery, ok := recoveryStep(step); ok {
			timeline = append(timeline, recovery)
		}
	}
	if p.Random != nil {
		drawn, err := p.Random.draw(seed, p.Duration, inventory)
		if err != nil {
			return nil, fmt.Errorf("plan %q: %w", p.Name, err)
		}
		timeline = append(timeline, drawn...)
	}
	if len(timeline) > MaxSteps {
		return nil, fmt.Errorf("plan %q: %d steps after expansion, at most %d", p.Name, len(timeline), MaxSteps)
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].At < timeline[j].At })
	return timeline, nil
}

// recoveryStep is the step that ends a fault with a duration.
func recoveryStep(step Step) (Step, bool) {
	if step.Params.Duration <= 0 {
		return Step{}, false
	}
	recovery := Step{At: step.At + step.Params.Duration, Target: step.Target, Source: step.Source + " recovery"}
	switch {
	case step.Action == ActionLink:
		recovery.Action = ActionLink
		recovery.Params.Fault = FaultHeal
	case step.Action == ActionCommand:
		recovery.Action = ActionCommand
		recovery.Params = Params{Run: step.Params.Recover, Timeout: step.Params.Timeout}
	case recoveryOf[step.Action] != "":
		recovery.Action = recoveryOf[step.Action]
	default:
		return Step{}, false
	}
	return recovery, true
}

// draw expands a random section. The generator is PCG seeded with seed;
// the sequence of draws is: per fault, the kind, then (for workers,
// gateways and links) the instance, then the gap to the next fault.
func (r *Random) draw(seed uint64, planDuration time.Duration, inventory Inventory) ([]Step, error) {
	generator := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var steps []Step
	at := r.Start
	for count := 1; at <= r.Stop && count <= MaxRandomFaults; count++ {
		kind := r.Kinds[generator.IntN(len(r.Kinds))]
		action, role, _ := strings.Cut(kind, "-")
		source := fmt.Sprintf("random #%d (%s)", count, kind)
		fault := Step{At: at, Action: Action(action), Target: role, Source: source}
		pick := func(candidates []string, what string) (string, error) {
			if len(candidates) == 0 {
				return "", fmt.Errorf("random kind %s: the stack has no %s", kind, what)
			}
			sorted := append([]string(nil), candidates...)
			sort.Strings(sorted)
			return sorted[generator.IntN(len(sorted))], nil
		}
		var err error
		switch {
		case kind == "cut-link" || kind == "latency-link":
			links := inventory.Links
			if len(links) == 0 {
				links = Links // checked against the stack by ValidateTargets
			}
			fault.Action = ActionLink
			fault.Target, err = pick(links, "links")
			fault.Params.Fault = FaultCut
			if kind == "latency-link" {
				fault.Params = Params{Fault: FaultLatency, Latency: randomLinkLatency, Jitter: randomLinkJitter}
			}
		case kind == "failover-postgres":
			fault.Action, fault.Target = ActionFailover, rolePostgres
		case role == roleWorker:
			fault.Target, err = pick(inventory.workers(), "workers")
		case role == roleGateway:
			fault.Target, err = pick(inventory.gateways(), "gateways")
		}
		if err != nil {
			return nil, err
		}
		gap := time.Duration(-math.Log(1-generator.Float64()) * float64(r.MeanInterval))
		recovered := at
		if recovery, ok := recoveryStep(withDuration(fault, r.RecoverAfter)); ok {
			if recovery.At > planDuration {
				break
			}
			recovery.Source = source + " recovery"
			steps = append(steps, fault, recovery)
			recovered = recovery.At
		} else {
			steps = append(steps, fault)
		}
		// Never two random faults at once: the next starts after this one's
		// recovery, with a second for the stack to come back.
		next := max(at+gap, recovered+time.Second)
		at = next.Round(randomTimeResolution)
	}
	return steps, nil
}

// withDuration gives a fault the duration after which it is recovered.
func withDuration(step Step, duration time.Duration) Step {
	step.Params.Duration = duration
	return step
}

// ValidateTargets checks a timeline against a stack's inventory: every
// process target exists, partitions are in range, and link, failover and
// crash-point steps have what they need. It returns a PlanError listing
// every problem.
func ValidateTargets(planName string, timeline []Step, inventory Inventory) error {
	var problems []string
	seen := map[string]bool{}
	add := func(step Step, format string, args ...any) {
		text := fmt.Sprintf("%s (at %s, %s %s): ", step.Source, step.At, step.Action, step.Target) + fmt.Sprintf(format, args...)
		if !seen[text] {
			seen[text] = true
			problems = append(problems, text)
		}
	}
	for _, step := range timeline {
		switch {
		case step.Action == ActionCommand:
			continue // the user's command: any system, any name
		case inventory.CommandsOnly:
			add(step, "%v", errExternal)
			continue
		case step.Action == ActionLink:
			if len(inventory.Links) == 0 {
				add(step, "%v", errLinksNotSupported)
			} else if !contains(inventory.Links, step.Target) {
				add(step, "link not in this stack (it has %s)", strings.Join(inventory.Links, ", "))
			}
			continue
		case step.Action == ActionFailover:
			if !inventory.Failover {
				add(step, "%v", errFailoverNotSupported)
			}
			continue
		case step.Action == ActionCrashPoint:
			if len(inventory.CrashPoints) == 0 {
				add(step, "%v", errCrashPointsNotSupported)
			} else if !contains(inventory.CrashPoints, step.Params.Point) {
				add(step, "crash point %q unknown (this stack has %s)", step.Params.Point, strings.Join(inventory.CrashPoints, ", "))
			}
		}
		parsed, err := parseTarget(step.Target)
		if err != nil {
			add(step, "%v", err)
			continue
		}
		if parsed.partition >= 0 {
			if len(inventory.workers()) == 0 {
				add(step, "the stack has no workers")
			} else if inventory.Partitions > 0 && parsed.partition >= inventory.Partitions {
				add(step, "partition %d out of range: the stack's topic has partitions 0..%d", parsed.partition, inventory.Partitions-1)
			}
			continue
		}
		if !inventory.has(step.Target) {
			hint := ""
			if step.Target == rolePostgresStandby {
				hint = " (start it with --postgres-standby)"
			}
			add(step, "target %q does not exist in this stack%s (it has %s)", step.Target, hint, strings.Join(inventory.Processes, ", "))
		}
	}
	if len(problems) > 0 {
		return &PlanError{Plan: planName, Problems: problems}
	}
	return nil
}

// target is a parsed plan target.
type target struct {
	role string
	// instance is N of broker-N, worker-N, gateway-N; -1 for none.
	instance int
	// partition is N of worker:partition=N; -1 for none.
	partition int
	// shard is I of postgres-shard-I, relay-shard-I and worker-sI-N; 0
	// for the others (shard 0's, or an unsharded stack's).
	shard int
	link  bool
}

// processTargetForms describes the process targets, for errors.
const processTargetForms = "broker, broker-N, postgres, postgres-standby, redis, worker-N, worker:partition=N, gateway-N, relay, settler; " +
	"of a sharded stack: postgres-shard-I, worker-sI-N, relay-shard-I"

// shardedTarget matches the processes a sharded stack adds for its shard
// I > 0 (docs/sharding.md): its Postgres, its workers (worker-sI-N) and its
// outbox relay.
var shardedTarget = regexp.MustCompile(`^(?:(postgres|relay)-shard-([1-9][0-9]?)|worker-s([1-9][0-9]?)-(0|[1-9][0-9]{0,3}))$`)

var numberedTarget = regexp.MustCompile(`^(broker|worker|gateway)-(0|[1-9][0-9]{0,3})$`)
var partitionTarget = regexp.MustCompile(`^worker:partition=(0|[1-9][0-9]{0,3})$`)

// parseTarget reads a target.
func parseTarget(text string) (target, error) {
	parsed := target{instance: -1, partition: -1}
	switch {
	case contains(Links, text):
		parsed.link = true
		parsed.role = text
	case text == roleBroker || text == rolePostgres || text == rolePostgresStandby || text == roleRedis ||
		text == roleRelay || text == roleSettler:
		parsed.role = text
	case numberedTarget.MatchString(text):
		match := numberedTarget.FindStringSubmatch(text)
		parsed.role = match[1]
		parsed.instance, _ = strconv.Atoi(match[2])
	case shardedTarget.MatchString(text):
		match := shardedTarget.FindStringSubmatch(text)
		if match[1] != "" {
			// A shard's Postgres or relay: acted on like postgres and relay.
			parsed.role = match[1]
			parsed.shard, _ = strconv.Atoi(match[2])
		} else {
			parsed.role = roleWorker
			parsed.shard, _ = strconv.Atoi(match[3])
			parsed.instance, _ = strconv.Atoi(match[4])
		}
	case partitionTarget.MatchString(text):
		parsed.role = roleWorker
		parsed.partition, _ = strconv.Atoi(partitionTarget.FindStringSubmatch(text)[1])
	case text == roleWorker || text == roleGateway:
		return parsed, fmt.Errorf("%q: name one %s: %s-N (e.g. %s-0)%s", text, text, text, text,
			map[string]string{roleWorker: " or worker:partition=N (the one owning partition N)"}[text])
	default:
		return parsed, fmt.Errorf("%q unknown (want a process: %s; or a link: %s)", text, processTargetForms, strings.Join(Links, ", "))
	}
	return parsed, nil
}

// PartitionOf returns N of a worker:partition=N target.
func PartitionOf(targetText string) (int, bool) {
	parsed, err := parseTarget(targetText)
	if err != nil || parsed.partition < 0 {
		return 0, false
	}
	return parsed.partition, true
}

func joinActions() string {
	names := make([]string, len(Actions))
	for i, action := range Actions {
		names[i] = string(action)
	}
	return strings.Join(names, ", ")
}

func contains(values []string, value string) bool {
	for _, candidate := range values {
		if candidate == value {
			return true
		}
	}
	return false
}
