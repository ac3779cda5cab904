package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// TestShardsFlagsRefuseBadCounts: up, run and mutation refuse a shard
// count out of range with a clear error, before anything starts.
func TestShardsFlagsRefuseBadCounts(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"up", "--dir", dir, "--shards", "0"},
		{"up", "--dir", dir, "--shards", "17"},
		{"run", "--stack-dir", dir, "--shards", "0"},
		{"run", "--stack-dir", dir, "--shards", "17"},
		{"mutation", "--shards", "17", "--out", dir},
	}
	for _, args := range cases {
		code, stdout, stderr := runCLI(t, args...)
		if code == 0 || !strings.Contains(stdout+stderr, "shards") || !strings.Contains(stdout+stderr, "16") {
			t.Errorf("%v: exit %d, output %q %q; want a refusal naming --shards and its range", args, code, stdout, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused command left %d entries in %s", len(entries), dir)
	}
}

// TestAuditOfAShardedStackRefusesBrokers: the audit of a sharded stack
// reads every shard and drains by every shard's offsets; --brokers (one ledger's
// consumer offsets) is refused, not silently auditing shard 0 alone.
func TestAuditOfAShardedStackRefusesBrokers(t *testing.T) {
	dir := t.TempDir()
	file := stack.File{Version: stack.FileVersion, Dir: dir, Endpoints: stack.Endpoints{
		PostgresURL: "postgres://ledger@127.0.0.1:1/ledger", ShardPostgresURLs: []string{"postgres://ledger@127.0.0.1:2/ledger"}}}
	content, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stack.FileName), content, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "audit", "--run", t.TempDir(), "--stack", dir, "--brokers", "127.0.0.1:3")
	if code != 2 || !strings.Contains(stderr, "sharded (2 shards)") {
		t.Errorf("exit %d, output %q %q; want 2 and the stack named sharded", code, stdout, stderr)
	}
}
