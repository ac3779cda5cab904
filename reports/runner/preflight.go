package runner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Endpoints are what a run against a system it did not start will talk to.
// Preflight checks each before the load, so a wrong one costs seconds, not
// a whole load.
type Endpoints struct {
	// BaseURLs are the system's API base URLs (required).
	BaseURLs []string
	// PostgresURL is the ledger database the audit reads; empty: none.
	PostgresURL string
	// RedisAddr is the cache the coherence check reads; empty: none.
	RedisAddr string
	// Brokers are Kafka brokers to drain by; empty: none.
	Brokers []string
	// MetricsURLs are Prometheus endpoints scraped during the run.
	MetricsURLs []string
}

// preflightTimeout bounds each endpoint's check.
const preflightTimeout = 5 * time.Second

// Preflight checks every endpoint at once and returns every problem, each
// naming its flag and what to fix; nil when all answer.
func Preflight(ctx context.Context, endpoints Endpoints) error {
	var mutex sync.Mutex
	var problems []error
	var wait sync.WaitGroup
	check := func(f func(ctx context.Context) error) {
		wait.Add(1)
		go func() {
			defer wait.Done()
			checkContext, cancel := context.WithTimeout(ctx, preflightTimeout)
			defer cancel()
			if err := f(checkContext); err != nil {
				mutex.Lock()
				problems = append(problems, err)
				mutex.Unlock()
			}
		}()
	}
	for _, url := range endpoints.BaseURLs {
		check(func(ctx context.Context) error { return checkHTTP(ctx, url, "/healthz", false) })
	}
	for _, url := range endpoints.MetricsURLs {
		check(func(ctx context.Context) error { return checkHTTP(ctx, url, "", true) })
	}
	if endpoints.PostgresURL != "" {
		check(func(ctx context.Context) error { return checkPostgres(ctx, endpoints.PostgresURL) })
	}
	if endpoints.RedisAddr != "" {
		check(func(ctx context.Context) error { return checkRedis(ctx, endpoints.RedisAddr) })
	}
	if len(endpoints.Brokers) > 0 {
		check(func(ctx context.Context) error { return checkBrokers(ctx, endpoints.Brokers) })
	}
	wait.Wait()
	// One order whatever finished first.
	sort.Slice(problems, func(i, j int) bool { return problems[i].Error() < problems[j].Error() })
	return errors.Join(problems...)
}

// checkHTTP asks url (+path) anything; any answer will do unless wantOK.
func checkHTTP(ctx context.Context, url, path string, wantOK bool) error {
	what := "base URL"
	if wantOK {
		what = "--metrics-url"
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, url, err)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return fmt.Errorf("nothing answers at %s (%s): %w", url, what, err)
	}
	response.Body.Close()
	if wantOK && response.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s answers %s, want 200 with Prometheus metrics", what, url, response.Status)
	}
	return nil
}

// checkPostgres connects and pings; the error never carries the password.
func checkPostgres(ctx context.Context, url string) error {
	config, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New("--postgres-url: not a Postgres connection string (want postgres://user:password@host:port/database)")
	}
	where := fmt.Sprintf("%s@%s:%d/%s", config.User, config.Host, config.Port, config.Database)
	connection, err := pgx.ConnectConfig(ctx, config)
	if err == nil {
		err = connection.Ping(ctx)
		connection.Close(context.Background())
	}
	if err != nil {
		return fmt.Errorf("--postgres-url (%s): cannot connect: %s (check the host, port, database, user and password)", where, redact(err.Error(), config.Password))
	}
	return nil
}

// checkRedis pings the cache.
func checkRedis(ctx context.Context, addr string) error {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: preflightTimeout})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("--redis-addr %s: no answer to PING: %v", addr, err)
	}
	return nil
}

// checkBrokers asks the brokers for metadata.
func checkBrokers(ctx context.Context, brokers []string) error {
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("--brokers %s: %w", strings.Join(brokers, ","), err)
	}
	defer client.Close()
	if err := client.Ping(ctx); err != nil {
		return fmt.Errorf("--brokers %s: no broker answers: %v (or give none: the audit then waits for a quiet ledger)", strings.Join(brokers, ","), err)
	}
	return nil
}

// redact removes a secret from a message.
func redact(message, secret string) string {
	if secret == "" {
		return message
	}
	return strings.ReplaceAll(message, secret, "***")
}
