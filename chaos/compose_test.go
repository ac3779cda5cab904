package chaos

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDocker records the command lines and answers `ps` with states.
type fakeDocker struct {
	mutex    sync.Mutex
	commands []string
	psAnswer []string // successive answers to ps; the last repeats
}

func (d *fakeDocker) run(ctx context.Context, argv []string) ([]byte, error) {
	d.mutex.Lock()
	defer d.mutex.Unlock()
	d.commands = append(d.commands, strings.Join(argv, " "))
	if len(argv) > 0 && contains(argv, "ps") {
		if len(d.psAnswer) == 0 {
			return nil, errors.New("no ps answer")
		}
		answer := d.psAnswer[0]
		if len(d.psAnswer) > 1 {
			d.psAnswer = d.psAnswer[1:]
		}
		return []byte(answer), nil
	}
	return nil, nil
}

func TestComposeExecutorCommands(t *testing.T) {
	docker := &fakeDocker{psAnswer: []string{
		`{"Service":"kafka-1","State":"running","Health":"starting"}`,
		`[{"Service":"kafka-1","State":"running","Health":"healthy"}]`,
	}}
	executor := NewComposeExecutor("docker-compose.yml", "lp")
	executor.Run = docker.run
	executor.ReadyPoll = time.Millisecond
	ctx := context.Background()
	steps := []struct {
		action Action
		target string
	}{
		{ActionKill, "broker"},
		{ActionStart, "broker"},
		{ActionStop, "postgres"},
		{ActionRestart, "broker-3"},
		{ActionPause, "redis"},
		{ActionResume, "redis"},
		{ActionKill, "worker-2"},
		{ActionStop, "gateway-1"},
	}
	for _, step := range steps {
		if err := executor.Process(ctx, step.action, step.target); err != nil {
			t.Fatalf("%s %s: %v", step.action, step.target, err)
		}
	}
	base := "docker compose -f docker-compose.yml -p lp "
	want := []string{
		base + "kill --signal SIGKILL kafka-1",
		base + "start kafka-1",
		base + "ps --all --format json kafka-1", // starting
		base + "ps --all --format json kafka-1", // healthy
		base + "stop postgres",
		base + "restart kafka-3",
		base + "ps --all --format json kafka-3",
		base + "pause redis",
		base + "unpause redis",
		base + "kill --signal SIGKILL worker-2",
		base + "stop gateway-1",
	}
	if !reflect.DeepEqual(docker.commands, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(docker.commands, "\n"), strings.Join(want, "\n"))
	}
}

func TestComposeExecutorWaitIsBounded(t *testing.T) {
	docker := &fakeDocker{psAnswer: []string{`{"Service":"redis","State":"exited","Health":""}`}}
	executor := NewComposeExecutor("docker-compose.yml", "")
	executor.Run = docker.run
	executor.ReadyPoll = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := executor.Process(ctx, ActionStart, "redis")
	if err == nil || !strings.Contains(err.Error(), "redis not healthy") || !strings.Contains(err.Error(), "redis exited") {
		t.Fatalf("err = %v", err)
	}
	if docker.commands[0] != "docker compose -f docker-compose.yml start redis" {
		t.Errorf("first command %q", docker.commands[0])
	}
}

func TestComposeInventoryFromTheRepositoryFile(t *testing.T) {
	executor := NewComposeExecutor("../docker-compose.yml", "")
	executor.Services = map[string]string{"postgres-standby": "postgres-replica"} // not in the file
	inventory, err := executor.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"broker", "broker-1", "broker-2", "broker-3", "gateway-1", "gateway-2", "postgres", "redis", "relay", "settler", "worker-1", "worker-2"}
	if !reflect.DeepEqual(inventory.Processes, want) {
		t.Fatalf("targets %v, want %v", inventory.Processes, want)
	}
	// A plan written for the local stack's zero-based names is rejected
	// against compose with the names compose has.
	plan, err := ParsePlan([]byte("duration: 10s\nsteps: [{at: 1s, action: kill, target: worker-0}]\n"), "local-names")
	if err != nil {
		t.Fatal(err)
	}
	timeline, _ := plan.Timeline(0, inventory)
	err = ValidateTargets(plan.Name, timeline, inventory)
	if err == nil || !strings.Contains(err.Error(), `target "worker-0" does not exist in this stack (it has broker, broker-1`) {
		t.Fatalf("err = %v", err)
	}
}
