# integration_assets — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.data/dagster
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo dev test test-fast lint typecheck bench clean services

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with pinned dependencies

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install $(DAGSTER_HOME)/dagster.yaml ## Generate sample exports and events, run the pipeline on the embedded default, print a summary
	$(BIN)/integration-assets demo

DEV_PORT ?= 3000
dev: install $(DAGSTER_HOME)/dagster.yaml ## Open the Dagster UI (http://127.0.0.1:3000) on the demo's instance; Ctrl-C (or SIGTERM) stops it
	exec $(BIN)/python scripts/dagster_dev.py -h 127.0.0.1 -p $(DEV_PORT)

services: ## Make sure PostgreSQL and RabbitMQ are up on loopback (starts them if down)
	./scripts/ensure_services.sh

test: install services lint typecheck ## Install test deps, ensure services, lint (ruff, format, import layers) + type-check, run the whole suite (SQLite and PostgreSQL, both queues), fault scenarios and slow tests included
	FAULTS_REPORT_DIR=$(CURDIR)/.data/faults $(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install ## Inner loop: SQLite warehouse and the SQL queue only (no PostgreSQL, RabbitMQ, fault or slow tests)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not postgres and not rabbitmq and not faults and not slow"

lint: install ## ruff check, ruff format --check, and the import layers of docs/ARCHITECTURE.md (lint-imports)
	$(BIN)/ruff check integration_assets tests bench
	$(BIN)/ruff format --check integration_assets tests bench
	$(BIN)/lint-imports

typecheck: install ## mypy on the package
	$(BIN)/mypy integration_assets

bench: install services ## Benchmarks: batch sync vs plain COPY+upsert vs dlt, then webhook receiver throughput, event drain throughput, end-to-end event latency and the outbound chain (throughput, and an EasyPost outage next to a naive handler), the shared API budget (a 30-day HubSpot backfill beside the live pull), the per-partition overhead of the daily API pulls (a 90-day backfill on unchanged data); see docs/BENCHMARKS.md
	$(BIN)/python bench/run.py
	$(BIN)/python bench/events_receiver.py
	$(BIN)/python bench/events_drain.py
	$(BIN)/python bench/events_latency.py
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/api_budget.py
	$(BIN)/python bench/partitions.py

clean: ## Remove the local data dir (warehouse, inbox, Dagster instance)
	rm -rf .data
