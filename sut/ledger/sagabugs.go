package ledger

// The seeded bugs of cross-shard sagas (docs/sharding.md). The saga
// executor (sut/postgres/saga.go) honours them; they join the catalogue
// (and so ParseBugs and the mutation matrix) when the sharded stack runs
// sagas in its workers: a bug the single stack cannot exercise would fail
// its mutation case.
const (
	// BugSagaNoCompensation: when the destination shard refuses a saga's
	// credit, the source shard marks the saga 'failed' and does not refund
	// the debit: money leaves the source and arrives nowhere.
	BugSagaNoCompensation Bug = "saga-no-compensation"
	// BugSagaDoubleCompensation: the compensation is not idempotent: it
	// refunds whenever the saga is not completed (an already compensated
	// saga is refunded again), and the recovery loop re-drives every saga
	// not completed, trusting it to be, so each recovery pass refunds a
	// compensated saga once more.
	BugSagaDoubleCompensation Bug = "saga-double-compensation"
)

// uncatalogued are seeded bugs ParseBugs accepts (and Describe describes)
// that are not in the catalogue (a catalogue bug must have its mutation
// case): none since the sharded stack's mutation cases put the saga bugs
// in the catalogue. A bug both here and in the catalogue is described by
// the catalogue's entry.
var uncatalogued []BugDescription

// SagaBugs are the seeded bugs of cross-shard sagas: they need a sharded
// ledger (a worker with shards to run sagas between).
func SagaBugs() Bugs {
	return Bugs{BugSagaDoubleCompensation, BugSagaNoCompensation}
}
