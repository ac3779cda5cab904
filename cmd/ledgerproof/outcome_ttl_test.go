package main

import (
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// TestOutcomeTTLFlag: only workers write outcome records, so only the worker
// has --outcome-ttl, defaulting to the 24h of redis.DefaultOutcomeTTL.
func TestOutcomeTTLFlag(t *testing.T) {
	workerFlags, _ := workerCommand()
	outcomeTTL := workerFlags.Lookup("outcome-ttl")
	if outcomeTTL == nil {
		t.Fatal("worker has no --outcome-ttl")
	}
	if outcomeTTL.DefValue != redis.DefaultOutcomeTTL.String() || redis.DefaultOutcomeTTL != 24*time.Hour {
		t.Errorf("--outcome-ttl defaults to %s, want 24h", outcomeTTL.DefValue)
	}
	if err := workerFlags.Parse([]string{"--outcome-ttl", "90s"}); err != nil {
		t.Fatal(err)
	}
	gatewayFlags, _ := gatewayCommand()
	if gatewayFlags.Lookup("outcome-ttl") != nil {
		t.Error("the gateway has --outcome-ttl, but it writes no outcome record")
	}
}
