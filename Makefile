# vendorpulse: `make help` lists the targets. Every target installs what it needs on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
UP_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv client test-client lint test test-unit test-integration chaos soak run kafka kafka-stop registry schemas-check bench clean

# The TypeScript client (api/client-ts): its dependencies from the committed lockfile (npm ci), its
# build (dist/), and the script-tag build copied to where the API serves the dashboard's client. Build
# output is not committed: these rules make it on first use and again when a source changes.
CLIENT := api/client-ts
NPM_STAMP := $(CLIENT)/node_modules/.installed
CLIENT_DIST := $(CLIENT)/dist/browser/vendorpulse-client.min.js
BUNDLE := api/static/vendorpulse-client.js
CLIENT_SOURCES := $(wildcard $(CLIENT)/src/*.ts) $(wildcard $(CLIENT)/tsconfig*.json) $(CLIENT)/scripts/bundle.mjs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,rocksdb]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with the project and its dev tools

$(NPM_STAMP): $(CLIENT)/package.json $(CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "the TypeScript client needs Node.js 20+ and npm (https://nodejs.org)"; exit 1; }
	cd $(CLIENT) && npm ci --ignore-scripts --no-audit --no-fund  # no dependency runs code at install
	@touch $@

$(CLIENT_DIST): $(NPM_STAMP) $(CLIENT_SOURCES)
	cd $(CLIENT) && npm run --silent build

$(BUNDLE): $(CLIENT_DIST)
	cp $< $@

client: $(BUNDLE) ## build the TypeScript client (npm ci from the lockfile, then api/client-ts/dist and the dashboard's copy)

test-client: $(BUNDLE) ## the TypeScript client's unit tests and package check (npm test)
	cd $(CLIENT) && npm test && npm run --silent check:package

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,rocksdb,bench]'
	@touch $(BENCH_STAMP)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint registry test-client ## lint, the TypeScript client's tests, then every other test but the slow fault scenarios (real Kafka and registry)
	$(BIN)/pytest -m "not chaos" $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) registry $(BUNDLE) ## integration tests only (starts a private Kafka and schema registry for the session)
	$(BIN)/pytest -m "not chaos" tests/integration $(PYTEST_ARGS)

chaos: $(STAMP) ## fault scenarios: broker loss on a three-broker cluster, worker and API kills (~2 min)
	$(BIN)/pytest -m chaos tests/integration/test_faults.py -rA $(PYTEST_ARGS)

soak: $(STAMP) ## 30-minute soak, 300 clients: test-artifacts/soak.csv and soak.png
	$(BIN)/python -m infra.harness.soak --duration 1800 --clients 300 --rate 100 --out test-artifacts/soak

kafka: $(STAMP) ## start the local Kafka broker (localhost:9092) and create the topics
	$(BIN)/vendorpulse kafka start
	$(BIN)/vendorpulse topics

kafka-stop: $(STAMP) ## stop the local Kafka broker (data is kept in .vendorpulse/)
	$(BIN)/vendorpulse kafka stop

registry: $(STAMP) ## build the local schema registry from its pinned Go module, if needed (.vendorpulse/bin/)
	@$(BIN)/python -c "from infra.registry import build; build()"

schemas-check: registry ## register every published .avsc version in a throwaway registry: BACKWARD, checked by the registry
	$(BIN)/vendorpulse schemas register --local

run: $(STAMP) $(BUNDLE) ## everything: local Kafka, topics, worker, API, simulator; prints the dashboard URL; Ctrl-C stops
	$(BIN)/vendorpulse up $(UP_ARGS)

bench: $(BENCH_STAMP) ## benchmarks: print tables, write bench/results/*.json (bench.history alone takes 20+ min)
	$(BIN)/python -m bench.codec
	$(BIN)/python -m bench.framing
	$(BIN)/python -m bench.processor
	$(BIN)/python -m bench.peers
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.scaling
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.abuse
	$(BIN)/python -m bench.history

clean: ## stop Kafka and delete .venv, .vendorpulse and the client's node_modules and builds
	-$(BIN)/vendorpulse kafka stop
	rm -rf $(VENV) .vendorpulse $(CLIENT)/node_modules $(CLIENT)/dist $(BUNDLE)
