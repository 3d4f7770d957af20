# Entry points: `make up` runs Conveyor on embedded defaults; `make test` sets up and passes
# the tests (lint included). Every target creates what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

DASHBOARD_STATIC := src/conveyor/api/static/dashboard
LINT_PATHS := src tests bench chaos

.PHONY: setup up test test-slow lint bench bench-peers bench-wrk bench-scale bench-profile chaos fmt clean dashboard dashboard-types chromium test-deploy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

up: setup
	$(BIN)/conveyor up

lint: setup
	$(BIN)/ruff check $(wildcard $(LINT_PATHS))
	$(BIN)/mypy

# CI builds the dashboard from source before the browser tests run against it. `make test`
# leaves out the slow suites (fault injection, chaos, sustained load, hostile clients, fuzzing:
# the SLOW list in tests/conftest.py); `make test-slow` runs them, and .ci/run runs both.
PYTEST_WORKERS ?= 2
test: setup lint dashboard chromium
	$(BIN)/pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile

test-slow: setup dashboard chromium
	$(BIN)/pytest -m slow

dashboard:
	cd dashboard && npm ci --no-audit --no-fund && npm test && npm run build
	rm -rf $(DASHBOARD_STATIC)
	mkdir -p $(dir $(DASHBOARD_STATIC))
	cp -R dashboard/dist $(DASHBOARD_STATIC)

dashboard-types: setup
	$(BIN)/python dashboard/scripts/openapi.py > dashboard/openapi.json
	cd dashboard && npm ci --no-audit --no-fund && npm run types

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  else echo "The dashboard's browser tests need Chromium: run  sudo sh -c 'apt-get update && apt-get install -y chromium'" >&2; exit 1; fi; }

# Benchmarks print figures (bench/README.md). The peers (huey, dramatiq, rq) and py-spy live
# in their own venv; wrk comes from Debian. BENCH_ARGS passes flags, e.g. BENCH_ARGS=--quick.
PEERS_VENV := bench/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp

$(PEERS_STAMP): bench/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q -r bench/peers/requirements.txt
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)

bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y wrk; \
	  else echo "The HTTP benchmark needs wrk: run  sudo sh -c 'apt-get update && apt-get install -y wrk'" >&2; exit 1; fi; }

# The deployment for real (deploy/test/test-deploy.sh): installs docker.io, debootstrap and
# Docker Compose v2 if missing, starts dockerd if none runs (and stops only that one), builds
# stand-in base images from Debian packages and the image from deploy/Dockerfile, then runs
# tests/deploy/e2e/ against the compose stack. Needs root for the installs and dockerd.
test-deploy: setup
	bash deploy/test/test-deploy.sh

bench: setup bench-peers bench-wrk
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The long scale rows: 1M queued, 1M delayed, history as large as 15 min of building allows.
bench-scale: setup bench-wrk
	$(BIN)/python bench/scale_bench.py --big 1000000 --history-big 10000000 --build-seconds 900 $(BENCH_ARGS)

# Where the time goes: per-script server time (SLOWLOG) and py-spy of producer and worker.
bench-profile: setup bench-peers
	$(BIN)/python bench/profile_bench.py $(BENCH_ARGS)

# The long fault-injection run (the CI tier runs inside make test).
chaos: setup
	$(BIN)/python -m chaos.run --jobs 100000 --kills 20
	$(BIN)/python -m chaos.prodfaults

fmt: setup
	$(BIN)/ruff check --fix $(wildcard $(LINT_PATHS))

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .mypy_cache .ruff_cache
