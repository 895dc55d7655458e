# The two commands: `make run` (the whole system) and `make test` (the whole suite).
# Both create .venv and install the pinned dependencies first; nothing else is needed but
# Python 3.11 and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint format clean bench bench-quick system-deps

$(STAMP): pyproject.toml constraints.txt
	@echo "[switchboard] creating $(VENV) and installing pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run

demo: $(STAMP)
	$(BIN)/python -m devtools.run --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services devtools bench cli

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) system-deps
	$(BIN)/python -m bench.run --quick

# Debian packages the tests use: Chromium for the dashboard test (Playwright drives it, it
# never downloads a browser), docker-compose to validate deploy/docker-compose.yml, nginx to
# check deploy/'s ingest proxy config (nginx -t) and wrk, the C load generator of make bench.
SYSTEM_DEPS := chromium docker-compose nginx wrk
system-deps:
	@missing=""; for cmd in $(SYSTEM_DEPS); do PATH="$$PATH:/usr/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
	  echo "[switchboard] installing Debian's$$missing for the tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing >/dev/null; fi
