"""What the tests share besides fixtures (those are in conftest.py; make serve's real
server is in server.py): test data, users and their permissions, requests through the
production ASGI app, manage.py and the settings module run afresh, a second database
connection, the browser tests' login."""

import json
import os
import re
import runpy
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import Page

from heroes_site.asgi import application

DATA_DIR = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[2]
HERO_ACTIONS = ("view", "add", "change", "delete")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The longest a browser test waits for anything (Playwright's own default is 30 s, and
# a promise awaited in the page has none): a feature that broke fails the test quickly.
BROWSER_WAIT_MS = 10_000
STAFF_PASSWORD = "staff-pass-123"
READER_PASSWORD = "reader-pass-123"


def http_scope(
    method: str, path: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> dict[str, Any]:
    """The ASGI scope uvicorn would make for `method path` from a local client
    (Host: testserver, plus `headers`)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def asgi_exchange(scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through heroes_site.asgi.application, driven as uvicorn drives it:
    status, headers and body. Unlike Django's AsyncClient, the handler gives each
    request a thread (and so a database connection) of its own, as in production."""
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(timeout=10)
    content = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait()
    return start["status"], start["headers"], content


async def json_through_asgi(
    method: str, url: str, payload: dict, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict]:
    """A JSON request through the production ASGI app: each request on a thread, and so a
    database connection, of its own (Django's AsyncClient runs every request's queries
    on one shared thread, one after another). Status, headers, JSON body."""
    scope = http_scope(
        method,
        url,
        [
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
    )
    status, response_headers, body = await asgi_exchange(scope, json.dumps(payload).encode())
    named = {name.decode().lower(): value.decode() for name, value in response_headers}
    return status, named, json.loads(body)


def load_data(name: str) -> dict:
    """A JSON file of test data from heroes/tests/data/."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process; variables set here win over `.env`."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def hero_permissions(*actions: str) -> list[Permission]:
    return list(
        Permission.objects.filter(
            content_type__app_label="heroes", codename__in=[f"{a}_hero" for a in actions]
        )
    )


def make_user(username: str, actions: tuple[str, ...], **fields) -> AbstractUser:
    """A user with password f"{username}-pass-123" and these heroes.<action>_hero permissions."""
    user = get_user_model().objects.create_user(username, password=f"{username}-pass-123", **fields)
    user.user_permissions.set(hero_permissions(*actions))
    return user


def give_history(user: AbstractUser) -> AbstractUser:
    """The user, who may now see the heroes' history (heroes.view_herohistory)."""
    user.user_permissions.add(Permission.objects.get(codename="view_herohistory"))
    return get_user_model().objects.get(pk=user.pk)  # without the cached permissions


# Writes of other users that overlap a request's (committed while it is in its
# transaction, or at the same moment) need connections that write at once: SQLite's
# shared in-memory test database refuses them ("database table is locked").
needs_a_second_connection = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a second connection to the test database"
)


def in_another_connection(action: Callable[[], object]) -> None:
    """Run `action` on a database connection of its own (a thread's), committed as
    another user's request would be. The test needs django_db(transaction=True)."""
    failures = []

    def run() -> None:
        try:
            action()
        except Exception as error:
            failures.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


@asynccontextmanager
async def acaptured_queries() -> AsyncIterator[CaptureQueriesContext]:
    """CaptureQueriesContext for an async test: of the connection its sync calls use
    (not the event loop's), entered and left where sync code may touch it."""
    queries = await sync_to_async(lambda: CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]))()
    await sync_to_async(queries.__enter__)()
    try:
        yield queries
    finally:
        await sync_to_async(queries.__exit__)(None, None, None)


def hero_list_queries(queries: CaptureQueriesContext) -> list[str]:
    """The SQL of the hero lists among the captured queries (each a SELECT of heroes
    ordered by their creation)."""
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith('SELECT "hrs_heroes"."uuid"') and "created_at" in query["sql"]
    ]


# How every list orders heroes (models.NEWEST_FIRST): ties broken by uuid. SQLite
# returns tied rows in the order of the index it reads, which holds the uuid too, so
# only the SQL shows there whether the tie-breaker is asked for.
NEWEST_FIRST_SQL = re.compile(
    r'ORDER BY "hrs_heroes"\."created_at" DESC, "hrs_heroes"\."uuid" DESC'
)


def found(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text`; the test fails without one."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} is not in the text"
    return match[1]


def csrf_token_in(page: str) -> str:
    """The CSRF token of the (first) form on an HTML page."""
    return found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)


def log_in(page: Page, username: str, password: str, *, path: str = "/accounts/login/") -> None:
    """Log in through a login form: the site's or, with path="/admin/login/", the admin's."""
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def add_alias(alias: str, config: dict) -> dict:
    """Add a database alias with this settings dict (settings.database_config's or
    replica_config's), never connected unless a test does; its settings as Django
    completed them. remove_alias undoes it."""
    configured = connections.configure_settings(
        {DEFAULT_DB_ALIAS: connections.settings[DEFAULT_DB_ALIAS], alias: config}
    )
    connections.settings[alias] = configured[alias]
    return configured[alias]


def remove_alias(alias: str) -> None:
    connections[alias].close()
    connections[alias].close_pool()  # type: ignore[attr-defined]  # PostgreSQL's, not in the stubs
    del connections[alias]
    del connections.settings[alias]


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """The settings module's values for this environment, read afresh in-process."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO_ROOT / "heroes_site" / "settings.py"))


class AsgiBrowser:
    """Requests through the ASGI application, keeping cookies like a browser."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict | None = None
    ) -> tuple[int, dict[str, str], str]:
        body = urlencode(form or {}).encode()
        headers = []
        if self.cookies:
            cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            headers.append((b"cookie", cookie.encode()))
        if form is not None:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        return async_to_sync(self._send)(http_scope(method, path, headers), body)

    async def _send(self, scope: dict, body: bytes) -> tuple[int, dict[str, str], str]:
        status, raw_headers, content = await asgi_exchange(scope, body)
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            if name.lower() == b"set-cookie":
                for morsel in SimpleCookie(value.decode()).values():
                    self.cookies[morsel.key] = morsel.value
            headers[name.decode().lower()] = value.decode()
        return status, headers, content.decode()

    def csrf_token(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200
        return csrf_token_in(page)
