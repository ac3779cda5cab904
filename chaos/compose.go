package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// CommandRunner runs a command line and returns its combined output. The
// compose executor runs docker through it, so tests can check the exact
// commands without a Docker engine.
type CommandRunner func(ctx context.Context, argv []string) ([]byte, error)

// RunCommand is the CommandRunner that runs the command for real.
func RunCommand(ctx context.Context, argv []string) ([]byte, error) {
	output, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return output, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(output)))
	}
	return output, nil
}

// ComposeExecutor applies faults to a docker compose project with `docker
// compose kill|stop|start|restart|pause|unpause SERVICE`. Plan targets map to
// services: broker → kafka-1, broker-N → kafka-N, postgres, postgres-standby
// and redis to the services of those names, worker-N and gateway-N to the
// services of those names (docker-compose.yml numbers them from 1:
// worker-1, worker-2, gateway-1, gateway-2). Services overrides the mapping.
type ComposeExecutor struct {
	// File is the compose file (-f). Required.
	File string
	// Project is the compose project name (-p). Default: compose's own
	// (the file's directory name).
	Project string
	// Services maps targets to services, over the default mapping.
	Services map[string]string
	// Brokers are the Kafka bootstrap addresses reachable from here, for
	// partition targets. Default the host listeners of docker-compose.yml:
	// localhost:29092, localhost:29093, localhost:29094.
	Brokers []string
	// Group and Topic of the workers. Defaults DefaultGroup, DefaultTopic.
	Group, Topic string
	// ReadyTimeout bounds the wait for a started service to be healthy when
	// the context has no deadline. Default 120s: a Kafka broker's health
	// check has a 30s start period.
	ReadyTimeout time.Duration
	// ReadyPoll is the pause between health checks. Default 1s.
	ReadyPoll time.Duration
	// Run runs docker. Default RunCommand.
	Run CommandRunner
	// Extensions are the optional fault kinds (links, failover, crash
	// points); nil: not supported.
	Extensions
}

// NewComposeExecutor returns an executor for the compose file with the
// documented defaults.
func NewComposeExecutor(file, project string) *ComposeExecutor {
	return &ComposeExecutor{
		File:         file,
		Project:      project,
		Brokers:      []string{"localhost:29092", "localhost:29093", "localhost:29094"},
		Group:        DefaultGroup,
		Topic:        DefaultTopic,
		ReadyTimeout: 120 * time.Second,
		ReadyPoll:    time.Second,
		Run:          RunCommand,
	}
}

// Describe implements Executor.
func (e *ComposeExecutor) Describe() string {
	if e.Project != "" {
		return fmt.Sprintf("docker compose %s (project %s)", e.File, e.Project)
	}
	return "docker compose " + e.File
}

var kafkaService = regexp.MustCompile(`^kafka-([1-9][0-9]*)$`)

// Service returns the compose service of a process target.
func (e *ComposeExecutor) Service(target string) string {
	if service, ok := e.Services[target]; ok {
		return service
	}
	if target == roleBroker {
		return "kafka-1"
	}
	if number, ok := strings.CutPrefix(target, roleBroker+"-"); ok {
		return "kafka-" + number
	}
	return target
}

// Inventory implements Executor: the targets whose service the compose file
// defines.
func (e *ComposeExecutor) Inventory(ctx context.Context) (Inventory, error) {
	content, err := os.ReadFile(e.File)
	if err != nil {
		return Inventory{}, fmt.Errorf("compose file: %w", err)
	}
	var compose struct {
		Services map[string]yaml.Node `yaml:"services"`
	}
	if err := yaml.Unmarshal(content, &compose); err != nil {
		return Inventory{}, fmt.Errorf("compose file %s: %w", e.File, err)
	}
	targets := map[string]bool{}
	for service := range compose.Services {
		switch {
		case kafkaService.MatchString(service):
			targets[roleBroker+"-"+kafkaService.FindStringSubmatch(service)[1]] = true
		default:
			if parsed, err := parseTarget(service); err == nil && !parsed.link && parsed.partition < 0 {
				targets[service] = true
			}
		}
	}
	if _, ok := compose.Services[e.Service(roleBroker)]; ok {
		targets[roleBroker] = true
	}
	for target, service := range e.Services {
		_, defined := compose.Services[service]
		targets[target] = defined
	}
	inventory := Inventory{}
	for target, present := range targets {
		if present {
			inventory.Processes = append(inventory.Processes, target)
		}
	}
	sort.Strings(inventory.Processes)
	e.Extensions.fill(&inventory)
	return inventory, nil
}

// PartitionOwner implements Executor: docker-compose.yml starts each worker
// with --group-instance-id equal to its service name.
func (e *ComposeExecutor) PartitionOwner(ctx context.Context, partition int) (string, error) {
	return partitionOwner(ctx, e.Brokers, e.Group, e.Topic, partition)
}

// composeVerbs are the docker compose subcommands of the process actions.
var composeVerbs = map[Action][]string{
	ActionKill:    {"kill", "--signal", "SIGKILL"},
	ActionStop:    {"stop"},
	ActionStart:   {"start"},
	ActionRestart: {"restart"},
	ActionPause:   {"pause"},
	ActionResume:  {"unpause"},
}

// Command returns the docker command line of a process action.
func (e *ComposeExecutor) Command(action Action, target string) ([]string, error) {
	verb, ok := composeVerbs[action]
	if !ok {
		return nil, fmt.Errorf("%s is not a process action", action)
	}
	argv := append(e.base(), verb...)
	return append(argv, e.Service(target)), nil
}

// base is `docker compose -f FILE [-p PROJECT]`.
func (e *ComposeExecutor) base() []string {
	argv := []string{"docker", "compose", "-f", e.File}
	if e.Project != "" {
		argv = append(argv, "-p", e.Project)
	}
	return argv
}

// Process implements Executor. Start and restart then wait until the
// service runs and its health check (if any) passes: `docker compose
// start` itself returns before.
func (e *ComposeExecutor) Process(ctx context.Context, action Action, target string) error {
	argv, err := e.Command(action, target)
	if err != nil {
		return err
	}
	if _, err := e.run(ctx, argv); err != nil {
		return err
	}
	if action == ActionStart || action == ActionRestart {
		return e.waitHealthy(ctx, e.Service(target))
	}
	return nil
}

func (e *ComposeExecutor) run(ctx context.Context, argv []string) ([]byte, error) {
	run := e.Run
	if run == nil {
		run = RunCommand
	}
	return run(ctx, argv)
}

// serviceState is one line of `docker compose ps --format json`.
type serviceState struct {
	Service string `json:"Service"`
	State   string `json:"State"`
	Health  string `json:"Health"`
}

// waitHealthy polls `docker compose ps --all --format json SERVICE` until the
// service's container runs and is healthy (or has no health check).
func (e *ComposeExecutor) waitHealthy(ctx context.Context, service string) error {
	if _, ok := ctx.Deadline(); !ok {
		timeout := e.ReadyTimeout
		if timeout <= 0 {
			timeout = 120 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	interval := e.ReadyPoll
	if interval <= 0 {
		interval = time.Second
	}
	argv := append(e.base(), "ps", "--all", "--format", "json", service)
	last := "no answer yet"
	for {
		output, err := e.run(ctx, argv)
		if err != nil {
			last = err.Error()
		} else {
			states, parseErr := parseComposePS(output)
			switch {
			case parseErr != nil:
				last = parseErr.Error()
			case len(states) == 0:
				last = "no container"
			default:
				ready := true
				var described []string
				for _, state := range states {
					described = append(described, fmt.Sprintf("%s %s %s", state.Service, state.State, state.Health))
					if state.State != "running" || (state.Health != "" && state.Health != "healthy") {
						ready = false
					}
				}
				if ready {
					return nil
				}
				last = strings.Join(described, "; ")
			}
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s not healthy: %w (last: %s)", service, ctx.Err(), last)
		case <-timer.C:
		}
	}
}

// parseComposePS reads `docker compose ps --format json`: a JSON array
// (compose before 2.21) or one JSON object per line (since).
func parseComposePS(output []byte) ([]serviceState, error) {
	trimmed := bytes.TrimSpace(output)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] == '[' {
		var states []serviceState
		if err := json.Unmarshal(trimmed, &states); err != nil {
			return nil, fmt.Errorf("docker compose ps: %w", err)
		}
		return states, nil
	}
	var states []serviceState
	for _, line := range bytes.Split(trimmed, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var state serviceState
		if err := json.Unmarshal(line, &state); err != nil {
			return nil, fmt.Errorf("docker compose ps: %w", err)
		}
		states = append(states, state)
	}
	return states, nil
}
