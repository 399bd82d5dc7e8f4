# One entry point per task. Every target installs what it needs first (idempotently): `setup`
# the Debian servers and the virtual environment, `venv` the virtual environment alone (lint and
# the unit tests start no server, so they need no root and no apt).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv test test-fast lint format typecheck bench bench-quick demo clean

setup:
	@VENV=$(VENV) bash deploy/setup.sh

venv:
	@VENV=$(VENV) bash deploy/setup.sh --venv-only

## all tests, with real InfluxDB, Mosquitto, VictoriaMetrics and OPC UA servers started by fixtures
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## unit tests only (marker `not integration`: no servers, no Debian packages)
test-fast: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

## ruff check, ruff format --check, mypy --strict: all three run (one report), any failure fails
lint: venv
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: venv
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
