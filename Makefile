# The one interface: `make demo` and `make test` work on a fresh machine (they set up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo serve test test-unit test-integration test-e2e lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup  ## run the local stack on the embedded backend (data in .footfall/)
	$(VENV)/bin/footfall demo

serve: setup
	$(VENV)/bin/footfall serve

test: setup  ## every test: unit, integration (moto), end-to-end (real HTTP against `footfall serve`)
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit

test-integration: setup
	$(PY) -m pytest tests/integration

test-e2e: setup
	$(PY) -m pytest tests/e2e

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup  ## performance figures (not a test): writes benchmarks/RESULTS.md
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .footfall
