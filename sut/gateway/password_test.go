package gateway

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

func TestPasswordHashing(t *testing.T) {
	hashing := PasswordHashing{MemoryKiB: 64, Iterations: 1}
	if err := hashing.applyDefaults(); err != nil {
		t.Fatal(err)
	}
	encoded, err := hashing.hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := hashing.hash("correct horse")
	if encoded == other {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, c := range []struct {
		password string
		want     bool
	}{{"correct horse", true}, {"correct horsf", false}, {"", false}} {
		ok, err := verifyPassword(c.password, encoded)
		if err != nil || ok != c.want {
			t.Errorf("verify(%q) = %v, %v; want %v", c.password, ok, err, c.want)
		}
	}
	if _, err := verifyPassword("x", "$2a$10$bcrypt-hash"); err == nil {
		t.Error("a non-argon2id hash must be an error")
	}
	decoy, err := hashing.decoyHash()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := verifyPassword("x", decoy); ok || err != nil {
		t.Errorf("the decoy hash must parse and never match: %v %v", ok, err)
	}
	if !strings.Contains(decoy, "$m=64,t=1,p=1$") {
		t.Errorf("the decoy hash %q does not have the configured cost", decoy)
	}
}

func TestPasswordHashingRejectsBadCost(t *testing.T) {
	for _, hashing := range []PasswordHashing{{MemoryKiB: 4, Iterations: 1}, {MemoryKiB: 64, Iterations: 1000}} {
		if err := hashing.applyDefaults(); err == nil {
			t.Errorf("%+v accepted", hashing)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	if err := (&Config{}).applyDefaults(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	bad := []Config{
		{MaxBodyBytes: 10},
		{InFlightLease: 1, ProduceTimeout: 10},
		{MaxInFlightRequests: -1},
		{SigninLock: redis.SigninLock{Lock: time.Hour, LockMaximum: time.Minute}},
		{SigninLock: redis.SigninLock{FailuresBeforeLock: -1}},
		{SigninLock: redis.SigninLock{LockMaximum: 48 * time.Hour}},
		{BodyReadTimeout: -time.Second},
		{SessionCheckInterval: 2 * time.Minute},
		{MaxHeaderBytes: 100},
		{SigninPerEmail: RateLimit{PerSecond: math.NaN()}},
		{PasswordHashing: PasswordHashing{Concurrency: -1}},
	}
	for _, config := range bad {
		if err := config.applyDefaults(); err == nil {
			t.Errorf("%+v accepted", config)
		}
	}
}
