package runner

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/chaos"
)

// Kinds of Target, as run.json's stack.kind records them.
const (
	KindLocal    = "local"
	KindCompose  = "compose"
	KindExternal = "external"
)

// Target is the system a run loads, hurts and audits: the local reference
// stack (LocalStack), a docker compose project (Compose) or a system
// Ledgerproof did not start (External).
//
// Before anything starts, the run calls Prepare, then CheckPlan when it has
// a plan, then Preflight; a failure there is a configuration error and
// nothing was started. Then Start; the other methods describe the system
// Start started or attached.
type Target interface {
	// Describe names the system in messages: "external system http://...".
	Describe() string
	// Prepare checks the system's configuration before anything starts,
	// starting nothing, and returns the inventory a plan is expanded and
	// checked against.
	Prepare(ctx context.Context) (chaos.Inventory, error)
	// CheckPlan checks the plan's expanded timeline against the system;
	// what Start starts may be fitted to the plan (crash points).
	CheckPlan(plan string, timeline []chaos.Step) error
	// Preflight checks that the system answers: after the plan, whose own
	// mistakes need no network to find.
	Preflight(ctx context.Context) error
	// Start starts or attaches the system, saying what it does on out.
	// stop undoes what Start did (copying what a stack leaves into runDir);
	// it is never nil, and is due even when Start fails.
	Start(ctx context.Context, runDir string, out io.Writer) (stop func(), err error)
	// Stack is what run.json records of the system; complete after Start.
	Stack() StackInfo
	// Executor applies the plan CheckPlan checked, once Start has run.
	Executor() chaos.Executor
	// ScrapeTargets are the system's /metrics endpoints, scraped every
	// second of the run.
	ScrapeTargets() []ScrapeTarget
	// PostgresVersion is the ledger database's version for run.json
	// ("unknown" when it does not say); "": there is no database to ask.
	PostgresVersion(ctx context.Context) string
	// Recovery is the Recover hook: it brings every component up again
	// after the plan and the load. Nil: nothing the run can bring up (an
	// external system).
	Recovery() func(ctx context.Context, output io.Writer) error
	// Ledger makes the ledger ready for the audit (an export command is run
	// until its export is drained) and says where the audit reads it.
	Ledger(ctx context.Context, output io.Writer) (LedgerSource, error)
}

// LedgerSource is where the audit reads a system's ledger: one of StackDir,
// PostgresURL, LedgerSQL or LedgerExport, as `ledgerproof audit`'s flags of
// the same names say it.
type LedgerSource struct {
	// StackDir is a local stack's directory: its stack file names the rest.
	StackDir string
	// PostgresURL is a ledger database of the reference schema.
	PostgresURL string
	// LedgerSQL is a YAML file of queries reading a ledger of another
	// schema (invariants.LoadSQLLedger).
	LedgerSQL string
	// LedgerExport is a ledger export directory (docs/audit.md).
	LedgerExport string
	// RedisAddr is the cache the coherence check reads; Brokers the Kafka
	// brokers (comma-separated) the audit drains by. Empty: none.
	RedisAddr, Brokers string
	// WholeLedger says every transaction of the ledger is the run's (a
	// fresh stack the run started): the audit's scope is the whole ledger,
	// not only the run's users.
	WholeLedger bool
	// DailyDebitLimit is the system's daily debit limit (minor units per
	// user per UTC day) for limits-respected; 0: not known here (a local
	// stack's file gives it).
	DailyDebitLimit int64
}

// checkPlanAgainst checks a timeline against a target's inventory, naming
// the target in the error.
func checkPlanAgainst(target Target, plan string, timeline []chaos.Step, inventory chaos.Inventory) error {
	if err := chaos.ValidateTargets(plan, timeline, inventory); err != nil {
		return fmt.Errorf("against %s: %w", target.Describe(), err)
	}
	return nil
}

// checkAnswers checks that every base URL answers HTTP at all (any status),
// within 5 s each: a typo or a stopped system is a configuration error, not
// a failed run.
func checkAnswers(ctx context.Context, urls []string) error {
	for _, url := range urls {
		checkContext, cancel := context.WithTimeout(ctx, preflightTimeout)
		err := checkHTTP(checkContext, url, "/healthz", false)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// PostgresVersion asks the ledger database its version, for run.json;
// "unknown" when it cannot.
func PostgresVersion(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		return "unknown"
	}
	defer connection.Close(context.Background())
	var version string
	if err := connection.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "unknown"
	}
	return version
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(text string) []string {
	var values []string
	for _, value := range strings.Split(text, ",") {
		if value = strings.TrimSpace(value); value != "" {
			values = append(values, value)
		}
	}
	return values
}

// FirstNonEmpty returns the first value that is not empty.
func FirstNonEmpty(values ...string) string {
	for _, value := range values {
		if value != "" {
			return value
		}
	}
	return ""
}
