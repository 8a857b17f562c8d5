# nextbest: `make demo` to try it, `make test` to check it. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes.
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck format pytest serve bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# System packages the tests drive (wrk for the benchmark harness; chromium, and a CJK font for
# the Chinese screens, for the browser tests). Installed once, only if missing; a second run
# costs one `command -v` per tool. Bump the stamp's suffix when this list grows.
SYSTEM_STAMP := $(VENV)/.system-deps-2

$(SYSTEM_STAMP): | $(BIN)/python
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium and fonts-wqy-microhei (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null; }
	touch $@

$(DEPS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.deps-*
	touch $@

demo: $(DEPS_STAMP) ## generate a 200k-subscriber operator, load it, print keys and serve it
	$(BIN)/nextbest demo

serve: $(DEPS_STAMP) ## serve the database in NEXTBEST_DATABASE_URL (default var/nextbest.db)
	$(BIN)/nextbest serve

lint: $(DEPS_STAMP) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEPS_STAMP) ## mypy --strict over the package
	$(BIN)/mypy

format: $(DEPS_STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

pytest: $(DEPS_STAMP) $(SYSTEM_STAMP) ## the test suite (SQLite, and PostgreSQL where it answers)
	$(BIN)/python -m pytest

test: lint typecheck pytest ## everything CI runs: lint, types, tests

bench: $(DEPS_STAMP) $(SYSTEM_STAMP) ## decisions/s vs a bare endpoint (SIZE=200000 DB=sqlite LADDER=1)
	$(BIN)/python scripts/bench/run.py --size $${SIZE:-200000} --db $${DB:-sqlite} $${LADDER:+--ladder}

clean: ## remove the virtualenv and generated data
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
