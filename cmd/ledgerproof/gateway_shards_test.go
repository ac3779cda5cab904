package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestGatewayShardFlagsRefusedBeforeStart: the gateway's shard URLs are
// checked before anything is connected: the naive apply mode, an empty or
// unparsable URL, one URL given twice (or shard 0's), too many shards.
func TestGatewayShardFlagsRefusedBeforeStart(t *testing.T) {
	shard0 := "postgres://ledger@127.0.0.1:15432/ledger?sslmode=disable"
	shard1 := "postgres://ledger@127.0.0.1:15433/ledger?sslmode=disable"
	var tooMany []string
	for i := range 16 {
		tooMany = append(tooMany, "--shard-postgres-url", fmt.Sprintf("postgres://ledger@127.0.0.1:%d/ledger", 16000+i))
	}
	for _, test := range []struct {
		name string
		args []string
		want string
	}{
		{"naive", []string{"--apply-mode", "naive", "--shard-postgres-url", shard1}, "needs the queue apply mode"},
		{"empty", []string{"--shard-postgres-url", ""}, "empty URL"},
		{"bad URL", []string{"--shard-postgres-url", "postgres://ledger@127.0.0.1:notaport/ledger"}, "shard 1's --shard-postgres-url: postgres: parse URL"},
		{"shard 0's database", []string{"--postgres-url", shard0, "--shard-postgres-url", shard0}, "shard 1's --shard-postgres-url is shard 0's database"},
		{"twice", []string{"--shard-postgres-url", shard1, "--shard-postgres-url", shard1}, "shard 2's --shard-postgres-url is shard 1's database"},
		{"too many", tooMany, "17 shards, want 1 to 16"},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := startError(t, "gateway", test.args...)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("error %v, want one saying %q", err, test.want)
			}
		})
	}
}
