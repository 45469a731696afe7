# jzflow — two commands: `make run` (first look, embedded default) and `make test` (everything).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JZ     := $(VENV)/bin/jzflow

.PHONY: setup assets run test test-fast lint bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Front-end bundle (htmx, the bpmn-js viewer) into web/static/dist/: rebuilt when package.json, the
# lockfile or the sources are newer than the stamp. Without npm the pages still work (no diagram).
ASSETS := web/static/dist/.built
$(ASSETS): package.json package-lock.json web/build.mjs $(wildcard web/static/src/* web/static/src/*/* web/static/src/*/*/*)
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund && npm run build && touch $@; \
	else echo "npm not found: skipping the front-end bundle (make assets builds it)"; fi

assets:
	npm ci --no-audit --no-fund && npm run build
	touch $(ASSETS)

setup: $(VENV)/.installed $(ASSETS)

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
