# Ledgerproof. `make demo` and `make test` need only Go and a Debian/Ubuntu
# machine: the deps target installs the rest (redis-server, kcat, Postgres 15).

GO        ?= go
BIN       := bin/ledgerproof
STACK_DIR ?= .ledgerproof/stack
DEMO_DIR  := .ledgerproof/demo
# The demo's stack uses its own ports so it can run beside `make up`.
DEMO_PORTS := --postgres-port 55532 --redis-port 56479 --broker-port 59192 \
              --gateway-port 58280 --worker-metrics-port 58380

.PHONY: all deps build k6 test vet demo flow bench bench-k6 mutation up down status clean

all: build

deps:
	@./.ci/deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/ledgerproof

# The custom k6 with the xk6-ledger extension, built as xk6 would build it.
k6:
	$(GO) build -o bin/k6 ./cmd/k6

vet:
	@unformatted="$$(gofmt -l cmd sut invariants chaos reports xk6-ledger scenarios 2>/dev/null)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Every test: unit, integration (real Postgres, Redis, broker and kcat, started
# by the project's own code) and end-to-end (a whole local stack per test).
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

# Start a stack, run the CI gate scenario briefly against it with the
# custom k6 (journal in reports/runs/demo-*), stop the stack (always).
DEMO_RUN   := reports/runs/demo-$(shell date -u +%Y%m%dT%H%M%SZ)
DEMO_GATEWAYS = http://127.0.0.1:58280,http://127.0.0.1:58281
demo: deps build k6
	@rm -rf $(DEMO_DIR)
	$(BIN) up --dir $(DEMO_DIR) $(DEMO_PORTS) --gateway-arg=--kdf-memory-kib=1024 --gateway-arg=--kdf-iterations=1
	@status=0; bin/k6 run --no-usage-report -e BASE_URL=$(DEMO_GATEWAYS) -e RUN_DIR=$(DEMO_RUN) \
		-e DURATION=$${DEMO_DURATION:-20s} -e RATE=$${DEMO_RATE:-100} -e ACCOUNTS=50 scenarios/gate.js || status=$$?; \
	$(BIN) down --dir $(DEMO_DIR) --purge; \
	echo "journal: $(DEMO_RUN)/journal.jsonl"; exit $$status

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

# k6 CPU per operation: the xk6-ledger client with its journal against plain
# k6/http sending the same requests to one trivial endpoint.
bench-k6: k6
	$(GO) run ./xk6-ledger/cpubench --k6 bin/k6

# Every seeded bug, and the clean system, under the fault profile that makes
# the bug show itself, each on a fresh stack of its own (free ports, purged
# after): prints the matrix bug -> invariants violated -> caught, writes it
# into docs/mutation.md and reports/runs/mutation-*/matrix.json; fails unless
# every bug is caught by an expected invariant and the clean system passes.
mutation: deps build k6
	$(BIN) mutation

up: deps build
	$(BIN) up --dir $(STACK_DIR)

down: build
	$(BIN) down --dir $(STACK_DIR)

status: build
	$(BIN) stack --dir $(STACK_DIR)

clean:
	rm -rf bin .ledgerproof
