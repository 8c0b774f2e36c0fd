# MigrationBox - developer entry points.
#
#   make demo     install, start the platform, plan the sample estate, migrate wave 1
#   make up       start the platform only (AWS emulator + Airflow); it keeps running
#   make down     stop everything the project started (no orphan processes)
#   make test     unit, DAG-integrity and integration tests, then ruff
#
# Everything lives in .venv (Python 3.11) and .runtime/ (git-ignored).

PYTHON     ?= python3.11
VENV       := .venv
BIN        := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP      := $(VENV)/.migrationbox-installed
PYTEST_ARGS ?=
LOCK_ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install test-deps up down status env demo test lint bench lock clean distclean

help:
	@echo "make demo | up | down | status | env | test | lint | bench | lock | clean | distclean"

install: $(STAMP)

# Re-run only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

# sshd, ssh-keygen and rsync for the SSH replication tests and the lab's SSH sources:
# a no-op when present; as non-root it only says what to install (the tests then skip).
test-deps:
	@bash scripts/install-test-deps.sh

# PROFILE=production: PostgreSQL + Celery (docs/production.md); empty: the platform_profile
# setting (embedded by default).
PROFILE ?=
up: install
	$(BIN)/migrationbox platform up $(if $(PROFILE),--profile $(PROFILE))

# No install here: stopping must work even when requirements changed meanwhile.
down:
	@if [ -x $(BIN)/migrationbox ]; then \
		$(BIN)/migrationbox platform down; \
	else \
		echo "nothing to stop: $(BIN)/migrationbox is not installed"; \
	fi

status: install
	$(BIN)/migrationbox platform status

env: install
	@$(BIN)/migrationbox platform env

demo: install test-deps
	$(BIN)/migrationbox demo

# pytest exits 5 when it collected no test: that must fail too, and say why.
test: install test-deps
	@status=0; \
	$(BIN)/pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	$(BIN)/ruff check . || { [ $$status -ne 0 ] || status=1; }; \
	exit $$status

lint: install
	$(BIN)/ruff check .

bench: install
	@set -e; found=0; \
	for script in benchmarks/bench_*.py; do \
		[ -f "$$script" ] || continue; found=1; \
		echo "== $$script"; $(BIN)/python "$$script"; \
	done; \
	[ $$found -eq 1 ] || { echo "no benchmarks/bench_*.py scripts" >&2; exit 1; }

# Re-resolve requirements.in into the fully pinned requirements.txt (Python 3.11).
lock:
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile requirements.in --python-version 3.11 $(LOCK_ARGS) \
		--custom-compile-command "make lock" --output-file requirements.txt

clean: down
	rm -rf .runtime .pytest_cache .ruff_cache build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) include/*.egg-info
