"""The first hour and the operator's day (SPEC §15): a first look in one command, the
first admin without a terminal, the servers' ports, a database that cannot be reached
said in one line, health that knows the schema, manage.py test, the icon. (make serve's
"ready" line is checked on test_limits.py's server.)"""

import contextlib
import io
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext

from heroes.management.commands.demo import DEMO_USERNAME
from heroes.models import Hero
from heroes_site import migrations_state

from .helpers import REPO_ROOT, manage
from .server import free_port, production_env

SERVED_APP = "heroes_site.asgi:application"

# A first look: make demo


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`make ARGS` in the repository, with no terminal; variables set here win."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_demo_adds_sample_heroes_and_a_staff_login_once(settings):
    settings.DEBUG = True
    first, second = io.StringIO(), io.StringIO()
    call_command("demo", stdout=first)
    heroes = {hero.nickname: hero.role for hero in Hero.objects.all()}
    assert 40 <= len(heroes) <= 60
    assert set(heroes.values()) == {"mage", "assassin", "warrior", "priest", "tank", None}
    password = re.search(rf"username {DEMO_USERNAME}, password (\S+)", first.getvalue())[1]
    demo = get_user_model().objects.get(username=DEMO_USERNAME)
    assert demo.check_password(password)
    assert demo.is_staff and not demo.is_superuser
    assert demo.has_perms(["heroes.add_hero", "heroes.change_hero", "heroes.delete_hero"])

    call_command("demo", stdout=second)
    assert Hero.objects.count() == len(heroes)  # nothing added twice
    assert get_user_model().objects.filter(username=DEMO_USERNAME).count() == 1
    assert password not in second.getvalue()  # printed once
    assert "none added" in second.getvalue()


@pytest.mark.django_db
def test_demo_keeps_heroes_already_there_and_adds_the_rest(settings):
    settings.DEBUG = True
    mine = Hero.objects.create(nickname="MYSTRA", role="priest")  # one of the sample's names
    call_command("demo", stdout=io.StringIO())
    mine.refresh_from_db()
    assert (mine.nickname, mine.role, mine.version) == ("MYSTRA", "priest", 1)
    assert Hero.objects.filter(nickname__iexact="mystra").count() == 1


@pytest.mark.django_db
def test_demo_is_refused_when_debug_is_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only with DEBUG=True"):
        call_command("demo", stdout=io.StringIO())
    assert not Hero.objects.exists()
    assert not get_user_model().objects.exists()


def test_make_demo_migrates_then_loads_and_make_run_honours_port():
    demo = make("--dry-run", "demo")
    assert demo.returncode == 0, demo.stderr
    assert re.search(r"manage\.py migrate\n.*manage\.py demo\n", demo.stdout)
    run = make("--dry-run", "run", PORT="8123")
    assert run.returncode == 0, run.stderr
    assert "manage.py runserver 127.0.0.1:8123\n" in run.stdout


def test_make_superuser_works_without_a_terminal(sqlite_url):
    created = make(
        "superuser",
        DATABASE_URL=sqlite_url,
        DJANGO_SUPERUSER_USERNAME="boss",
        DJANGO_SUPERUSER_PASSWORD="a-long-boss-password",
        DJANGO_SUPERUSER_EMAIL="boss@example.com",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        query = "SELECT is_superuser, email, password FROM auth_user WHERE username = 'boss'"
        is_superuser, email, password = db.execute(query).fetchone()
    assert (is_superuser, email) == (1, "boss@example.com")
    assert PBKDF2PasswordHasher().verify("a-long-boss-password", password)  # Django's default


def test_the_readme_gives_the_localhost_form_of_make_serve_first():
    readme = (REPO_ROOT / "README.md").read_text()
    commands = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.DOTALL))
    first = re.search(r"^.*\bmake serve\b.*$", commands, re.MULTILINE)
    assert first and first[0].startswith("HTTPS=False make serve"), first


# The servers' start


# A server that is not there, and a database that is not on a server that is.
UNREACHABLE = ["down", "missing"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(DATABASE_URL, the one line expected) for a server down or a database missing."""
    if request.param == "down":
        port = free_port()
        return (
            f"postgres://postgres@127.0.0.1:{port}/heroes",
            f"Cannot connect to the database heroes at 127.0.0.1:{port}: Connection refused. "
            "Is the server running on that host and accepting TCP/IP connections?",
        )
    server = request.getfixturevalue("postgres_server")
    name = f"heroes_missing_{secrets.token_hex(4)}"
    host_and_port = urlsplit(server).netloc.rpartition("@")[2]
    return (
        f"{server}/{name}",
        f'Cannot connect to the database {name} at {host_and_port}: database "{name}" does not '
        "exist",
    )


@pytest.mark.parametrize("database_url", UNREACHABLE, indirect=True)
def test_migrate_says_in_one_line_why_the_database_cannot_be_reached(database_url):
    url, line = database_url
    result = manage("migrate", "--no-input", DATABASE_URL=url)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [f"CommandError: {line}"]


@pytest.mark.parametrize("database_url", UNREACHABLE, indirect=True)
def test_the_server_does_not_start_without_its_database(database_url, tmp_path, collected_static):
    url, line = database_url
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


# Odds and ends


def test_manage_py_test_points_to_make_test():
    result = manage("test")
    assert result.returncode != 0
    assert "make test" in result.stderr
    assert "Found 0 test" not in result.stdout + result.stderr


@pytest.mark.django_db
def test_the_icon_is_linked_from_every_page_and_served_at_favicon_ico(client):
    link = '<link rel="icon" href="/static/favicon.svg">'
    assert link in client.get("/heroes/").content.decode()
    assert link in client.get("/admin/login/").content.decode()
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (302, "/static/favicon.svg")
    assert "max-age=86400" in response["Cache-Control"]
    icon = client.get("/static/favicon.svg")
    assert (icon.status_code, icon["Content-Type"]) == (200, "image/svg+xml")
