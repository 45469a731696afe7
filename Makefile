# jzflow — two commands: `make run` (first look, embedded default) and `make test` (everything).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JZ     := $(VENV)/bin/jzflow

.PHONY: setup run test test-fast lint bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Embedded default: SQLite under ./instance, Celery on a SQLite broker (no server needed).
run: setup
	$(JZ) init-db
	$(JZ) seed
	$(JZ) deploy bpmn/
	$(JZ) demo
	$(PY) -m web.run

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -x -k "not postgres and not scale"

lint: setup
	$(VENV)/bin/ruff check engine web tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
