package scenario

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// namePattern is a scenario's name: it ends up in emails, file names and report titles.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// emailPrefixPattern is the start of an email's local part that every system accepts; lowercase because the
// reference API lowercases emails, and the journal should name users as the system does.
var emailPrefixPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,99}$`)

// validate checks the decoded scenario, defaults applied, and records a problem for every value out of its
// range and every contradiction between fields. Derived defaults are checked only when written: computed from
// valid fields they are valid, and from invalid ones the problem is the field they came from.
func (d *decoder) validate() {
	s := d.scenario
	check := func(holds bool, path, format string, args ...any) {
		if !holds {
			d.problemOf([]string{path}, format, args...)
		}
	}
	between := func(value, low, high int64, path string) {
		check(value >= low && value <= high, path, "%d is not between %d and %d", value, low, high)
	}

	check(namePattern.MatchString(s.Name), "name",
		"%q: want lowercase letters, digits, '.', '_' or '-' (up to 64, starting with a letter or digit); set name:", s.Name)
	between(int64(s.Setup.Accounts), 2, MaxAccounts, "setup.accounts")
	// Fields bounded by the accounts are checked only against a valid count, not to repeat its problem.
	validAccounts := s.Setup.Accounts >= 2 && s.Setup.Accounts <= MaxAccounts
	between(s.Setup.FundingMinor, 1, MaxFundingMinor, "setup.funding")
	between(int64(s.Setup.Concurrency), 1, maxSetupConcurrency, "setup.concurrency")
	check(s.Setup.Timeout > 0, "setup.timeout", "must be above 0")
	length := utf8.RuneCountInString(s.Setup.Password)
	check(length >= passwordMinimum && length <= passwordMaximum, "setup.password",
		"%d characters: want %d to %d (the API refuses others at signup)", length, passwordMinimum, passwordMaximum)
	if d.given("setup.email_prefix") {
		check(emailPrefixPattern.MatchString(s.Setup.EmailPrefix), "setup.email_prefix",
			"%q: want lowercase letters, digits, '.', '_', '+' or '-' (up to 100, starting with a letter or digit)",
			s.Setup.EmailPrefix)
	}

	d.validateSchedule()

	if s.Workload.Kind == WorkloadMixed {
		mix := s.Workload.Mix
		check(mix.Deposit >= 0, "workload.mix.deposit", "%s is negative", decimal(mix.Deposit))
		check(mix.Withdrawal >= 0, "workload.mix.withdrawal", "%s is negative", decimal(mix.Withdrawal))
		check(mix.Transfer >= 0, "workload.mix.transfer", "%s is negative", decimal(mix.Transfer))
		if mix.Deposit >= 0 && mix.Withdrawal >= 0 && mix.Transfer >= 0 && mix.Deposit+mix.Withdrawal+mix.Transfer <= 0 {
			d.problemOf([]string{"workload.mix.deposit", "workload.mix.withdrawal", "workload.mix.transfer"},
				"every weight is 0: at least one of deposit, withdrawal, transfer must be above 0")
		}
		check(s.Workload.AmountMin >= 1, "workload.amount_min", "%d: an amount is at least 1 minor unit", s.Workload.AmountMin)
		check(s.Workload.AmountMax <= MaxFundingMinor, "workload.amount_max", "%d is above %d", s.Workload.AmountMax, int64(MaxFundingMinor))
		if s.Workload.AmountMin > s.Workload.AmountMax {
			d.problemOf([]string{"workload.amount_min", "workload.amount_max"}, "%d is above amount_max %d",
				s.Workload.AmountMin, s.Workload.AmountMax)
		}
		if s.Workload.Accounts == DistributionZipf {
			check(s.Workload.ZipfExponent > 0 && s.Workload.ZipfExponent <= maxZipfExponent, "workload.zipf_exponent",
				"%s is not above 0 and at most %d", decimal(s.Workload.ZipfExponent), maxZipfExponent)
			if d.given("workload.hot_accounts") && validAccounts {
				between(int64(s.Workload.HotAccounts), 1, int64(s.Setup.Accounts), "workload.hot_accounts")
			}
		}
		if s.Workload.Ownership && d.given("workload.owner_slots") && validAccounts {
			between(int64(s.Workload.OwnerSlots), 1, int64(s.Setup.Accounts), "workload.owner_slots")
		}
		fraction := func(value float64, path string) {
			check(value >= 0 && value <= 1, path, "%s is not a fraction between 0 and 1", decimal(value))
		}
		fraction(s.Workload.OverdraftRate, "workload.overdraft_rate")
		fraction(s.Workload.DrainRate, "workload.drain_rate")
		if s.Workload.OverdraftRate >= 0 && s.Workload.DrainRate >= 0 && s.Workload.OverdraftRate+s.Workload.DrainRate > 1 {
			// Each debit is one or the other (or ordinary): together they cannot exceed every debit.
			d.problemOf([]string{"workload.overdraft_rate", "workload.drain_rate"},
				"%s with drain_rate %s is above 1: a debit is aimed over the balance or at it, not both",
				decimal(s.Workload.OverdraftRate), decimal(s.Workload.DrainRate))
		}
		fraction(s.Workload.RaceRate, "workload.race_rate")
		if s.Workload.RaceRate > 0 && s.Workload.DrainRate == 0 {
			// A race is two debits of a whole balance: without drain_rate there is none to race.
			d.problemOf([]string{"workload.race_rate", "workload.drain_rate"},
				"race_rate %s needs drain_rate above 0: the rival doubles a whole-balance debit", decimal(s.Workload.RaceRate))
		}
		fraction(s.Workload.MinimumRate, "workload.minimum_rate")
		fraction(s.Workload.PairRate, "workload.pair_rate")
		fraction(s.Workload.MissingRate, "workload.missing_rate")
		check(s.Workload.DailyLimit >= 0 && s.Workload.DailyLimit <= MaxDailyLimitMinor, "workload.daily_limit",
			"%d is not in [0, %d]", s.Workload.DailyLimit, int64(MaxDailyLimitMinor))
		fraction(s.Workload.LimitRaceRate, "workload.limit_race_rate")
		if s.Workload.LimitRaceRate > 0 && s.Workload.DailyLimit == 0 {
			// A limit race is aimed at the limit: without one there is nothing to aim at.
			d.problemOf([]string{"workload.limit_race_rate", "workload.daily_limit"},
				"limit_race_rate %s needs daily_limit above 0: the race is aimed at the system's daily debit limit",
				decimal(s.Workload.LimitRaceRate))
		}
		fraction(s.Client.DuplicateRate, "client.duplicates.rate")
		fraction(s.Client.MisuseRate, "client.misuse.rate")
		fraction(s.Client.EarlyTimeoutRate, "client.early_timeouts.rate")
		check(s.Client.EarlyTimeoutMax > 0, "client.early_timeouts.max", "must be above 0")
		if s.Client.Timeout > 0 && s.Client.EarlyTimeoutMax >= s.Client.Timeout {
			// An early timeout later than the request's own timeout would never be early.
			d.problemOf([]string{"client.early_timeouts.max", "client.timeout"}, "%s must be below client.timeout %s",
				s.Client.EarlyTimeoutMax, s.Client.Timeout)
		}
		fraction(s.Client.ReplayRate, "client.replays.rate")
		check(s.Client.ReplayAfter > 0, "client.replays.after", "must be above 0")
	}

	check(s.Client.Timeout > 0, "client.timeout", "must be above 0")
	if s.Client.Wait >= s.Client.Timeout {
		// The request would time out before the system answers.
		d.problemOf([]string{"client.wait", "client.timeout"}, "wait %s must be below timeout %s", s.Client.Wait, s.Client.Timeout)
	}
	check(s.Client.PollInterval > 0, "client.poll_interval", "must be above 0")
	between(int64(s.Client.RetryAttempts), 1, maxRetryAttempts, "client.retry.attempts")
	if s.Client.RetryMaxBackoff < s.Client.RetryBackoff {
		d.problemOf([]string{"client.retry.max_backoff", "client.retry.backoff"}, "max_backoff %s is below backoff %s",
			s.Client.RetryMaxBackoff, s.Client.RetryBackoff)
	}
	check(s.Client.RetryJitter >= 0 && s.Client.RetryJitter <= 1, "client.retry.jitter",
		"%s is not between 0 and 1", decimal(s.Client.RetryJitter))
}

// validateSchedule checks the fields of the scenario's executor.
func (d *decoder) validateSchedule() {
	schedule := d.scenario.Schedule
	check := func(holds bool, path, format string, args ...any) {
		if !holds {
			d.problemOf([]string{path}, format, args...)
		}
	}
	positiveRate := func(rate float64, path string) {
		check(rate > 0 && rate <= MaxRate, path, "%s is not above 0 and at most %d per second", decimal(rate), MaxRate)
	}
	switch schedule.Executor {
	case ExecutorConstantArrivalRate:
		positiveRate(schedule.Rate, "schedule.rate")
		check(schedule.Duration > 0, "schedule.duration", "must be above 0")
	case ExecutorRampingArrivalRate:
		check(schedule.StartRate >= 0 && schedule.StartRate <= MaxRate, "schedule.start_rate",
			"%s is not between 0 and %d per second", decimal(schedule.StartRate), MaxRate)
		if len(schedule.Stages) == 0 || len(schedule.Stages) > maxStages {
			d.problemOf([]string{"schedule.stages", "schedule.executor"},
				"%d stages: executor %s needs 1 to %d (e.g. [{target: 500, duration: 10s}])",
				len(schedule.Stages), schedule.Executor, maxStages)
			return
		}
		var length float64
		for index, stage := range schedule.Stages {
			path := fmt.Sprintf("schedule.stages[%d].target", index)
			check(stage.Target >= 0 && stage.Target <= MaxRate, path, "%s is not between 0 and %d per second", decimal(stage.Target), MaxRate)
			length += stage.Duration.Seconds()
		}
		check(length > 0, "schedule.stages", "every stage lasts 0: the schedule would end at once")
		check(schedule.HighestRate() > 0, "schedule.stages", "no target nor start_rate above 0: nothing would start")
	case ExecutorCapacitySteps:
		if len(schedule.Steps) == 0 || len(schedule.Steps) > maxSteps {
			d.problemOf([]string{"schedule.steps", "schedule.executor"}, "%d steps: executor %s needs 1 to %d",
				len(schedule.Steps), schedule.Executor, maxSteps)
			return
		}
		for index, step := range schedule.Steps {
			path := fmt.Sprintf("schedule.steps[%d]", index)
			positiveRate(step, path)
			if index > 0 {
				check(step > schedule.Steps[index-1], path, "%s is not above the step before it (%s): steps increase",
					decimal(step), decimal(schedule.Steps[index-1]))
			}
		}
		check(schedule.StepHold > 0, "schedule.step_hold", "must be above 0")
	case ExecutorClosed:
		check(schedule.VUs >= 1 && schedule.VUs <= maxClosedLoops, "schedule.vus", "%d is not between 1 and %d",
			schedule.VUs, maxClosedLoops)
		check(schedule.Iterations >= 1 && schedule.Iterations <= maxClosedIterations, "schedule.iterations",
			"%d is not between 1 and %d", schedule.Iterations, maxClosedIterations)
		check(schedule.MaxDuration > 0, "schedule.max_duration", "must be above 0")
	}
	if schedule.Executor != ExecutorClosed && d.given("schedule.max_in_flight") {
		check(schedule.MaxInFlight >= 1 && schedule.MaxInFlight <= MaxInFlightLimit, "schedule.max_in_flight",
			"%d is not between 1 and %d", schedule.MaxInFlight, MaxInFlightLimit)
	}
}

// decimal writes a number as a scenario file would: 1000001, not 1.000001e+06.
func decimal(value float64) string { return strconv.FormatFloat(value, 'f', -1, 64) }

// given reports whether the file (or a --set) wrote the field.
func (d *decoder) given(path string) bool {
	_, ok := d.written[path]
	return ok
}
