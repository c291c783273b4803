# Two commands: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: tools run demo test test-slow install lint docs bench bench-replay clean help

help:
	@echo "make run        set up .venv and run the whole system (nats-server, streams, services)"
	@echo "make demo       while make run runs: submit a realistic year for three quartiers (every indicator filled)"
	@echo "make test       set up .venv and run the tests (real nats-server, SQLite, PostgreSQL if reachable)"
	@echo "make test-slow  the long soak/load tests too"
	@echo "make lint       ruff and mypy"
	@echo "make docs       regenerate docs/ (JSON Schemas, AsyncAPI, event catalogue)"
	@echo "make bench      benchmarks (bench/), each printing its table"
	@echo "make bench-replay  only the replay benchmark (bench/replay.py: 200,000 then 800,000 events)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "Install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
		|| { echo "python -m venv failed: on Debian, apt-get install python3.11-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Test tools from Debian, installed when missing: promtool and prometheus (package
# prometheus) check the services' /metrics and deploy/prometheus/; docker-compose
# (package docker-compose, v1: `docker-compose config`) checks deploy/compose.yaml.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT  := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends
tools:
	@command -v promtool >/dev/null || { echo "installing promtool (Debian package prometheus)"; \
		$(APT) prometheus >/dev/null || { $(SUDO) apt-get update >/dev/null && $(APT) prometheus >/dev/null; } \
		|| { echo "could not install promtool: run 'apt-get install prometheus' as root"; exit 1; }; }
	@command -v docker-compose >/dev/null || { echo "installing docker-compose (Debian package docker-compose)"; \
		$(APT) docker-compose >/dev/null || { $(SUDO) apt-get update >/dev/null && $(APT) docker-compose >/dev/null; } \
		|| { echo "could not install docker-compose: run 'apt-get install docker-compose' as root"; exit 1; }; }

run: install
	$(BIN)/fph-run

demo: install
	$(BIN)/fph-demo

test: lint tools
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench

docs: install
	$(BIN)/fph-docs

bench: install
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.replay

bench-replay: install
	$(BIN)/python -m bench.replay

clean:
	rm -rf $(VENV) .var .pytest_cache .mypy_cache .ruff_cache
