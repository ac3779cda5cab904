package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// gatewayCommand runs a gateway process (gateway.Serve) until SIGINT or
// SIGTERM; its flags are bound to gateway.ProcessConfig.
func gatewayCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var process gateway.ProcessConfig
	var common processFlags
	common.register(flags, &process.Daemon, ledger.ProcessGateway)
	flags.StringVar(&process.Listen, "listen", "127.0.0.1:18080", "HTTP listen address of the public API")
	flags.StringVar(&process.InternalListen, "internal-listen", "127.0.0.1:18380", "HTTP listen address of /readyz, /metrics, and the crash points and profiles when enabled: for the orchestrator and the scraper only, never the public")
	config := &process.Gateway
	flags.UintVar(&process.KDFMemoryKiB, "kdf-memory-kib", 19456, "argon2id memory cost in KiB (lower only for load tests)")
	flags.UintVar(&process.KDFIterations, "kdf-iterations", 2, "argon2id iterations")
	flags.Float64Var(&config.RateLimitPerSecond, "rate-limit", 1000, "requests per second per user, per gateway (negative: no limit)")
	flags.IntVar(&config.RateLimitBurst, "rate-burst", 0, "burst per user (0: twice the rate)")
	flags.Int64Var(&config.MaxBodyBytes, "max-body-bytes", 16<<10, "largest request body accepted")
	flags.DurationVar(&config.WaitMax, "wait-max", 30*time.Second, "longest bounded wait a client may ask with Prefer: wait=N")
	flags.DurationVar(&config.SessionTTL, "session-ttl", 24*time.Hour, "lifetime of a sign-in token")
	flags.DurationVar(&config.IdempotencyTTL, "idempotency-ttl", 24*time.Hour, "how long Redis remembers a key and its response (a final outcome the worker announced is replayed from the worker's outcome record, --outcome-ttl; once that expired, from the ledger)")
	flags.DurationVar(&config.KeysCompleteInterval, "keys-complete-interval", 5*time.Second, "how often to look whether Redis's idempotency keys can be marked complete (the ledger is empty: new keys then skip the ledger check)")
	flags.DurationVar(&config.ProduceTimeout, "produce-timeout", 10*time.Second, "longest wait for the broker's acknowledgement")
	flags.IntVar(&config.MaxInFlightRequests, "max-in-flight", 8192, "concurrent requests (their bodies read) before refusing with 503")
	flags.Float64Var(&config.MoneyRateLimit.PerSecond, "money-rate-limit", 100, "money requests per second per user, per gateway, on top of --rate-limit (negative: no limit)")
	flags.IntVar(&config.MoneyRateLimit.Burst, "money-rate-burst", 0, "money burst per user (0: twice the rate)")
	flags.Float64Var(&config.SigninPerAddress.PerSecond, "signin-address-rate", 1, "sign-ins per second per client address (an IPv6 /64), per gateway (negative: no limit)")
	flags.IntVar(&config.SigninPerAddress.Burst, "signin-address-burst", 20, "sign-in burst per client address")
	flags.Float64Var(&config.SigninPerEmail.PerSecond, "signin-email-rate", 0.1, "sign-ins per second per normalised email, per gateway (negative: no limit)")
	flags.IntVar(&config.SigninPerEmail.Burst, "signin-email-burst", 10, "sign-in burst per normalised email")
	flags.Float64Var(&config.SignupPerAddress.PerSecond, "signup-address-rate", 0.1, "signups per second per client address, per gateway (negative: no limit)")
	flags.IntVar(&config.SignupPerAddress.Burst, "signup-address-burst", 10, "signup burst per client address")
	flags.Float64Var(&config.SignupPerEmail.PerSecond, "signup-email-rate", 0.1, "signups per second per normalised email, per gateway (negative: no limit)")
	flags.IntVar(&config.SignupPerEmail.Burst, "signup-email-burst", 5, "signup burst per normalised email")
	flags.IntVar(&config.SigninLock.FailuresBeforeLock, "signin-failures-before-lock", 5, "failed sign-ins of one email (on every gateway together) before it is locked")
	flags.DurationVar(&config.SigninLock.Lock, "signin-lock", time.Minute, "first lock of an email after its failures; doubled by each further failure")
	flags.DurationVar(&config.SigninLock.LockMaximum, "signin-lock-max", time.Hour, "longest lock of an email")
	flags.DurationVar(&config.SigninLock.Memory, "signin-failure-memory", 24*time.Hour, "how long an email's failures are remembered after the last one")
	flags.IntVar(&config.ConnectionsPerAddress, "connections-per-address", 256, "open connections per client address; more are closed at once (trusted proxies exempt; negative: no cap)")
	flags.IntVar(&config.InFlightPerAddress, "in-flight-per-address", 64, "requests per client address served at once, body reads included; more get 429 (negative: no cap)")
	flags.DurationVar(&config.BodyReadTimeout, "body-read-timeout", 5*time.Second, "longest time a request body may take to arrive, before the request takes an in-flight slot")
	flags.IntVar(&config.MaxHeaderBytes, "max-header-bytes", 16<<10, "largest request line and headers accepted")
	flags.Var((*prefixList)(&config.TrustedProxies), "trusted-proxies", "`networks` (CIDR or address, comma-separated) of the proxies in front of the gateway: their X-Forwarded-For names the client and their X-Request-Id is kept (default none)")
	flags.DurationVar(&config.SessionCheckInterval, "session-check-interval", time.Second, "how often the gateway reads the sessions that were ended (sign-out): an ended token is refused by every gateway within about this")
	flags.IntVar(&config.PasswordHashing.Concurrency, "kdf-concurrency", 0, "password hashes running at once (0: the cores Go uses, within a 128 MiB memory budget)")
	flags.DurationVar(&config.PasswordHashing.QueueWait, "kdf-queue-wait", 2*time.Second, "longest wait for a password hashing slot before 503")
	flags.DurationVar(&config.InFlightLease, "in-flight-lease", 60*time.Second, "how long a replay of a key whose first request has not answered gets 409 before taking over (must exceed --produce-timeout plus --wait-max)")
	flags.StringVar((*string)(&config.ApplyMode), "apply-mode", string(gateway.ApplyModeQueue), "how money commands reach the ledger: queue (produced to the commands topic, applied by workers in batches) or naive (applied here, one Postgres transaction per request, answered with the outcome; no broker needed, start the stack with --workers 0)")
	flags.BoolVar(&config.SoftBalanceCheck, "soft-balance-check", true, "refuse a debit at once (insufficient_funds, recorded without a stream position) when the account's cached balance is below its amount; a cache miss lets it through to the worker (docs/limits.md)")
	flags.Int64Var(&config.DailyDebitLimitMinor, "daily-debit-limit", 0, "most a user may debit (withdrawals and transfers out) per UTC day, in minor units: refused at once (daily_limit_exceeded) when the workers' cached total says so; give the workers the same value (0: no limit; docs/limits.md)")
	flags.BoolVar(&process.Daemon.Profiling, "pprof", false, "serve Go's profiles at /debug/pprof/ on the internal listener, to loopback clients only")
	flags.DurationVar(&process.ProducerLinger, "producer-linger", 0, "how long the producer waits to fill a batch before sending it (0: send at once; records still batch while a request is in flight)")
	flags.StringVar(&process.WorkersGroup, "workers-group", "ledger-workers", "the workers' consumer group: in the queue apply mode /readyz fails (503, check \"workers\") while it has no member, since nothing would apply what the gateway queues (asked at most every 2s; empty: not checked)")
	flags.Func("shard-postgres-url", "the database of the next shard (1, 2...) of a sharded ledger, --postgres-url being shard 0 (users, sessions and shard 0's accounts; docs/sharding.md); repeatable, in shard order. A new user's account goes to shard user id mod N; every account is read and written in its shard. Needs --apply-mode queue. Default none: one ledger", func(value string) error {
		if value == "" {
			return errors.New("empty URL")
		}
		process.ShardPostgresURLs = append(process.ShardPostgresURLs, value)
		return nil
	})
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if err := common.complete(); err != nil {
			return err
		}
		return gateway.Serve(ctx, process)
	}
}

// prefixList is the --trusted-proxies flag: networks in CIDR form, or
// single addresses, comma-separated.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	var parts []string
	for _, prefix := range *l {
		parts = append(parts, prefix.String())
	}
	return strings.Join(parts, ",")
}

func (l *prefixList) Set(value string) error {
	*l = nil
	for _, part := range strings.Split(value, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			address, addressErr := netip.ParseAddr(part)
			if addressErr != nil {
				return fmt.Errorf("%q is neither a network (CIDR) nor an address", part)
			}
			prefix = netip.PrefixFrom(address.Unmap(), address.Unmap().BitLen())
		}
		*l = append(*l, prefix.Masked())
	}
	return nil
}

// replicationFactor is the --replication-factor flag of gateway and worker:
// the replicas of the commands topic when the process creates it. Default 1
// suits the single local broker; a three-broker cluster wants 3 (with
// min.insync.replicas 2, an acknowledged command survives one broker's loss).
// The value is checked when the flag is set, so a bad value fails at start-up
// and in the compose test rather than at the first topic creation.
type replicationFactor int16

func (r *replicationFactor) String() string { return strconv.Itoa(int(*r)) }

func (r *replicationFactor) Set(value string) error {
	parsed, err := strconv.ParseInt(value, 10, 16)
	if err != nil {
		return fmt.Errorf("replication factor %q: %w", value, err)
	}
	if parsed == 0 || parsed < -1 {
		return fmt.Errorf("replication factor %d must be -1 (the broker's default) or at least 1", parsed)
	}
	*r = replicationFactor(parsed)
	return nil
}
