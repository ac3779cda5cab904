package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// LocalExecutor applies faults to the local stack of `ledgerproof up`
// through its stack file: process actions by signals and restarts of the
// recorded processes (stack.Operate, stack.Pause, stack.Resume), each
// identity-checked by PID and start time. Plan targets are the components'
// names (broker, postgres, redis, worker-0, gateway-1...).
type LocalExecutor struct {
	// Dir is the stack directory (holding stack.json).
	Dir string
	// Group is the workers' consumer group, for partition targets. Default
	// the workers' --group flag in the stack file, else "ledger-workers".
	Group string
	// Topic is the commands topic. Default "ledger.commands".
	Topic string
	// Extensions are the optional fault kinds (links, failover, crash
	// points); NewLocalExecutor sets those the stack supports.
	Extensions
}

// Defaults of the workers' consumer group and topic (the worker command's flags, cmd/ledgerproof).
const (
	DefaultGroup = "ledger-workers"
	DefaultTopic = "ledger.commands"
)

// NewLocalExecutor returns an executor for the stack in dir; it fails when
// dir has no readable stack file.
func NewLocalExecutor(dir string) (*LocalExecutor, error) {
	file, err := stack.Load(dir)
	if err != nil {
		return nil, err
	}
	executor := &LocalExecutor{Dir: dir, Group: DefaultGroup, Topic: DefaultTopic, Extensions: localExtensions(dir, file)}
	for _, component := range file.Components {
		if component.Kind != stack.KindWorker {
			continue
		}
		if group := flagValue(component.Argv, "group"); group != "" {
			executor.Group = group
		}
		if topic := flagValue(component.Argv, "topic"); topic != "" {
			executor.Topic = topic
		}
	}
	return executor, nil
}

// flagValue reads --name VALUE or --name=VALUE (or one dash) from argv.
func flagValue(argv []string, name string) string {
	for i, argument := range argv {
		trimmed := strings.TrimLeft(argument, "-")
		if trimmed == argument {
			continue
		}
		if value, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return value
		}
		if trimmed == name && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

// Describe implements Executor.
func (e *LocalExecutor) Describe() string { return "local stack " + e.Dir }

// Inventory implements Executor: the stack file's components and
// partitions, and what the extensions add.
func (e *LocalExecutor) Inventory(ctx context.Context) (Inventory, error) {
	file, err := stack.Load(e.Dir)
	if err != nil {
		return Inventory{}, err
	}
	inventory := Inventory{Partitions: file.Partitions}
	for _, component := range file.Components {
		inventory.Processes = append(inventory.Processes, component.Name)
	}
	e.Extensions.fill(&inventory)
	return inventory, nil
}

// PartitionOwner implements Executor through the consumer group: the local
// stack starts each worker with --group-instance-id equal to its name.
func (e *LocalExecutor) PartitionOwner(ctx context.Context, partition int) (string, error) {
	file, err := stack.Load(e.Dir)
	if err != nil {
		return "", err
	}
	return partitionOwner(ctx, file.Endpoints.Brokers, e.Group, e.Topic, partition)
}

// Process implements Executor.
func (e *LocalExecutor) Process(ctx context.Context, action Action, target string) error {
	var err error
	switch action {
	case ActionKill, ActionStop, ActionStart, ActionRestart:
		_, err = stack.Operate(ctx, e.Dir, target, string(action))
		if errors.Is(err, stack.ErrCrashedOnPurpose) {
			// Started, then crashed on purpose (a crash point, a seeded
			// crash) before its readiness probe passed: the step did what
			// it asked, as a kill right after it would; the run's
			// supervisor restarts the process.
			err = nil
		}
	case ActionPause:
		_, err = stack.Pause(ctx, e.Dir, target)
	case ActionResume:
		_, err = stack.Resume(ctx, e.Dir, target)
	default:
		return fmt.Errorf("%s is not a process action", action)
	}
	return err
}
