// Package crash holds the reference system's crash points: named places in
// the gateway and the worker where a process can be made to die on purpose,
// at the one instant a chaos drill wants to prove harmless (after the
// Postgres commit and before the Redis update, after the broker's
// acknowledgement and before the HTTP response, inside a batch's open
// transaction). A kill from outside lands wherever the process happens to be;
// a crash point lands exactly in the window.
//
// Each point is one call at its place in the code:
//
//	crash.Hit(crash.AfterCommitBeforeCache)
//
// Hit consults the registry the process installed (Install) and, when the
// point is armed and due, logs one line to stderr and exits with ExitStatus
// at once: os.Exit, no deferred function, no flush, no graceful shutdown, as
// close to a kill as a process can do to itself. A process that installed no
// registry (started without --enable-crash-points) pays one atomic load per
// Hit; one with a registry and the point not armed, two.
//
// See docs/crash-points.md.
package crash

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// ExitStatus is the exit status of a process that hit an armed crash point:
// distinct from a failure (1), a usage error (2) and the seeded bugs'
// between-commits crash (86), so a supervisor or a test can tell a crash
// point from any other death.
const ExitStatus = 87

// SeededCrashExitStatus is the exit status of the seeded bugs'
// between-commits crash (the worker's BetweenCommitsCrash).
const SeededCrashExitStatus = 86

// OnPurpose reports whether an exit status is a crash the process made on
// purpose (a crash point or the seeded between-commits crash), as a kill
// would, rather than a failure.
func OnPurpose(exitStatus int) bool {
	return exitStatus == ExitStatus || exitStatus == SeededCrashExitStatus
}

// Point is a named crash point.
type Point uint8

// The crash points. Their names (String) are the contract of the flags, the
// admin endpoint and the chaos plans.
const (
	// AfterCommitBeforeCache is in the worker, after a batch's Postgres
	// transaction committed and before the Redis update of its balances and
	// outcomes (worker.afterCommit). It is hit once per committed batch that
	// has a cache update to make.
	AfterCommitBeforeCache Point = iota + 1
	// AfterAckBeforeResponse is in the gateway, after the broker
	// acknowledged a money command and before the HTTP response is written
	// (gateway.queueCommand). It is hit once per acknowledged command.
	AfterAckBeforeResponse
	// MidBatch is in the worker, inside a batch's open Postgres transaction:
	// the batch's transactions, postings, balances and the partition's next
	// offset have been written, and COMMIT has not been sent
	// (postgres.applyWithOffset). It is hit once per batch that has records
	// to apply.
	MidBatch
	// MidSaga is in a sharded worker, in a cross-shard transfer's saga
	// after its debit and saga log committed in the source shard and before
	// the destination shard is asked to credit (postgres.ShardedLedger): the
	// saga is in flight, its command's offset not moved. It is hit once per
	// saga debited.
	MidSaga

	pointLimit // one past the last point; the size of a registry's table
)

// pointDescription says where a point lives and what a crash there proves.
type pointDescription struct {
	name    string
	process ledger.Process
}

var pointDescriptions = [pointLimit]pointDescription{
	AfterCommitBeforeCache: {"worker.after-commit-before-cache", ledger.ProcessWorker},
	AfterAckBeforeResponse: {"gateway.after-ack-before-response", ledger.ProcessGateway},
	MidBatch:               {"worker.mid-batch", ledger.ProcessWorker},
	MidSaga:                {"worker.mid-saga", ledger.ProcessWorker},
}

// Points returns every crash point, in declaration order.
func Points() []Point {
	points := make([]Point, 0, pointLimit-1)
	for point := Point(1); point < pointLimit; point++ {
		points = append(points, point)
	}
	return points
}

func (p Point) valid() bool { return p > 0 && p < pointLimit }

// String returns the point's full name, "process.point".
func (p Point) String() string {
	if !p.valid() {
		return "crash-point(" + strconv.Itoa(int(p)) + ")"
	}
	return pointDescriptions[p].name
}

// Process returns the kind of process the point lives in.
func (p Point) Process() ledger.Process {
	if !p.valid() {
		return ""
	}
	return pointDescriptions[p].process
}

// pointNames lists the full names, for error messages.
func pointNames() string {
	names := make([]string, 0, pointLimit-1)
	for _, point := range Points() {
		names = append(names, point.String())
	}
	return strings.Join(names, ", ")
}

// ParsePoint returns the point called name: its full name
// ("worker.mid-batch"), or its short name ("mid-batch") when process is set
// and the point lives there.
func ParsePoint(name string, process ledger.Process) (Point, error) {
	name = strings.TrimSpace(name)
	for _, point := range Points() {
		if point.String() == name || (process != "" && point.String() == string(process)+"."+name) {
			return point, nil
		}
	}
	return 0, fmt.Errorf("unknown crash point %q (known: %s)", name, pointNames())
}

// Arming says when an armed point fires. The zero After and Probability
// mean the next hit.
type Arming struct {
	Point Point
	// After makes the point fire on its After-th hit counted from the
	// arming (1: the next hit), once; the point is disarmed when it fires.
	// Default 1.
	After int64
	// Probability, when set, makes every hit fire with this probability
	// instead (draws from the registry's seeded generator); the point stays
	// armed. In (0, 1]. Exclusive with After.
	Probability float64
}

// MaxAfter bounds Arming.After: a larger count is a mistake, not a plan.
const MaxAfter = 1_000_000_000

func (a *Arming) validate() error {
	if !a.Point.valid() {
		return fmt.Errorf("crash point %d does not exist (known: %s)", a.Point, pointNames())
	}
	switch {
	case a.Probability != 0 && a.After != 0:
		return fmt.Errorf("crash point %s: give a count or a probability, not both", a.Point)
	case math.IsNaN(a.Probability) || a.Probability < 0 || a.Probability > 1:
		return fmt.Errorf("crash point %s: probability %g is not in (0, 1]", a.Point, a.Probability)
	case a.After < 0 || a.After > MaxAfter:
		return fmt.Errorf("crash point %s: count %d is not between 1 and %d", a.Point, a.After, MaxAfter)
	}
	if a.Probability == 0 && a.After == 0 {
		a.After = 1
	}
	return nil
}

// String is the flag form of the arming: NAME, NAME:COUNT or NAME@PROBABILITY.
func (a Arming) String() string {
	switch {
	case a.Probability > 0:
		return a.Point.String() + "@" + strconv.FormatFloat(a.Probability, 'g', -1, 64)
	case a.After > 1:
		return a.Point.String() + ":" + strconv.FormatInt(a.After, 10)
	default:
		return a.Point.String()
	}
}

// ParseArming parses the flag form NAME[:COUNT|@PROBABILITY]: NAME fires on
// the next hit, NAME:COUNT on the COUNT-th, NAME@P on each hit with
// probability P. NAME is a full point name, or a short one of process.
func ParseArming(text string, process ledger.Process) (Arming, error) {
	name, count, hasCount := strings.Cut(text, ":")
	var probability string
	hasProbability := false
	if !hasCount {
		name, probability, hasProbability = strings.Cut(text, "@")
	}
	point, err := ParsePoint(name, process)
	if err != nil {
		return Arming{}, err
	}
	arming := Arming{Point: point}
	switch {
	case hasCount:
		if arming.After, err = strconv.ParseInt(count, 10, 64); err != nil || arming.After < 1 {
			return Arming{}, fmt.Errorf("crash point %q: count %q is not a positive integer", text, count)
		}
	case hasProbability:
		if arming.Probability, err = strconv.ParseFloat(probability, 64); err != nil || arming.Probability <= 0 {
			return Arming{}, fmt.Errorf("crash point %q: probability %q is not in (0, 1]", text, probability)
		}
	}
	if err := arming.validate(); err != nil {
		return Arming{}, err
	}
	return arming, nil
}

// Status is an armed point's state.
type Status struct {
	Point Point
	// After and Probability are the arming's (After 0 with a probability).
	After       int64
	Probability float64
	// Hits counts the hits since the arming.
	Hits int64
}

// answerWait bounds how long a firing point waits for the answer to the
// request that armed it.
const answerWait = 5 * time.Second

// armed is an entry of a registry's table.
type armed struct {
	Arming
	hits atomic.Int64
	// answered is closed once whoever armed the point has had its answer:
	// a hit that fires waits for it, so a point armed over the admin API
	// and hit at once does not end the process before the answer left.
	answered chan struct{}
}

// Registry holds a process's armed crash points.
type Registry struct {
	process ledger.Process
	table   [pointLimit]atomic.Pointer[armed]
	logger  *slog.Logger
	exit    func(code int)
	seed    uint64

	randomMutex sync.Mutex
	random      *rand.Rand
}

// Options configure a Registry.
type Options struct {
	// Process is the kind of process the registry belongs to; only its
	// points can be armed. Required.
	Process ledger.Process
	// Seed seeds the probability draws. Default 0: one is drawn, and
	// Seed() returns it so it can be logged and the run replayed.
	Seed uint64
	// Logger receives the arming changes and the last line before a crash.
	// Default slog.Default().
	Logger *slog.Logger
	// Exit ends the process. Default os.Exit; tests replace it to observe a
	// crash and live on.
	Exit func(code int)
}

// NewRegistry returns a registry with nothing armed.
func NewRegistry(options Options) (*Registry, error) {
	if options.Process != ledger.ProcessGateway && options.Process != ledger.ProcessWorker {
		return nil, fmt.Errorf("crash points: process %q has none (want %s or %s)", options.Process, ledger.ProcessGateway, ledger.ProcessWorker)
	}
	if options.Logger == nil {
		options.Logger = slog.Default()
	}
	if options.Exit == nil {
		options.Exit = os.Exit
	}
	if options.Seed == 0 {
		options.Seed = rand.Uint64() | 1
	}
	return &Registry{process: options.Process, logger: options.Logger, exit: options.Exit, seed: options.Seed,
		random: rand.New(rand.NewPCG(options.Seed, options.Seed))}, nil
}

// Process returns the kind of process the registry belongs to.
func (r *Registry) Process() ledger.Process { return r.process }

// Seed returns the seed of the probability draws.
func (r *Registry) Seed() uint64 { return r.seed }

// Arm arms a point of the registry's process, replacing any earlier arming
// of it (the hit count starts again from zero).
func (r *Registry) Arm(arming Arming) (Status, error) {
	status, answered, err := r.armAnswering(arming)
	answered()
	return status, err
}

// armAnswering arms like Arm, but the point cannot fire before answered is
// called (the admin handler calls it once its answer is flushed).
func (r *Registry) armAnswering(arming Arming) (Status, func(), error) {
	arming, err := r.check(arming)
	if err != nil {
		return Status{}, func() {}, err
	}
	entry := &armed{Arming: arming, answered: make(chan struct{})}
	var once sync.Once
	answered := func() { once.Do(func() { close(entry.answered) }) }
	r.table[arming.Point].Store(entry)
	r.logger.Warn("CRASH POINT ARMED: this process will exit on purpose", "point", arming.Point.String(),
		"after", arming.After, "probability", arming.Probability, "crash_point_seed", r.seed, "exit_status", ExitStatus)
	return entry.status(), answered, nil
}

// check validates an arming for this registry's process and returns it
// completed (a bare point fires on its first hit).
func (r *Registry) check(arming Arming) (Arming, error) {
	if err := arming.validate(); err != nil {
		return Arming{}, err
	}
	if process := arming.Point.Process(); process != r.process {
		return Arming{}, fmt.Errorf("crash point %s lives in the %s, and this process is a %s", arming.Point, process, r.process)
	}
	return arming, nil
}

// Disarm disarms a point; it reports whether it was armed.
func (r *Registry) Disarm(point Point) bool {
	if !point.valid() {
		return false
	}
	disarmed := r.table[point].Swap(nil) != nil
	if disarmed {
		r.logger.Info("crash point disarmed", "point", point.String())
	}
	return disarmed
}

// DisarmAll disarms every point and returns how many were armed.
func (r *Registry) DisarmAll() int {
	count := 0
	for _, point := range Points() {
		if r.Disarm(point) {
			count++
		}
	}
	return count
}

// Armed returns the armed points, in declaration order.
func (r *Registry) Armed() []Status {
	var statuses []Status
	for _, point := range Points() {
		if entry := r.table[point].Load(); entry != nil {
			statuses = append(statuses, entry.status())
		}
	}
	return statuses
}

func (a *armed) status() Status {
	return Status{Point: a.Point, After: a.After, Probability: a.Probability, Hits: a.hits.Load()}
}

// Hit is the crash point itself: when point is armed and due, it logs one
// line and ends the process with ExitStatus. Safe for concurrent use: of
// many goroutines hitting a point armed with a count, exactly one fires.
func (r *Registry) Hit(point Point) {
	entry := r.table[point].Load()
	if entry == nil {
		return
	}
	hit := entry.hits.Add(1)
	if entry.Probability > 0 {
		if !r.draw(entry.Probability) {
			return
		}
	} else {
		if hit != entry.After {
			return
		}
		// One shot: a test's Exit returns, and the point must not fire again.
		r.table[point].CompareAndSwap(entry, nil)
	}
	// The caller that armed it has its answer first (bounded: a caller that
	// went away must not keep the process alive).
	select {
	case <-entry.answered:
	case <-time.After(answerWait):
	}
	r.logger.Error(fmt.Sprintf("CRASH POINT %s HIT: exiting with status %d, like a kill", point, ExitStatus),
		"point", point.String(), "hit", hit, "after", entry.After, "probability", entry.Probability,
		"crash_point_seed", r.seed, "exit_status", ExitStatus)
	r.exit(ExitStatus)
}

func (r *Registry) draw(probability float64) bool {
	r.randomMutex.Lock()
	defer r.randomMutex.Unlock()
	return r.random.Float64() < probability
}

// installed is the registry Hit consults. It is process-wide state on
// purpose: a crash point is a property of the process (it ends it), and one
// call at the point's place, with no registry threaded through the layers
// between cmd and the point, is what keeps the points cheap and easy to find.
var installed atomic.Pointer[Registry]

// Install makes Hit consult registry (nil: no crash point fires). cmd calls
// it once at start, only under --enable-crash-points.
func Install(registry *Registry) { installed.Store(registry) }

// Installed returns the installed registry, or nil.
func Installed() *Registry { return installed.Load() }

// Hit is the crash point: when the process's installed registry has point
// armed and due, it logs one line to stderr and exits with ExitStatus. Without
// an installed registry it costs one atomic load.
func Hit(point Point) {
	if registry := installed.Load(); registry != nil {
		registry.Hit(point)
	}
}

// ErrNotEnabled is returned when crash points are asked for in a process not
// started with --enable-crash-points.
var ErrNotEnabled = errors.New("crash points are disabled in this process (start it with --enable-crash-points)")
