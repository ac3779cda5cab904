package stack_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// flagValues returns every value given to flag in argv, in order.
func flagValues(argv []string, flag string) []string {
	var values []string
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			values = append(values, argv[i+1])
		}
	}
	return values
}

// TestPlanOfAShardedStack: with Shards 3 the stack has postgres and
// postgres-shard-1..2 on their own ports and data directories, Workers
// workers per shard each started with --shard and every shard's URL in
// order, gateways with every shard's URL, a relay per shard reading its
// shard, one settler on shard 0, and the stack file records the shards.
func TestPlanOfAShardedStack(t *testing.T) {
	t.Parallel()
	config := stack.DefaultConfig()
	config.Binary = "/bin/ledgerproof"
	config.Shards = 3
	dir := t.TempDir()
	file := &stack.File{}
	components := stack.PlanWithFileForTest(config, dir, file)
	byName := map[string]*stack.Component{}
	var names []string
	for _, component := range components {
		byName[component.Name] = component
		names = append(names, component.Name)
	}
	shardURLs := []string{"postgres://ledger@127.0.0.1:15442/ledger?sslmode=disable", "postgres://ledger@127.0.0.1:15443/ledger?sslmode=disable"}
	if !slices.Equal(file.Endpoints.ShardPostgresURLs, shardURLs) {
		t.Fatalf("shard URLs %v, want %v", file.Endpoints.ShardPostgresURLs, shardURLs)
	}
	dataDirs := map[string]bool{}
	for i, name := range []string{"postgres", "postgres-shard-1", "postgres-shard-2"} {
		component := byName[name]
		if component == nil || component.Kind != stack.KindPostgres {
			t.Fatalf("no Postgres component %s in %v", name, names)
		}
		if i > 0 && component.Endpoint != shardURLs[i-1] {
			t.Errorf("%s: endpoint %s, want %s", name, component.Endpoint, shardURLs[i-1])
		}
		dataDirs[component.DataDir] = true
	}
	if len(dataDirs) != 3 {
		t.Errorf("the shards share data directories: %v", dataDirs)
	}
	wantWorkers := map[string]string{"worker-0": "0", "worker-1": "0", "worker-s1-0": "1", "worker-s1-1": "1", "worker-s2-0": "2", "worker-s2-1": "2"}
	metrics := map[string]bool{}
	for name, shardIndex := range wantWorkers {
		component := byName[name]
		if component == nil || component.Kind != stack.KindWorker {
			t.Fatalf("no worker %s in %v", name, names)
		}
		if got := flagValues(component.Argv, "--shard"); !slices.Equal(got, []string{shardIndex}) {
			t.Errorf("%s: --shard %v, want %s", name, got, shardIndex)
		}
		if got := flagValues(component.Argv, "--shard-postgres-url"); !slices.Equal(got, shardURLs) {
			t.Errorf("%s: --shard-postgres-url %v, want %v", name, got, shardURLs)
		}
		metrics[component.Endpoint] = true
	}
	if len(metrics) != len(wantWorkers) || len(file.Endpoints.WorkerMetrics) != len(wantWorkers) {
		t.Errorf("workers' metrics endpoints %v (file %v), want %d distinct", metrics, file.Endpoints.WorkerMetrics, len(wantWorkers))
	}
	for _, name := range []string{"gateway-0", "gateway-1"} {
		component := byName[name]
		if got := flagValues(component.Argv, "--shard-postgres-url"); !slices.Equal(got, shardURLs) {
			t.Errorf("%s: --shard-postgres-url %v, want %v", name, got, shardURLs)
		}
		// The gateway derives each shard's group (<group>-shard-<i>) from
		// the workers' group, left at its default.
		if got := flagValues(component.Argv, "--workers-group"); got != nil {
			t.Errorf("%s: --workers-group %v, want the default", name, got)
		}
	}
	relays := map[string]string{"relay": file.Endpoints.PostgresURL, "relay-shard-1": shardURLs[0], "relay-shard-2": shardURLs[1]}
	for name, url := range relays {
		component := byName[name]
		if component == nil || component.Kind != stack.KindRelay {
			t.Fatalf("no relay %s in %v", name, names)
		}
		if got := flagValues(component.Argv, "--postgres-url"); !slices.Equal(got, []string{url}) {
			t.Errorf("%s reads %v, want %s", name, got, url)
		}
	}
	if settler := byName["settler"]; settler == nil || !slices.Equal(flagValues(settler.Argv, "--postgres-url"), []string{file.Endpoints.PostgresURL}) {
		t.Errorf("the settler is not one, on shard 0: %+v", settler)
	}
	if err := stack.ValidateForTest(config); err != nil {
		t.Fatalf("valid sharded config refused: %v", err)
	}
}

// TestPlanOfOneShardIsUnchanged: one shard (the default, or 0) gives no
// shard flag to any process and no shard URL in the stack file.
func TestPlanOfOneShardIsUnchanged(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{0, 1} {
		config := stack.DefaultConfig()
		config.Binary = "/bin/ledgerproof"
		config.Shards = shards
		file := &stack.File{}
		for _, component := range stack.PlanWithFileForTest(config, t.TempDir(), file) {
			argv := strings.Join(component.Argv, " ")
			if strings.Contains(argv, "--shard") || strings.Contains(argv, "--workers-group") || strings.Contains(component.Name, "shard") {
				t.Errorf("%d shards: %s: %q", shards, component.Name, argv)
			}
		}
		if file.Endpoints.ShardPostgresURLs != nil {
			t.Errorf("%d shards: shard URLs %v", shards, file.Endpoints.ShardPostgresURLs)
		}
	}
}

func TestShardedConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*stack.Config)
		want   string
	}{
		{"too many shards", func(c *stack.Config) { c.Shards = 17 }, "shards 17 not in [1, 16]"},
		{"negative shards", func(c *stack.Config) { c.Shards = -1 }, "shards -1"},
		{"shard port on redis", func(c *stack.Config) { c.Shards, c.PostgresShardPort = 2, c.RedisPort }, "given to both redis and postgres-shard-1"},
		{"shard workers on the settler", func(c *stack.Config) { c.Shards, c.SettlementPort = 2, c.WorkerMetricsPort+3 }, "given to both worker-s1-1 metrics and relay metrics"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := stack.DefaultConfig()
			config.Dir = t.TempDir()
			test.change(&config)
			if err := stack.ValidateForTest(config); err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("error %v, want one containing %q", err, test.want)
			}
		})
	}
}
