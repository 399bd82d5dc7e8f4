# One entry point per task. Every target installs what it needs first (idempotently).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-fast lint format typecheck bench bench-quick demo clean

setup:
	@bash deploy/setup.sh

## all tests, with real InfluxDB, Mosquitto, VictoriaMetrics and OPC UA servers started by fixtures
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## unit tests only (no servers)
test-fast: setup
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: setup
	$(VENV)/bin/mypy

## every benchmark in benchmarks/, one JSON object per line; BENCH_ARGS=--quick for a short run
bench: setup
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

bench-quick: setup
	$(PY) benchmarks/run_all.py --quick

demo: setup
	$(PY) deploy/demo.py $(DEMO_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
