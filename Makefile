# jzflow — two commands: `make run` (first look, embedded default) and `make test` (everything).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JZ     := $(VENV)/bin/jzflow

.PHONY: setup assets system-packages run test test-fast lint lock bench clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -c constraints.txt
	touch $@

# constraints.txt from the newest releases setup.cfg admits, resolved in a scratch venv (review, then make test).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

# Front-end bundle (htmx, the bpmn-js viewer) into web/static/dist/: rebuilt when package.json, the
# lockfile or the sources are newer than the stamp. Without npm the pages still work (no diagram).
ASSETS := web/static/dist/.built
$(ASSETS): package.json package-lock.json web/build.mjs $(wildcard web/static/src/* web/static/src/*/* web/static/src/*/*/*)
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund && npm run build && touch $@; \
	else echo "npm not found: skipping the front-end bundle (make assets builds it)"; fi

assets:
	npm ci --no-audit --no-fund && npm run build
	touch $(ASSETS)

# System packages the tests use: Debian's chromium (browser tests, driven by Playwright — never a
# downloaded browser), CJK fonts (screenshots, charts), poppler (PDF report checks) and OpenLDAP's slapd with
# ldap-utils (the directory sync tests start their own slapd on loopback). Installed
# with apt when missing and we are root (CI and this machine kind); otherwise a note is printed.
SYSTEM_PACKAGES := chromium fonts-noto-cjk fonts-wqy-microhei poppler-utils slapd ldap-utils
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages:$$missing (browser/PDF tests will be skipped or fail under CI)"; fi; fi

setup: $(VENV)/.installed $(ASSETS)

# Embedded default: SQLite under ./instance, Celery on a SQLite broker (no server needed).
# The laptop's own address for the links printed on documents issued by the demo and the worker (no proxy here);
# a JZFLOW_PUBLIC_URL in the environment wins.
run: export JZFLOW_PUBLIC_URL ?= http://$(or $(JZFLOW_HOST),127.0.0.1):$(or $(JZFLOW_PORT),5000)
run: setup
	$(JZ) init-db
	$(JZ) seed
	$(JZ) deploy bpmn/
	$(JZ) demo
	$(PY) -m web.run

test: setup system-packages lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -x -k "not postgres and not scale"

# ruff on everything, mypy --strict on engine/, bandit on the product code (its skips are explained in
# setup.cfg's [bandit]; single findings carry `# nosec <id> # <reason>`), pip-audit over the installed
# environment (accepted vulnerabilities, each with its reason: IGNORED in .ci/audit-deps).
lint: setup
	$(VENV)/bin/ruff check engine plan web tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --config setup.cfg
	$(VENV)/bin/bandit -q --ini setup.cfg -r
	$(PY) .ci/audit-deps

bench: setup
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
