package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// Exit codes of `ledgerproof audit`, distinct so CI can tell a broken system
// from a broken audit, and both from a run that tested less than it claims.
// 3 is `ledgerproof run`'s threshold-failed; the audit has no thresholds.
const (
	auditExitPassed    = 0
	auditExitViolated  = 1
	auditExitCannotRun = 2
	auditExitWeak      = 4
)

// auditOptions are the audit command's flags, validated together.
type auditOptions struct {
	runDir       string
	stackDir     string
	postgresURL  string
	redisAddr    string
	brokers      string
	ledgerExport string
	ledgerSQL    string
	// exportAfterLoad refuses an export written before the run's journals
	// (set by run, whose export command has just written it; a separate
	// audit may read a copied run directory whose times moved).
	exportAfterLoad bool
	exportLedger    string
	topic           string
	drainTimeout    time.Duration
	quietPeriod     time.Duration
	maxViolations   int
	scope           string
	// require lists coverage classes the run must have exercised, beyond
	// what its scenario promised (comma-separated).
	require string
	// scenario and scenarioSets are the scenario the load ran and its
	// overrides; empty: run.json's.
	scenario     string
	scenarioSets []string
	// maxBalance and maxAmount are the system's limits, to judge
	// balance_limit and invalid_amount rejections; 0: the reference
	// system's for its Postgres ledger, not known for an export.
	maxBalance, maxAmount int64
}

func (o *auditOptions) validate() error {
	sources := 0
	for _, given := range []string{o.stackDir, o.postgresURL, o.ledgerExport, o.ledgerSQL} {
		if given != "" {
			sources++
		}
	}
	switch {
	case o.exportLedger != "":
		if o.ledgerSQL != "" {
			return errors.New("--export-ledger exports the reference ledger (--postgres-url or --stack), not --ledger-sql")
		}
		if o.postgresURL == "" && o.stackDir == "" {
			return errors.New("--export-ledger needs the reference ledger: --postgres-url URL or --stack DIR")
		}
		if o.ledgerExport != "" {
			return errors.New("--export-ledger writes an export; --ledger-export reads one: give one of them")
		}
		return nil
	case o.runDir == "":
		return errors.New("--run DIR is required (the run directory holding journal.jsonl)")
	case sources == 0:
		return errors.New("say where the ledger is: --stack DIR, --postgres-url URL, --ledger-export DIR or --ledger-sql FILE")
	case (o.ledgerExport != "" || o.ledgerSQL != "") && sources > 1:
		return errors.New("give one ledger: --stack, --postgres-url, --ledger-export or --ledger-sql")
	case o.ledgerSQL != "" && o.brokers != "":
		return errors.New("--brokers drains the reference pipeline's topic; with --ledger-sql the audit waits for a quiet ledger instead (give one)")
	case o.ledgerExport != "" && o.brokers != "":
		return errors.New("--brokers is for draining a live pipeline; an export has nothing to drain")
	case o.drainTimeout <= 0:
		return errors.New("--drain-timeout must be positive")
	case o.quietPeriod <= 0:
		return errors.New("--quiet-period must be positive")
	case o.maxViolations <= 0:
		return errors.New("--max-violations must be positive")
	case o.maxBalance < 0 || o.maxAmount < 0:
		return errors.New("--max-balance and --max-amount must not be negative")
	}
	for _, class := range runner.SplitList(o.require) {
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
func auditRequirements(o auditOptions) (requirements []invariants.Requirement, note string) {
	for _, class := range runner.SplitList(o.require) {
		requirements = append(requirements, invariants.Requirement{Class: class, Why: "--require"})
	}
	path, sets, from := o.scenario, o.scenarioSets, "--scenario"
	if path == "" {
		record, err := runner.ReadRunFile(o.runDir)
		switch {
		case err == nil && record.Scenario != "":
			path, sets, from = record.Scenario, record.ScenarioSets, runner.RunFileName
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
	if length := scheduleLength(loaded.Schedule); replays > 0 && length > 0 {
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

func auditCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("audit", flag.ContinueOnError)
	var o auditOptions
	flags.StringVar(&o.runDir, "run", "", "run directory: reads journal*.jsonl (and cache-staleness.jsonl), writes audit.json and audit.txt (required)")
	flags.StringVar(&o.stackDir, "stack", "", "local stack directory: its stack.json gives the Postgres URL, Redis address and brokers")
	flags.StringVar(&o.postgresURL, "postgres-url", "", "the reference ledger's database (overrides the stack file's)")
	flags.StringVar(&o.redisAddr, "redis-addr", "", "Redis host:port for cache-coherence (overrides the stack file's); none: skipped")
	flags.StringVar(&o.brokers, "brokers", "", "comma-separated Kafka brokers, to drain by high watermarks (overrides the stack file's); none: wait until the ledger is quiet")
	flags.StringVar(&o.ledgerSQL, "ledger-sql", "", "read the ledger from your own Postgres or MySQL database through the queries of this YAML file (docs/external.md)")
	flags.StringVar(&o.ledgerExport, "ledger-export", "", "read the ledger from this export directory (accounts/transactions/postings.jsonl, docs/audit.md) instead of Postgres")
	flags.StringVar(&o.exportLedger, "export-ledger", "", "do not audit: dump the reference ledger (--postgres-url or --stack) into this directory in the export format")
	flags.StringVar(&o.topic, "topic", invariants.DefaultTopic, "the commands topic whose consumption must be complete before the audit")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 60*time.Second, "how long to wait for the pipeline to drain; after it the audit runs anyway and says not drained")
	flags.DurationVar(&o.quietPeriod, "quiet-period", 2*time.Second, "without brokers, the ledger is drained when unchanged for this long")
	flags.IntVar(&o.maxViolations, "max-violations", 20, "violations listed per invariant (all are counted)")
	flags.StringVar(&o.scope, "scope", invariants.ScopeRun, "no-phantoms scope: run (transactions of the users this journal mentions; others, from earlier runs on the same ledger, are counted and reported) or ledger (every transaction)")
	flags.StringVar(&o.require, "require", "", "coverage classes the run must have exercised, comma-separated ("+strings.Join(invariants.ClassNames(), ", ")+"), beyond what its scenario promised; one that did not happen makes the verdict weak (exit 4)")
	flags.StringVar(&o.scenario, "scenario", "", "the scenario the load ran, whose promises (duplicates, misuse, replays, early timeouts, overdrafts) the audit requires; default: run.json's, with its overrides")
	flags.Int64Var(&o.maxBalance, "max-balance", 0, "the system's largest balance in minor units, to judge balance_limit rejections; 0: the reference system's with its Postgres, not known for an export")
	flags.Int64Var(&o.maxAmount, "max-amount", 0, "the system's largest amount in minor units, to judge invalid_amount rejections; 0: the reference system's with its Postgres, not known for an export")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		code := runAudit(ctx, o, os.Stdout, os.Stderr)
		if code != auditExitPassed {
			// The CLI's generic error path exits 1; the audit has three
			// outcomes, so it exits itself, after every resource is closed.
			os.Exit(code)
		}
		return nil
	}
}

// runAudit runs the command and returns its exit code.
func runAudit(ctx context.Context, o auditOptions, stdout, stderr io.Writer) int {
	cannot := func(err error) int {
		if !errors.Is(err, invariants.ErrCannotAudit) {
			err = fmt.Errorf("%w: %w", invariants.ErrCannotAudit, err)
		}
		fmt.Fprintf(stderr, "ledgerproof audit: %v\n", err)
		return auditExitCannotRun
	}
	if err := o.validate(); err != nil {
		return cannot(err)
	}
	if o.stackDir != "" {
		file, err := stack.Load(o.stackDir)
		if err != nil {
			return cannot(err)
		}
		if o.postgresURL == "" {
			o.postgresURL = file.Endpoints.PostgresURL
		}
		if o.redisAddr == "" {
			o.redisAddr = file.Endpoints.RedisAddr
		}
		if o.brokers == "" {
			o.brokers = strings.Join(file.Endpoints.Brokers, ",")
		}
	}

	config := invariants.Config{RunDir: o.runDir, DrainTimeout: o.drainTimeout, MaxViolations: o.maxViolations, Progress: stderr, Scope: o.scope,
		MaxBalanceMinor: o.maxBalance, MaxAmountMinor: o.maxAmount}
	config.Require, config.RequireNote = auditRequirements(o)
	if o.ledgerSQL != "" {
		ledger, err := invariants.LoadSQLLedger(o.ledgerSQL)
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
		config.Ledger, config.Drain = source, invariants.QuietProbe(source.Fingerprint, o.quietPeriod, nil)
	} else if o.ledgerExport != "" {
		if o.exportAfterLoad {
			if err := invariants.CheckExportFresh(o.ledgerExport, o.runDir); err != nil {
				return cannot(err)
			}
		}
		config.Ledger = invariants.ExportSource{Dir: o.ledgerExport}
	} else {
		// The reference ledger's limits, unless told otherwise.
		if config.MaxBalanceMinor == 0 {
			config.MaxBalanceMinor = ledger.MaxBalanceMinor
		}
		if config.MaxAmountMinor == 0 {
			config.MaxAmountMinor = ledger.MaxAmountMinor
		}
		connectContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		source, err := invariants.OpenPostgres(connectContext, o.postgresURL)
		cancel()
		if err != nil {
			return cannot(err)
		}
		defer source.Close()
		if o.exportLedger != "" {
			counts, err := invariants.Export(ctx, source, o.exportLedger)
			if err != nil {
				return cannot(err)
			}
			fmt.Fprintf(stdout, "exported %s to %s: %d accounts, %d transactions, %d postings\n",
				source.Describe(), o.exportLedger, counts[0], counts[1], counts[2])
			return auditExitPassed
		}
		config.Ledger = source
		quiet := invariants.QuietProbe(source.Fingerprint, o.quietPeriod, nil)
		config.Drain = quiet
		if o.brokers != "" {
			broker, err := invariants.OpenBrokerOffsets(strings.Split(o.brokers, ","), o.topic)
			if err != nil {
				return cannot(err)
			}
			defer broker.Close()
			config.Drain = fallbackProbe(invariants.KafkaDrainProbe(broker, source), quiet)
		}
		if o.stackDir != "" {
			config.Stalls = stackStallProbe(o.stackDir)
		}
	}
	if o.redisAddr != "" {
		cache := invariants.OpenRedis(o.redisAddr)
		defer cache.Close()
		pingContext, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := cache.Ping(pingContext)
		cancel()
		if err != nil {
			config.CacheNote = fmt.Sprintf("Redis at %s unreachable: %v", o.redisAddr, err)
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
		return auditExitPassed
	case invariants.VerdictViolated:
		return auditExitViolated
	case invariants.VerdictWeak:
		fmt.Fprintf(stderr, "ledgerproof audit: weak: %s\n", strings.Join(result.Coverage.Missing(), "; "))
		return auditExitWeak
	default:
		fmt.Fprintf(stderr, "ledgerproof audit: could not fully audit (%s)\n", result.DrainNote)
		return auditExitCannotRun
	}
}

// fallbackProbe asks the brokers (bounded to 3s, so a dead broker does not
// eat the drain budget) and, when they cannot answer, watches the ledger
// instead.
func fallbackProbe(primary, fallback invariants.DrainProbe) invariants.DrainProbe {
	return func(ctx context.Context) (invariants.DrainState, error) {
		primaryContext, cancel := context.WithTimeout(ctx, 3*time.Second)
		state, err := primary(primaryContext)
		cancel()
		if err == nil {
			return state, nil
		}
		state, fallbackErr := fallback(ctx)
		state.Progress = fmt.Sprintf("brokers unavailable (%v); %s", err, state.Progress)
		return state, fallbackErr
	}
}
