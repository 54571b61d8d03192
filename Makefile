# One entry point for people and CI. Every target sets up what it needs by itself.
.PHONY: setup test test-unit test-integration lint format run bench clean

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The fast layer first (in-process, real SQLite files and the test Redis), then the layer that
# starts real server processes and sends them real signals.
test: setup
	$(PY) -m pytest tests --ignore=tests/integration -q
	$(PY) -m pytest tests/integration -q

test-unit: setup
	$(PY) -m pytest tests --ignore=tests/integration -q

test-integration: setup
	$(PY) -m pytest tests/integration -q

lint: setup
	$(PY) -m ruff check taskflow tests bench deploy
	$(PY) -m ruff format --check taskflow tests bench deploy
	$(PY) -m mypy

format: setup
	$(PY) -m ruff check --fix taskflow tests bench deploy
	$(PY) -m ruff format taskflow tests bench deploy

PORT ?= 8000

# The example app with a few demo tasks, history in ./tasks.db (WAL SQLite).
run: setup
	@echo "taskflow example app: http://127.0.0.1:$(PORT)/tasks  (Ctrl-C stops it)"
	TASKFLOW_DEMO_SEED=1 $(PY) -m uvicorn deploy.app:app --host 127.0.0.1 --port $(PORT)

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
