package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// Exit codes of `ledgerproof audit`, distinct so CI can tell a broken system
// from a broken audit, and both from a run that tested less than it claims.
// 3 is `ledgerproof run`'s threshold-failed; the audit has no thresholds.
const (
	AuditExitPassed    = 0
	AuditExitViolated  = 1
	AuditExitCannotRun = 2
	AuditExitWeak      = 4
)

// Defaults of an audit's settings: the flags of `ledgerproof audit` and
// `ledgerproof run`, and what capacity and the mutation matrix audit with.
const (
	// DefaultDrainTimeout bounds the wait for the pipeline to drain; after
	// it the audit runs anyway and says not drained.
	DefaultDrainTimeout = 60 * time.Second
	// DefaultQuietPeriod is how long the ledger (or two exports) must stay
	// unchanged to count as drained without brokers.
	DefaultQuietPeriod = 2 * time.Second
	// DefaultMaxViolations is how many violations are listed per invariant
	// (all are counted).
	DefaultMaxViolations = 20
)

// AuditOptions are an audit's settings (the flags of `ledgerproof audit`), validated together.
type AuditOptions struct {
	RunDir       string
	StackDir     string
	PostgresURL  string
	RedisAddr    string
	Brokers      string
	LedgerExport string
	LedgerSQL    string
	// exportAfterLoad refuses an export written before the run's journals
	// (set by run, whose export command has just written it; a separate
	// audit may read a copied run directory whose times moved).
	ExportAfterLoad bool
	ExportLedger    string
	Topic           string
	DrainTimeout    time.Duration
	QuietPeriod     time.Duration
	MaxViolations   int
	Scope           string
	// require lists coverage classes the run must have exercised, beyond
	// what its scenario promised (comma-separated).
	Require string
	// scenario and scenarioSets are the scenario the load ran and its
	// overrides; empty: run.json's.
	Scenario     string
	ScenarioSets []string
	// maxBalance and maxAmount are the system's limits, to judge
	// balance_limit and invalid_amount rejections; 0: the reference
	// system's for its Postgres ledger, not known for an export.
	MaxBalance, MaxAmount int64
	// DailyDebitLimit is the system's daily debit limit, for
	// limits-respected; 0: the local stack's (its stack file) with
	// StackDir, else not known.
	DailyDebitLimit int64
	// ShardPostgresURLs are the databases of shards 1..N-1 of a sharded
	// reference ledger (docs/sharding.md), PostgresURL being shard 0's: the
	// audit reads the union of the shards and their sagas (saga-atomicity).
	// The drain then waits for every shard to be quiet. Default none: one
	// ledger.
	ShardPostgresURLs []string
}

func (o *AuditOptions) validate() error {
	sources := 0
	for _, given := range []string{o.StackDir, o.PostgresURL, o.LedgerExport, o.LedgerSQL} {
		if given != "" {
			sources++
		}
	}
	if len(o.ShardPostgresURLs) > 0 {
		switch {
		case o.LedgerExport != "" || o.LedgerSQL != "" || o.ExportLedger != "":
			return errors.New("--shard-postgres-url adds shards to the reference ledger (--postgres-url or --stack), not to --ledger-export, --ledger-sql or --export-ledger")
		case o.Brokers != "":
			return errors.New("--brokers drains by one ledger's consumer offsets; a sharded ledger given by --shard-postgres-url is drained by waiting until every shard is quiet (a sharded stack's by every shard's offsets, with --stack) (give one of --brokers and --shard-postgres-url)")
		}
	}
	switch {
	case o.ExportLedger != "":
		if o.LedgerSQL != "" {
			return errors.New("--export-ledger exports the reference ledger (--postgres-url or --stack), not --ledger-sql")
		}
		if o.PostgresURL == "" && o.StackDir == "" {
			return errors.New("--export-ledger needs the reference ledger: --postgres-url URL or --stack DIR")
		}
		if o.LedgerExport != "" {
			return errors.New("--export-ledger writes an export; --ledger-export reads one: give one of them")
		}
		return nil
	case o.RunDir == "":
		return errors.New("--run DIR is required (the run directory holding journal.jsonl)")
	case sources == 0:
		return errors.New("say where the ledger is: --stack DIR, --postgres-url URL, --ledger-export DIR or --ledger-sql FILE")
	case (o.LedgerExport != "" || o.LedgerSQL != "") && sources > 1:
		return errors.New("give one ledger: --stack, --postgres-url, --ledger-export or --ledger-sql")
	case o.LedgerSQL != "" && o.Brokers != "":
		return errors.New("--brokers drains the reference pipeline's topic; with --ledger-sql the audit waits for a quiet ledger instead (give one)")
	case o.LedgerExport != "" && o.Brokers != "":
		return errors.New("--brokers is for draining a live pipeline; an export has nothing to drain")
	case o.DrainTimeout <= 0:
		return errors.New("--drain-timeout must be positive")
	case o.QuietPeriod <= 0:
		return errors.New("--quiet-period must be positive")
	case o.MaxViolations <= 0:
		return errors.New("--max-violations must be positive")
	case o.MaxBalance < 0 || o.MaxAmount < 0:
		return errors.New("--max-balance and --max-amount must not be negative")
	case o.DailyDebitLimit < 0:
		return errors.New("--daily-debit-limit must not be negative (0: the stack's, or not known)")
	}
	for _, class := range SplitList(o.Require) {
		if !slices.Contains(invariants.ClassNames(), class) {
			return fmt.Errorf("--require: unknown class %q (known: %s)", class, strings.Join(invariants.ClassNames(), ", "))
		}
	}
	return nil
}

// auditRequirements returns the coverage classes the audit requires beyond
// money operations: those of --require, and those the run's scenario
// promised (--scenario, else run.json's scenario with its overrides): a
// duplicate, misuse, replay or early-timeout rate above 0, an overdraft
// rate above 0. note says where they came from, or why the scenario's
// promises are not known (then only --require's are required).
func auditRequirements(o AuditOptions) (requirements []invariants.Requirement, note string) {
	for _, class := range SplitList(o.Require) {
		requirements = append(requirements, invariants.Requirement{Class: class, Why: "--require"})
	}
	path, sets, from := o.Scenario, o.ScenarioSets, "--scenario"
	if path == "" {
		record, err := ReadRunFile(o.RunDir)
		switch {
		case err == nil && record.Scenario != "":
			path, sets, from = record.Scenario, record.ScenarioSets, RunFileName
		case err == nil || errors.Is(err, fs.ErrNotExist):
			return requirements, "the run's scenario is not known (no run.json naming one, no --scenario): nothing it promised is required"
		default:
			return requirements, fmt.Sprintf("the run's scenario is not known (%v): nothing it promised is required", err)
		}
	}
	loaded, err := scenario.Load(path, sets)
	if err != nil {
		return requirements, fmt.Sprintf("the scenario %s (from %s) could not be read, so what it promised is not required: %s",
			path, from, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	// A promise is a rate: the audit requires the class when the run's
	// operations make enough of it expected (invariants.MinExpectedToRequire).
	promise := func(class, field string, rate, effective float64) {
		if rate > 0 {
			why := fmt.Sprintf("scenario %s: %s %s", path, field, strconv.FormatFloat(rate, 'g', -1, 64))
			if effective != rate {
				why += fmt.Sprintf(" (%s of the operations complete early enough for theirs to fall due)", strconv.FormatFloat(effective/rate, 'f', 2, 64))
			}
			requirements = append(requirements, invariants.Requirement{Class: class, Why: why, Rate: effective})
		}
	}
	promise(invariants.ClassDuplicates, "client.duplicates.rate", loaded.Client.DuplicateRate, loaded.Client.DuplicateRate)
	// A replay falls due client.replays.after its operation completed: only
	// the operations of the schedule's first (length − after) can have one.
	replays := loaded.Client.ReplayRate
	if length := ScheduleLength(loaded.Schedule); replays > 0 && length > 0 {
		replays *= max(0, 1-loaded.Client.ReplayAfter.Seconds()/length.Seconds())
	}
	if loaded.Client.ReplayRate > 0 && replays <= 0 {
		note = fmt.Sprintf("client.replays.after %s is not shorter than the schedule: no replay falls due, none is required; ", loaded.Client.ReplayAfter)
	} else {
		promise(invariants.ClassReplays, "client.replays.rate", loaded.Client.ReplayRate, replays)
	}
	promise(invariants.ClassRetries, "client.early_timeouts.rate", loaded.Client.EarlyTimeoutRate, loaded.Client.EarlyTimeoutRate)
	promise(invariants.ClassKeyReuse, "client.misuse.rate", loaded.Client.MisuseRate, loaded.Client.MisuseRate)
	promise(invariants.ClassInsufficientFunds, "workload.overdraft_rate", loaded.Workload.OverdraftRate, loaded.Workload.OverdraftRate)
	note += fmt.Sprintf("requirements from the scenario %s", path)
	if len(sets) > 0 {
		note += fmt.Sprintf(" with its %d override(s)", len(sets))
	}
	return requirements, note + " (" + from + ")"
}

// RunAudit drains and audits a run directory as `ledgerproof audit` does, writes audit.json and audit.txt, and
// returns the command's exit code (AuditExit*).
func RunAudit(ctx context.Context, o AuditOptions, stdout, stderr io.Writer) int {
	cannot := func(err error) int {
		if !errors.Is(err, invariants.ErrCannotAudit) {
			err = fmt.Errorf("%w: %w", invariants.ErrCannotAudit, err)
		}
		fmt.Fprintf(stderr, "ledgerproof audit: %v\n", err)
		return AuditExitCannotRun
	}
	if err := o.validate(); err != nil {
		return cannot(err)
	}
	var noSettlement string
	// stackBrokers are a sharded stack's brokers: its commands are drained
	// by every shard's offsets (ShardedKafkaDrainProbe), its settlements
	// topic by the settler's offsets.
	var stackBrokers string
	if o.StackDir != "" {
		file, err := stack.Load(o.StackDir)
		if err != nil {
			return cannot(err)
		}
		if o.PostgresURL == "" {
			o.PostgresURL = file.Endpoints.PostgresURL
		}
		if o.RedisAddr == "" {
			o.RedisAddr = file.Endpoints.RedisAddr
		}
		if len(file.Endpoints.ShardPostgresURLs) > 0 && len(o.ShardPostgresURLs) == 0 && o.Brokers != "" {
			return cannot(fmt.Errorf("the stack in %s is sharded (%d shards): its audit reads every shard and drains by every shard's offsets through the stack's brokers, not by one ledger's --brokers (leave --brokers out)",
				o.StackDir, len(file.Endpoints.ShardPostgresURLs)+1))
		}
		if len(o.ShardPostgresURLs) == 0 && o.Brokers == "" {
			// A sharded stack: the audit reads the union of its shards.
			o.ShardPostgresURLs = file.Endpoints.ShardPostgresURLs
			if len(o.ShardPostgresURLs) > 0 {
				stackBrokers = strings.Join(file.Endpoints.Brokers, ",")
			}
		}
		if o.Brokers == "" && len(o.ShardPostgresURLs) == 0 {
			o.Brokers = strings.Join(file.Endpoints.Brokers, ",")
		}
		if o.DailyDebitLimit == 0 {
			o.DailyDebitLimit = file.DailyDebitLimitMinor
		}
		noSettlement = stackWithoutSettlement(file)
	}

	config := invariants.Config{RunDir: o.RunDir, DrainTimeout: o.DrainTimeout, MaxViolations: o.MaxViolations, Progress: stderr, Scope: o.Scope,
		MaxBalanceMinor: o.MaxBalance, MaxAmountMinor: o.MaxAmount, DailyDebitLimitMinor: o.DailyDebitLimit, NoSettlement: noSettlement}
	config.Require, config.RequireNote = auditRequirements(o)
	if o.LedgerSQL != "" {
		ledger, err := invariants.LoadSQLLedger(o.LedgerSQL)
		if err != nil {
			return cannot(err)
		}
		connectContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		source, err := invariants.OpenSQL(connectContext, *ledger)
		cancel()
		if err != nil {
			return cannot(err)
		}
		defer source.Close()
		config.Ledger, config.Drain = source, invariants.QuietProbe(source.Fingerprint, o.QuietPeriod, nil)
	} else if o.LedgerExport != "" {
		if o.ExportAfterLoad {
			if err := invariants.CheckExportFresh(o.LedgerExport, o.RunDir); err != nil {
				return cannot(err)
			}
		}
		config.Ledger = invariants.ExportSource{Dir: o.LedgerExport}
	} else {
		// The reference ledger's limits, unless told otherwise.
		if config.MaxBalanceMinor == 0 {
			config.MaxBalanceMinor = ledger.MaxBalanceMinor
		}
		if config.MaxAmountMinor == 0 {
			config.MaxAmountMinor = ledger.MaxAmountMinor
		}
		connectContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		source, err := invariants.OpenPostgres(connectContext, o.PostgresURL)
		cancel()
		if err != nil {
			return cannot(err)
		}
		defer source.Close()
		if o.ExportLedger != "" {
			counts, err := invariants.Export(ctx, source, o.ExportLedger)
			if err != nil {
				return cannot(err)
			}
			fmt.Fprintf(stdout, "exported %s to %s: %d accounts, %d transactions, %d postings\n",
				source.Describe(), o.ExportLedger, counts[0], counts[1], counts[2])
			return AuditExitPassed
		}
		config.Ledger = source
		quiet := invariants.QuietProbe(source.Fingerprint, o.QuietPeriod, nil)
		config.Drain = quiet
		if len(o.ShardPostgresURLs) > 0 {
			shards, closeShards, err := openShards(ctx, source, o.ShardPostgresURLs)
			if err != nil {
				return cannot(err)
			}
			defer closeShards()
			sources := make([]invariants.Source, len(shards))
			for i, shard := range shards {
				sources[i] = shard
			}
			config.Ledger = invariants.ShardedSource{Shards: sources}
			sagas := invariants.PostgresSagaSource{URLs: append([]string{o.PostgresURL}, o.ShardPostgresURLs...)}
			config.Sagas = sagas
			quiet = invariants.QuietProbe(func(ctx context.Context) (string, error) {
				var all []string
				for _, shard := range shards {
					fingerprint, err := shard.Fingerprint(ctx)
					if err != nil {
						return "", err
					}
					all = append(all, fingerprint)
				}
				return strings.Join(all, "|"), nil
			}, o.QuietPeriod, nil)
			// With the stack's brokers known, the commands are drained once
			// every shard's stored offsets reach the topic's high
			// watermarks (a shard whose worker was killed is quiet with
			// commands unapplied); every shard quiet only without brokers.
			var lag invariants.DrainProbe
			if stackBrokers != "" {
				broker, err := invariants.OpenBrokerOffsets(strings.Split(stackBrokers, ","), o.Topic)
				if err != nil {
					return cannot(err)
				}
				defer broker.Close()
				lag = invariants.ShardedKafkaDrainProbe(broker, shards)
			}
			// Then drained once no saga is in flight (a saga waiting for
			// its recovery leaves every shard quiet and every offset
			// stored) and, below, every shard's outbox is published.
			quiet = invariants.SagaDrainProbe(shardedCommandsDrain(lag, quiet), shards)
			config.Drain = quiet
			if noSettlement == "" {
				for _, shard := range shards[1:] {
					quiet = invariants.SettlementDrainProbe(quiet, shard, nil)
				}
			}
		}
		if o.Brokers != "" {
			broker, err := invariants.OpenBrokerOffsets(strings.Split(o.Brokers, ","), o.Topic)
			if err != nil {
				return cannot(err)
			}
			defer broker.Close()
			config.Drain = fallbackProbe(invariants.KafkaDrainProbe(broker, source), quiet)
			settlements, err := invariants.OpenBrokerOffsets(strings.Split(o.Brokers, ","), invariants.SettlementsTopic)
			if err != nil {
				return cannot(err)
			}
			defer settlements.Close()
			if noSettlement == "" {
				config.Drain = invariants.SettlementDrainProbe(config.Drain, source, settlements)
			}
		} else if noSettlement == "" && stackBrokers != "" {
			settlements, err := invariants.OpenBrokerOffsets(strings.Split(stackBrokers, ","), invariants.SettlementsTopic)
			if err != nil {
				return cannot(err)
			}
			defer settlements.Close()
			config.Drain = invariants.SettlementDrainProbe(quiet, source, settlements)
		} else if noSettlement == "" {
			config.Drain = invariants.SettlementDrainProbe(quiet, source, nil)
		}
		if o.StackDir != "" {
			config.Stalls = stackStallProbe(o.StackDir)
		}
	}
	if o.RedisAddr != "" {
		cache := invariants.OpenRedis(o.RedisAddr)
		defer cache.Close()
		pingContext, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := cache.Ping(pingContext)
		cancel()
		if err != nil {
			config.CacheNote = fmt.Sprintf("Redis at %s unreachable: %v", o.RedisAddr, err)
		} else {
			config.Cache = cache
		}
	} else {
		config.CacheNote = "no Redis given (--redis-addr or --stack)"
	}

	result, err := invariants.Audit(ctx, config)
	if err != nil {
		return cannot(err)
	}
	result.WriteSummary(stdout)
	if err := result.WriteFiles(); err != nil {
		return cannot(err)
	}
	switch result.Verdict {
	case invariants.VerdictPassed:
		return AuditExitPassed
	case invariants.VerdictViolated:
		return AuditExitViolated
	case invariants.VerdictWeak:
		fmt.Fprintf(stderr, "ledgerproof audit: weak: %s\n", strings.Join(result.Coverage.Missing(), "; "))
		return AuditExitWeak
	default:
		fmt.Fprintf(stderr, "ledgerproof audit: could not fully audit (%s)\n", result.DrainNote)
		return AuditExitCannotRun
	}
}

// openShards connects to the shards of a sharded ledger beyond shard 0
// (already open); closeShards closes those it opened.
func openShards(ctx context.Context, shard0 *invariants.PostgresSource, urls []string) (shards []*invariants.PostgresSource, closeShards func(), err error) {
	shards = []*invariants.PostgresSource{shard0}
	closeShards = func() {
		for _, shard := range shards[1:] {
			_ = shard.Close()
		}
	}
	for i, url := range urls {
		connectContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		shard, err := invariants.OpenPostgres(connectContext, url)
		cancel()
		if err != nil {
			closeShards()
			return nil, nil, fmt.Errorf("shard %d: %w", i+1, err)
		}
		shards = append(shards, shard)
	}
	return shards, closeShards, nil
}

// shardedCommandsDrain is the commands' drain of a sharded ledger: every
// shard's offsets against the topic (lag, nil when no broker is known),
// falling back to every shard quiet (quiet) while the brokers cannot
// answer; quiet alone without brokers.
func shardedCommandsDrain(lag, quiet invariants.DrainProbe) invariants.DrainProbe {
	if lag == nil {
		return quiet
	}
	return fallbackProbe(lag, quiet)
}

// fallbackProbe asks the brokers (their answer is bounded by
// invariants.BrokerOffsets.Ends, so a dead broker does not eat the drain
// budget) and, when they cannot answer, watches the ledger instead.
func fallbackProbe(primary, fallback invariants.DrainProbe) invariants.DrainProbe {
	return func(ctx context.Context) (invariants.DrainState, error) {
		state, err := primary(ctx)
		if err == nil {
			return state, nil
		}
		state, fallbackErr := fallback(ctx)
		state.Progress = fmt.Sprintf("brokers unavailable (%v); %s", err, state.Progress)
		return state, fallbackErr
	}
}

// ScheduleLength is how long a scenario's schedule lasts, from the generator's own plan (0 when it is not known
// ahead: the closed model).
func ScheduleLength(s scenario.Schedule) time.Duration {
	plan, err := generator.NewPlan(s, 1)
	if err != nil {
		return 0
	}
	return plan.Length()
}

// stackWithoutSettlement says why a local stack has no settlement pipeline
// to wait for and judge: workers but no relay (up --settlement=false); ""
// when it has one, or no worker to write events.
func stackWithoutSettlement(file *stack.File) string {
	var workers, relays int
	for _, component := range file.Components {
		switch {
		case strings.HasPrefix(component.Name, "worker-"):
			workers++
		case component.Name == "relay":
			relays++
		}
	}
	if workers > 0 && relays == 0 {
		return "the stack runs no settlement pipeline (no relay: up --settlement=false), so its outbox events are never published or applied downstream"
	}
	return ""
}
