# Entry points: `make up` runs Conveyor on embedded defaults; `make test` sets up and passes
# the tests (lint included). Every target creates what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup up test lint bench fmt clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

up: setup
	$(BIN)/conveyor up

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/throughput.py

fmt: setup
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .mypy_cache .ruff_cache
