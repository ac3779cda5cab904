package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mergeCompose merges an override file over a base one as `docker compose -f
// base -f override` does for what the checks read: a service of both gets
// the override's command, entrypoint, image and health check when it gives
// them, and the union of both environments and dependencies (the override's
// entries winning); a new service is added.
func mergeCompose(base, override composeFile) composeFile {
	merged := composeFile{Services: map[string]composeService{}}
	for name, service := range base.Services {
		merged.Services[name] = service
	}
	for name, service := range override.Services {
		existing, ok := merged.Services[name]
		if !ok {
			merged.Services[name] = service
			continue
		}
		if service.Command != nil {
			existing.Command = service.Command
		}
		if service.Entrypoint != nil {
			existing.Entrypoint = service.Entrypoint
		}
		if service.Image != "" {
			existing.Image = service.Image
		}
		if service.Healthcheck != nil {
			existing.Healthcheck = service.Healthcheck
		}
		environment := composeEnvironment{}
		for key, value := range existing.Environment {
			environment[key] = value
		}
		for key, value := range service.Environment {
			environment[key] = value
		}
		existing.Environment = environment
		dependsOn := composeDependsOn{}
		for key, value := range existing.DependsOn {
			dependsOn[key] = value
		}
		for key, value := range service.DependsOn {
			dependsOn[key] = value
		}
		existing.DependsOn = dependsOn
		existing.Volumes = append(existing.Volumes, service.Volumes...)
		merged.Services[name] = existing
	}
	return merged
}

// TestComposeShardedOverride: docker-compose.sharded.yml merged over
// docker-compose.yml passes every check of the base file against this
// binary, and wires two shards: each shard migrated as its member of 2,
// every gateway and worker given shard 1's URL, two workers per shard, a
// relay per shard reading its shard, one settler.
func TestComposeShardedOverride(t *testing.T) {
	read := func(name string) composeFile {
		text, err := os.ReadFile(filepath.Join(repositoryRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		return parseCompose(t, string(text))
	}
	file := mergeCompose(read("docker-compose.yml"), read("docker-compose.sharded.yml"))
	processes, problems := checkCompose(file)
	problems = append(problems, checkNginx(nginxConfiguration(t, file), processes)...)
	for _, problem := range problems {
		t.Error(problem)
	}
	shard1 := "postgres://ledger:ledger@postgres-shard-1:5432/ledger?sslmode=disable"
	if file.Services["postgres-shard-1"].Healthcheck == nil {
		t.Error("no postgres-shard-1 service with a health check")
	}
	workersOf := map[string][]string{}
	var members, relays []string
	settlers := 0
	for _, process := range processes {
		switch process.subcommand {
		case "migrate":
			members = append(members, process.value("shard")+" "+process.value("postgres-url"))
		case "gateway", "worker":
			// A repeatable flag (flag.Func) shows no value: read the command line.
			if command := file.Services[process.service].Command; !slices.Contains(command, "--shard-postgres-url="+shard1) {
				t.Errorf("service %q: command %q, want --shard-postgres-url=%s", process.service, command, shard1)
			}
			if process.subcommand == "worker" {
				workersOf[process.value("shard")] = append(workersOf[process.value("shard")], process.service)
			}
		case "relay":
			relays = append(relays, process.service+" "+process.value("postgres-url"))
		case "settler":
			settlers++
		}
	}
	slices.Sort(members)
	if len(members) != 2 || !strings.HasPrefix(members[0], "0/2 ") || !strings.HasPrefix(members[1], "1/2 "+shard1) {
		t.Errorf("migrations %q, want shard 0 and shard 1 of 2", members)
	}
	if len(workersOf["0"]) != 2 || len(workersOf["1"]) != 2 {
		t.Errorf("workers by shard %v, want two per shard", workersOf)
	}
	slices.Sort(relays)
	if len(relays) != 2 || !strings.HasPrefix(relays[0], "relay ") || relays[1] != "relay-shard-1 "+shard1 || settlers != 1 {
		t.Errorf("relays %q and %d settler(s), want one relay per shard and one settler", relays, settlers)
	}
}
