package main

import (
	"context"
	"strings"
	"testing"
)

// startError parses args for command and runs it, expecting it to fail
// before it connects to anything; it returns the error.
func startError(t *testing.T, command string, args ...string) error {
	t.Helper()
	flags, runCommand := commands()[command].newFlags()
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // whatever gets past the checks stops at once
	return runCommand(ctx, flags)
}

func TestSeededBugsAreRefusedWithoutTheUnsafeSwitch(t *testing.T) {
	cases := []struct {
		name    string
		command string
		args    []string
		env     map[string]string
		want    []string
	}{
		{"gateway flag", "gateway", []string{"--seeded-bug", "no-idempotency"}, nil,
			[]string{"refused without the unsafe switch", "--unsafe-allow-seeded-bugs", "LEDGERPROOF_UNSAFE_ALLOW_SEEDED_BUGS=true"}},
		{"worker flag", "worker", []string{"--seeded-bug", "skip-dedupe,rmw-without-lock"}, nil,
			[]string{"refused without the unsafe switch", "skip-dedupe", "--unsafe-allow-seeded-bugs"}},
		{"worker environment", "worker", nil, map[string]string{"LEDGERPROOF_SEEDED_BUG": "skip-dedupe"},
			[]string{"--unsafe-allow-seeded-bugs"}},
		{"up", "up", []string{"--seeded-bug", "ack-before-commit"}, nil, []string{"--unsafe-allow-seeded-bugs"}},
		{"settler flag", "settler", []string{"--seeded-bug", "settlement-no-dedupe"}, nil, []string{"refused without the unsafe switch", "--unsafe-allow-seeded-bugs"}},
		{"relay environment", "relay", nil, map[string]string{"LEDGERPROOF_SEEDED_BUG": "outbox-outside-tx"}, []string{"--unsafe-allow-seeded-bugs"}},
		{"settlement partitions out of range", "settler", []string{"--settlement-partitions", "0"}, nil, []string{"--settlement-partitions 0 not in [1, 1024]"}},
		{"outbox bug with an offset bug", "worker", []string{"--seeded-bug", "outbox-outside-tx,skip-dedupe", "--unsafe-allow-seeded-bugs"}, nil,
			[]string{"outbox-outside-tx moves the outbox out of the reference commit, which skip-dedupe replaces"}},
		{"unknown bug", "gateway", []string{"--seeded-bug", "lose-everything", "--unsafe-allow-seeded-bugs"}, nil,
			[]string{`unknown seeded bug "lose-everything"`, "skip-dedupe"}},
		{"unknown bug from the environment", "worker", nil,
			map[string]string{"LEDGERPROOF_SEEDED_BUG": "nope", "LEDGERPROOF_UNSAFE_ALLOW_SEEDED_BUGS": "true"},
			[]string{`unknown seeded bug "nope"`}},
		{"crash without a split commit", "worker",
			[]string{"--seeded-bug", "rmw-without-lock", "--unsafe-allow-seeded-bugs", "--crash-between-commits-probability", "0.1"}, nil,
			[]string{"needs --seeded-bug offset-before-postings or skip-dedupe"}},
		{"crash probability out of range", "worker",
			[]string{"--seeded-bug", "skip-dedupe", "--unsafe-allow-seeded-bugs", "--crash-between-commits-probability", "2"}, nil,
			[]string{"not in [0, 1]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for name, value := range c.env {
				t.Setenv(name, value)
			}
			err := startError(t, c.command, c.args...)
			if err == nil {
				t.Fatal("started")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestSeededBugsFromTheEnvironment(t *testing.T) {
	t.Setenv("LEDGERPROOF_SEEDED_BUG", "skip-dedupe, no-idempotency")
	t.Setenv("LEDGERPROOF_UNSAFE_ALLOW_SEEDED_BUGS", "true")
	for _, command := range []string{"gateway", "worker", "up", "relay", "settler"} {
		flags, _ := commands()[command].newFlags()
		if err := parseFlags(flags, nil); err != nil {
			t.Fatal(err)
		}
		var seeded seededBugFlags
		seeded.names = bugNameList{flags.Lookup("seeded-bug").Value.String()}
		seeded.unsafeAllowed = flags.Lookup("unsafe-allow-seeded-bugs").Value.String() == "true"
		bugs, err := seeded.parse()
		if err != nil {
			t.Fatalf("%s: %v", command, err)
		}
		if bugs.String() != "no-idempotency,skip-dedupe" {
			t.Errorf("%s: bugs %s", command, bugs)
		}
	}
}
