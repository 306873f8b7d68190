# Token Console. `make run` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
MANAGE := $(BIN)/python manage.py
# `make run PORT=8001` and `make demo PORT=8001 DEMO_PROVIDER_PORT=8766` choose the ports;
# CONSOLE_BASE_URL (and so the OAuth redirect URI) follows PORT unless .env sets it.
PORT ?= 8000
DEMO_PROVIDER_PORT ?= 8765
# A set-up step prints one line and shows its output only when it fails; V=1 shows all.
STEP := @bash scripts/step.sh
# `make serve` listens here (behind the TLS proxy); WEB_WORKERS sets granian's workers.
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000

.PHONY: help install services env prepare setup run demo serve test test-sqlite test-postgres lint format clean

help:
	@echo "make run    set up (virtualenv, .env, database, admin) and run the console (PORT=8000)"
	@echo "make demo   like run, plus a fake OAuth provider and a Demo org to connect"
	@echo "            (DEMO_PROVIDER_PORT=8765); V=1 shows every set-up step's output"
	@echo "make serve  production: granian + the refresh and webhook clusters (configure the environment first)"
	@echo "make test   lint, start the test services, run the suite on SQLite and on PostgreSQL + Redis"

$(STAMP): requirements.txt requirements-dev.txt
	$(STEP) "Installing the Python packages into $(VENV)" sh -c '\
		{ test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -r requirements-dev.txt'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# What the tests need besides Python: Chromium for the browser test (Playwright cannot
# download its own browser here), PostgreSQL and Redis for the scale-out pass. Installed
# with apt-get when missing (root, Debian) and started on loopback.
services:
	bash scripts/test_services.sh

env: install
	@$(BIN)/python scripts/init_env.py

# createcachetable: the token API's failed-authentication counts, shared by every
# process, live in a database table when REDIS_URL is unset (a no-op with Redis).
prepare: env
	$(STEP) "Migrating the database" $(MANAGE) migrate --no-input
	$(STEP) "Creating the cache table" $(MANAGE) createcachetable
	$(STEP) "Scheduling the token refreshes" $(MANAGE) setup_schedules

# The set-up ends with how to sign in: the address, the admin (its password on the first
# run only) and where .env is.
SIGN_IN := @$(MANAGE) ensure_admin --url http://127.0.0.1:$(PORT)/admin/

setup: prepare
	$(SIGN_IN)

run: setup
	@$(MANAGE) runconsole --addr 127.0.0.1:$(PORT)

demo: prepare
	$(STEP) "Creating the Demo org" \
		$(MANAGE) setup_demo --provider-url http://127.0.0.1:$(DEMO_PROVIDER_PORT)
	$(SIGN_IN)
	@$(MANAGE) runconsole --addr 127.0.0.1:$(PORT) --demo-provider $(DEMO_PROVIDER_PORT)

# Production: no .env is written and no admin is created here; the environment carries
# DJANGO_ENV=production and the secrets (docs/operations.md). check --deploy prints any
# warning; errors (and missing secrets) stop it.
serve: install
	$(MANAGE) check --deploy
	$(MANAGE) migrate --no-input
	$(MANAGE) createcachetable
	$(MANAGE) collectstatic --no-input
	$(MANAGE) setup_schedules
	$(MANAGE) runconsole --server granian --addr $(WEB_HOST):$(WEB_PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite twice: the embedded default (SQLite + django-q2's ORM broker), then
# the scale-out setup (PostgreSQL + Redis). Explicit URLs win over a developer's .env.
TEST_POSTGRES_URL ?= postgres://tc:tc@127.0.0.1:5432/tc
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

test: lint services test-sqlite test-postgres

test-sqlite: install
	DATABASE_URL=sqlite:///$(CURDIR)/var/db-test.sqlite3 REDIS_URL= $(BIN)/pytest

test-postgres: install
	DATABASE_URL=$(TEST_POSTGRES_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
