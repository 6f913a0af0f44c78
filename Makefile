# wharf: `make serve` to run the demo server, `make test` to run the tests. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8000

FUZZ_EXAMPLES ?= 200

.PHONY: install services chromium serve test lint format fuzz bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "wharf needs Python 3.11 or newer; set PYTHON=python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install wharf with every extra and the dev tools

serve: install  ## train and register the demo models, then serve them on $(HOST):$(PORT)
	$(BIN)/wharf demo
	$(BIN)/wharf serve --host $(HOST) --port $(PORT)

REDIS_UP := $(BIN)/python -c 'import socket; socket.create_connection(("127.0.0.1", 6379), 2)' 2>/dev/null
PG_UP := $(BIN)/python -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 2)' 2>/dev/null

# A PostgreSQL installed by this target lets user postgres in from 127.0.0.1 without a password, as
# tests/postgres.py expects (the development machines' own PostgreSQL already does).
services: install  ## start the Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) the tests use when down
	@$(REDIS_UP) || { \
		command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }; \
		mkdir -p /tmp/wharf-redis; \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
			--dir /tmp/wharf-redis --logfile /tmp/wharf-redis/redis.log; \
		for i in 1 2 3 4 5 6 7 8 9 10; do $(REDIS_UP) && break; sleep 0.5; done; $(REDIS_UP); }
	@$(PG_UP) || { \
		command -v pg_ctlcluster >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql && \
			$(SUDO) sed -i '1i host all postgres 127.0.0.1/32 trust' /etc/postgresql/*/main/pg_hba.conf; }; \
		$(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -1) main start; \
		for i in 1 2 3 4 5 6 7 8 9 10; do $(PG_UP) && break; sleep 0.5; done; $(PG_UP); }

# Debian's own build: tests/e2e/test_ui.py drives it with Playwright, which never downloads a browser.
chromium:  ## install the Chromium the dashboard's browser test drives, when /usr/bin/chromium is missing
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

test: install services chromium  ## run the whole test suite, as CI does
	$(BIN)/pytest

fuzz: install  ## schemathesis on every route of /openapi.json: new cases each run, no 5xx, answers as documented
	WHARF_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) WHARF_FUZZ_RANDOM=1 WHARF_FUZZ_MIN_CASES=1000 \
		$(BIN)/pytest tests/fuzz -m fuzz -q

lint: install  ## ruff lint and format check, mypy on src
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install  ## wharf vs the tutorial app and the in-process limit; results in bench/results/
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
