# The one interface: `make demo` and `make test` work on a fresh machine (they set up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The AWS SAM CLI (for `footfall deploy` and tests/infra) lives in its own virtualenv: its pins clash with ours.
SAM_STAMP := $(VENV)/sam/.installed-stamp
STACK ?= footfall
# The official JS SDKs the e2e tests run (tests/e2e/test_js_sdks.py), pinned by package-lock.json.
SDK_DIR := tests/e2e/sdk
SDK_STAMP := $(SDK_DIR)/node_modules/.package-lock.json

.PHONY: setup demo serve test test-unit test-integration test-e2e test-tui lint types pr format bench bench-scale load mutate deploy clean

setup: $(STAMP) $(SAM_STAMP) $(SDK_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SDK_STAMP): $(SDK_DIR)/package.json $(SDK_DIR)/package-lock.json
	cd $(SDK_DIR) && npm ci --no-audit --no-fund
	touch $(SDK_STAMP)

$(SAM_STAMP): infra/sam-requirements.txt
	$(PYTHON) -m venv $(VENV)/sam
	$(VENV)/sam/bin/pip install --quiet --upgrade pip
	$(VENV)/sam/bin/pip install --quiet -r infra/sam-requirements.txt
	touch $(SAM_STAMP)

demo: setup  ## run the local stack on the embedded database (data in .footfall/footfall.db)
	$(VENV)/bin/footfall demo

serve: setup
	$(VENV)/bin/footfall serve

test: setup  ## every test: unit, integration (moto), end-to-end (real HTTP against `footfall serve`); lists the 15 slowest
	$(PY) -m pytest --durations=15

test-unit: setup
	$(PY) -m pytest tests/unit

test-integration: setup
	$(PY) -m pytest tests/integration

test-e2e: setup
	$(PY) -m pytest tests/e2e

test-tui: setup  ## the TUI alone: its screens against a fake and a real store, SVG snapshots, the tmux smoke test
	$(PY) -m pytest tests/tui tests/e2e/test_tui.py

lint: setup  ## ruff, the import contracts ([tool.importlinter] in pyproject.toml), then the types (mypy, strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

types: setup  ## mypy alone (strict on shared/ and functions/, [tool.mypy] in pyproject.toml)
	$(VENV)/bin/mypy

pr: format lint test  ## before a pull request: format, lint (ruff, import contracts, types), every test

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

mutate: setup  ## mutation testing (not a test; ~1.5 mutants/s on 2 cores): MUTANTS='shared.domain.segments*' narrows it
	rm -rf mutants
	$(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results --all true | awk -F': ' '{n[$$NF]++} END {for (s in n) print n[s], s; print "score (killed/checked):", n["killed"] "/" NR - n["not checked"]}'

deploy: setup  ## build and deploy to AWS (needs AWS credentials): make deploy STACK=footfall REGION=eu-west-1
	$(VENV)/bin/footfall deploy --stack $(STACK) $(if $(REGION),--region $(REGION)) $(DEPLOY_ARGS)

bench: setup  ## performance figures (not a test): writes benchmarks/RESULTS.md
	$(PY) benchmarks/bench.py

bench-scale: setup  ## TUI screens at 100k customers / 1M events on SQLite, grown to 10M: MB per million events, serve start (not a test; ~1 h): writes benchmarks/SCALE.md; quick check: SCALE_ARGS='--customers 10000 --events 100000 --grow-to 0'
	$(PY) benchmarks/scale_bench.py $(SCALE_ARGS)

load: setup  ## load test (not a test) against a fresh `footfall serve`: LOAD_ARGS='--clients 16' (flat out) or '--rate 200' (lag curve, segment latency)
	$(PY) benchmarks/load.py $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .footfall
