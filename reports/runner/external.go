package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/profile"
)

// ExternalSystem is a Target: any system implementing sut/openapi.yaml (or
// speaking through a profile) that Ledgerproof did not start. It is only
// addressed by its endpoints; a plan against it is made of command steps;
// its ledger is read from its database (the reference schema, or the
// team's through LedgerSQL's queries) or from an export its command writes
// after the load (docs/external.md).
type ExternalSystem struct {
	// BaseURLs are the system's base URLs, comma-separated (required).
	BaseURLs string
	// PostgresURL, LedgerSQL and LedgerExport with ExportCommand are the
	// audit's source of the ledger: exactly one of them.
	PostgresURL, LedgerSQL, LedgerExport, ExportCommand string
	// RedisAddr is the cache the coherence check reads; Brokers (comma-
	// separated) the Kafka brokers the audit drains by; MetricsURLs
	// (comma-separated) the Prometheus endpoints scraped. Empty: none.
	RedisAddr, Brokers, MetricsURLs string
	// Profile is the system profile the load speaks (load/profile); "":
	// the reference API.
	Profile string
	// QuietPeriod and DrainTimeout bound the export command's drain
	// (ExportDrain).
	QuietPeriod, DrainTimeout time.Duration
}

var _ Target = (*ExternalSystem)(nil)

// Describe names the system by its base URLs.
func (e *ExternalSystem) Describe() string { return e.executor().Describe() }

// checkSettings checks that the settings describe one system with one
// audit source, without reading any file or network.
func (e *ExternalSystem) checkSettings() error {
	if e.BaseURLs == "" {
		return errors.New("--stack external needs --base-url URL[,URL] (a system implementing sut/openapi.yaml)")
	}
	if (e.ExportCommand == "") != (e.LedgerExport == "") {
		return errors.New("--export-command writes the --ledger-export directory after the load: give both (an export written before the load ends is not this run's ledger)")
	}
	sources := 0
	for _, source := range []string{e.PostgresURL, e.LedgerExport, e.LedgerSQL} {
		if source != "" {
			sources++
		}
	}
	if sources != 1 {
		return errors.New("--stack external needs one audit source: --postgres-url URL (the reference schema), --ledger-sql FILE (your schema, your queries) or --ledger-export DIR with --export-command (docs/external.md)")
	}
	if e.LedgerSQL != "" && e.Brokers != "" {
		return errors.New("--brokers drains the reference pipeline's topic; with --ledger-sql the audit waits for a quiet ledger instead (give one)")
	}
	return nil
}

// Prepare checks that the flags describe one system with one audit source,
// and that the SQL ledger's queries and the profile are usable; the
// endpoints are Preflight's. A plan against the system is made of command
// steps.
func (e *ExternalSystem) Prepare(ctx context.Context) (chaos.Inventory, error) {
	if err := e.checkSettings(); err != nil {
		return chaos.Inventory{}, err
	}
	if e.LedgerSQL != "" {
		// The queries are checked against the database now, not after the load.
		ledger, err := invariants.LoadSQLLedger(e.LedgerSQL)
		if err != nil {
			return chaos.Inventory{}, err
		}
		checkContext, cancel := context.WithTimeout(ctx, 15*time.Second)
		source, err := invariants.OpenSQL(checkContext, *ledger)
		cancel()
		if err != nil {
			return chaos.Inventory{}, err
		}
		source.Close()
	}
	if e.Profile != "" {
		if _, err := profile.Load(e.Profile); err != nil {
			return chaos.Inventory{}, err
		}
	}
	return chaos.Inventory{CommandsOnly: true}, nil
}

// CheckPlan refuses every step but a command.
func (e *ExternalSystem) CheckPlan(plan string, timeline []chaos.Step) error {
	return checkPlanAgainst(e, plan, timeline, chaos.Inventory{CommandsOnly: true})
}

// Preflight checks that every endpoint answers (Preflight).
func (e *ExternalSystem) Preflight(ctx context.Context) error {
	return Preflight(ctx, Endpoints{BaseURLs: SplitList(e.BaseURLs), PostgresURL: e.PostgresURL,
		RedisAddr: e.RedisAddr, Brokers: SplitList(e.Brokers), MetricsURLs: SplitList(e.MetricsURLs)})
}

// Start has nothing to do: the system runs, and stays as it is.
func (e *ExternalSystem) Start(context.Context, string, io.Writer) (func(), error) {
	return func() {}, nil
}

// Stack records the base URLs.
func (e *ExternalSystem) Stack() StackInfo {
	return StackInfo{Kind: KindExternal, Gateways: SplitList(e.BaseURLs)}
}

// Executor runs a plan's command steps; it refuses any other.
func (e *ExternalSystem) Executor() chaos.Executor { return e.executor() }

// ScrapeTargets are the metrics URLs, named target-0, target-1...
func (e *ExternalSystem) ScrapeTargets() []ScrapeTarget {
	var targets []ScrapeTarget
	for index, url := range SplitList(e.MetricsURLs) {
		targets = append(targets, ScrapeTarget{Name: "target-" + strconv.Itoa(index), URL: url})
	}
	return targets
}

// PostgresVersion asks the ledger database of the reference schema, if
// that is the audit's source.
func (e *ExternalSystem) PostgresVersion(ctx context.Context) string {
	if e.PostgresURL == "" {
		return ""
	}
	return PostgresVersion(ctx, e.PostgresURL)
}

// Recovery is nil: nothing of the system is the run's to start again (a
// command step's own recover command is the plan's).
func (e *ExternalSystem) Recovery() func(ctx context.Context, output io.Writer) error { return nil }

// Ledger runs the export command until its export is drained (when the
// ledger is an export), and returns the audit's source.
func (e *ExternalSystem) Ledger(ctx context.Context, output io.Writer) (LedgerSource, error) {
	if e.ExportCommand != "" {
		// The export is the ledger once the system is done: exported
		// again until two exports a quiet period apart agree.
		note, err := ExportDrain{Command: e.ExportCommand, Dir: e.LedgerExport, QuietPeriod: e.QuietPeriod,
			Timeout: e.DrainTimeout, Output: output}.Run(ctx)
		if err != nil {
			return LedgerSource{}, err
		}
		fmt.Fprintln(output, note)
	}
	return LedgerSource{PostgresURL: e.PostgresURL, LedgerSQL: e.LedgerSQL, LedgerExport: e.LedgerExport,
		RedisAddr: e.RedisAddr, Brokers: e.Brokers}, nil
}

func (e *ExternalSystem) executor() chaos.ExternalExecutor {
	return chaos.ExternalExecutor{Name: e.BaseURLs}
}
