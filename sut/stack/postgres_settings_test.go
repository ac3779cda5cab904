package stack_test

import (
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// TestPlanRunsEveryPostgresDurableAndWriteHeavy: every Postgres of a stack,
// one ledger or two shards, commits durably (fsync, full_page_writes and
// synchronous_commit on) and checkpoints by time (the write-heavy
// settings), and the config's own settings come last, so they can override.
func TestPlanRunsEveryPostgresDurableAndWriteHeavy(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 2} {
		config := stack.DefaultConfig()
		config.Binary = "/bin/ledgerproof"
		config.Shards = shards
		config.PostgresSettings = []string{"max_wal_size=2GB"}
		postgreses := 0
		for _, component := range stack.PlanForTest(config, t.TempDir()) {
			if component.Kind != stack.KindPostgres {
				continue
			}
			postgreses++
			argv := strings.Join(component.Argv, " ")
			for _, want := range append([]string{"fsync=on", "full_page_writes=on", "synchronous_commit=on"}, stack.WriteHeavySettings...) {
				if !strings.Contains(argv, "-c "+want) {
					t.Errorf("%d shard(s), %s: argv %q lacks -c %s", shards, component.Name, argv, want)
				}
			}
			if !strings.HasSuffix(argv, "-c max_wal_size=2GB") {
				t.Errorf("%d shard(s), %s: argv %q, want the config's setting last", shards, component.Name, argv)
			}
		}
		if postgreses != shards {
			t.Errorf("%d shard(s): %d Postgres planned", shards, postgreses)
		}
	}
}
