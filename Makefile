# Token Console. `make run` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
MANAGE := $(BIN)/python manage.py
DEMO_PROVIDER_PORT ?= 8765
# `make serve` listens here (behind the TLS proxy); WEB_WORKERS sets granian's workers.
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000

.PHONY: help install services env setup run demo serve test test-sqlite test-postgres lint format clean

help:
	@echo "make run    set up (virtualenv, .env, database, admin) and run the console"
	@echo "make demo   like run, plus a fake OAuth provider and a Demo org to connect"
	@echo "make serve  production: granian + cluster (configure the environment first)"
	@echo "make test   lint, start the test services, run the suite on SQLite and on PostgreSQL + Redis"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# What the tests need besides Python: Chromium for the browser test (Playwright cannot
# download its own browser here), PostgreSQL and Redis for the scale-out pass. Installed
# with apt-get when missing (root, Debian) and started on loopback.
services:
	bash scripts/test_services.sh

env: install
	$(BIN)/python scripts/init_env.py

# createcachetable: the token API's failed-authentication counts, shared by every
# process, live in a database table when REDIS_URL is unset (a no-op with Redis).
setup: env
	$(MANAGE) migrate --no-input
	$(MANAGE) createcachetable
	$(MANAGE) ensure_admin
	$(MANAGE) setup_schedules

run: setup
	$(MANAGE) runconsole

demo: setup
	$(MANAGE) setup_demo --provider-url http://127.0.0.1:$(DEMO_PROVIDER_PORT)
	$(MANAGE) runconsole --demo-provider $(DEMO_PROVIDER_PORT)

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
