package stack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The Postgres standby of the local stack (Config.PostgresStandby): a second
// cluster made with `pg_basebackup -R` from the primary, streaming its WAL
// synchronously, so every commit the primary acknowledges is also flushed on
// the standby. Failover kills the primary and promotes the standby; the
// gateways and workers reach whichever is writable through a multi-host URL
// with target_session_attrs=read-write. README.md ("Postgres standby and
// failover") and docs/postgres-failover.md explain the choices.

// StandbyComponentName is the name of the standby's component.
const StandbyComponentName = "postgres-standby"

// DefaultPostgresStandbyPort is the standby's default port on 127.0.0.1,
// next to the primary's default.
const DefaultPostgresStandbyPort = 15433

// ReplicationRole is the role the standby streams WAL as (LOGIN
// REPLICATION, trusted on loopback like every role of the local stack).
const ReplicationRole = "replicator"

// standbyApplicationName names the standby for synchronous_standby_names
// and is also its replication slot's name. It has no hyphen, so it needs no
// quoting in synchronous_standby_names.
const standbyApplicationName = "ledgerproof_standby"

// fenceFileName is written into the data directory of a primary that was
// failed over; Component.Start refuses to start a fenced cluster, so the old
// primary never comes back as a second writable server (split brain).
const fenceFileName = "ledgerproof-fenced"

// failoverDrainTimeout bounds the wait for the killed primary's backends
// to exit before the standby is promoted.
const failoverDrainTimeout = 3 * time.Second

// FailoverRecord is one failover, as recorded in the stack file.
type FailoverRecord struct {
	// From is the component that was primary (killed and fenced); To is the
	// promoted one, primary now.
	From string `json:"from"`
	To   string `json:"to"`
	// KilledAt is when the old primary's postmaster was gone, PromotedAt
	// when the standby was asked to promote (once the old primary's last
	// processes were gone), WritableAt when the promoted server committed a
	// write.
	KilledAt   time.Time `json:"killed_at"`
	PromotedAt time.Time `json:"promoted_at"`
	WritableAt time.Time `json:"writable_at"`
}

// FailoverResult is what Failover did.
type FailoverResult struct {
	FailoverRecord
	// KillToWritable is the time writes were impossible: from the old
	// primary's death to the first write the promoted server committed.
	KillToWritable time.Duration
	// Primary is the promoted component's record.
	Primary *Component
}

// primaryReplicationSettings are the primary's settings when it has a
// standby: WAL for a physical replica, and commits that wait until the
// standby has flushed them (synchronous_commit=on is already set by
// Durable: with a synchronous standby it means "remote flush").
func primaryReplicationSettings() []string {
	return []string{
		"wal_level=replica",
		"max_wal_senders=10",
		"max_replication_slots=10",
		"hot_standby=on",
		"synchronous_standby_names=" + standbyApplicationName,
	}
}

// standbyPostgresOptions is the standby cluster of the local stack. It has
// the primary's settings (a hot standby needs max_connections at least the
// primary's), names itself to the primary through cluster_name, and has no
// synchronous standby of its own: once promoted it is alone, and a
// synchronous_standby_names naming nobody would block every commit.
func standbyPostgresOptions(config Config, dir, binDir string) PostgresOptions {
	options := stackPostgresOptions(Config{PostgresPort: config.standbyPort()}, dir, binDir)
	options.DataDir = filepath.Join(dir, "postgres-standby", "data")
	options.SocketDir = filepath.Join(dir, "postgres-standby", "run")
	options.Settings = append(options.Settings,
		"wal_level=replica",
		"max_wal_senders=10",
		"max_replication_slots=10",
		"hot_standby=on",
		"cluster_name="+standbyApplicationName,
		"synchronous_standby_names=",
	)
	return options
}

// standbyPort is PostgresStandbyPort, or its default when zero.
func (c Config) standbyPort() int {
	if c.PostgresStandbyPort == 0 {
		return DefaultPostgresStandbyPort
	}
	return c.PostgresStandbyPort
}

// standbyComponent describes the standby's postmaster.
func standbyComponent(config Config, dir, binDir, logs string) *Component {
	component := PostgresComponent(StandbyComponentName, standbyPostgresOptions(config, dir, binDir), "ledger", filepath.Join(logs, StandbyComponentName+".log"))
	return component
}

// MultiHostPostgresURL is the URL of database on the clusters listening on
// 127.0.0.1 at ports, in order, as PostgresSuperuser, that connects only to
// the one accepting writes (target_session_attrs=read-write): before a
// failover the primary (the standby is read-only and is skipped), after it
// the promoted standby (the old primary refuses connections).
func MultiHostPostgresURL(database string, ports ...int) string {
	hosts := make([]string, len(ports))
	for i, port := range ports {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	return (&url.URL{
		Scheme:   "postgres",
		User:     url.User(PostgresSuperuser),
		Host:     strings.Join(hosts, ","),
		Path:     "/" + database,
		RawQuery: "sslmode=disable&target_session_attrs=read-write",
	}).String()
}

// InitStandby makes the standby's data directory with pg_basebackup from the
// running primary (port primaryPort), unless it already holds a cluster
// (then it is reused). It first creates ReplicationRole and makes sure
// pg_hba.conf lets it replicate on loopback. -R writes standby.signal and
// primary_conninfo (with the application name synchronous_standby_names
// expects and the replication slot, so the primary keeps the WAL the standby
// has not received even while it is down).
func InitStandby(ctx context.Context, options PostgresOptions, primaryPort int, logFile string) error {
	if _, err := os.Stat(filepath.Join(options.DataDir, "PG_VERSION")); err == nil {
		return nil
	}
	// A directory without PG_VERSION is the remains of an interrupted
	// backup: pg_basebackup wants an empty target.
	if err := os.RemoveAll(options.DataDir); err != nil {
		return fmt.Errorf("init standby: %w", err)
	}
	for _, directory := range []string{filepath.Dir(options.DataDir), options.SocketDir} {
		if err := os.MkdirAll(directory, 0o755); err != nil {
			return fmt.Errorf("init standby: %w", err)
		}
		if err := chownToUser(options.OSUser, directory); err != nil {
			return fmt.Errorf("init standby: %w", err)
		}
	}
	if err := checkReachable(options.OSUser, options.DataDir); err != nil {
		return fmt.Errorf("init standby: %w", err)
	}
	if err := prepareReplication(ctx, PostgresURL(primaryPort, "postgres")); err != nil {
		return fmt.Errorf("init standby: %w", err)
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("init standby: %w", err)
	}
	defer log.Close()
	connection := fmt.Sprintf("host=127.0.0.1 port=%d user=%s application_name=%s sslmode=disable", primaryPort, ReplicationRole, standbyApplicationName)
	arguments := []string{"--pgdata", options.DataDir, "--dbname", connection,
		"--wal-method=stream", "--write-recovery-conf", "--checkpoint=fast",
		"--create-slot", "--slot=" + standbyApplicationName, "--no-password"}
	fmt.Fprintf(log, "\n==== %s ledgerproof runs: pg_basebackup %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(arguments, " "))
	command, err := postgresTool(ctx, options, "pg_basebackup", arguments, log)
	if err != nil {
		return fmt.Errorf("init standby: %w", err)
	}
	if err := command.Run(); err != nil {
		return fmt.Errorf("pg_basebackup into %s: %w; log %s:\n%s", options.DataDir, err, logFile, LogTail(logFile, 30))
	}
	return nil
}

// prepareReplication creates ReplicationRole, checks pg_hba.conf lets it
// replicate from 127.0.0.1, and drops a leftover inactive slot of an
// interrupted earlier backup. The role is created with synchronous_commit
// local: the primary already names the standby in synchronous_standby_names
// and would otherwise wait forever for a standby that does not exist yet.
func prepareReplication(ctx context.Context, adminURL string) error {
	connection, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("prepare replication: %w", err)
	}
	defer connection.Close(context.Background())
	transaction, err := connection.Begin(ctx)
	if err != nil {
		return fmt.Errorf("prepare replication: %w", err)
	}
	defer transaction.Rollback(context.Background())
	statements := []string{
		"SET LOCAL synchronous_commit = local",
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + ReplicationRole + `') THEN
				CREATE ROLE ` + ReplicationRole + ` WITH LOGIN REPLICATION;
			END IF;
		END $$`,
	}
	for _, statement := range statements {
		if _, err := transaction.Exec(ctx, statement); err != nil {
			return fmt.Errorf("prepare replication: %w", err)
		}
	}
	if err := transaction.Commit(ctx); err != nil {
		return fmt.Errorf("prepare replication: %w", err)
	}
	var allowed bool
	err = connection.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_hba_file_rules
		WHERE type = 'host' AND 'replication' = ANY(database) AND ('all' = ANY(user_name) OR $1 = ANY(user_name))
		AND address = '127.0.0.1' AND auth_method = 'trust')`, ReplicationRole).Scan(&allowed)
	if err != nil {
		return fmt.Errorf("prepare replication: read pg_hba.conf: %w", err)
	}
	if !allowed {
		var hbaFile string
		if err := connection.QueryRow(ctx, "SHOW hba_file").Scan(&hbaFile); err != nil {
			return fmt.Errorf("prepare replication: %w", err)
		}
		rule := fmt.Sprintf("\n# ledgerproof: the standby streams WAL on loopback\nhost replication %s 127.0.0.1/32 trust\n", ReplicationRole)
		hba, err := os.OpenFile(hbaFile, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("prepare replication: %w", err)
		}
		_, writeError := hba.WriteString(rule)
		if err := errors.Join(writeError, hba.Close()); err != nil {
			return fmt.Errorf("prepare replication: %w", err)
		}
		if _, err := connection.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return fmt.Errorf("prepare replication: %w", err)
		}
	}
	if _, err := connection.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE slot_name = $1 AND NOT active`, standbyApplicationName); err != nil {
		return fmt.Errorf("prepare replication: drop leftover slot: %w", err)
	}
	return nil
}

// postgresSetupAfter names the component after whose start the ledger
// database is created and migrated: the standby when there is one, since a
// commit on the primary waits for it.
func postgresSetupAfter(config Config) string {
	if config.PostgresStandby {
		return StandbyComponentName
	}
	return KindPostgres
}

// PrimaryName is the name of the Postgres component that is the writable
// primary: the one the last failover promoted, else "postgres".
func (f *File) PrimaryName() string {
	if f.PostgresPrimary != "" {
		return f.PostgresPrimary
	}
	return KindPostgres
}

// fencedReason returns why the cluster in dataDir must not start (a
// failover made another server primary), or "" when it may.
func fencedReason(dataDir string) string {
	content, err := os.ReadFile(filepath.Join(dataDir, fenceFileName))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(content))
}

// checkNotFenced refuses to start a Postgres component whose cluster was the
// primary before a failover: it may hold commits the promoted server never
// saw (they were not acknowledged) and it would take writes of its own.
func checkNotFenced(component *Component) error {
	reason := fencedReason(component.DataDir)
	if reason == "" {
		return nil
	}
	return fmt.Errorf("%s will not start: %s. It was failed over and would be a second primary; the ledger now lives on the promoted server. To use this cluster again, remove %s and make it a standby of the new primary (pg_basebackup), or start over with 'ledgerproof down --purge'",
		component.Name, reason, component.DataDir)
}

// Failover kills the primary Postgres of the stack in dir with SIGKILL
// (fencing its data directory first, so it never starts again as a second
// primary), promotes the standby (pg_promote), waits until the promoted
// server commits a write, and records in the stack file which component is
// primary now. Clients with the stack's multi-host URL reconnect to it by
// themselves. It fails, before killing anything, when the stack has no
// running standby. Bounded by ctx (DefaultReadyTimeout if it has no
// deadline).
func Failover(ctx context.Context, dir string) (*FailoverResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	var primary, standby *Component
	if err := withLock(dir, func() error {
		file, err := Load(dir)
		if err != nil {
			return err
		}
		if primary, err = file.Component(file.PrimaryName()); err != nil {
			return err
		}
		for _, component := range file.Components {
			_, isShard := shardIndex(component.Name) // another shard's Postgres, not a standby
			if component.Kind == KindPostgres && component.Name != primary.Name && !isShard {
				standby = component
			}
		}
		if standby == nil {
			return fmt.Errorf("failover: the stack in %s has no Postgres standby (start it with 'ledgerproof up --postgres-standby')", dir)
		}
		if !standby.Alive() {
			why := standby.Status()
			if reason := fencedReason(standby.DataDir); reason != "" {
				why = reason
			}
			return fmt.Errorf("failover: no standby to promote: %s is not running (%s)", standby.Name, why)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	standbyURL := standby.Ready.Target
	var inRecovery bool
	if err := queryOnce(ctx, standbyURL, "SELECT pg_is_in_recovery()", &inRecovery); err != nil {
		return nil, fmt.Errorf("failover: standby %s: %w", standby.Name, err)
	}
	if !inRecovery {
		return nil, fmt.Errorf("failover: %s is not a standby (it accepts writes already); refusing to kill %s", standby.Name, primary.Name)
	}

	// Fence before the kill: from this instant no start brings the old
	// primary back.
	record := FailoverRecord{From: primary.Name, To: standby.Name}
	fence := fmt.Sprintf("fenced at %s: failover from %s to %s", time.Now().UTC().Format(time.RFC3339), primary.Name, standby.Name)
	if err := os.WriteFile(filepath.Join(primary.DataDir, fenceFileName), []byte(fence+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("failover: fence %s: %w", primary.Name, err)
	}
	killError := primary.Kill()
	record.KilledAt = time.Now().UTC()
	if err := recordComponent(dir, primary); err != nil {
		return nil, errors.Join(killError, err)
	}
	if killError != nil {
		return nil, fmt.Errorf("failover: %w", killError)
	}

	// The backends and WAL sender of the dead postmaster exit by themselves
	// within milliseconds; promoting once they are gone means the standby's
	// WAL receiver has seen its stream end. Correctness does not depend on
	// it (a promoted standby takes no more WAL from the old timeline), so
	// the wait is short and a straggler does not stop the failover.
	if directory, err := filepath.EvalSymlinks(primary.DataDir); err == nil {
		drainContext, cancel := context.WithTimeout(ctx, failoverDrainTimeout)
		_ = poll(drainContext, 5*time.Millisecond, func() error {
			if pid := processWorkingIn(directory); pid > 0 {
				return fmt.Errorf("process %d still runs in %s", pid, directory)
			}
			return nil
		})
		cancel()
	}
	record.PromotedAt = time.Now().UTC()

	// A backend of the dead postmaster still waiting for the standby's
	// acknowledgement never reports its commit to its client (Postgres
	// drops the connection when the postmaster is gone), and what the
	// standby flushed is in the promoted server: nothing acknowledged is
	// lost.
	// pg_promote without waiting: the wait is the poll below, bounded by
	// ctx, which also proves a commit goes through.
	var promoted bool
	if err := queryOnce(ctx, standbyURL, "SELECT pg_promote(false)", &promoted); err != nil {
		return nil, fmt.Errorf("failover: promote %s: %w", standby.Name, err)
	}
	if !promoted {
		return nil, fmt.Errorf("failover: promote %s: pg_promote could not signal the postmaster; log %s:\n%s", standby.Name, standby.LogFile, RunLogExcerpt(standby.LogFile))
	}
	if err := poll(ctx, 20*time.Millisecond, func() error {
		var transactionID int64
		return queryOnce(ctx, standbyURL, "SELECT txid_current()", &transactionID)
	}); err != nil {
		return nil, fmt.Errorf("failover: %s does not accept writes after promotion: %w", standby.Name, err)
	}
	record.WritableAt = time.Now().UTC()

	if err := withLock(dir, func() error {
		file, err := Load(dir)
		if err != nil {
			return err
		}
		file.PostgresPrimary = standby.Name
		file.Failovers = append(file.Failovers, record)
		return file.save()
	}); err != nil {
		return nil, fmt.Errorf("failover: record: %w", err)
	}
	return &FailoverResult{FailoverRecord: record, KillToWritable: record.WritableAt.Sub(record.KilledAt), Primary: standby}, nil
}

// queryOnce runs one single-row query on a fresh connection (bounded by
// probeAttemptTimeout) and scans its result.
func queryOnce(ctx context.Context, databaseURL, query string, into ...any) error {
	ctx, cancel := context.WithTimeout(ctx, probeAttemptTimeout)
	defer cancel()
	connection, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer connection.Close(context.Background())
	return connection.QueryRow(ctx, query).Scan(into...)
}
