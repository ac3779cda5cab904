package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// Exit codes of `ledgerproof audit`, distinct so CI can tell a broken system
// from a broken audit.
const (
	auditExitPassed    = 0
	auditExitViolated  = 1
	auditExitCannotRun = 2
)

// auditOptions are the audit command's flags, validated together.
type auditOptions struct {
	runDir        string
	stackDir      string
	postgresURL   string
	redisAddr     string
	brokers       string
	ledgerExport  string
	exportLedger  string
	topic         string
	drainTimeout  time.Duration
	quietPeriod   time.Duration
	maxViolations int
	scope         string
}

func (o *auditOptions) validate() error {
	sources := 0
	for _, given := range []string{o.stackDir, o.postgresURL, o.ledgerExport} {
		if given != "" {
			sources++
		}
	}
	switch {
	case o.exportLedger != "":
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
		return errors.New("say where the ledger is: --stack DIR, --postgres-url URL, or --ledger-export DIR")
	case o.ledgerExport != "" && sources > 1:
		return errors.New("--ledger-export reads a ledger export; it cannot be combined with --stack or --postgres-url")
	case o.ledgerExport != "" && o.brokers != "":
		return errors.New("--brokers is for draining a live pipeline; an export has nothing to drain")
	case o.drainTimeout <= 0:
		return errors.New("--drain-timeout must be positive")
	case o.quietPeriod <= 0:
		return errors.New("--quiet-period must be positive")
	case o.maxViolations <= 0:
		return errors.New("--max-violations must be positive")
	}
	return nil
}

func auditCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("audit", flag.ContinueOnError)
	var o auditOptions
	flags.StringVar(&o.runDir, "run", "", "run directory: reads journal*.jsonl (and cache-staleness.jsonl), writes audit.json and audit.txt (required)")
	flags.StringVar(&o.stackDir, "stack", "", "local stack directory: its stack.json gives the Postgres URL, Redis address and brokers")
	flags.StringVar(&o.postgresURL, "postgres-url", "", "the reference ledger's database (overrides the stack file's)")
	flags.StringVar(&o.redisAddr, "redis-addr", "", "Redis host:port for cache-coherence (overrides the stack file's); none: skipped")
	flags.StringVar(&o.brokers, "brokers", "", "comma-separated Kafka brokers, to drain by high watermarks (overrides the stack file's); none: wait until the ledger is quiet")
	flags.StringVar(&o.ledgerExport, "ledger-export", "", "read the ledger from this export directory (accounts/transactions/postings.jsonl, docs/audit.md) instead of Postgres")
	flags.StringVar(&o.exportLedger, "export-ledger", "", "do not audit: dump the reference ledger (--postgres-url or --stack) into this directory in the export format")
	flags.StringVar(&o.topic, "topic", invariants.DefaultTopic, "the commands topic whose consumption must be complete before the audit")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 60*time.Second, "how long to wait for the pipeline to drain; after it the audit runs anyway and says not drained")
	flags.DurationVar(&o.quietPeriod, "quiet-period", 2*time.Second, "without brokers, the ledger is drained when unchanged for this long")
	flags.IntVar(&o.maxViolations, "max-violations", 20, "violations listed per invariant (all are counted)")
	flags.StringVar(&o.scope, "scope", invariants.ScopeRun, "no-phantoms scope: run (transactions of the users this journal mentions; others, from earlier runs on the same ledger, are counted and reported) or ledger (every transaction)")
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

	config := invariants.Config{RunDir: o.runDir, DrainTimeout: o.drainTimeout, MaxViolations: o.maxViolations, Progress: stderr, Scope: o.scope}
	if o.ledgerExport != "" {
		config.Ledger = invariants.ExportSource{Dir: o.ledgerExport}
	} else {
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
