import asyncio
import fcntl
import inspect
import io
import logging
import logging.config
import os
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import DEFAULT_DB_ALIAS, connection
from playwright.sync_api import Browser, Page, sync_playwright

from heroes.forms import StoredHeroForm
from heroes.models import ApiToken, Hero
from heroes_site.db import Transport, serving
from heroes_site.db.transports import OnPools

from .helpers import (
    BROWSER_WAIT_MS,
    CHROMIUM,
    CHROMIUM_ARGS,
    HERO_ACTIONS,
    load_data,
    make_user,
    manage,
)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests the way Django's own TestCase does: through async_to_sync.

    The async ORM's queries (and the ASGI handler's) then run on this thread, on the
    connection that holds the test's transaction, so async tests use the plain, fast
    `django_db` mark and see the rows sync fixtures made. Tests that need requests
    to really overlap are marked `asyncio` and run on pytest-asyncio's loop instead,
    with `django_db(transaction=True)`.
    """
    if not inspect.iscoroutinefunction(pyfuncitem.obj) or pyfuncitem.get_closest_marker("asyncio"):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    if pyfuncitem.funcargs.get("transport") == "pools":
        async_to_sync(on_pools)(pyfuncitem.obj, arguments)
    else:
        async_to_sync(pyfuncitem.obj)(**arguments)
    return True


async def on_pools(test: Callable, arguments: dict) -> None:
    async with serving():
        await test(**arguments)


# The transports of heroes_site.db the API's operations run on: Django's connections
# everywhere, and on PostgreSQL the event loop's pools too, which see only committed
# data (so those tests are transactional).
ON_POOLS = pytest.param("pools", marks=pytest.mark.django_db(transaction=True), id="pools")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using `transport` run on each transport the database has (async tests
    only: the sync test client runs the API in an event loop of its own)."""
    if "transport" in metafunc.fixturenames:
        on_loop = inspect.iscoroutinefunction(metafunc.function)
        postgresql = connection.vendor == "postgresql"
        params = ["django", ON_POOLS] if on_loop and postgresql else ["django"]
        metafunc.parametrize("transport", params, indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """The transport of this test's API operations: "django" or "pools" (ON_POOLS).

    The pools open on the test's loop: around the test for tests run through
    async_to_sync (pytest_pyfunc_call), in a fixture for pytest-asyncio's.
    """
    if request.param == "pools" and request.node.get_closest_marker("asyncio"):
        request.getfixturevalue("pools")
    return request.param


@pytest_asyncio.fixture
async def pools() -> AsyncIterator[None]:
    async with serving():
        yield


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On SQLite the test database is a file, not Django's shared in-memory database:
    writers in other threads then wait for each other's lock (up to the connection's
    timeout), as on a real database, rather than fail at once ("database table is
    locked"), so races run on SQLite too."""
    default = settings.DATABASES[DEFAULT_DB_ALIAS]
    if default["ENGINE"] == "django.db.backends.sqlite3":
        test_database = tmp_path_factory.mktemp("sqlite") / "test.sqlite3"
        default.setdefault("TEST", {})["NAME"] = str(test_database)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The production hasher is slow on purpose; tests log users in a lot.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def server_log(request: pytest.FixtureRequest, caplog) -> Iterator[io.StringIO]:
    """What the server's log handler (settings.LOGGING's console) writes during the
    test, from INFO up, in the text format or the one parametrized indirectly."""
    caplog.set_level(logging.INFO)
    [console] = [handler for handler in logging.getLogger().handlers if handler.name == "console"]
    assert isinstance(console, logging.StreamHandler)
    log_format = getattr(request, "param", "text")
    formatter = logging.config.DictConfigurator({}).configure_formatter(
        settings.LOGGING["formatters"][log_format]
    )
    configured_formatter, output = console.formatter, io.StringIO()
    console.setFormatter(formatter)
    configured_stream = console.setStream(output)
    yield output
    console.setStream(configured_stream)
    console.setFormatter(configured_formatter)


@pytest.fixture
def postgres_server() -> str:
    """The URL of a PostgreSQL server (no database): the test database's, or (when the
    tests run on SQLite) TEST_POSTGRES_SERVER, by default the local one. For what needs
    PostgreSQL whatever the test database is; skips if there is none."""
    if connection.vendor == "postgresql":
        params = connection.get_connection_params()
        return f"postgres://{params['user']}@{params['host']}:{params.get('port') or 5432}"
    server = os.environ.get("TEST_POSTGRES_SERVER", "postgres://postgres@127.0.0.1:5432")
    try:
        psycopg.connect(f"{server}/postgres", connect_timeout=2).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"needs a PostgreSQL server; none at {server}: {error}")
    return server


@pytest.fixture
def fresh_postgres_database(postgres_server: str) -> Iterator[str]:
    """The URL of an empty database of its own on postgres_server, dropped afterwards."""
    name = f"heroes_fresh_{secrets.token_hex(4)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def heroes(db) -> list[Hero]:
    """The heroes of data/heroes.json, saved oldest first (so newest is last)."""
    return [Hero.objects.create(**hero) for hero in load_data("heroes")["heroes"]]


@pytest.fixture
def after_validation(monkeypatch):
    """Make another writer act once, between a hero form's validation and its write."""

    def another_writer(action: Callable[[Hero], object]) -> None:
        full_clean = StoredHeroForm.full_clean
        acted = False

        def validate_then_act(form: StoredHeroForm) -> None:
            nonlocal acted
            full_clean(form)
            if not acted:
                acted = True
                action(form.instance)

        monkeypatch.setattr(StoredHeroForm, "full_clean", validate_then_act)

    return another_writer


@pytest.fixture
def hold_writes(monkeypatch) -> Callable[[int], None]:
    """hold_writes(n): hold every hero write with its read-back (the API's PATCH) until n
    of them are about to happen, so that they hit the database at once: had a writer
    checked the version before writing, all would have passed the check. On Django's
    connections each waits in its request's thread, on the pools on the event loop."""

    def hold(writers: int) -> None:
        in_threads = threading.Barrier(writers, timeout=10)
        on_the_loop = asyncio.Barrier(writers)
        write_and_read = Transport.write_and_read

        async def together(self: Transport, *args: Any, **kwargs: Any) -> Any:
            if isinstance(self, OnPools):
                await asyncio.wait_for(on_the_loop.wait(), timeout=10)
            else:
                in_threads.wait()
            return await write_and_read(self, *args, **kwargs)

        monkeypatch.setattr(Transport, "write_and_read", together)

    return hold


class PoolFigures:
    """A pool as heroes_site.db.failover.busy sees it: how many connections it holds."""

    def __init__(self, held: int, max_size: int = 10) -> None:
        self.held, self.max_size = held, max_size

    def get_stats(self) -> dict[str, int]:
        return {"pool_size": self.held}


# A PoolTimeout's causes: every connection in use (busy), or none could be made (down).
FULL_POOL, EMPTY_POOL = PoolFigures(10), PoolFigures(0)


@pytest.fixture
def staff_user(db) -> AbstractUser:
    """A staff user who may add, change and delete heroes, but is no superuser."""
    return make_user("staff", HERO_ACTIONS, is_staff=True)


@pytest.fixture
def writer(db) -> AbstractUser:
    """A user who may add, change and delete heroes (not staff)."""
    return make_user("writer", HERO_ACTIONS)


@pytest.fixture
def reader(db) -> AbstractUser:
    """A user with no hero permissions."""
    return make_user("reader", ())


@pytest.fixture
def writer_token(writer) -> str:
    return ApiToken.issue(writer, "tests")[1]


@pytest.fixture
def reader_token(reader) -> str:
    return ApiToken.issue(reader, "tests")[1]


@pytest.fixture
def superuser(db) -> AbstractUser:
    return get_user_model().objects.create_superuser("root", password="root-pass")


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def reader_client(client, reader):
    client.force_login(reader)
    return client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The system's Chromium, driven by Playwright, for the module that uses it.

    While Playwright's sync API is alive its event loop counts as running in this
    thread, so Django refuses sync ORM calls (unless DJANGO_ALLOW_ASYNC_UNSAFE is
    set) and async_to_sync fails (async middleware under the sync test client).
    The browser and that variable therefore last only as long as the module.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need the system Chromium "
            "(apt-get install -y chromium); Playwright's own download is not used."
        )
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def browser_page(browser: Browser, live_server) -> Iterator[Page]:
    """A fresh browser context on the live server, with JavaScript off: no page needs it."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(BROWSER_WAIT_MS)
    yield context.new_page()
    context.close()


page = pytest.fixture(browser_page, name="page")
# A second browser, with cookies of its own: another user at the same time.
other_page = pytest.fixture(browser_page, name="other_page")


# What processes of their own (manage.py, make serve's server) start from, made once per
# test run and shared by pytest-xdist's workers: a migrated SQLite database to copy, and
# make serve's static files.


def made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """The folder `name`, made by `make` in the first worker to ask, the others waiting."""
    shared = tmp_path_factory.getbasetemp()  # this run's
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # this run's, above each worker's own
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / "done").touch()
    return folder


def run_manage(*args: str, **env: str) -> None:
    result = manage(*args, **env)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database file with every migration applied; tests copy it (sqlite_url)."""

    def migrate(folder: Path) -> None:
        run_manage("migrate", "--no-input", DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}")

    return made_once(tmp_path_factory, "migrated", migrate) / "db.sqlite3"


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """DATABASE_URL of a migrated SQLite database of this test's own."""
    copy = tmp_path / "db.sqlite3"
    shutil.copyfile(migrated_sqlite, copy)
    return f"sqlite:///{copy}"


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory) -> Path:
    """make serve's static files (hashed and compressed by collectstatic): a STATIC_ROOT."""

    def collect(folder: Path) -> None:
        secret = secrets.token_urlsafe(50)
        run_manage(
            "collectstatic", "--no-input", DEBUG="False", SECRET_KEY=secret, STATIC_ROOT=str(folder)
        )

    return made_once(tmp_path_factory, "static", collect)


# Fixtures of the tests that start a browser or a server of their own.
SLOW_FIXTURES = {"browser", "live_server", "migrated_sqlite", "collected_static"}


@pytest.hookimpl(trylast=True)  # after pytest-django's ordering, which it keeps otherwise
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of modules with such tests first: make test's pytest-xdist hands out a
    module at a time, in the order of their first tests, and a long module handed out
    last would run alone at the end."""
    slow = {item.path for item in items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))}
    items.sort(key=lambda item: item.path not in slow)
