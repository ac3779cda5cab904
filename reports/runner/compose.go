package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
)

// The docker-compose.yml endpoints published on the host (docs/docker-compose.md).
const (
	ComposeBaseURL     = "http://localhost:8080"
	ComposePostgresURL = "postgres://ledger:ledger@127.0.0.1:25432/ledger?sslmode=disable"
	ComposeRedisAddr   = "127.0.0.1:26379"
	// ComposeDailyDebitLimit is the daily debit limit docker-compose.yml
	// gives its gateways and workers (LEDGERPROOF_DAILY_DEBIT_LIMIT); the
	// audit judges limits-respected by it.
	ComposeDailyDebitLimit int64 = 100_000
	ComposeBrokers               = "localhost:29092,localhost:29093,localhost:29094"
)

// ComposeProject is a Target: the reference system as a docker compose
// project the user started (docker-compose.yml), loaded and audited through
// the endpoints it publishes, hurt through docker compose.
type ComposeProject struct {
	// File is the compose file; Project the project name (-p), "" for
	// compose's own.
	File, Project string
	// BaseURLs (comma-separated), PostgresURL, RedisAddr and Brokers
	// (comma-separated) override the published endpoints; "": the
	// defaults above.
	BaseURLs, PostgresURL, RedisAddr, Brokers string

	executor  *chaos.ComposeExecutor
	inventory chaos.Inventory
}

var _ Target = (*ComposeProject)(nil)

// Describe names the project as its executor does.
func (c *ComposeProject) Describe() string {
	return (&chaos.ComposeExecutor{File: c.File, Project: c.Project}).Describe()
}

// Prepare checks that the compose file exists, lists the project's
// services and checks that its gateways answer.
func (c *ComposeProject) Prepare(ctx context.Context) (chaos.Inventory, error) {
	if _, err := os.Stat(c.File); err != nil {
		return chaos.Inventory{}, fmt.Errorf("--compose-file: %w", err)
	}
	c.executor = chaos.NewComposeExecutor(c.File, c.Project)
	inventoryContext, cancel := context.WithTimeout(ctx, 30*time.Second)
	inventory, err := c.executor.Inventory(inventoryContext)
	cancel()
	if err != nil {
		return chaos.Inventory{}, err
	}
	if err := checkAnswers(ctx, c.gateways()); err != nil {
		return chaos.Inventory{}, fmt.Errorf("%w (start the project with 'docker compose -f %s up -d --wait')", err, c.File)
	}
	c.inventory = inventory
	return inventory, nil
}

// CheckPlan checks the plan against the project's services.
func (c *ComposeProject) CheckPlan(plan string, timeline []chaos.Step) error {
	return checkPlanAgainst(c, plan, timeline, c.inventory)
}

// Preflight has nothing left to check: Prepare asked the gateways.
func (c *ComposeProject) Preflight(context.Context) error { return nil }

// Start attaches: the project is the user's, and stays as it is.
func (c *ComposeProject) Start(context.Context, string, io.Writer) (func(), error) {
	return func() {}, nil
}

// Stack records the compose file and the gateways.
func (c *ComposeProject) Stack() StackInfo {
	return StackInfo{Kind: KindCompose, File: c.File, Gateways: c.gateways()}
}

// Executor applies a plan through docker compose.
func (c *ComposeProject) Executor() chaos.Executor { return c.executor }

// ScrapeTargets are the published /metrics of docker-compose.yml's gateways
// and workers.
func (c *ComposeProject) ScrapeTargets() []ScrapeTarget {
	return []ScrapeTarget{
		{Name: "gateway-1", URL: "http://127.0.0.1:28080/metrics"}, {Name: "gateway-2", URL: "http://127.0.0.1:28081/metrics"},
		{Name: "worker-1", URL: "http://127.0.0.1:29100/metrics"}, {Name: "worker-2", URL: "http://127.0.0.1:29101/metrics"},
	}
}

// PostgresVersion asks the published Postgres.
func (c *ComposeProject) PostgresVersion(ctx context.Context) string {
	return PostgresVersion(ctx, FirstNonEmpty(c.PostgresURL, ComposePostgresURL))
}

// Recovery starts again every service the plan stopped or killed.
func (c *ComposeProject) Recovery() func(ctx context.Context, output io.Writer) error {
	return func(ctx context.Context, _ io.Writer) error {
		argv := []string{"docker", "compose", "-f", c.File}
		if c.Project != "" {
			argv = append(argv, "-p", c.Project)
		}
		_, err := chaos.RunCommand(ctx, append(argv, "start"))
		return err
	}
}

// Ledger is the published Postgres, drained by the published brokers.
func (c *ComposeProject) Ledger(context.Context, io.Writer) (LedgerSource, error) {
	return LedgerSource{
		PostgresURL: FirstNonEmpty(c.PostgresURL, ComposePostgresURL),
		RedisAddr:   FirstNonEmpty(c.RedisAddr, ComposeRedisAddr),
		Brokers:     FirstNonEmpty(c.Brokers, ComposeBrokers),

		DailyDebitLimit: ComposeDailyDebitLimit,
	}, nil
}

func (c *ComposeProject) gateways() []string {
	return SplitList(FirstNonEmpty(c.BaseURLs, ComposeBaseURL))
}
