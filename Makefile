# Ledgerproof. `make demo` and `make test` need only Go and a Debian/Ubuntu
# machine: the deps target installs the rest (redis-server, kcat, Postgres 15).

GO        ?= go
BIN       := bin/ledgerproof
STACK_DIR ?= .ledgerproof/stack
DEMO_DIR  := .ledgerproof/demo
# The demo's stack uses its own ports so it can run beside `make up`.
DEMO_PORTS := --postgres-port 55532 --redis-port 56479 --broker-port 59192 \
              --gateway-port 58280 --worker-metrics-port 58380

.PHONY: all deps build k6 test vet demo bench bench-k6 up down status clean

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

# Start a stack, walk the scripted flow over HTTP, stop the stack (always).
demo: deps build
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

up: deps build
	$(BIN) up --dir $(STACK_DIR)

down: build
	$(BIN) down --dir $(STACK_DIR)

status: build
	$(BIN) stack --dir $(STACK_DIR)

clean:
	rm -rf bin .ledgerproof
