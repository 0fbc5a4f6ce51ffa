# vendorpulse: `make help` lists the targets. Every target installs what it needs on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
UP_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv lint test test-unit test-integration chaos soak run kafka kafka-stop bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,rocksdb]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with the project and its dev tools

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,rocksdb,bench]'
	@touch $(BENCH_STAMP)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint ## lint, then every test but the slow fault scenarios (unit + integration, real Kafka)
	$(BIN)/pytest -m "not chaos" $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## integration tests only (starts a private Kafka for the session)
	$(BIN)/pytest -m "not chaos" tests/integration $(PYTEST_ARGS)

chaos: $(STAMP) ## fault scenarios: broker loss on a three-broker cluster, worker and API kills (~2 min)
	$(BIN)/pytest -m chaos tests/integration/test_faults.py -rA $(PYTEST_ARGS)

soak: $(STAMP) ## 30-minute soak, 300 clients: test-artifacts/soak.csv and soak.png
	$(BIN)/python -m infra.soak --duration 1800 --clients 300 --rate 100 --out test-artifacts/soak

kafka: $(STAMP) ## start the local Kafka broker (localhost:9092) and create the topics
	$(BIN)/vendorpulse kafka start
	$(BIN)/vendorpulse topics

kafka-stop: $(STAMP) ## stop the local Kafka broker (data is kept in .vendorpulse/)
	$(BIN)/vendorpulse kafka stop

run: $(STAMP) ## everything: local Kafka, topics, worker, API, simulator; prints the dashboard URL; Ctrl-C stops
	$(BIN)/vendorpulse up $(UP_ARGS)

bench: $(BENCH_STAMP) ## benchmarks: print tables, write bench/results/*.json
	$(BIN)/python -m bench.codec
	$(BIN)/python -m bench.processor
	$(BIN)/python -m bench.peers
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.abuse

clean: ## stop Kafka and delete .venv and .vendorpulse
	-$(BIN)/vendorpulse kafka stop
	rm -rf $(VENV) .vendorpulse
