package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/crash"
)

// Component kinds.
const (
	KindPostgres = "postgres"
	KindRedis    = "redis"
	KindBroker   = "broker"
	KindGateway  = "gateway"
	KindWorker   = "worker"
)

// Component states, as recorded in the stack file. The live truth is
// Component.Alive; State is what the last operation left.
const (
	StateRunning = "running"
	StateStopped = "stopped"
	StateKilled  = "killed"
	StateFailed  = "failed"
)

// DefaultReadyTimeout bounds the wait for a component to become ready when the
// caller's context has no deadline. Postgres recovering after a crash and a
// broker replaying its log are the slow cases.
const DefaultReadyTimeout = 60 * time.Second

// DefaultStopTimeout is how long Stop waits after the polite signal before it
// sends SIGKILL.
const DefaultStopTimeout = 20 * time.Second

// portFreeTimeout bounds the wait for a component's port to be free before
// it starts.
const portFreeTimeout = 5 * time.Second

// Component is one supervised process: everything needed to signal it safely
// (PID and start time) and to start it again (argv, env, user, log file,
// readiness probe). It is stored as is in the stack file.
type Component struct {
	// Name is unique in a stack: postgres, redis, broker, gateway-0, worker-0...
	Name string `json:"name"`
	// Kind is one of the Kind* constants.
	Kind string `json:"kind"`
	// Endpoint is what clients connect to (URL or host:port); for a gateway
	// its internal listener's base URL (metrics, readiness, crash points),
	// its API being in Endpoints.Gateways.
	Endpoint string `json:"endpoint"`
	// PID and StartTime (clock ticks since boot, from /proc/PID/stat) identify
	// the running process; PID 0 means never started.
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	// Argv and Env (extra KEY=VALUE entries) restart the process.
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	// User is the OS user the process runs as; empty means the invoking user.
	User string `json:"user,omitempty"`
	// WorkDir is the process's working directory.
	WorkDir string `json:"work_dir,omitempty"`
	// DataDir holds the component's data, if any.
	DataDir string `json:"data_dir,omitempty"`
	// LogFile receives stdout and stderr, appended across restarts.
	LogFile string `json:"log_file"`
	// Ready tells when the process serves.
	Ready Probe `json:"ready"`
	// StopSignal asks the process to shut down cleanly (SIGINT for Postgres:
	// fast shutdown; SIGTERM for the others).
	StopSignal string `json:"stop_signal"`
	// NewSession starts the process in its own session, so it outlives the
	// command that started it.
	NewSession bool `json:"new_session"`
	// State is what the last operation left: running, stopped, killed, failed.
	State string `json:"state"`
	// ParentDeathSignal, if set, is sent to the process when the starting
	// process dies (test services). Not stored.
	ParentDeathSignal syscall.Signal `json:"-"`

	process *Process
}

// signalsByName are the signals a stack file may name.
var signalsByName = map[string]syscall.Signal{
	"SIGINT":  syscall.SIGINT,
	"SIGTERM": syscall.SIGTERM,
	"SIGQUIT": syscall.SIGQUIT,
	"SIGKILL": syscall.SIGKILL,
}

// Alive reports whether the component's recorded process is running (same PID
// and same start time).
func (c *Component) Alive() bool {
	return ProcessAlive(c.PID, c.StartTime)
}

// Status describes the component's live state: "running (PID n)" or the
// recorded state when the process is gone.
func (c *Component) Status() string {
	if c.Alive() {
		return fmt.Sprintf("%s (PID %d)", StateRunning, c.PID)
	}
	switch c.State {
	case StateRunning, "":
		return "dead (exited unexpectedly)"
	default:
		return c.State
	}
}

// Start starts the component's process and waits until its probe succeeds,
// bounded by ctx (DefaultReadyTimeout if ctx has no deadline). If the
// component is already running, Start only checks readiness. On failure the
// process is killed and the error includes the tail of the log.
func (c *Component) Start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	if c.Alive() {
		if err := c.Ready.WaitReady(ctx, nil); err != nil {
			return fmt.Errorf("%s: running but %w; log %s:\n%s", c.Name, err, c.LogFile, RunLogExcerpt(c.LogFile))
		}
		c.State = StateRunning
		return nil
	}
	if c.Kind == KindPostgres && c.DataDir != "" {
		// A primary that was failed over never comes back (standby.go).
		if err := checkNotFenced(c); err != nil {
			return err
		}
		if err := clearStalePostmaster(ctx, c.DataDir, postgresSocketDirectories(c.Argv)); err != nil {
			c.State = StateFailed
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.LogFile), 0o755); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	// Our probe must never mistake another server on the port for this one;
	// a port still held by a process that is exiting is waited for, briefly.
	portContext, cancel := context.WithTimeout(ctx, portFreeTimeout)
	err := poll(portContext, 50*time.Millisecond, func() error { return checkPortFree(c) })
	cancel()
	if err != nil {
		c.State = StateFailed
		return err
	}
	process, err := StartProcess(ProcessSpec{
		Argv:              c.Argv,
		Env:               c.Env,
		WorkDir:           c.WorkDir,
		LogFile:           c.LogFile,
		User:              c.User,
		NewSession:        c.NewSession,
		ParentDeathSignal: c.ParentDeathSignal,
	})
	if err != nil {
		c.State = StateFailed
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	c.process = process
	c.PID, c.StartTime = process.PID, process.StartTime
	c.State = StateRunning
	if err := c.Ready.WaitReady(ctx, process.Exited()); err != nil {
		_ = c.Kill()
		c.State = StateFailed
		if status, exited := process.ExitStatus(); exited && crash.OnPurpose(status) {
			err = fmt.Errorf("%w (exit status %d): %w", ErrCrashedOnPurpose, status, err)
		}
		return fmt.Errorf("%s: %w; log %s:\n%s", c.Name, err, c.LogFile, RunLogExcerpt(c.LogFile))
	}
	return nil
}

// ErrCrashedOnPurpose is Start's error when the process started and then,
// before it was ready, crashed on purpose (a crash point or the seeded
// between-commits crash: crash.OnPurpose): it ran, as a kill right after a
// start would leave it. A supervisor restarts it (RestartExited: the
// mutation matrix's, `ledgerproof chaos --supervise`).
var ErrCrashedOnPurpose = errors.New("crashed on purpose before it was ready")

// Stop asks the component to shut down with its stop signal, waits up to
// timeout (DefaultStopTimeout if zero), then kills it. Stopping a component
// that is not running only records the state.
func (c *Component) Stop(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	signal, ok := signalsByName[c.StopSignal]
	if !ok {
		signal = syscall.SIGTERM
	}
	if err := StopProcess(c.PID, c.StartTime, signal, timeout); err != nil {
		return fmt.Errorf("stop %s: %w", c.Name, err)
	}
	c.waitReaped()
	c.State = StateStopped
	return nil
}

// Kill sends SIGKILL to the component's process (for Postgres: the
// postmaster only, an immediate crash; its backends exit on their own) and
// waits, bounded, until it is gone.
func (c *Component) Kill() error {
	err := SignalProcess(c.PID, c.StartTime, syscall.SIGKILL)
	if err != nil && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("kill %s: %w", c.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitProcessExit(ctx, c.PID, c.StartTime); err != nil {
		return fmt.Errorf("kill %s: %w", c.Name, err)
	}
	c.waitReaped()
	c.State = StateKilled
	return nil
}

// Restart stops the component (cleanly, bounded by stopTimeout) and starts it.
func (c *Component) Restart(ctx context.Context, stopTimeout time.Duration) error {
	if err := c.Stop(stopTimeout); err != nil {
		return err
	}
	return c.Start(ctx)
}

// waitReaped waits briefly for our reaper goroutine when we started the
// process, so no zombie is left behind.
func (c *Component) waitReaped() {
	if c.process == nil || c.process.PID != c.PID {
		return
	}
	select {
	case <-c.process.Exited():
	case <-time.After(5 * time.Second):
	}
}

// RedisComponent describes a redis-server on 127.0.0.1:port without
// persistence (Redis is only a cache in this design), working in dir.
func RedisComponent(name string, port int, dir string) *Component {
	return &Component{
		Name:     name,
		Kind:     KindRedis,
		Endpoint: "127.0.0.1:" + strconv.Itoa(port),
		Argv: []string{"redis-server",
			"--bind", "127.0.0.1",
			"--port", strconv.Itoa(port),
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--daemonize", "no",
			"--protected-mode", "yes",
		},
		WorkDir:    dir,
		DataDir:    dir,
		LogFile:    filepath.Join(dir, "redis.log"),
		Ready:      Probe{Kind: ProbeRedis, Target: "127.0.0.1:" + strconv.Itoa(port)},
		StopSignal: "SIGTERM",
	}
}

// StartRedis starts a redis-server on 127.0.0.1:port in dir (created if
// missing) and waits for PING. newSession detaches it from the caller's
// session; tests pass false and rely on ParentDeathSignal instead.
func StartRedis(ctx context.Context, name string, port int, dir string, newSession bool, parentDeathSignal syscall.Signal) (*Component, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	component := RedisComponent(name, port, dir)
	component.NewSession = newSession
	component.ParentDeathSignal = parentDeathSignal
	if err := component.Start(ctx); err != nil {
		return nil, err
	}
	return component, nil
}

// PostgresComponent describes the postmaster of the cluster in options;
// database is the one its Endpoint URL names.
func PostgresComponent(name string, options PostgresOptions, database, logFile string) *Component {
	endpoint := PostgresURL(options.Port, database)
	return &Component{
		Name:       name,
		Kind:       KindPostgres,
		Endpoint:   endpoint,
		Argv:       PostgresArgv(options),
		User:       options.OSUser,
		WorkDir:    filepath.Dir(options.DataDir),
		DataDir:    options.DataDir,
		LogFile:    logFile,
		Ready:      Probe{Kind: ProbePostgres, Target: PostgresURL(options.Port, "postgres")},
		StopSignal: "SIGINT",
	}
}

// StartPostgres initialises the cluster if needed (initdb), starts its
// postmaster and waits until it accepts connections.
func StartPostgres(ctx context.Context, name string, options PostgresOptions, logFile string, newSession bool, parentDeathSignal syscall.Signal) (*Component, error) {
	binDir, err := PostgresBinDir(options.BinDir)
	if err != nil {
		return nil, err
	}
	options.BinDir = binDir
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := InitPostgres(ctx, options, logFile); err != nil {
		return nil, err
	}
	component := PostgresComponent(name, options, "postgres", logFile)
	component.NewSession = newSession
	component.ParentDeathSignal = parentDeathSignal
	if err := component.Start(ctx); err != nil {
		return nil, err
	}
	return component, nil
}

// clearStalePostmaster prepares a data directory whose postmaster was killed.
// It waits (bounded by ctx) until no process works in dataDir any more: the
// backends of a killed postmaster exit on their own soon after it (they call
// setsid, so they are found by their working directory, which Postgres sets
// to the data directory). Then, with nothing running there, a leftover
// postmaster.pid is stale and is removed: Postgres itself would refuse to
// start if the PID it names still exists, which happens when the dead
// postmaster is a zombie (a PID 1 that does not reap, as in many containers)
// or when the PID was reused. The same holds for the lock files of its unix
// sockets in socketDirectories.
func clearStalePostmaster(ctx context.Context, dataDir string, socketDirectories []string) error {
	directory, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := poll(ctx, 20*time.Millisecond, func() error {
		if pid := processWorkingIn(directory); pid > 0 {
			return fmt.Errorf("process %d (a postgres of the previous postmaster?) still runs in %s", pid, directory)
		}
		return nil
	}); err != nil {
		return err
	}
	lockFiles := []string{filepath.Join(directory, "postmaster.pid")}
	for _, socketDirectory := range socketDirectories {
		socketLocks, _ := filepath.Glob(filepath.Join(socketDirectory, ".s.PGSQL.*.lock"))
		lockFiles = append(lockFiles, socketLocks...)
	}
	for _, lockFile := range lockFiles {
		if err := os.Remove(lockFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", lockFile, err)
		}
	}
	return nil
}

// postgresSocketDirectories reads unix_socket_directories from a postmaster
// command line.
func postgresSocketDirectories(argv []string) []string {
	const prefix = "unix_socket_directories="
	var directories []string
	for _, argument := range argv {
		if value, ok := strings.CutPrefix(argument, prefix); ok {
			for _, directory := range strings.Split(value, ",") {
				if directory = strings.TrimSpace(directory); directory != "" {
					directories = append(directories, directory)
				}
			}
		}
	}
	return directories
}

// processWorkingIn returns the PID of a live process whose working directory
// is directory, or 0. Processes whose working directory cannot be read (other
// users, when not root) are not seen.
func processWorkingIn(directory string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		workingDirectory, err := os.Readlink("/proc/" + entry.Name() + "/cwd")
		if err != nil || workingDirectory != directory {
			continue
		}
		if stat, err := readProcStat(pid); err == nil && stat.state != 'Z' && stat.state != 'X' {
			return pid
		}
	}
	return 0
}
