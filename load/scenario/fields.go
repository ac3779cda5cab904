package scenario

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of a scenario. Everything a scenario asks for is bounded, so that a typing mistake (a rate with three
// zeros too many, a duration in hours instead of seconds) is refused before the load starts rather than run.
const (
	// MaxRate bounds every rate, in iterations per second.
	MaxRate = 1_000_000
	// MaxInFlightLimit bounds max_in_flight, given or derived.
	MaxInFlightLimit = 100_000
	// MaxDuration is the longest any duration of a scenario may be (a soak is 30 minutes).
	MaxDuration = 24 * time.Hour
	// MaxAccounts bounds setup.accounts: each is signed up and funded before the load.
	MaxAccounts = 1_000_000
	// MaxFundingMinor bounds setup.funding and workload.amount_max, in minor units (a billion in major units).
	MaxFundingMinor = 100_000_000_000
	// MaxDailyLimitMinor bounds workload.daily_limit, in minor units (ten billion in major units).
	MaxDailyLimitMinor = 1_000_000_000_000
	// maxSetupConcurrency bounds setup.concurrency.
	maxSetupConcurrency = 1024
	// maxStages and maxSteps bound the lists of the ramping and capacity schedules.
	maxStages = 1000
	maxSteps  = 100
	// maxClosedLoops and maxClosedIterations bound the closed model.
	maxClosedLoops      = 1000
	maxClosedIterations = 1_000_000
	// maxRetryAttempts bounds client.retry.attempts.
	maxRetryAttempts = 100
	// maxZipfExponent bounds workload.zipf_exponent: beyond it one account takes practically all the load.
	maxZipfExponent = 10
	// passwordMinimum and passwordMaximum are the reference API's password lengths (sut/openapi.yaml).
	passwordMinimum = 8
	passwordMaximum = 256
	// minimumInFlight and inFlightSeconds make the default max_in_flight: room for every iteration of
	// inFlightSeconds at the highest rate (an iteration waits up to client.wait for its outcome), at least
	// minimumInFlight, at most MaxInFlightLimit.
	minimumInFlight = 100
	inFlightSeconds = 10
	// hotAccountsPercent is the default share of workload.hot_accounts.
	hotAccountsPercent = 1
)

// requirement is a condition on another field under which a field may be set: a field of one executor, of the
// mixed workload, of zipf accounts, of ownership.
type requirement struct {
	// name is the deciding field as messages say it ("executor"), values what it must be.
	name   string
	values []string
	actual func(*Scenario) string
}

var (
	openExecutors = requirement{name: "executor",
		values: []string{ExecutorConstantArrivalRate, ExecutorRampingArrivalRate, ExecutorCapacitySteps},
		actual: func(s *Scenario) string { return s.Schedule.Executor }}
	mixedWorkload = requirement{name: "workload kind", values: []string{WorkloadMixed},
		actual: func(s *Scenario) string { return s.Workload.Kind }}
	zipfAccounts = requirement{name: "accounts", values: []string{DistributionZipf},
		actual: func(s *Scenario) string { return s.Workload.Accounts }}
	withOwnership = requirement{name: "ownership", values: []string{"true"},
		actual: func(s *Scenario) string { return strconv.FormatBool(s.Workload.Ownership) }}
)

// executor is the requirement of the fields of one executor.
func executor(name string) requirement {
	return requirement{name: "executor", values: []string{name}, actual: openExecutors.actual}
}

// describe says the requirement in docs and messages: "executor ramping-arrival-rate".
func (r requirement) describe() string {
	return r.name + " " + strings.Join(r.values, ", ")
}

// field is one key of a scenario file.
type field struct {
	// Path is the key's dotted path ("schedule.rate"); `[]` marks the fields of a list's items
	// ("schedule.stages[].target") and `<metric>` a key the file chooses.
	Path string
	// Default is the YAML value used when the file leaves the field out; empty for none.
	Default string
	// Rule says, for the docs, how derive computes a default from other fields; derive runs when the file
	// leaves the field out, and leaves the field zero where it does not apply.
	Rule   string
	derive func(*Scenario)
	// Only lists the conditions under which the field may be set (all must hold); where one does not, the
	// field is zero in the Scenario.
	Only []requirement
	// Allowed says the values validate accepts, for the docs.
	Allowed string
	Meaning string
}

// fields is the one truth of a scenario file's keys: the decoder refuses any other key, applies Default (or
// derive) to the fields left out, and docs/scenarios.md's field table is rendered from it (TestFieldsDocumented;
// go test ./load/scenario -update rewrites it). The order is the docs' and the order defaults are applied in: a
// derived default only reads fields above it.
var fields = []field{
	{Path: "name", Rule: "the file's base name without extension", derive: deriveName,
		Allowed: "lowercase letters, digits, `.` `_` `-`; up to 64",
		Meaning: "Names the scenario in reports and in the prepared users' emails."},
	{Path: "description", Default: `""`, Meaning: "Free text shown in reports."},
	{Path: "seed", Default: "0", Allowed: "an integer",
		Meaning: "Seeds every random choice of the load (kinds, accounts, amounts, duplicates, misuse, jitter). " +
			"0: one is drawn at start and printed, so the run can be replayed with `--set seed=N`."},

	{Path: "setup.accounts", Default: "100", Allowed: fmt.Sprintf("2 to %d", MaxAccounts),
		Meaning: "Users signed up, signed in and funded before the schedule starts."},
	{Path: "setup.funding", Default: "1000000", Allowed: fmt.Sprintf("1 to %d", MaxFundingMinor),
		Meaning: "Each account's opening deposit, in minor units."},
	{Path: "setup.concurrency", Default: "32", Allowed: fmt.Sprintf("1 to %d", maxSetupConcurrency),
		Meaning: "Accounts prepared at once."},
	{Path: "setup.timeout", Default: "5m", Allowed: "above 0",
		Meaning: "Bounds the whole setup; what could not be prepared by then is named and the load exits 2."},
	{Path: "setup.password", Default: "ledgerproof-load-1",
		Allowed: fmt.Sprintf("%d to %d characters", passwordMinimum, passwordMaximum),
		Meaning: "Password of the prepared users."},
	{Path: "setup.email_prefix", Rule: "`load-` and the name", derive: deriveEmailPrefix,
		Allowed: "lowercase letters, digits, `.` `_` `+` `-`; up to 100",
		Meaning: "Starts the prepared users' emails, which are unique per run."},

	{Path: "schedule.executor", Default: ExecutorConstantArrivalRate,
		Allowed: strings.Join(executors, ", "), Meaning: "How the schedule starts iterations (Executors, below)."},
	{Path: "schedule.rate", Default: "200", Only: []requirement{executor(ExecutorConstantArrivalRate)},
		Allowed: fmt.Sprintf("above 0, at most %d", MaxRate), Meaning: "Iterations started per second."},
	{Path: "schedule.duration", Default: "60s", Only: []requirement{executor(ExecutorConstantArrivalRate)},
		Allowed: "above 0", Meaning: "How long the rate is held."},
	{Path: "schedule.start_rate", Default: "0", Only: []requirement{executor(ExecutorRampingArrivalRate)},
		Allowed: fmt.Sprintf("0 to %d", MaxRate), Meaning: "The rate the first stage starts from."},
	{Path: "schedule.stages", Only: []requirement{executor(ExecutorRampingArrivalRate)},
		Allowed: fmt.Sprintf("required; 1 to %d stages; the highest rate above 0", maxStages),
		Meaning: "Each stage moves the rate linearly to its target over its duration."},
	{Path: "schedule.stages[].target", Allowed: fmt.Sprintf("0 to %d; required", MaxRate),
		Meaning: "The rate at the end of the stage, per second."},
	{Path: "schedule.stages[].duration", Allowed: "0 or more (0 jumps to the target); required",
		Meaning: "The stage's length."},
	{Path: "schedule.steps", Default: "[1000, 1500, 2000, 2500, 3000, 3600]",
		Only:    []requirement{executor(ExecutorCapacitySteps)},
		Allowed: fmt.Sprintf("1 to %d rates, each above 0 and at most %d, increasing", maxSteps, MaxRate),
		Meaning: "The rates of the steps, per second."},
	{Path: "schedule.step_ramp", Default: "5s", Only: []requirement{executor(ExecutorCapacitySteps)},
		Allowed: "0 or more (0 jumps)", Meaning: "Each step first ramps linearly from the previous step's rate (0 for the first)."},
	{Path: "schedule.step_hold", Default: "30s", Only: []requirement{executor(ExecutorCapacitySteps)},
		Allowed: "above 0", Meaning: "Then holds the step's rate; the step is judged on its hold."},
	{Path: "schedule.step_gap", Default: "5s", Only: []requirement{executor(ExecutorCapacitySteps)},
		Allowed: "0 or more", Meaning: "Then pauses, so that the next step starts from a drained system."},
	{Path: "schedule.vus", Default: "1", Only: []requirement{executor(ExecutorClosed)},
		Allowed: fmt.Sprintf("1 to %d", maxClosedLoops), Meaning: "Loops running at once, each one iteration after the other."},
	{Path: "schedule.iterations", Default: "3", Only: []requirement{executor(ExecutorClosed)},
		Allowed: fmt.Sprintf("1 to %d", maxClosedIterations), Meaning: "Iterations of each loop."},
	{Path: "schedule.max_duration", Default: "2m", Only: []requirement{executor(ExecutorClosed)},
		Allowed: "above 0", Meaning: "Bounds the closed model: loops still running then are stopped."},
	{Path: "schedule.max_in_flight", Only: []requirement{openExecutors},
		Rule: fmt.Sprintf("max(%d, highest rate × %d), at most %d; closed: `vus`", minimumInFlight, inFlightSeconds,
			MaxInFlightLimit), derive: deriveMaxInFlight,
		Allowed: fmt.Sprintf("1 to %d", MaxInFlightLimit),
		Meaning: "Bounds the iterations in flight; an iteration due while that many run is dropped and counted " +
			"(`dropped_iterations`), never delayed."},
	{Path: "schedule.graceful_stop", Default: "30s", Allowed: "0 or more",
		Meaning: "How long iterations in flight may finish after the schedule ends."},

	{Path: "workload.kind", Default: WorkloadMixed, Allowed: strings.Join(workloadKinds, ", "),
		Meaning: "What an iteration does: one money operation chosen by `mix` (mixed), or the smoke walk (walk)."},
	{Path: "workload.mix.deposit", Default: "3", Only: []requirement{mixedWorkload},
		Allowed: "0 or more; one of the three above 0", Meaning: "Weight of deposits."},
	{Path: "workload.mix.withdrawal", Default: "2", Only: []requirement{mixedWorkload},
		Allowed: "0 or more", Meaning: "Weight of withdrawals."},
	{Path: "workload.mix.transfer", Default: "5", Only: []requirement{mixedWorkload},
		Allowed: "0 or more", Meaning: "Weight of transfers."},
	{Path: "workload.amount_min", Default: "1", Only: []requirement{mixedWorkload},
		Allowed: "1 or more, at most `amount_max`", Meaning: "Smallest amount, in minor units (uniform between the bounds)."},
	{Path: "workload.amount_max", Default: "1000", Only: []requirement{mixedWorkload},
		Allowed: fmt.Sprintf("at most %d", MaxFundingMinor), Meaning: "Largest amount, in minor units."},
	{Path: "workload.accounts", Default: DistributionUniform, Only: []requirement{mixedWorkload},
		Allowed: strings.Join(distributions, ", "), Meaning: "How sources and destinations are picked."},
	{Path: "workload.zipf_exponent", Default: "1.1", Only: []requirement{mixedWorkload, zipfAccounts},
		Allowed: fmt.Sprintf("above 0, at most %d", maxZipfExponent), Meaning: "Skew of zipf: the higher, the fewer accounts take the load."},
	{Path: "workload.hot_accounts", Only: []requirement{mixedWorkload, zipfAccounts},
		Rule:    fmt.Sprintf("%d%% of the accounts, at least 1", hotAccountsPercent),
		derive:  deriveHotAccounts,
		Allowed: "1 to `setup.accounts`", Meaning: "How many of the hottest accounts are reported as hot."},
	{Path: "workload.ownership", Default: "true", Only: []requirement{mixedWorkload}, Allowed: "true, false",
		Meaning: "Most debits of an account come from one owner slot, one after the other (Account ownership, below)."},
	{Path: "workload.owner_slots", Only: []requirement{mixedWorkload, withOwnership},
		Rule: "min(`setup.accounts`, `schedule.max_in_flight`)", derive: deriveOwnerSlots,
		Allowed: "1 to `setup.accounts`", Meaning: "Number of owner slots."},
	{Path: "workload.overdraft_rate", Default: "0", Only: []requirement{mixedWorkload},
		Allowed: "0 to 1; with `drain_rate` at most 1",
		Meaning: "Fraction of debits (withdrawals, transfers) sized one minor unit above the most the generator " +
			"believes the source can hold: each must be rejected for insufficient funds (Balance edges, below)."},
	{Path: "workload.drain_rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of debits that take exactly the source's balance when the generator knows it exactly " +
			"(nothing of the account in flight or unknown), leaving it at 0; otherwise an ordinary debit."},
	{Path: "workload.race_rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1; above 0 only with `drain_rate`",
		Meaning: "Fraction of whole-balance debits (`drain_rate`) sent with a rival: a withdrawal of the same amount from " +
			"the same account, with a key of its own, at the same moment (two devices paying at once); one of the two " +
			"must be rejected for insufficient funds (Balance edges, below)."},
	{Path: "workload.minimum_rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of operations whose amount is `amount_min`, the smallest edge."},
	{Path: "workload.pair_rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of transfers sent to the source's partner account (accounts 0 and 1, 2 and 3, ... of " +
			"setup's order), so that each pair sees transfers both ways."},
	{Path: "workload.missing_rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of transfers sent to an account that does not exist (an id above 2^40, in another shard " +
			"than the source's for 2, 4, 8 or 16 shards): a correct system rejects them with `account_not_found`, " +
			"and a sharded one compensates their sagas (docs/sharding.md)."},
	{Path: "workload.daily_limit", Default: "0", Only: []requirement{mixedWorkload},
		Allowed: "0 or more, at most 1000000000000",
		Meaning: "The system's daily debit limit per user, in minor units (0: none, or unknown): what " +
			"`limit_race_rate` aims at. The local stack's is 100000 (docs/limits.md)."},
	{Path: "workload.limit_race_rate", Default: "0", Only: []requirement{mixedWorkload},
		Allowed: "0 to 1; above 0 only with `daily_limit`",
		Meaning: "Fraction of ordinary debits that, when what remains of the source's user's `daily_limit` for " +
			"the day is no more than its balance, become a limit race: the debit and a withdrawal of the same " +
			"amount at the same moment, each within what surely remains of the limit, the two above the most " +
			"that may remain; one of them must be rejected with `daily_limit_exceeded` (Balance edges, below)."},

	{Path: "client.wait", Default: "5s", Allowed: "0 or more, below `client.timeout`",
		Meaning: "Sent as `Prefer: wait=N`: the system may hold its answer until the outcome. 0 sends none."},
	{Path: "client.timeout", Default: "10s", Allowed: "above 0", Meaning: "Bounds one HTTP request."},
	{Path: "client.http_engine", Default: HTTPEngineStandard, Allowed: strings.Join(httpEngines, ", "),
		Meaning: "The generator's HTTP client. std: Go's net/http. fast: fasthttp, a third less of the generator's CPU " +
			"per request at 3,600 TPS (for capacity runs, where the generator shares the machine); a request " +
			"already sent is not cut when the load stops: it ends with its answer or at `client.timeout`."},
	{Path: "client.poll_interval", Default: "100ms", Allowed: "above 0",
		Meaning: "After an accepted answer without a final outcome, the client asks `GET /v1/transactions/{id}` this often..."},
	{Path: "client.poll_for", Default: "10s", Allowed: "0 or more", Meaning: "...for up to this long; 0: no polling."},
	{Path: "client.retry.attempts", Default: "3", Allowed: fmt.Sprintf("1 to %d", maxRetryAttempts),
		Meaning: "Attempts of one request, the first included (on 5xx, 409 in flight, 429, no answer); every attempt reuses the idempotency key."},
	{Path: "client.retry.backoff", Default: "50ms", Allowed: "0 or more",
		Meaning: "The wait before the second attempt; it doubles per attempt..."},
	{Path: "client.retry.max_backoff", Default: "1s", Allowed: "at least `backoff`", Meaning: "...up to this..."},
	{Path: "client.retry.jitter", Default: "0.5", Allowed: "0 to 1",
		Meaning: "...times a random factor in [1 − jitter, 1 + jitter]."},
	{Path: "client.duplicates.rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of money operations sent twice with the same key and body."},
	{Path: "client.duplicates.mode", Default: DuplicateConcurrent, Only: []requirement{mixedWorkload},
		Allowed: strings.Join(duplicateModes, ", "),
		Meaning: "concurrent: at the same time (a double click); delayed: after the answer (a replay); mixed: alternately."},
	{Path: "client.duplicates.delay", Default: "100ms", Only: []requirement{mixedWorkload}, Allowed: "0 or more",
		Meaning: "Delay of a delayed duplicate after the original's answer."},
	{Path: "client.misuse.rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of money operations followed by a request that reuses the key with another amount (must be refused)."},
	{Path: "client.early_timeouts.rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of money operations whose first attempt the client gives up early, after a random time " +
			"up to `max`, then retries with the same key: the system may have the first copy, be working on it, or " +
			"have answered it."},
	{Path: "client.early_timeouts.max", Default: "50ms", Only: []requirement{mixedWorkload},
		Allowed: "above 0, below `client.timeout`", Meaning: "The longest such a first attempt is given."},
	{Path: "client.replays.rate", Default: "0", Only: []requirement{mixedWorkload}, Allowed: "0 to 1",
		Meaning: "Fraction of money operations with a final answer sent again later, same key and body, as an " +
			"operation of their own (a client replaying its outbox); past the system's idempotency cache, the copy " +
			"reaches its ledger's own dedupe (Replays, below)."},
	{Path: "client.replays.after", Default: "30s", Only: []requirement{mixedWorkload}, Allowed: "above 0",
		Meaning: "How long after the first operation completed its replay is due; the first iteration that starts " +
			"after that sends it, in place of a new operation."},

	{Path: "thresholds", Allowed: "metric → list of expressions",
		Meaning: "What the run must meet (Thresholds, below); none by default."},
	{Path: "thresholds.<metric>[].threshold", Allowed: "an expression; required",
		Meaning: "The expression, when an item is a mapping rather than the expression itself."},
	{Path: "thresholds.<metric>[].abort_on_fail", Default: "false", Allowed: "true, false",
		Meaning: "Stops the load as soon as the threshold fails."},
	{Path: "thresholds.<metric>[].delay_abort_eval", Default: "0s", Allowed: "0 or more; only with abort_on_fail",
		Meaning: "Time from the load's start before abort_on_fail is evaluated, so a cold start does not abort."},
}

// The values the choice fields accept, in the order messages show them.
var (
	executors      = []string{ExecutorConstantArrivalRate, ExecutorRampingArrivalRate, ExecutorCapacitySteps, ExecutorClosed}
	workloadKinds  = []string{WorkloadMixed, WorkloadWalk}
	distributions  = []string{DistributionUniform, DistributionZipf}
	duplicateModes = []string{DuplicateConcurrent, DuplicateDelayed, DuplicateMixed}
	httpEngines    = []string{HTTPEngineStandard, HTTPEngineFast}
)

// fieldAt returns the field of a path, if the table has one.
func fieldAt(path string) (field, bool) {
	index := slices.IndexFunc(fields, func(f field) bool { return f.Path == path })
	if index < 0 {
		return field{}, false
	}
	return fields[index], true
}

// childNames lists the keys a mapping at path may have ("" is the file's top level, "schedule.stages[]" a
// stage), in table order.
func childNames(path string) []string {
	var names []string
	for _, f := range fields {
		rest := f.Path
		if path != "" {
			var found bool
			if rest, found = strings.CutPrefix(f.Path, path+"."); !found {
				continue
			}
		}
		name, _, _ := strings.Cut(rest, ".")
		name = strings.TrimSuffix(name, "[]")
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// isItemField reports whether a field belongs to a list's items (decoded by the list's field, not walked).
func (f field) isItemField() bool { return strings.Contains(f.Path, "[]") }

// unmet returns the first requirement of the field that the scenario does not meet, if any.
func (f field) unmet(s *Scenario) (requirement, bool) {
	for _, required := range f.Only {
		if !slices.Contains(required.values, required.actual(s)) {
			return required, true
		}
	}
	return requirement{}, false
}

func deriveName(s *Scenario) {
	s.Name = strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
}

func deriveEmailPrefix(s *Scenario) { s.Setup.EmailPrefix = "load-" + s.Name }

// deriveMaxInFlight leaves room for inFlightSeconds of the highest rate: an iteration holds its place until its
// outcome (up to client.wait, then polling), and a short stall of the system must not turn into dropped
// iterations. The closed model runs exactly its loops.
func deriveMaxInFlight(s *Scenario) {
	if s.Schedule.Executor == ExecutorClosed {
		s.Schedule.MaxInFlight = s.Schedule.VUs
		return
	}
	room := math.Ceil(s.Schedule.HighestRate() * inFlightSeconds)
	s.Schedule.MaxInFlight = int(min(max(minimumInFlight, room), MaxInFlightLimit))
}

func deriveHotAccounts(s *Scenario) {
	if s.Workload.Kind == WorkloadMixed && s.Workload.Accounts == DistributionZipf {
		s.Workload.HotAccounts = max(1, s.Setup.Accounts*hotAccountsPercent/100)
	}
}

// deriveOwnerSlots gives each iteration that can be in flight its own slot, so that while no more run than
// there are slots every account's debits are strictly sequential; never more slots than accounts.
func deriveOwnerSlots(s *Scenario) {
	if s.Workload.Kind == WorkloadMixed && s.Workload.Ownership {
		s.Workload.OwnerSlots = min(s.Setup.Accounts, s.Schedule.MaxInFlight)
	}
}

// HighestRate is the highest rate the schedule calls for, in iterations per second; 0 for the closed model.
func (s Schedule) HighestRate() float64 {
	switch s.Executor {
	case ExecutorConstantArrivalRate:
		return s.Rate
	case ExecutorRampingArrivalRate:
		highest := s.StartRate
		for _, stage := range s.Stages {
			highest = max(highest, stage.Target)
		}
		return highest
	case ExecutorCapacitySteps:
		highest := 0.0
		for _, step := range s.Steps {
			highest = max(highest, step)
		}
		return highest
	}
	return 0
}

// fieldTable renders the fields as the Markdown table of docs/scenarios.md.
func fieldTable() string {
	var text strings.Builder
	text.WriteString("| field | default | allowed | only with | meaning |\n|---|---|---|---|---|\n")
	for _, f := range fields {
		defaultText := "—"
		switch {
		case f.Default == `""`:
			defaultText = "empty"
		case f.Default != "":
			defaultText = "`" + f.Default + "`"
		case f.Rule != "":
			defaultText = f.Rule
		}
		var conditions []string
		for _, required := range f.Only {
			conditions = append(conditions, required.describe())
		}
		fmt.Fprintf(&text, "| `%s` | %s | %s | %s | %s |\n", f.Path, defaultText, f.Allowed,
			strings.Join(conditions, "; "), f.Meaning)
	}
	return text.String()
}
