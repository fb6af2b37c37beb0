"""The first hour and the operator's day (SPEC §15): a first look in one command, the
first admin without a terminal, the servers' ports and "ready" line, a database that
cannot be reached said in one line, health that knows the schema, manage.py test, the
icon."""

import io
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext

from heroes.management.commands.demo import DEMO_USERNAME
from heroes.models import Hero
from heroes_site import migrations_state

from .helpers import REPO_ROOT, manage
from .server import free_port, production_env, start_gunicorn

SERVED_APP = "heroes_site.asgi:application"


# The servers' start


def test_make_serve_says_once_where_it_is_ready(tmp_path, sqlite_url, collected_static):
    env = production_env(tmp_path, DATABASE_URL=sqlite_url, STATIC_ROOT=str(collected_static))
    log = tmp_path / "server.log"
    server = start_gunicorn(env, log)  # returns once health answers 200: the check has run
    try:
        ready = wait_for_line(log, "ready at ")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert ready.endswith(f"ready at http://127.0.0.1:{env['PORT']}")
    assert log.read_text().count("ready at ") == 1


def wait_for_line(log: Path, text: str, seconds: float = 10) -> str:
    """The first line of `log` with `text`, once there."""
    for _ in range(int(seconds * 10)):
        if lines := [line for line in log.read_text().splitlines() if text in line]:
            return lines[0]
        time.sleep(0.1)
    pytest.fail(f"no {text!r} in the log:\n{log.read_text()}")


# A server that is not there, and (in the PostgreSQL run) a database that is not.
UNREACHABLE = [
    "down",
    pytest.param(
        "missing",
        marks=pytest.mark.skipif(
            connection.vendor != "postgresql", reason="needs a PostgreSQL server to ask"
        ),
    ),
]


def database_url(kind: str) -> tuple[str, str]:
    """(DATABASE_URL, the one line expected) for a server down or a database missing."""
    if kind == "down":
        port = free_port()
        return (
            f"postgres://postgres@127.0.0.1:{port}/heroes",
            f"Cannot connect to the database heroes at 127.0.0.1:{port}: Connection refused. "
            "Is the server running on that host and accepting TCP/IP connections?",
        )
    params = connection.get_connection_params()
    name = f"heroes_missing_{secrets.token_hex(4)}"
    host, port = params.get("host") or "localhost", params.get("port") or 5432
    return (
        f"postgres://{params['user']}@{host}:{port}/{name}",
        f'Cannot connect to the database {name} at {host}:{port}: database "{name}" does not exist',
    )


@pytest.mark.parametrize("kind", UNREACHABLE)
def test_migrate_says_in_one_line_why_the_database_cannot_be_reached(kind):
    url, line = database_url(kind)
    result = manage("migrate", "--no-input", DATABASE_URL=url)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [f"CommandError: {line}"]


@pytest.mark.parametrize("kind", UNREACHABLE)
def test_the_server_does_not_start_without_its_database(kind, tmp_path, collected_static):
    url, line = database_url(kind)
    env = production_env(tmp_path, DATABASE_URL=url, STATIC_ROOT=str(collected_static))
    server = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "heroes_site/gunicorn.conf.py", SERVED_APP],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0
    assert f"CommandError: {line}" in server.stderr.splitlines()
    assert "Booting worker" not in server.stderr
    assert "Traceback" not in server.stderr


# Health knows the schema


@pytest.fixture
def migrations_forgotten():
    """Health checks the migrations again, as a new process would; and forgets at the end."""
    migrations_state.state.forget()
    yield
    migrations_state.state.forget()


@pytest.mark.django_db
def test_health_is_503_while_migrations_are_pending(client, migrations_forgotten, monkeypatch):
    recorder = MigrationRecorder(connection)
    last = max(name for app, name in recorder.applied_migrations() if app == "heroes")
    recorder.record_unapplied("heroes", last)  # as if the code were a release ahead
    response = client.get("/api/v1/health")
    assert (response.status_code, response.json()["database"]) == (503, "migrations pending")

    recorder.record_applied("heroes", last)  # another process migrates
    assert client.get("/api/v1/health").status_code == 503  # not asked again at once
    monkeypatch.setattr(migrations_state, "RECHECK_SECONDS", 0)
    response = client.get("/api/v1/health")
    assert (response.status_code, response.json()["database"]) == (200, "ok")


@pytest.mark.django_db
def test_health_reads_the_migrations_once(client, migrations_forgotten):
    assert client.get("/api/v1/health").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get("/api/v1/health").json()["database"] == "ok"
    assert not [query for query in queries if "django_migrations" in query["sql"]]


@pytest.mark.django_db
def test_a_migrate_makes_health_check_again(migrations_forgotten):
    migrations_state.state.check()
    assert migrations_state.state.pending is False
    call_command("migrate", "heroes", verbosity=0)  # nothing to do; sends post_migrate
    assert migrations_state.state.pending is None


