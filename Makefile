# FaultMaven: every target installs what it needs itself (scripts/bootstrap.sh).
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
UV_RUN := uv run --frozen --no-sync
BASE_PORT ?= 8000
PYTEST_ARGS ?=
# make test-compose: more compose files (colon-separated), e.g. an offline kit's override.
COMPOSE_EXTRA_FILES ?=
# The uv workspace members (every fm-* but the dashboard).
PY_PACKAGES := $(filter-out fm-dashboard,$(sort $(wildcard fm-*)))

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: bootstrap
bootstrap: ## Install uv, system servers and the locked Python environment
	@scripts/bootstrap.sh

.PHONY: run
run: ## Run the whole system (gateway on http://localhost:8000); Ctrl-C stops it
	@scripts/bootstrap.sh
	@$(UV_RUN) python -m fm_common.devstack run --base-port $(BASE_PORT)

# The suites that store files, run again with the files in S3 (a moto server process,
# ADR 0141); the knowledge tests of search ranking and embedding backends are not about
# storage and run once, in the main pass.
S3_SUITES := fm-evidence-service/tests fm-knowledge-service/tests/api \
  fm-job-worker/tests/test_ingest_batches.py \
  --ignore=fm-knowledge-service/tests/api/test_retrieval_quality.py \
  --ignore=fm-knowledge-service/tests/api/test_embedding_backend.py \
  --ignore=fm-knowledge-service/tests/api/test_search_runbooks.py

.PHONY: test
test: ## Run every test (real Redis, Chroma, SQLite, PostgreSQL, embeddings; files local, then S3)
	@scripts/bootstrap.sh --test
	@cd fm-dashboard && npm test --silent
	@$(UV_RUN) pytest $(PYTEST_ARGS)
	@FM_TEST_STORAGE=s3 $(UV_RUN) pytest $(S3_SUITES) $(PYTEST_ARGS)

.PHONY: test-s3
test-s3: ## The evidence and knowledge suites with their files in S3 (moto's server)
	@scripts/bootstrap.sh --test
	@FM_TEST_STORAGE=s3 $(UV_RUN) pytest $(S3_SUITES) $(PYTEST_ARGS)

.PHONY: test-llm
test-llm: ## The agent against a real small model (llama.cpp + SmolLM2-135M; the first run builds it, 15-30 min)
	@scripts/bootstrap.sh --test
	@env="$$(nice -n 10 scripts/llm-env.sh)" || exit 1; export $$env; \
	  $(UV_RUN) pytest fm-agent-service/tests/real_llm $(PYTEST_ARGS); rc=$$?; \
	  cat .cache/test-llm-report.md 2>/dev/null; exit $$rc

.PHONY: test-compose
test-compose: ## Opt-in: build the images, run the system journey and store restarts on docker compose (~20 min)
	@scripts/bootstrap.sh --test
	@command -v docker >/dev/null && docker compose version >/dev/null \
	  || { echo "test-compose needs Docker with Compose v2 (docker compose)"; exit 1; }
	@FM_TEST_COMPOSE=1 FM_COMPOSE_EXTRA_FILES="$(COMPOSE_EXTRA_FILES)" \
	  $(UV_RUN) pytest tests/compose -s -v --timeout 5400 $(PYTEST_ARGS)

.PHONY: lint
lint: ## ruff check + ruff format --check + mypy on every package
	@scripts/bootstrap.sh
	@$(UV_RUN) ruff check .
	@$(UV_RUN) ruff format --check .
	@$(MAKE) --no-print-directory typecheck

.PHONY: format
format: ## Apply ruff's fixes and formatting
	@$(UV_RUN) ruff check --fix .
	@$(UV_RUN) ruff format .

.PHONY: typecheck
# One mypy run per package, as each package's own tests run: a run over all of them at
# once infers some types in another order and misses errors a package shows on its own.
typecheck: ## mypy on every Python package (each one on its own)
	@scripts/bootstrap.sh
	@rc=0; for pkg in $(PY_PACKAGES); do \
	  echo "mypy $$pkg/src"; $(UV_RUN) mypy $$pkg/src || rc=1; done; exit $$rc

.PHONY: bench
bench: ## Run the benchmarks in bench/ (results in bench/results/)
	@scripts/bootstrap.sh --bench
	@for b in bench/*.py; do echo "== $$b"; $(UV_RUN) python $$b || exit 1; done

.PHONY: clean
clean: ## Remove local data and caches (not the lock)
	rm -rf data .pytest_cache .ruff_cache .mypy_cache
