package ledger

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Bug names a deliberate mistake the reference system can be started with,
// so the harness can prove its checkers fail when money is lost or
// duplicated (a checker that never fails proves nothing). Each bug is a
// faithful copy of a real mistake and lives in one place in the code; see
// docs/seeded-bugs.md for where, how it shows, and which fault it needs.
type Bug string

// The seeded bugs.
const (
	// BugSkipDedupe: the worker does not drop commands whose key already has
	// an effect, and commits its consumer offset after the postings in a
	// second transaction (at least once), as a system that relies on the key
	// dedupe alone does. A redelivered or duplicated command is applied
	// again.
	BugSkipDedupe Bug = "skip-dedupe"
	// BugReadModifyWriteWithoutLock: the worker reads balances without
	// FOR UPDATE and writes back absolute values computed in memory, so two
	// batches touching one account lose one of the updates.
	BugReadModifyWriteWithoutLock Bug = "rmw-without-lock"
	// BugAcknowledgeBeforeCommit: the gateway answers 202 as soon as the
	// command is handed to the producer, before the broker acknowledged it;
	// a command the producer then fails to deliver (gateway crash, broker
	// outage past the delivery timeout) was acknowledged and is lost.
	BugAcknowledgeBeforeCommit Bug = "ack-before-commit"
	// BugOffsetBeforePostings: the worker stores the partition's next offset
	// in a transaction committed before the postings' transaction; a crash
	// or a failure between the two loses the batch.
	BugOffsetBeforePostings Bug = "offset-before-postings"
	// BugConcurrentPartition: the worker applies one partition's batch as
	// several transactions in parallel instead of strictly in order, so one
	// account's commands can be applied out of order.
	BugConcurrentPartition Bug = "concurrent-partition"
	// BugTrustCacheBalance: the worker's overdraft check reads the Redis
	// cached balance (stale within a batch and across workers) instead of
	// the locked row, and the ledger has no balance >= 0 constraint to stop
	// it: overdrafts.
	BugTrustCacheBalance Bug = "trust-cache-balance"
	// BugNoIdempotency: the gateway ignores the Idempotency-Key for dedupe:
	// every request, every retry, is a new transaction with a fresh id.
	BugNoIdempotency Bug = "no-idempotency"
	// BugBloomOnlyDedupe: the worker's Bloom filter of recent transaction
	// ids alone decides that a command is new: a negative skips the exact
	// lookup with no backstop (the ledger has no unique key on the id or
	// the client key), and the filter starts empty at every start, so a
	// command applied before a restart, or by another worker, is applied
	// again when it reaches the worker once more.
	BugBloomOnlyDedupe Bug = "bloom-only-dedupe"
	// BugLimitRace: the worker does not check the daily debit limit under
	// its lock; it only counts each day's debits after applying them, so
	// the limit rests on the gateway's soft check of the counted (lagging)
	// total, and concurrent debits of one user near the limit all pass.
	BugLimitRace Bug = "limit-race"
	// BugOutboxOutsideTx: the worker writes a batch's settlement events to
	// the outbox after the batch's commit, from an in-memory queue flushed
	// a moment later, instead of in the batch's transaction: a worker that
	// dies before the flush loses them (settled, never announced).
	BugOutboxOutsideTx Bug = "outbox-outside-tx"
	// BugSettlementNoDedupe: the settler applies every settlement event it
	// reads without looking the transaction up, and commits its consumer
	// offset apart from the effects, every second (as Kafka's auto-commit
	// does): an event read again after a settler restart, or published
	// again by the relay, is applied twice.
	BugSettlementNoDedupe Bug = "settlement-no-dedupe"
)

// Process is a process kind of the reference system a bug lives in.
type Process string

// The processes of the reference system that can carry seeded bugs.
const (
	ProcessGateway Process = "gateway"
	ProcessWorker  Process = "worker"
	// ProcessRelay publishes the outbox; ProcessSettler applies the
	// settlement events (docs/settlement.md).
	ProcessRelay   Process = "relay"
	ProcessSettler Process = "settler"
)

// BugDescription describes one seeded bug of the catalogue.
type BugDescription struct {
	Bug Bug
	// Process is the process the bug lives in; other processes ignore it.
	Process Process
	// Summary says what the bug does, in one sentence.
	Summary string
}

// catalogue is every seeded bug, in the order documentation lists them.
var catalogue = []BugDescription{
	{BugSkipDedupe, ProcessWorker, "the worker applies a command again when its key already has an effect, and commits its offset after the postings (at least once)"},
	{BugReadModifyWriteWithoutLock, ProcessWorker, "the worker reads balances without FOR UPDATE and writes absolute values: concurrent batches lose updates"},
	{BugAcknowledgeBeforeCommit, ProcessGateway, "the gateway answers 202 before the broker acknowledged the command"},
	{BugOffsetBeforePostings, ProcessWorker, "the worker commits the partition's offset in a transaction before the postings' transaction"},
	{BugConcurrentPartition, ProcessWorker, "the worker applies one partition's batch as parallel transactions, out of order"},
	{BugTrustCacheBalance, ProcessWorker, "the worker's overdraft check trusts the Redis cached balance, and the ledger has no balance >= 0 check"},
	{BugNoIdempotency, ProcessGateway, "the gateway ignores the Idempotency-Key: every retry is a new transaction"},
	{BugBloomOnlyDedupe, ProcessWorker, "the worker trusts its Bloom filter's negatives (empty after a restart) with no exact lookup and no unique key behind them"},
	{BugLimitRace, ProcessWorker, "the worker counts a user's daily debits after applying them instead of checking the limit under its lock: only the gateway's lagging soft check guards the limit"},
	{BugOutboxOutsideTx, ProcessWorker, "the worker writes settlement events to the outbox after the batch's commit, from a memory queue: a crash loses them"},
	{BugSettlementNoDedupe, ProcessSettler, "the settler applies every settlement event it reads without dedupe, and commits its offset apart from the effects"},
	// The saga bugs need a sharded stack (SagaBugs; their mutation cases run on one).
	{BugSagaNoCompensation, ProcessWorker, "a saga whose destination shard cancelled the credit is marked failed and its debit kept: money leaves the source and arrives nowhere"},
	{BugSagaDoubleCompensation, ProcessWorker, "a saga's compensation refunds again whenever the saga is not completed, and every recovery pass re-drives compensated sagas"},
}

// conflictingBugs are the bugs that each change where the worker stores a
// partition's offset; at most one of them can be active.
var conflictingBugs = []Bug{BugSkipDedupe, BugOffsetBeforePostings, BugConcurrentPartition}

// Catalogue returns every seeded bug.
func Catalogue() []BugDescription {
	return append([]BugDescription(nil), catalogue...)
}

// Describe returns the catalogue entry of bug; ok is false for an unknown
// name.
func (b Bug) Describe() (description BugDescription, ok bool) {
	for _, entry := range append(Catalogue(), uncatalogued...) {
		if entry.Bug == b {
			return entry, true
		}
	}
	return BugDescription{}, false
}

// ErrSeededBugsNotAllowed is returned by ParseBugs when bugs are named but
// the unsafe switch was not given.
var ErrSeededBugsNotAllowed = errors.New("seeded bugs make the system lose or duplicate money on purpose and are refused without the unsafe switch")

// Bugs is a set of seeded bugs, sorted and without repeats. The zero value
// is the correct system.
type Bugs []Bug

// ParseBugs turns bug names into a set. Each name may be a comma-separated
// list; blanks are ignored. It rejects unknown names, the bugs that cannot
// be combined, and any bug at all unless unsafeAllowed is true (the error
// then wraps ErrSeededBugsNotAllowed). No names gives the empty set, with or
// without unsafeAllowed.
func ParseBugs(names []string, unsafeAllowed bool) (Bugs, error) {
	seen := map[Bug]bool{}
	var bugs Bugs
	var unknown []string
	for _, list := range names {
		for _, name := range strings.Split(list, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			bug := Bug(name)
			if _, ok := bug.Describe(); !ok {
				unknown = append(unknown, fmt.Sprintf("%q", name))
				continue
			}
			if !seen[bug] {
				seen[bug] = true
				bugs = append(bugs, bug)
			}
		}
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(catalogue))
		for _, entry := range catalogue {
			known = append(known, string(entry.Bug))
		}
		return nil, fmt.Errorf("unknown seeded bug %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	sort.Slice(bugs, func(i, j int) bool { return bugs[i] < bugs[j] })
	if err := bugs.validate(); err != nil {
		return nil, err
	}
	if len(bugs) > 0 && !unsafeAllowed {
		return nil, fmt.Errorf("%w: %s", ErrSeededBugsNotAllowed, bugs)
	}
	return bugs, nil
}

// validate rejects combinations of bugs that contradict each other.
func (b Bugs) validate() error {
	var offsetBugs []string
	for _, bug := range conflictingBugs {
		if b.Has(bug) {
			offsetBugs = append(offsetBugs, string(bug))
		}
	}
	if len(offsetBugs) > 1 {
		return fmt.Errorf("seeded bugs %s each change where the worker stores the offset; pick one", strings.Join(offsetBugs, " and "))
	}
	if len(offsetBugs) > 0 && b.Has(BugOutboxOutsideTx) {
		return fmt.Errorf("seeded bug %s moves the outbox out of the reference commit, which %s replaces; pick one", BugOutboxOutsideTx, offsetBugs[0])
	}
	return nil
}

// Has reports whether bug is in the set.
func (b Bugs) Has(bug Bug) bool {
	for _, candidate := range b {
		if candidate == bug {
			return true
		}
	}
	return false
}

// For splits the set into the bugs that live in process and the others,
// which that process ignores.
func (b Bugs) For(process Process) (concerned, ignored Bugs) {
	for _, bug := range b {
		if description, _ := bug.Describe(); description.Process == process {
			concerned = append(concerned, bug)
		} else {
			ignored = append(ignored, bug)
		}
	}
	return concerned, ignored
}

// String lists the bugs comma-separated, or "none".
func (b Bugs) String() string {
	if len(b) == 0 {
		return "none"
	}
	names := make([]string, len(b))
	for i, bug := range b {
		names[i] = string(bug)
	}
	return strings.Join(names, ",")
}
