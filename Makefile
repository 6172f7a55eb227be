# Two commands: `make up` runs the stack on :3000, `make test` runs the whole suite.
# Both set up everything they need first (virtualenv, pinned dependencies, embedded Redis).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: up up-cluster test install bench clean lint

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "llmwatch needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/llmwatch up

# The same on a local Redis Cluster: MASTERS=3 masters (REPLICAS=0 each), 2 partitions per master.
up-cluster: $(STAMP)
	$(BIN)/llmwatch up --cluster $(or $(MASTERS),3) --replicas $(or $(REPLICAS),0)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Quick (< 5 min on 2 cores) or FULL=1; rewrites BENCHMARKS.md and bench/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(FULL),--full,)

lint: $(STAMP)
	$(BIN)/python -m ruff check shared services tests bench
	$(BIN)/python -m ruff format --check shared services tests bench

clean:
	rm -rf $(VENV) .llmwatch .pytest_cache
