"""Who is writing, told to the database with each write, for the history it keeps.

A request's writer (`Writer`) is set by the `attribute_writes` middleware: the door it
came through (the API, the admin, the pages) and its request id; the user is read when
a write happens, from what authentication found by then (django-ninja's `request.auth`,
Django's `request.user`), with the API token's name. Writes outside a request
(commands, the shell) have no writer.

The database learns it in the transaction of each write: on PostgreSQL as the
transaction-local setting `heroes.writer` (`attributed`, and OnPools.send_sql), on
SQLite through the function `heroes_writer()` each connection gets
(`register_sqlite_function`). Both hold JSON: `via`, `request_id`, `user_id`,
`username`, `token` (and on SQLite, which has no clock to the microsecond, `at`).
"""

import asyncio
import datetime
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import async_only_middleware

from heroes_site.log_formats import current_request_id
from heroes_site.replicas import refuse_write_to_replica

SET_WRITER = "SELECT set_config('heroes.writer', %s, true)"


@dataclass(frozen=True)
class Writer:
    """Who is writing: through which door (`via`), in which request."""

    via: str  # "api", "admin", "pages"
    request_id: str
    request: HttpRequest

    def as_json(self) -> str:
        user = authenticated_user(self.request)
        return json.dumps(
            {
                "via": self.via,
                "request_id": self.request_id,
                "user_id": user.pk if user else None,
                "username": user.get_username() if user else "",
                "token": getattr(user, "token_name", None),
            }
        )


current_writer: ContextVar[Writer | None] = ContextVar("current_writer", default=None)


def authenticated_user(request: HttpRequest) -> Any:
    """The user authentication found for this request so far, or None: django-ninja's
    (a token's user, or a session's), else Django's, which the permission checks of the
    pages and the admin have loaded before they write. On the event loop Django's lazy
    user is not loaded (that would be a query): only the API writes there."""
    user = getattr(request, "auth", None)
    if user is None and not running_on_event_loop():
        user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def running_on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def writer_json() -> str | None:
    writer = current_writer.get()
    return None if writer is None else writer.as_json()


@contextmanager
def attributed(alias: str) -> Iterator[None]:
    """A transaction on `alias` (a savepoint in one already open) whose writes the
    database attributes to the current writer (none: "" undoes what an earlier write
    in the same transaction set). A replica's alias is refused (WriteToReplica)."""
    refuse_write_to_replica(alias)
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(SET_WRITER, [writer_json() or ""])
        yield


def sqlite_writer() -> str:
    """heroes_writer() of SQLite connections: the current writer, and the time."""
    writer = json.loads(writer_json() or '{"via": "other", "request_id": "", "username": ""}')
    # As Django stores a time on SQLite: UTC, without its offset.
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return json.dumps({**writer, "at": now.isoformat(" ")})


# Set while manage.py flush empties the tables (heroes/management/commands/flush.py):
# that deletes no hero, it resets the database; SQLite's history triggers, which a
# flush fires (it deletes row by row there), then record nothing.
flushing: ContextVar[bool] = ContextVar("flushing", default=False)


def register_sqlite_function(
    sender: object, connection: BaseDatabaseWrapper, **kwargs: object
) -> None:
    """connection_created's receiver: SQLite connections get heroes_writer() and
    heroes_flushing()."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("heroes_writer", 0, sqlite_writer)
        connection.connection.create_function("heroes_flushing", 0, flushing.get)


def door(request: HttpRequest, api_prefix: str) -> str:
    """Through which door a request came: "api" (under `api_prefix`), "admin" or
    "pages"."""
    if request.path.startswith(api_prefix):
        return "api"
    if request.path.startswith("/admin/"):
        return "admin"
    return "pages"


@async_only_middleware
def attribute_writes(get_response: Callable) -> Callable:
    """Makes each request the writer of the writes it causes (see Writer). After
    heroes_site.middleware.request_log, whose request id it takes."""

    api_prefix = settings.API_V1_PREFIX.rstrip("/") + "/"

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        writer = Writer(door(request, api_prefix), current_request_id.get() or "", request)
        token = current_writer.set(writer)
        try:
            response: HttpResponseBase = await get_response(request)
        finally:
            current_writer.reset(token)
        return response

    return middleware
