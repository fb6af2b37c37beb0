# Everything goes through uv: `make run` and `make test` work on a fresh clone.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
$(error uv is required: see https://docs.astral.sh/uv/ (or: python3 -m pip install uv))
endif
MANAGE := uv run --locked python manage.py

.PHONY: install run demo test outage flood-test replica replica-stop replica-test \
	failover-test serve bench scale screenshots superuser lint format

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (as in many container
# images), every manage.py, server and test process would otherwise compile Django again.
install:
	uv sync --locked --compile-bytecode

# A development .env with a freshly generated SECRET_KEY, made once.
.env:
	@key=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'); \
	sed "s/^SECRET_KEY=.*/SECRET_KEY=$$key/" .env.example > .env
	@echo "Created .env from .env.example"

PORT ?= 8000
run: install .env
	$(MANAGE) migrate
	$(MANAGE) runserver 127.0.0.1:$(PORT)

# A first look: sample heroes and a throwaway staff login (printed once), with DEBUG on.
demo: install .env
	$(MANAGE) migrate
	$(MANAGE) demo

# The suite runs without read replicas, whatever .env says (make replica-test has its own),
# in one process per CPU (pytest-xdist; each with a test database of its own), a test
# module at a time: its browser and its make serve server start once.
# COVERAGE=1 also measures the lines of the data layer (heroes_site/db/) the run executes
# and fails below COVERAGE_MIN percent (.ci/run does so on SQLite).
TEST_PROCESSES ?= auto
COVERAGE_MIN ?= 85
test: export DATABASE_REPLICA_URLS =
test: install .env
	uv run --locked pytest -n $(TEST_PROCESSES) --dist loadscope \
		$(if $(COVERAGE),--cov=heroes_site/db --cov-report=term-missing \
		--cov-fail-under=$(COVERAGE_MIN)) $(PYTEST_ARGS)

# Production-style: DEBUG off, hashed and compressed static files served by
# servestatic, gunicorn with uvicorn workers (heroes_site/gunicorn.conf.py; PORT,
# WEB_CONCURRENCY). HTTPS defaults to on: `HTTPS=False make serve` for plain http
# on localhost.
serve: export DEBUG = False
serve: install .env
	$(MANAGE) collectstatic --noinput --verbosity 0
	$(MANAGE) migrate
	uv run --locked gunicorn -c heroes_site/gunicorn.conf.py heroes_site.asgi:application

# The database outage drill: a throwaway PostgreSQL stopped and restarted under load.
outage: install .env
	uv run --locked pytest -m outage $(PYTEST_ARGS)

# The login flood drill: 40 clients post logins with random usernames for 20 s under
# make serve's server while the pages must keep answering (heroes/tests/test_flood_drill.py).
flood-test: install .env
	uv run --locked pytest -m flood $(PYTEST_ARGS)

# A development streaming replica of the PostgreSQL at 127.0.0.1:5432 (bench/replica.py),
# on REPLICA_PORT; then e.g. DATABASE_REPLICA_URLS=postgres://postgres@127.0.0.1:5433/heroes.
# `make replica-stop` stops it and deletes its copy.
REPLICA_PORT ?= 5433
replica: install
	uv run --locked python bench/replica.py start --port $(REPLICA_PORT)

replica-stop: install
	uv run --locked python bench/replica.py remove --port $(REPLICA_PORT)

# The replica drill: anonymous reads on a real streaming replica, paused, stopped and
# restarted under make serve's server (heroes/tests/test_replica_drill.py).
replica-test: install .env
	uv run --locked pytest -m replica $(PYTEST_ARGS)

# The failover drill: a throwaway primary and its synchronous standby under make serve's
# server and eight writers; the primary crashes, the standby is promoted
# (heroes/tests/test_failover.py; PYTEST_ARGS=-s prints its timings).
failover-test: install .env
	uv run --locked pytest -m failover $(PYTEST_ARGS)

# The API benchmark (bench/run.py): make serve's server on PostgreSQL, loaded by wrk.
bench: install .env
	uv run --locked python bench/run.py $(BENCH_ARGS)

# The scale check (bench/scale.py): p50 of each list request at 10,000 and 1,000,000
# heroes, and EXPLAIN of their queries. SCALE_ARGS, e.g. "--repeat 50 --keep".
scale: install .env
	uv run --locked python bench/scale.py $(SCALE_ARGS)

# The README's pictures, taken by the browser tests' Chromium: docs/screenshots/*.png.
screenshots: install .env
	uv run --locked pytest heroes/tests/screenshots.py

# Asks on a terminal; with DJANGO_SUPERUSER_USERNAME set (and DJANGO_SUPERUSER_PASSWORD,
# DJANGO_SUPERUSER_EMAIL), Django's createsuperuser takes them without asking.
superuser: install .env
	$(MANAGE) createsuperuser $(if $(DJANGO_SUPERUSER_USERNAME),--no-input)

# ruff (lint and format) and mypy with the Django plugin (which loads the settings, so .env).
lint: install .env
	uv run --locked ruff check .
	uv run --locked ruff format --check .
	uv run --locked mypy

format:
	uv run --locked ruff check --fix .
	uv run --locked ruff format .
