# One entry point for people and CI. Every target sets up what it needs by itself.
.PHONY: setup test test-unit test-integration lint format run up down status url restart loadtest bench clean \
	offline-images compose-upgrade

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# `make run` needs the app's own extras only (the server, the backends); everything else, the
# whole development toolchain (`make test`, `lint`, `loadtest`, `bench`).
APP_STAMP := $(VENV)/.app-installed-stamp

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(APP_STAMP)

$(APP_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,redis,encryption]'
	touch $(APP_STAMP)

# The fast layer first (in-process, real SQLite files and the test Redis), then the layer that
# starts real server processes (tests/integration, tests/browser: marked `integration`) and
# sends them real signals.
test: setup
	$(PY) -m pytest tests -m "not integration" -q
	$(PY) -m pytest tests -m integration -q --durations=25

test-unit: setup
	$(PY) -m pytest tests -m "not integration" -q

test-integration: setup
	$(PY) -m pytest tests -m integration -q

lint: setup
	$(PY) -m ruff check taskflow tests bench deploy loadtest
	$(PY) -m ruff format --check taskflow tests bench deploy loadtest
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

format: setup
	$(PY) -m ruff check --fix taskflow tests bench deploy loadtest
	$(PY) -m ruff format taskflow tests bench deploy loadtest

PORT ?= 8000
WEB_CONCURRENCY ?= 2

# The reference app with a few demo tasks, under gunicorn: WEB_CONCURRENCY workers sharing the
# history in ./tasks.db (WAL SQLite; TASKFLOW_BACKEND_URL overrides). Each worker seeds its own.
run: $(APP_STAMP)
	@echo "taskflow reference app, $(WEB_CONCURRENCY) workers sharing one WAL SQLite file (Ctrl-C stops it)"
	@echo "  dashboard: http://127.0.0.1:$(PORT)/tasks/dashboard"
	@echo "  API:       http://127.0.0.1:$(PORT)/tasks"
	TASKFLOW_DEMO_SEED=1 WEB_CONCURRENCY=$(WEB_CONCURRENCY) BIND=127.0.0.1:$(PORT) \
		$(PY) -m gunicorn -c deploy/gunicorn.conf.py deploy.app:app

# The multi-instance topology as local processes (deploy/runner.py, docs/multi-instance.md):
# INSTANCES gunicorn masters on one shared backend behind nginx on LB_PORT; logs in RUN_DIR.
# BACKEND=postgres: the PostgreSQL at POSTGRES_URL (default the machine's, in schema
# taskflow_kit) when it answers, else a cluster of the runner's own in RUN_DIR; POSTGRES=own
# always starts its own, POSTGRES=machine never does.
BACKEND ?= sqlite
INSTANCES ?= 3
LB_PORT ?= 8080
RUN_DIR ?= run
POSTGRES ?= auto
POSTGRES_URL ?=
RUNNER := $(PY) -m deploy.runner
PG_ARGS = --postgres $(POSTGRES) $(if $(POSTGRES_URL),--postgres-url '$(POSTGRES_URL)')

up: setup
	$(RUNNER) up --backend $(BACKEND) --instances $(INSTANCES) --lb-port $(LB_PORT) --run-dir $(RUN_DIR) $(PG_ARGS)

status: setup
	@$(RUNNER) status --run-dir $(RUN_DIR)

down: setup
	$(RUNNER) down --run-dir $(RUN_DIR)

# A rolling upgrade of the local stack: each instance in turn is replaced by a new process with
# the code as it is now, ready before nginx switches to it, and stopped (drained) only once nginx
# lets go of it. Not one request fails (docs/multi-instance.md, "Upgrades").
restart: setup
	$(RUNNER) restart --run-dir $(RUN_DIR)

# The load balancer's URL alone, for scripts: LB=$$(make -s url)
url: setup
	@$(RUNNER) url --run-dir $(RUN_DIR)

# Load tests (loadtest/, docs/loadtest.md): for each SCENARIO (all, or a comma-separated list of
# visibility, flush, dashboard, idempotency, schedules, chaos) a fresh local stack of INSTANCES on BACKEND
# (the runner of `make up`, in a run folder of its own), Locust headless for DURATION seconds of
# load, the backend read back directly, teardown, and a summary. Reports: loadtest/reports/.
SCENARIO ?= all
DURATION ?= 60
loadtest: setup
	$(PY) -m loadtest.run --scenario $(SCENARIO) --backend $(BACKEND) --instances $(INSTANCES) --duration $(DURATION) $(PG_ARGS)

# Docker Compose (docs/compose.md). Neither needs the virtualenv: python3 alone.
# Where no registry is reachable: the offline base image and the wheelhouse for its own Python;
# the image settings go into .env.
offline-images:
	$(PYTHON) -m deploy.offline_images --env-file .env

# A rolling upgrade of the Compose stack's replicas, one at a time, after `docker compose build`.
compose-upgrade:
	$(PYTHON) -m deploy.compose_upgrade

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
