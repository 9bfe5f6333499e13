# Knowledge Exchange: `make run` (embedded: SQLite, in-memory layer, local cache) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://root@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/1
HOST ?= 127.0.0.1
PORT ?= 8000
# The alert checker reads the web process's /metrics for the time series (docs/monitoring.md).
KE_TIMESERIES_SCRAPE_URL ?= http://$(HOST):$(PORT)/metrics
export HOST PORT KE_TIMESERIES_SCRAPE_URL

.PHONY: run test test-embedded test-services test-browser test-js test-faults js-deps setup bench lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.installed
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py bootstrap

run: setup
	@echo ""
	@echo "Knowledge Exchange on http://$(HOST):$(PORT)/"
	@echo "  dashboard  http://$(HOST):$(PORT)/dashboard/"
	@echo "  admin      http://$(HOST):$(PORT)/admin/"
	@echo "  API docs   http://$(HOST):$(PORT)/api/docs/"
	@echo "  WebSocket  ws://$(HOST):$(PORT)/ws/knowledge/"
	@echo "  metrics    http://$(HOST):$(PORT)/metrics   health http://$(HOST):$(PORT)/api/knowledge/health"
	@echo ""
	@$(VENV)/bin/honcho start -f Procfile

# The whole suite on the embedded defaults, again on PostgreSQL + Redis, then the browser
# tests. In CI (CI=true) a missing PostgreSQL or Redis fails the run.
test: $(VENV)/.installed js-deps
	@scripts/ensure-test-tools.sh
	@scripts/test-suites.sh
	@$(MAKE) --no-print-directory test-browser
	@$(MAKE) --no-print-directory test-js

test-embedded: $(VENV)/.installed js-deps
	@echo "== tests: embedded (SQLite, in-memory channel layer, local-memory cache) =="
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -q -m "not browser" $(PYTEST_ARGS)

test-services: $(VENV)/.installed js-deps
	@echo "== tests: PostgreSQL + Redis =="
	@if scripts/ensure-services.sh; then \
	  DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest -q -m "not browser and not faults" $(PYTEST_ARGS); \
	elif [ "$${CI:-}" = "true" ]; then \
	  echo "CI: PostgreSQL and Redis are required"; exit 1; \
	else \
	  echo "SKIPPED the PostgreSQL + Redis run: services not available (CI fails here)"; \
	fi

test-browser: $(VENV)/.installed
	@echo "== tests: browser (headless Chromium) =="
	@env -u DATABASE_URL -u REDIS_URL DJANGO_ALLOW_ASYNC_UNSAFE=true $(PY) -m pytest -q -m browser $(PYTEST_ARGS); \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "no browser tests collected"; rc=0; fi; exit $$rc

# The JS client's test dependency (ws, static/js/package-lock.json): `npm ci` once, and again
# only when the lock file changes; offline is fine once node_modules exists. No npm: skipped
# (the Node live tests in static/js/tests/test_node_client.py then fail, naming `make js-deps`).
JS_DEPS := static/js/node_modules/.package-lock.json
$(JS_DEPS): static/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd static/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	else echo "npm not found: skipping the JS client's dependencies"; fi

js-deps: $(JS_DEPS)

test-js: js-deps
	@if command -v node >/dev/null 2>&1 && [ -d static/js/tests ]; then \
	  echo "== tests: JS client (node --test) =="; node --test static/js/tests/; \
	fi

# The benchmark (docs/performance.md): `make bench` (10,000 items), `make bench ROWS=1000000`.
# Needs PostgreSQL (BENCH_PG_URL) and Redis (BENCH_REDIS_URL); creates and drops its own
# database kx_bench_<pid>. BENCH_ARGS passes more options (python -m bench --help).
ROWS ?= 10000
BENCH_ARGS ?=
bench: $(VENV)/.installed
	@scripts/ensure-services.sh || { echo "make bench needs PostgreSQL and Redis"; exit 1; }
	$(PY) -m bench --rows $(ROWS) $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .test-db-* .pytest_cache

# Live-feed load and fault benchmark (docs/realtime.md). Starts its own redis-server on
# port 6390 (BENCH_WS_ARGS="--redis-port N" to change), a private SQLite file and daphne.
.PHONY: bench-ws
bench-ws: $(VENV)/.installed
	$(PY) bench/ws/bench.py $(BENCH_WS_ARGS)

# 10,000 sockets held by ONE daphne process, 20 events to each; clients spread over 4
# processes and 4 source addresses (docs/performance.md, "10,000 connections"). Long: the
# handshakes are ramped (10 in flight per client process) so none times out on a busy machine.
BENCH_WS_10K_ARGS ?= --runs hold --hold 10000 --hold-events 20 --hold-rate 2 --client-procs 4 \
	--source-addrs 4 --in-flight 10 --connect-timeout 900
.PHONY: bench-ws-10k
bench-ws-10k: $(VENV)/.installed
	$(PY) bench/ws/bench.py $(BENCH_WS_10K_ARGS) $(BENCH_WS_ARGS)

# Fan-out to 1,000 subscribers with the built-in worker fleet (every Procfile process but web)
# running beside the server on the same database and Redis, as `make run` starts it.
BENCH_WS_FLEET_ARGS ?= --runs fanout --clients 1000 --events 60 --rate 10 --client-procs 2 \
	--in-flight 10 --fleet
.PHONY: bench-ws-fleet
bench-ws-fleet: $(VENV)/.installed
	$(PY) bench/ws/bench.py $(BENCH_WS_FLEET_ARGS) $(BENCH_WS_ARGS)

# Single-broadcast throughput with and without the event log's tail lock, 1-16 clients
# (docs/performance.md, "Ordering without the global lock"). Needs PostgreSQL.
.PHONY: bench-lock
bench-lock: $(VENV)/.installed
	$(PY) bench/lock_curve.py --json .bench/lock_curve.json --svg docs/img/lock-curve.svg $(BENCH_LOCK_ARGS)

# The same HTTP operations under daphne and uvicorn, ratios in one run (docs/performance.md,
# "Server choice"); the WebSocket side: make bench-ws BENCH_WS_ARGS="--server uvicorn".
.PHONY: bench-servers
bench-servers: $(VENV)/.installed
	@scripts/ensure-services.sh || { echo "make bench-servers needs PostgreSQL and Redis"; exit 1; }
	$(PY) bench/server_choice.py $(BENCH_SERVERS_ARGS)

# Conflict-resolution accuracy through the real broadcast path (docs/conflicts.md).
.PHONY: bench-conflicts
bench-conflicts: $(VENV)/.installed
	$(PY) manage.py bench_conflicts $(BENCH_CONFLICTS_ARGS)

# Fault tests (docs/operations.md): real daphne / workers / pruner processes against their own
# PostgreSQL cluster (initdb, a spare port) and redis-server; never the shared 5432 / 6379.
# They run in test-embedded too (they bring their own services, so not again in test-services).
test-faults: $(VENV)/.installed
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -q -m faults tests/faults $(PYTEST_ARGS)

# Retention soak (docs/operations.md): 1,000,000 events through the pruner on a private
# PostgreSQL cluster; the event table stays within its bound. BENCH_PRUNE_ARGS="--events N".
.PHONY: bench-prune
bench-prune: $(VENV)/.installed
	$(PY) bench/prune_soak.py $(BENCH_PRUNE_ARGS)
