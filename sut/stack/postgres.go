package stack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PostgresSuperuser is the superuser role of every cluster this package
// creates (initdb's bootstrap user), so it owns the databases it creates.
const PostgresSuperuser = "ledger"

// postgresBinDirCandidates are searched, in order, for the Postgres server
// binaries when no directory is configured.
var postgresBinDirCandidates = []string{"/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin"}

// PostgresBinDir returns the directory holding initdb and postgres: preferred
// if not empty, else the first known location that has them, else the
// directory of an initdb found in PATH.
func PostgresBinDir(preferred string) (string, error) {
	has := func(directory string) bool {
		for _, program := range []string{"initdb", "postgres"} {
			info, err := os.Stat(filepath.Join(directory, program))
			if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if preferred != "" {
		if !has(preferred) {
			return "", fmt.Errorf("postgres binaries: %s has no executable initdb and postgres", preferred)
		}
		return preferred, nil
	}
	for _, candidate := range postgresBinDirCandidates {
		if has(candidate) {
			return candidate, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(initdb)) {
		return filepath.Dir(initdb), nil
	}
	return "", fmt.Errorf("postgres binaries not found: looked for initdb and postgres in %s and in PATH; install PostgreSQL 15 (apt-get install postgresql-15)",
		strings.Join(postgresBinDirCandidates, ", "))
}

// PostgresOSUser is the OS user Postgres runs as: "postgres" when this
// process is root (postgres refuses to run as root), else "" (the current
// user).
func PostgresOSUser() string {
	if os.Geteuid() == 0 {
		return "postgres"
	}
	return ""
}

// PostgresOptions describes one Postgres cluster.
type PostgresOptions struct {
	// BinDir holds initdb and postgres; see PostgresBinDir.
	BinDir string
	// DataDir is the cluster's data directory (initdb target).
	DataDir string
	// SocketDir holds the unix socket; its path must stay under ~100 bytes.
	SocketDir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// OSUser runs initdb and postgres; see PostgresOSUser.
	OSUser string
	// Durable keeps fsync, full_page_writes and synchronous_commit on. Tests
	// turn it off for speed: a test cluster is thrown away, never recovered.
	Durable bool
	// Settings are extra name=value server settings, passed as -c flags after
	// the defaults, so they win.
	Settings []string
}

// InitPostgres runs initdb into DataDir unless it already holds a cluster
// (then it is reused). The superuser is PostgresSuperuser with trust
// authentication: this cluster is for local use only and listens on
// 127.0.0.1 and a unix socket in a private directory.
func InitPostgres(ctx context.Context, options PostgresOptions, logFile string) error {
	if _, err := os.Stat(filepath.Join(options.DataDir, "PG_VERSION")); err == nil {
		return nil
	}
	for _, directory := range []string{filepath.Dir(options.DataDir), options.SocketDir} {
		if err := os.MkdirAll(directory, 0o755); err != nil {
			return fmt.Errorf("init postgres: %w", err)
		}
		if err := chownToUser(options.OSUser, directory); err != nil {
			return fmt.Errorf("init postgres: %w", err)
		}
	}
	if err := checkReachable(options.OSUser, options.DataDir); err != nil {
		return fmt.Errorf("init postgres: %w", err)
	}
	if len(filepath.Join(options.SocketDir, ".s.PGSQL.")+strconv.Itoa(options.Port)) > 100 {
		return fmt.Errorf("init postgres: unix socket path in %s is too long for the OS (over 100 bytes); use a shorter directory", options.SocketDir)
	}
	arguments := []string{"-D", options.DataDir, "--username=" + PostgresSuperuser, "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if !options.Durable {
		arguments = append(arguments, "--no-sync")
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("init postgres: %w", err)
	}
	defer log.Close()
	command, err := postgresTool(ctx, options, "initdb", arguments, log)
	if err != nil {
		return fmt.Errorf("init postgres: %w", err)
	}
	if err := command.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w; log %s:\n%s", options.DataDir, err, logFile, LogTail(logFile, 30))
	}
	return nil
}

// postgresTool prepares one of the cluster's command-line tools (initdb,
// pg_basebackup) with its output appended to log, run as the cluster's OS
// user when that is not the current one.
func postgresTool(ctx context.Context, options PostgresOptions, tool string, arguments []string, log *os.File) (*exec.Cmd, error) {
	command := exec.CommandContext(ctx, filepath.Join(options.BinDir, tool), arguments...)
	command.Stdout, command.Stderr = log, log
	command.Env = childEnvironment(nil)
	command.Dir = filepath.Dir(options.DataDir)
	if options.OSUser != "" {
		credential, err := lookupCredential(options.OSUser)
		if err != nil {
			return nil, err
		}
		if credential.Uid != uint32(os.Geteuid()) {
			command.SysProcAttr = newCredentialAttributes(credential)
		}
	}
	return command, nil
}

// PostgresArgv is the command line of the cluster's postmaster.
func PostgresArgv(options PostgresOptions) []string {
	onOff := "off"
	if options.Durable {
		onOff = "on"
	}
	argv := []string{
		filepath.Join(options.BinDir, "postgres"),
		"-D", options.DataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(options.Port),
		"-c", "unix_socket_directories=" + options.SocketDir,
		"-c", "fsync=" + onOff,
		"-c", "full_page_writes=" + onOff,
		"-c", "synchronous_commit=" + onOff,
		"-c", "logging_collector=off",
	}
	for _, setting := range options.Settings {
		argv = append(argv, "-c", setting)
	}
	return argv
}

// PostgresURL is the URL of database on the cluster listening on
// 127.0.0.1:port, as PostgresSuperuser.
func PostgresURL(port int, database string) string {
	return (&url.URL{
		Scheme:   "postgres",
		User:     url.User(PostgresSuperuser),
		Host:     "127.0.0.1:" + strconv.Itoa(port),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}).String()
}

// CreateDatabase creates database name on the cluster reached by adminURL
// unless it exists; the connecting role owns it.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	connection, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer connection.Close(context.Background())
	var exists bool
	if err := connection.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := connection.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, disconnecting its sessions.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	connection, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer connection.Close(context.Background())
	if _, err := connection.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// checkReachable fails clearly when osUser cannot traverse the parents of
// path (for example a stack directory under /root when Postgres must run as
// the postgres user).
func checkReachable(osUser, path string) error {
	if osUser == "" {
		return nil
	}
	credential, err := lookupCredential(osUser)
	if err != nil {
		return err
	}
	if credential.Uid == uint32(os.Geteuid()) {
		return nil
	}
	absolute, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for directory := filepath.Dir(absolute); ; directory = filepath.Dir(directory) {
		info, err := os.Stat(directory)
		if err != nil {
			return err
		}
		if !canTraverse(info, credential) {
			return fmt.Errorf("OS user %s cannot enter %s (mode %v), so Postgres cannot reach %s; choose a directory whose parents are world-searchable (chmod o+x) or run as a non-root user",
				osUser, directory, info.Mode().Perm(), absolute)
		}
		if directory == filepath.Dir(directory) {
			return nil
		}
	}
}
