package chaos

import (
	"context"
	"fmt"
)

// errExternal says what an external system's plan may contain.
var errExternal = fmt.Errorf("%w: an external system takes command steps (action: command, params.run: your docker, systemctl or kubectl command; docs/chaos.md)", ErrNotSupported)

// ExternalExecutor is the executor of a system Ledgerproof did not start:
// it knows none of its processes or links, so a plan against it is made of
// command steps, which the runner runs itself. Every other action is
// refused, by ValidateTargets before the run (the inventory is empty) and
// here should one get through.
type ExternalExecutor struct {
	// Name describes the system for logs: its base URL.
	Name string
}

// Describe names the system.
func (e ExternalExecutor) Describe() string { return "external system " + e.Name }

// Inventory is empty: nothing of an external system is known by name.
func (e ExternalExecutor) Inventory(context.Context) (Inventory, error) {
	return Inventory{CommandsOnly: true}, nil
}

// PartitionOwner is not known for an external system.
func (e ExternalExecutor) PartitionOwner(context.Context, int) (string, error) {
	return "", errExternal
}

// Process is refused: use a command step.
func (e ExternalExecutor) Process(context.Context, Action, string) error { return errExternal }

// Link is refused: use a command step.
func (e ExternalExecutor) Link(context.Context, string, LinkParams) error { return errExternal }

// Failover is refused: use a command step.
func (e ExternalExecutor) Failover(context.Context) error { return errExternal }

// ArmCrashPoint is refused: use a command step.
func (e ExternalExecutor) ArmCrashPoint(context.Context, string, string) error { return errExternal }
