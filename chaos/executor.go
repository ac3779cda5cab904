package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Executor applies faults to one running stack: the local stack of
// `ledgerproof up` (LocalExecutor), a docker compose project
// (ComposeExecutor), or any other deployment (a Kubernetes executor would
// implement the same methods with `kubectl delete pod`, scale, and so on).
//
// Targets are the plan's vocabulary (see docs/chaos.md): the roles broker,
// postgres, postgres-standby and redis; numbered instances broker-N,
// worker-N and gateway-N; and the links gateway->broker, worker->broker,
// worker->postgres, gateway->redis and worker->redis. Each executor maps them
// to its own names (the compose executor maps broker to kafka-1). A
// `worker:partition=N` target is resolved by the runner through
// PartitionOwner just before its step runs, so the methods below always get
// a concrete target.
//
// Every method must be bounded by ctx and must touch only what belongs to the
// stack (the local executor signals only processes whose PID and start time
// match the stack file). A method that the stack cannot do returns an error
// wrapping ErrNotSupported that says how to start a stack that can.
type Executor interface {
	// Describe names the stack for logs: "local stack /abs/dir".
	Describe() string

	// Inventory lists what this stack has, so a plan can be checked against
	// it before anything runs (ValidateTargets).
	Inventory(ctx context.Context) (Inventory, error)

	// PartitionOwner returns the worker target (worker-N) that owns the
	// commands topic's partition now, from the consumer group.
	PartitionOwner(ctx context.Context, partition int) (string, error)

	// Process applies a process action (kill, stop, start, restart, pause,
	// resume) to a process target. Start and restart return once the
	// process is ready again (bounded by ctx); kill returns once the process
	// is gone.
	Process(ctx context.Context, action Action, target string) error

	// Link applies a fault to a link (gateway->broker, worker->broker,
	// worker->postgres, gateway->redis, worker->redis): add latency (with
	// jitter), cut it, limit its bandwidth, reset its connections, or heal
	// it (remove every fault on it). The fault stays until healed; a plan's
	// `duration` parameter becomes a heal step of its own.
	//
	// Implemented by the link-fault work (toxiproxy): a stack started with
	// --proxies routes each link through a proxy.
	Link(ctx context.Context, link string, params LinkParams) error

	// Failover kills the Postgres primary, promotes the synchronous standby
	// and returns once the promoted server accepts writes. Clients reconnect
	// through their multi-host connection strings (target_session_attrs).
	//
	// Implemented by the standby work: a stack started with
	// --postgres-standby.
	Failover(ctx context.Context) error

	// ArmCrashPoint makes process (gateway-N or worker-N) exit at the named
	// crash point the next time it gets there, e.g. between the Postgres
	// commit and the Redis update. The process dies as if killed; restarting
	// it is the plan's business.
	//
	// Implemented by the crash-point work: a stack started with
	// --crash-points (an admin endpoint on gateways and workers).
	ArmCrashPoint(ctx context.Context, process, point string) error
}

// Inventory is what a stack has, in plan targets.
type Inventory struct {
	// Processes are the process targets: broker, postgres, redis, worker-0...
	Processes []string
	// Partitions of the commands topic; 0 when unknown (then partition
	// targets are checked only at run time).
	Partitions int
	// Links are the link targets that can take faults; empty when the stack
	// has no fault proxies.
	Links []string
	// Failover says the stack has a standby to fail over to.
	Failover bool
	// CrashPoints are the crash points processes can arm; empty when the
	// stack was started without them.
	CrashPoints []string
	// CommandsOnly says the system takes command steps only (an external
	// system: nothing of it is known by name).
	CommandsOnly bool
}

// has reports whether the inventory lists the process target.
func (i Inventory) has(target string) bool {
	for _, process := range i.Processes {
		if process == target {
			return true
		}
	}
	return false
}

// workers lists the worker targets, in inventory order.
func (i Inventory) workers() []string { return i.ofKind(roleWorker) }

// gateways lists the gateway targets, in inventory order.
func (i Inventory) gateways() []string { return i.ofKind(roleGateway) }

func (i Inventory) ofKind(role string) []string {
	var names []string
	for _, process := range i.Processes {
		if parsed, err := parseTarget(process); err == nil && parsed.role == role && parsed.instance >= 0 {
			names = append(names, process)
		}
	}
	return names
}

// LinkParams is a link fault, validated by the plan.
type LinkParams struct {
	// Fault is one of FaultLatency, FaultCut, FaultBandwidth, FaultReset,
	// FaultHeal.
	Fault string
	// Latency is added to every packet (FaultLatency), Jitter is the random
	// ± spread around it.
	Latency time.Duration
	Jitter  time.Duration
	// RateKilobytesPerSecond caps throughput (FaultBandwidth).
	RateKilobytesPerSecond int
}

// The link faults.
const (
	FaultLatency   = "latency"
	FaultCut       = "cut"
	FaultBandwidth = "bandwidth"
	FaultReset     = "reset"
	FaultHeal      = "heal"
)

// ErrNotSupported says a stack cannot apply an action; the wrapping error
// says how to start a stack that can.
var ErrNotSupported = errors.New("not supported by this stack")

// Errors of the actions whose executors other work provides.
var (
	errLinksNotSupported       = fmt.Errorf("link faults are %w (start it with --proxies)", ErrNotSupported)
	errFailoverNotSupported    = fmt.Errorf("failover is %w (start it with --postgres-standby)", ErrNotSupported)
	errCrashPointsNotSupported = fmt.Errorf("crash points are %w (start its gateways and workers with --enable-crash-points)", ErrNotSupported)
)

// LinkFaulter applies link faults for an executor; LocalExecutor.Links and
// ComposeExecutor.Links take one.
type LinkFaulter interface {
	// Links lists the links it can fault.
	Links() []string
	// Link applies params to link (see Executor.Link).
	Link(ctx context.Context, link string, params LinkParams) error
}

// Failoverer fails Postgres over to its standby for an executor.
type Failoverer interface {
	// Failover: see Executor.Failover.
	Failover(ctx context.Context) error
}

// CrashPointArmer arms crash points in processes for an executor.
type CrashPointArmer interface {
	// CrashPoints lists the points a process can arm.
	CrashPoints() []string
	// ArmCrashPoint: see Executor.ArmCrashPoint.
	ArmCrashPoint(ctx context.Context, process, point string) error
}

// Extensions holds the optional fault kinds of an executor. The executors
// embed it, so the link, failover and crash-point work plug in by setting a
// field, without changing the executors.
type Extensions struct {
	// Links applies link faults; nil: the stack has no fault proxies.
	Links LinkFaulter
	// Failovers fails Postgres over; nil: the stack has no standby.
	Failovers Failoverer
	// CrashPoints arms crash points; nil: the processes run without them.
	CrashPoints CrashPointArmer
}

// Link implements Executor.Link.
func (e *Extensions) Link(ctx context.Context, link string, params LinkParams) error {
	if e.Links == nil {
		return errLinksNotSupported
	}
	return e.Links.Link(ctx, link, params)
}

// Failover implements Executor.Failover.
func (e *Extensions) Failover(ctx context.Context) error {
	if e.Failovers == nil {
		return errFailoverNotSupported
	}
	return e.Failovers.Failover(ctx)
}

// ArmCrashPoint implements Executor.ArmCrashPoint.
func (e *Extensions) ArmCrashPoint(ctx context.Context, process, point string) error {
	if e.CrashPoints == nil {
		return errCrashPointsNotSupported
	}
	return e.CrashPoints.ArmCrashPoint(ctx, process, point)
}

// fill adds the extensions' capabilities to an inventory.
func (e *Extensions) fill(inventory *Inventory) {
	if e.Links != nil {
		inventory.Links = append([]string(nil), e.Links.Links()...)
	}
	inventory.Failover = e.Failovers != nil
	if e.CrashPoints != nil {
		inventory.CrashPoints = append([]string(nil), e.CrashPoints.CrashPoints()...)
	}
}
