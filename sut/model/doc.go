// Package model holds the model-based test of the reference system: a
// pgregory.net/rapid state machine that drives one real local stack (two
// gateways, two workers, Postgres, Redis and the broker, as processes
// started by package stack) and compares it with a pure model after every
// step. The package has no code of its own; everything is in its tests.
//
// # What is driven
//
// Each rapid check is a fresh sequence of actions with users of its own
// (unique emails), so checks do not see each other's money:
//
//   - signup: a new user, whose account starts at 0;
//   - deposit, withdraw, transfer: a fresh Idempotency-Key, "Prefer: wait"
//     (10s), through a gateway drawn for the step (so operations also go
//     through the other gateway); the outcome must be the model's: settled,
//     or rejected with insufficient_funds, with the right kind, amount and
//     accounts;
//   - retry: a previous request again with the same key and body, through
//     any gateway; it must replay the first answer byte for byte, marked
//     Idempotent-Replayed, and have no new effect;
//   - reuse-key: a previous key with a different amount; it must be refused
//     with 422 idempotency_key_reused and have no effect;
//   - restart-worker: SIGKILL a worker and start it again (stack.Operate),
//     at most once per check because each costs about a second.
//
// After every step the invariant check compares each user's balance, read
// through GET /v1/accounts/{id} and from the ledger's tables, with the
// model; checks that each account's balance equals the sum of its postings;
// that the check's users have exactly one transaction row per key sent
// (exactly-once); that every settled transaction has two postings summing to
// zero and every rejected one none; and that the whole ledger conserves
// money (user balances equal settled deposits minus settled withdrawals).
//
// # Bounds
//
// Unless given on the command line or in the environment (RAPID_CHECKS,
// RAPID_STEPS, RAPID_SHRINKTIME), TestMain sets -rapid.checks=20,
// -rapid.steps=30 (the mean number of actions per check) and
// -rapid.shrinktime=30s, which keeps the package under a minute on two
// cores: the stack starts in a few seconds, the faithful checks take about
// 7s, the must-fail search and its shrinking (at most 15s, with 10 steps per
// sequence, whatever the flags say) about 15s. With -short rapid
// itself runs a fifth of the checks and half the steps.
//
// # Proof that it can fail
//
// The subtest "model ignoring overdraft is caught" runs the same machine
// against a deliberately wrong model (withdrawals and transfers always
// settle), through a rapid.TB that records instead of failing, and asserts
// that rapid finds a counterexample, prints a seed to replay it, and shrinks
// it to at most three steps before the failing one (in practice: a signup,
// then a withdrawal of 1). That run leaves out worker restarts: they cannot
// change an overdraft's outcome, and shrinking replays the sequence a few
// thousand times, each restart adding about 100ms to a replay. Its log
// shows the shrunk sequence as rapid prints it.
//
// Failure messages name nothing that changes between runs or with
// shrinking (ids the system chose, amounts, user indices); the details are
// logged just before. rapid keeps a smaller sequence only when it fails
// with the same message, so a message with an account id would stop
// shrinking at the first sequence found.
//
// # Replaying a failure
//
// A failing check prints its seed and writes a fail file, for example:
//
//	[rapid] failed after 3 tests: ...
//	To reproduce, specify -run="TestReferenceSystemMatchesModel/faithful_model" -rapid.failfile="testdata/rapid/..." (or -rapid.seed=1234)
//
// Replay the minimal sequence exactly with the fail file, or the whole
// search from the seed:
//
//	go test ./sut/model -run 'TestReferenceSystemMatchesModel/faithful_model' -rapid.failfile=testdata/rapid/...
//	go test ./sut/model -run 'TestReferenceSystemMatchesModel/faithful_model' -rapid.seed=1234 -rapid.v
//
// Fail files are written under sut/model/testdata/rapid/ and are replayed
// first by later runs until they pass; delete them once the bug is fixed.
// The replay starts a new stack, so it reproduces logic bugs exactly;
// timing-dependent ones (a worker restart racing a batch) may need a few
// runs.
package model
