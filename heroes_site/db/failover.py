"""Following the primary through a failover (SPEC §14).

DATABASE_URL may name several hosts, as libpq allows, with
`target_session_attrs=read-write`: every new connection, in Django's pool and in the
event loop's, goes to the host that accepts writes now. This module decides what
happens to the connections already open when that host dies or stops taking writes:

- `lost_server(connection, error)`: whether an error on a connection means its server
  is gone (the connection broke: a crash, a shutdown, the network) or takes no writes
  now (a standby, a fenced primary: "cannot execute ... in a read-only transaction").
  The pool the connection came from is then *drained* (psycopg_pool's `drain()`): its
  idle connections are closed, and those in use are closed when they come back, so
  none is handed out again; new ones find the primary wherever it is now. Cheaper
  than checking every connection as it is handed out (a round trip per request), and
  as safe: the first error shows the loss. OnPools does it for its connections; Django's
  own pools through `drain_on_lost_server`, an execute wrapper every PostgreSQL
  connection gets when it is made (`watch_connection`).
- `unavailable(error)`: whether an error is the database being out of reach (an
  outage, a failover under way: a 503 with Retry-After) rather than a bug (a 500);
  `busy(error, pool)`, whether it only means that every pooled connection is in use
  (a 503 that says busy); `outage(...)`, which of the two, logged, for heroes.api's
  error handler and heroes_site.middleware's pages.

The pools also retry a connection that cannot be made for a few seconds only
(`reconnect_timeout` in settings.py), then when a request needs one: with psycopg_pool's
default the delay between attempts doubles for five minutes, and a standby promoted
half a minute into an outage would go unused for another half minute.
"""

import logging
from collections.abc import Callable
from typing import Any, Literal

import psycopg
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from psycopg.errors import ReadOnlySqlTransaction
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

# What a 503 tells a client to wait, in seconds, before it tries again: while the
# database is out of reach, and while the server is only busy.
RETRY_AFTER = 5
BUSY_RETRY_AFTER = 2

Connection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]


def lost_server(connection: Connection, error: BaseException) -> bool:
    """Whether `error`, raised by a statement on `connection`, shows that its server is
    gone or takes no writes now, so that no connection of its pool should be used again."""
    return connection.broken or isinstance(cause(error), ReadOnlySqlTransaction)


def unavailable(error: BaseException) -> bool:
    """Whether a database error means "try again shortly" (503), not a bug (500)."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, InternalError) and isinstance(cause(error), ReadOnlySqlTransaction)
    )


def busy(error: BaseException, pool: ConnectionPool | AsyncConnectionPool | None) -> bool:
    """Whether a database error only means that every connection of `pool` (the one the
    failed code took them from) is in use: none came free in time (PoolTimeout) while
    the pool held all it may. A pool short of connections that could not make one is a
    database out of reach."""
    if pool is None or not isinstance(cause(error), PoolTimeout):
        return False
    return bool(pool.get_stats()["pool_size"] >= pool.max_size)


def outage(
    error: BaseException,
    pool: ConnectionPool | AsyncConnectionPool | None,
    logger: logging.Logger,
    request: HttpRequest,
) -> Literal["busy", "unavailable"] | None:
    """Which 503 a database error raised while serving `request` is: "busy" (see
    `busy`), "unavailable" (see `unavailable`), or None for a bug (a 500). An outage
    is logged on `logger`, a warning when busy, an error when unavailable."""
    if not unavailable(error):
        return None
    where = f"{request.method} {request.path}"
    if busy(error, pool):
        logger.warning("Busy on %s: %s", where, error)
        return "busy"
    logger.error("Database unavailable on %s: %s", where, error)
    return "unavailable"


def cause(error: BaseException) -> BaseException:
    """psycopg's error behind Django's (Django wraps each in its own class)."""
    return error.__cause__ if isinstance(error.__cause__, psycopg.Error) else error


def drain_on_lost_server(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper (Django's `connection.execute_wrapper`) that drains the
    connection's pool when a statement shows its server lost."""
    try:
        return execute(sql, params, many, context)
    except DatabaseError as error:
        wrapper = context["connection"]
        if wrapper.pool is not None and lost_server(wrapper.connection, error):
            wrapper.pool.drain()
        raise


def watch_connection(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """connection_created's receiver: PostgreSQL connections get drain_on_lost_server
    (once: Django keeps a thread's wrapper, and its wrappers, from one connection to
    the next)."""
    if (
        connection.vendor == "postgresql"
        and drain_on_lost_server not in connection.execute_wrappers
    ):
        connection.execute_wrappers.append(drain_on_lost_server)
