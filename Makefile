# Ledgerproof. `make demo` and `make test` need only Go and a Debian/Ubuntu
# machine: the deps target installs the rest (redis-server, kcat, Postgres 15).

GO        ?= go
BIN       := bin/ledgerproof
STACK_DIR ?= .ledgerproof/stack
DEMO_DIR  := .ledgerproof/demo
# The demo's stack uses its own ports so it can run beside `make up`, below
# Linux's ephemeral range (32768-60999) so no outgoing connection holds one.
DEMO_PORTS := --postgres-port 25532 --redis-port 26479 --broker-port 29192 \
              --gateway-port 28280 --worker-metrics-port 28380 --settlement-port 28470

.PHONY: all deps build test test-unit vet fuzz bench-security demo flow bench bench-load capacity mutation gate-bugs soak-gate up down status clean

all: build

deps:
	@./.ci/deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/ledgerproof

vet:
	@unformatted="$$(gofmt -l cmd sut load invariants chaos reports scenarios 2>/dev/null)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Every test: unit, integration (real Postgres, Redis, broker and kcat, started
# by the project's own code) and end-to-end (a whole local stack per test).
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

# The fast tier: the tests that start no server and build no binary (-short:
# stacktest's helpers skip the others), with the race detector; no deps
# needed, no vet (make vet; make test runs it). Four packages at a time: most
# test binaries run on one thread, and linking race binaries waits on the
# disk (46-51 s on 2 vCPUs once the packages are compiled, 62 s with two).
test-unit:
	$(GO) test -short -race -count=1 -vet=off -p 4 -timeout 5m ./...

# Fuzzing of the two decoders that take hostile bytes: the gateway's request
# bodies and the worker's commands topic records (docs/request-rules.md,
# docs/dead-letters.md). Bounded: FUZZ_TIME per target (go test runs one fuzz
# target at a time). Their seed corpora run in `make test` like any test; a
# failing input is saved under the package's testdata/fuzz and replayed there.
FUZZ_TIME ?= 60s
fuzz:
	$(GO) test ./sut/gateway/ -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZ_TIME) -fuzzminimizetime 5s
	$(GO) test ./sut/worker/ -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZ_TIME) -fuzzminimizetime 5s

# The reference gateway's security targets as a benchmark (docs/security.md):
# the security tests with their speed and memory bounds asserted (another
# client served within 1 s under 8,300 stalled bodies, sign-in of existing and
# unknown emails within 1.5x, the gateway under 512 MiB with 64 sign-in
# clients). `make test` runs the same tests and only logs the figures.
bench-security: deps
	LEDGERPROOF_SECURITY_BENCH=1 $(GO) test -count=1 -v -run '^TestSecurity' ./sut/e2e/

# The main job, as CI runs it (docs/ci.md): a fresh local stack of the
# demo's own (DEMO_DIR, DEMO_PORTS: beside `make up`), ~90 s of gate.yaml with
# the CI fault plan (broker, Postgres and a gateway killed, a gateway and workers
# crashed at named crash points, workers killed at seeded moments),
# drain, audit, report; prints the verdict and the report's path and exits
# with the run's code (0 passed, 1 invariant violated, 2 could not run, 3
# threshold failed, 4 weak: a required class of operation never happened). The stack is stopped and removed after (its logs are
# copied into the run directory).
#
# Thresholds for a faulted run (docs/ci.md): while the broker is down
# requests wait for it (up to client.wait, 5 s, then the client polls), so the
# p95 bound is the outage's, and the in-flight bound must hold RATE x ~12 s of
# blocked operations (schedule.max_in_flight);
# while Postgres is down requests fail after their retries, a few % of the
# operations of a 90 s run: the errors bound allows for it. The money is
# judged by the audit, which must pass.
DEMO_RUN      := reports/runs/demo-$(shell date -u +%Y%m%dT%H%M%SZ)
DEMO_DURATION ?= 90s
DEMO_RATE     ?= 100
# SHARDS splits the demo's ledger across that many Postgres databases
# (docs/sharding.md): `make demo SHARDS=2` runs the same gate on a sharded
# stack (--shards 2) under chaos/plans/sharded.yaml, with 2% of the transfers
# sent to accounts that do not exist (workload.missing_rate), whose sagas
# must be compensated. SHARDS=1 (the default) is the single ledger.
SHARDS        ?= 1
DEMO_SHARDED  := $(filter-out 1,$(SHARDS))
DEMO_PLAN     ?= $(if $(DEMO_SHARDED),chaos/plans/sharded.yaml,chaos/plans/ci.yaml)
# The gateways forget an answered key after 10 s (--idempotency-ttl) so that
# gate.yaml's replays, re-sent 15 s after their answer as a client's outbox
# would, reach the workers' dedupe, not only the gateway's cache (docs/ci.md,
# "What the gate's workload exercises").
DEMO_SETS     ?= --set setup.accounts=100 --set schedule.max_in_flight=1200 \
                 --set 'thresholds.accept_duration=p(95)<8000' --set 'thresholds.errors=rate<0.25' \
                 --gateway-arg=--idempotency-ttl=10s
#
# GNU make itself exits 2 whenever a recipe fails, whatever the recipe's
# status: the run's own code is therefore also written to DEMO_EXIT, and
# .ci/run exits with it (docs/ci.md, "Exit codes"). DEMO_BUGS runs the same
# gate on a system with seeded bugs (docs/seeded-bugs.md), e.g.
# `make demo DEMO_BUGS=trust-cache-balance`: the run then exits 1.
DEMO_EXIT     := .ledgerproof/demo-exit-code
DEMO_BUGS     ?=
demo: deps build
	@rm -rf $(DEMO_DIR) $(DEMO_EXIT)
	@mkdir -p $(dir $(DEMO_EXIT))
	@status=0; set -x; $(BIN) run --scenario scenarios/gate.yaml --plan $(DEMO_PLAN) \
		--stack local --stack-dir $(DEMO_DIR) --purge-stack $(DEMO_PORTS) \
		--duration $(DEMO_DURATION) --rate $(DEMO_RATE) $(DEMO_SETS) \
		--out $(DEMO_RUN) $(if $(DEMO_SEED),--seed $(DEMO_SEED)) \
		$(if $(DEMO_SHARDED),--shards $(SHARDS) --set workload.missing_rate=0.02) \
		$(if $(DEMO_BUGS),--unsafe-allow-seeded-bugs --seeded-bug $(DEMO_BUGS)) || status=$$?; \
	{ set +x; } 2>/dev/null; echo $$status > $(DEMO_EXIT); \
	if [ $$status -ne 0 ]; then echo "make demo: the run exited $$status (make reports its own 2; the run's code is in $(DEMO_EXIT))" >&2; fi; \
	exit $$status

# The scripted HTTP walk-through (signup, sign-in, money, replay, misuse,
# overdraft, balances) against a fresh stack.
flow: deps build
	@rm -rf $(DEMO_DIR)
	$(BIN) up --dir $(DEMO_DIR) $(DEMO_PORTS)
	@status=0; $(BIN) demo --dir $(DEMO_DIR) || status=$$?; \
	$(BIN) down --dir $(DEMO_DIR) --purge; exit $$status

# Batched apply against the naive one-transaction-per-request design.
bench: deps build
	$(BIN) bench --require-ratio 5

# The load engine's own cost (docs/performance.md, "The load engine's own
# cost"): the generator with its journal against a trivial endpoint process,
# side by side with a bare net/http client loop sending the same requests;
# CPU-ms per operation of each, their ratio, and whether one generator
# process held the rate without dropped iterations.
BENCH_LOAD_ARGS ?=
bench-load: build
	$(BIN) bench-load $(BENCH_LOAD_ARGS)

# Capacity (docs/performance.md, "End-to-end capacity"): first the
# calibration (this machine's own limits, measured with bare programs: a JSON
# POST to a trivial handler driven by the load engine, a batched Postgres apply
# of 64, a Redis round trip, a produce; their CPU per operation gives the
# ceiling, cores / CPU per request), then for each mode a fresh local stack on
# its own ports (batched: 1 gateway, 1 worker, 2 partitions, worker linger 30
# ms, broker without --sync, cheap KDF for the sign-ups; naive: 1 gateway with
# --apply-mode naive, no worker; both with GOMAXPROCS=1 for the stack's Go
# processes), the steps 250 to 10,000 TPS of scenarios/capacity.yaml (the
# command's default ladder unless CAPACITY_STEPS is set; one
# `ledgerproof load` run per step, 5 s ramp + 20 s hold; a mode stops after two
# consecutive failed steps), CPU per process sampled from /proc, the audit
# (must pass), and the report: capacity.md and capacity.json in
# reports/runs/capacity-<timestamp>/ and the summary in docs/performance.md.
# The requirements are ratios, which a slower machine of the same kind meets
# as well as a fast one: exit 1 if an audit failed, 3 if the batched knee is
# under CAPACITY_REQUIRE_RATIO x the naive one or under
# CAPACITY_REQUIRE_CEILING_FRACTION of the calibrated ceiling (and, if set,
# below the absolute CAPACITY_REQUIRE_TPS), or if the soak failed: after the
# batched steps, CAPACITY_SOAK (10m; 0: none) at 70% of the batched knee on
# the same stack, which must hold with nothing dropped and every process's
# private memory flat. The stacks keep idempotency records, outcome records
# and broker records a minute (--retention 1m; CAPACITY_ARGS='--retention 0'
# runs the reference's 24h), and the report states what Redis would hold
# with the reference's 24h (docs/performance.md, "Bounded memory").
CAPACITY_STEPS                    ?=
CAPACITY_HOLD                     ?= 20s
CAPACITY_REQUIRE_TPS              ?= 0
CAPACITY_REQUIRE_RATIO            ?= 3
CAPACITY_REQUIRE_CEILING_FRACTION ?= 0.3
CAPACITY_SOAK                     ?= 10m
CAPACITY_ARGS                     ?=
capacity: deps build
	$(BIN) capacity $(if $(CAPACITY_STEPS),--steps $(CAPACITY_STEPS)) --step-duration $(CAPACITY_HOLD) --soak $(CAPACITY_SOAK) \
		--require-tps $(CAPACITY_REQUIRE_TPS) --require-ratio $(CAPACITY_REQUIRE_RATIO) \
		--require-ceiling-fraction $(CAPACITY_REQUIRE_CEILING_FRACTION) \
		--docs docs/performance.md $(CAPACITY_ARGS)

# Every seeded bug, and the clean system, under the fault profile that makes
# the bug show itself, each on a fresh stack of its own (free ports, purged
# after): prints the matrix bug -> invariants violated -> caught, writes it
# into docs/mutation.md and reports/runs/mutation-*/matrix.json; fails unless
# every bug is caught by an expected invariant and the clean system passes.
# Like the demo's, the matrix's own code (0 every bug caught and the clean
# system passed, 1 not) is written to MUTATION_EXIT: make reports 2.
MUTATION_EXIT := .ledgerproof/mutation-exit-code
mutation: deps build
	@rm -f $(MUTATION_EXIT); mkdir -p $(dir $(MUTATION_EXIT))
	@status=0; set -x; $(BIN) mutation || status=$$?; { set +x; } 2>/dev/null; echo $$status > $(MUTATION_EXIT); \
	if [ $$status -ne 0 ]; then echo "make mutation: the matrix exited $$status (make reports its own 2; the code is in $(MUTATION_EXIT))" >&2; fi; \
	exit $$status

# The default gate itself (make demo, unchanged: gate.yaml, the CI plan, no
# bug-only flag) once per seeded bug, then on the clean system; each run goes
# to GATE_BUGS_DIR/<system>/ with its exit code. Fails unless every bug is
# caught by an expected invariant with the run exiting 1, and the clean run
# passes with 0; the matrix goes into docs/ci.md ("The default gate against
# every seeded bug"). About 1.5-2 minutes per system, 8 systems.
GATE_BUGS_DIR := reports/runs/gate-bugs-$(shell date -u +%Y%m%dT%H%M%SZ)
gate-bugs: deps build
	@mkdir -p $(GATE_BUGS_DIR); date -u +%Y-%m-%dT%H:%M:%SZ > $(GATE_BUGS_DIR)/started-at; \
	for system in $$($(BIN) gate-bugs --list); do \
		bug=$$system; if [ $$system = clean ]; then bug=; fi; \
		echo "make gate-bugs: $$system (log $(GATE_BUGS_DIR)/$$system.log)"; \
		$(MAKE) --no-print-directory demo DEMO_BUGS=$$bug DEMO_RUN=$(GATE_BUGS_DIR)/$$system > $(GATE_BUGS_DIR)/$$system.log 2>&1; \
		mkdir -p $(GATE_BUGS_DIR)/$$system; cp $(DEMO_EXIT) $(GATE_BUGS_DIR)/$$system/exit-code 2>/dev/null; \
		grep -h '^VERDICT' $(GATE_BUGS_DIR)/$$system.log || tail -n 3 $(GATE_BUGS_DIR)/$$system.log; \
	done; \
	$(BIN) gate-bugs --dir $(GATE_BUGS_DIR)

# The clean chaos gate (make demo, unchanged) RUNS times in a row, each on a
# fresh stack with its own seeds, into SOAK_DIR/run-<i>/: every run that does
# not exit 0 is a false alarm, printed with its verdict and notes. Fails when
# there is one (docs/ci.md, "False alarms"). About 1.5-2 minutes per run.
RUNS     ?= 10
SOAK_DIR := reports/runs/soak-gate-$(shell date -u +%Y%m%dT%H%M%SZ)
soak-gate: deps build
	@mkdir -p $(SOAK_DIR); alarms=0; \
	for i in $$(seq 1 $(RUNS)); do \
		$(MAKE) --no-print-directory demo DEMO_RUN=$(SOAK_DIR)/run-$$i > $(SOAK_DIR)/run-$$i.log 2>&1; \
		code=$$(cat $(DEMO_EXIT) 2>/dev/null || echo 2); \
		echo "make soak-gate: run $$i of $(RUNS): exit $$code: $$(grep -h '^VERDICT' $(SOAK_DIR)/run-$$i.log | head -n 1)" | tee -a $(SOAK_DIR)/summary.txt; \
		if [ "$$code" != 0 ]; then alarms=$$((alarms+1)); \
			grep -h -E '^(note|ERROR|.*ERROR after)' $(SOAK_DIR)/run-$$i.log | sed 's/^/    /' | tee -a $(SOAK_DIR)/summary.txt; fi; \
	done; \
	echo "make soak-gate: $$alarms false alarm(s) in $(RUNS) clean runs of the gate ($(SOAK_DIR), logs run-<i>.log)" | tee -a $(SOAK_DIR)/summary.txt; \
	[ $$alarms -eq 0 ]

up: deps build
	$(BIN) up --dir $(STACK_DIR)

down: build
	$(BIN) down --dir $(STACK_DIR)

status: build
	$(BIN) stack --dir $(STACK_DIR)

clean:
	rm -rf bin .ledgerproof
