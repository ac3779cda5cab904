// Package scenario is the declarative description of a load (Jepsen's generator, as a file): who the load runs as
// (setup), when operations start (the schedule), which operations (the workload), how the client behaves (waits,
// retries, duplicates, misuse) and what the run must meet (thresholds). Scenario files are YAML, parsed strictly
// (an unknown field, a wrong type or an impossible value is an error naming the file and line); every field and
// its default is in docs/scenarios.md.
package scenario

import (
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// Executors: how the schedule starts iterations.
const (
	// ExecutorConstantArrivalRate starts Rate iterations per second for Duration (open model).
	ExecutorConstantArrivalRate = "constant-arrival-rate"
	// ExecutorRampingArrivalRate follows Stages, linear from one target rate to the next (open model).
	ExecutorRampingArrivalRate = "ramping-arrival-rate"
	// ExecutorCapacitySteps runs Steps: for each rate a ramp from the previous one, a hold, a gap (open model).
	ExecutorCapacitySteps = "capacity-steps"
	// ExecutorClosed runs VUs loops of Iterations iterations each, one after the other (closed model: smoke).
	ExecutorClosed = "closed"
)

// Workload kinds: what one iteration does.
const (
	// WorkloadMixed is one money operation per iteration, chosen by Mix weights.
	WorkloadMixed = "mixed"
	// WorkloadWalk is the smoke walk per iteration: signup, sign-in (and a wrong password refused), a new
	// account's balance, deposit, withdrawal, transfer, status, a replay of the deposit's key, an overdraft
	// refused, balances checked after each; each check counted in the checks metric.
	WorkloadWalk = "walk"
)

// Account distributions.
const (
	DistributionUniform = "uniform"
	DistributionZipf    = "zipf"
)

// Duplicate modes.
const (
	DuplicateConcurrent = "concurrent"
	DuplicateDelayed    = "delayed"
	// DuplicateMixed alternates concurrent and delayed by iteration.
	DuplicateMixed = "mixed"
)

// HTTP engines of the generator's client (client.http_engine; load/client's Engine* constants).
const (
	HTTPEngineStandard = "std"
	HTTPEngineFast     = "fast"
)

// Scenario is one scenario file after defaults, overrides (--set) and validation (Load, Parse). Fields that do
// not apply are zero: another executor's (a closed model has no Rate), the mixed workload's under walk (no Mix,
// no duplicates), zipf's under uniform accounts, OwnerSlots without ownership.
type Scenario struct {
	// Path is the file it was read from; Name its name (default: the file's base name without extension).
	Path        string
	Name        string
	Description string
	// Seed drives every random choice of the load (kinds, accounts, amounts, duplicates, misuse, jitter).
	// Default 0: drawn at start and printed, so a run can be replayed with --set seed=N.
	Seed int64

	Setup      Setup
	Schedule   Schedule
	Workload   Workload
	Client     Client
	Thresholds []threshold.Threshold
}

// Setup prepares the accounts the load uses, before the schedule starts.
type Setup struct {
	// Accounts is the number of users signed up, signed in and funded. Default 100; at least 2.
	Accounts int
	// FundingMinor is each account's opening deposit in minor units. Default 1,000,000.
	FundingMinor int64
	// Concurrency is the number of accounts prepared at once. Default 32.
	Concurrency int
	// Timeout bounds the whole setup; what could not be prepared by then is named and the load exits 2.
	// Default 5m.
	Timeout time.Duration
	// Password of the prepared users. Default "ledgerproof-load-1".
	Password string
	// EmailPrefix starts the prepared users' emails (which are unique per run). Default "load-<name>".
	EmailPrefix string
}

// Stage is one stage of a ramping-arrival-rate schedule: the rate moves linearly to Target over Duration.
type Stage struct {
	Target   float64
	Duration time.Duration
}

// Schedule says when iterations start.
type Schedule struct {
	// Executor is one of the Executor constants. Default constant-arrival-rate.
	Executor string
	// Rate is iterations per second (constant-arrival-rate). Default 200.
	Rate float64
	// Duration is the constant rate's length. Default 60s.
	Duration time.Duration
	// StartRate is where ramping-arrival-rate starts. Default 0.
	StartRate float64
	// Stages of ramping-arrival-rate (required there).
	Stages []Stage
	// Steps are capacity-steps' rates, increasing. Default 1000,1500,2000,2500,3000,3600.
	Steps []float64
	// StepRamp, StepHold, StepGap: each step ramps from the previous rate over StepRamp (default 5s), holds
	// StepHold (default 30s), then pauses StepGap (default 5s) before the next.
	StepRamp, StepHold, StepGap time.Duration
	// VUs and Iterations are the closed model's loops and each loop's iterations (defaults 1 and 3);
	// MaxDuration bounds it (default 2m).
	VUs, Iterations int
	MaxDuration     time.Duration
	// MaxInFlight bounds the iterations in flight at once (open models); an iteration that is due while
	// MaxInFlight are running is dropped and counted (dropped_iterations), never delayed. Default: rate × 10 s
	// of the highest rate (HighestRate), at least 100, at most 100,000. The closed model may not set it: there
	// it is VUs.
	MaxInFlight int
	// GracefulStop is how long iterations in flight may finish after the schedule ends. Default 30s.
	GracefulStop time.Duration
}

// Workload says what an iteration does.
type Workload struct {
	// Kind is one of the Workload constants. Default mixed.
	Kind string
	// Mix weights the money operations. Default deposit 3, withdrawal 2, transfer 5.
	Mix Mix
	// AmountMin and AmountMax bound the uniform amount in minor units. Defaults 1 and 1000.
	AmountMin, AmountMax int64
	// Accounts picks sources and destinations: uniform (default) or zipf.
	Accounts string
	// ZipfExponent is the skew of zipf. Default 1.1.
	ZipfExponent float64
	// HotAccounts is how many of the hottest accounts are reported as hot (zipf). Default 1% (at least 1).
	HotAccounts int
	// Ownership makes most debits of an account come from one owner slot, one after the other, so that their
	// issue order is strict (per-account-order). Default true.
	Ownership bool
	// OwnerSlots is the number of owner slots. Default min(accounts, max_in_flight).
	OwnerSlots int
	// OverdraftRate is the fraction of debits sized one minor unit above the most the generator believes the
	// source can hold, each to be rejected for insufficient funds. Default 0.
	OverdraftRate float64
	// DrainRate is the fraction of debits that take exactly the source's balance when the generator knows it
	// exactly, leaving the account at zero. Default 0. OverdraftRate + DrainRate is at most 1.
	DrainRate float64
	// RaceRate is the fraction of whole-balance debits sent with a rival: a withdrawal of the same amount from
	// the same account, with its own key, at the same moment; one of the two must be rejected. Default 0.
	RaceRate float64
	// MinimumRate is the fraction of operations whose amount is AmountMin. Default 0.
	MinimumRate float64
	// PairRate is the fraction of transfers sent to the source's partner account (0 and 1, 2 and 3, ...), so
	// that each pair sees transfers both ways. Default 0.
	PairRate float64
	// MissingRate is the fraction of transfers sent to an account that does not exist (an id far above any a
	// test creates), which a correct system rejects with account_not_found. On a sharded system the id is in
	// another shard than the source's, so the transfer runs as a saga that must be compensated
	// (docs/sharding.md). Default 0.
	MissingRate float64
	// DailyLimit is the system's daily debit limit per user, in minor units (0: none, or not known to the
	// generator): with LimitRaceRate the generator aims debit pairs at it.
	DailyLimit int64
	// LimitRaceRate is the fraction of ordinary debits that, when what remains of the source's user's
	// DailyLimit for the day is no more than its balance, become a limit race: the debit and a withdrawal of
	// the same amount sent at once with keys of their own, each within what surely remains of the limit, the
	// two above the most that may remain; one of them must be rejected with daily_limit_exceeded. Default 0;
	// above 0 only with DailyLimit.
	LimitRaceRate float64
}

// Mix weights deposits, withdrawals and transfers; at least one is positive.
type Mix struct {
	Deposit, Withdrawal, Transfer float64
}

// Client is how the client speaks to the system.
type Client struct {
	// Wait is sent as Prefer: wait=N (the system may hold the answer until the outcome). Default 5s; 0 sends
	// none. Must be below Timeout.
	Wait time.Duration
	// Timeout bounds one HTTP request. Default 10s.
	Timeout time.Duration
	// HTTPEngine is the HTTP client underneath: std (Go's net/http, the
	// default; "" is std) or fast (fasthttp, a third less of the generator's
	// CPU per request at 3,600 TPS; load/client Options.Engine).
	HTTPEngine string
	// PollInterval and PollFor: after an accepted answer without a final outcome, the client asks
	// GET /v1/transactions/{id} every PollInterval (default 100ms) for up to PollFor (default 10s; 0: no
	// polling).
	PollInterval, PollFor time.Duration
	// RetryAttempts counts attempts including the first (default 3); RetryBackoff (default 50ms) doubles per
	// attempt up to RetryMaxBackoff (default 1s), times a random factor in [1-RetryJitter, 1+RetryJitter]
	// (default 0.5).
	RetryAttempts                 int
	RetryBackoff, RetryMaxBackoff time.Duration
	RetryJitter                   float64
	// DuplicateRate is the fraction of money operations sent twice with the same key and body (default 0);
	// DuplicateMode concurrent (default), delayed or mixed; DuplicateDelay the delay of a delayed one (100ms).
	DuplicateRate  float64
	DuplicateMode  string
	DuplicateDelay time.Duration
	// MisuseRate is the fraction of money operations followed by a request that reuses the key with another
	// amount (default 0).
	MisuseRate float64
	// EarlyTimeoutRate is the fraction of money operations whose first attempt the client gives up after a
	// random time up to EarlyTimeoutMax (default 50ms, below Timeout), then retries with the same key (default
	// 0).
	EarlyTimeoutRate float64
	EarlyTimeoutMax  time.Duration
	// ReplayRate is the fraction of money operations with a final answer that are sent again, same key and
	// body, as operations of their own, at least ReplayAfter (default 30s) after they completed (default 0).
	ReplayRate  float64
	ReplayAfter time.Duration
}
