"""The two ways a statement runs, and the one place that chooses between them.

An *operation* (a model's get, create, conditional update...) is written once, as an
async function of a Transport: it reads and writes with `read`, `write` and
`write_and_read`, and sends model signals with `send_signal`. Two transports run it:

- OnDjangoConnections runs each statement at once on Django's own connection of the
  calling thread (a cursor, in Django's transaction if one is open). Its methods never
  wait for anything, so `run()` completes an operation without an event loop: sync
  callers (forms, the admin, commands) use it directly, and async callers reach it in
  one sync_to_async call (SQLite, Django's test clients, runserver).
- OnPools runs them on the event loop, on psycopg AsyncConnectionPools that each
  worker of `make serve` opens in the ASGI lifespan (PostgreSQL only): the API's
  requests then need no thread at all.

`arun()` decides which, for the running event loop. What both share is written here
once: reads and writes go where the database router says (no operation names a
database), a read fails over from a replica that cannot answer, a write to a replica
is refused, and a statement that matches nothing is not sent.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar, cast

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connections,
    router,
)
from django.db.models import Field, Model, QuerySet
from django.dispatch import Signal
from psycopg.adapt import AdaptersMap
from psycopg.pq import ExecStatus, Format
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from heroes_site import replicas as routing

from . import failover
from .statements import Builder, Shape, Statement, Values, compile_statement, statements
from .writers import SET_WRITER, attributed, writer_json

T = TypeVar("T")
P = ParamSpec("P")
Rows = list[tuple[Any, ...]]


class Bound(NamedTuple):
    """A statement as sent: its SQL, its parameters, and whether it writes."""

    sql: str
    params: list[Any]
    writes: bool


def write_alias(model: type[Model], alias: str | None) -> str:
    """`alias`, by default where the database router sends a write of `model` (the
    primary); a replica's is refused (WriteToReplica)."""
    alias = alias or router.db_for_write(model)
    routing.refuse_write_to_replica(alias)
    return alias


class Transport(ABC):
    """Runs an operation's statements on a database."""

    async def statement(self, build: Builder, shape: Shape, values: Values) -> Statement:
        """The statement `build` makes for this shape, compiled once per process."""
        key = statements.key(build, shape, values)
        found = statements.get(key)
        if found is None:
            found = statements.add(key, await self.compile(build, shape, values))
        return found

    async def read(
        self,
        model: type[Model],
        build: Builder,
        shape: Shape,
        values: Values,
        *,
        alias: str | None = None,
        prepare: bool = False,
    ) -> list[Any]:
        """The instances a SELECT finds on `alias` (by default where the database router
        sends a read of `model`), failing over from a replica that cannot answer."""
        statement = await self.statement(build, shape, values)
        alias = alias or router.db_for_read(model)
        while True:
            started = routing.replicas.clock()
            try:
                rows, _ = await self.execute(alias, statement, values, prepare)
            except (OperationalError, InterfaceError) as error:
                if alias == DEFAULT_DB_ALIAS:
                    raise
                alias = routing.fail_over(alias, error)
                continue
            routing.replicas.served(alias, started)
            return statement.instances(alias, rows)

    async def write(
        self,
        model: type[Model],
        build: Builder,
        shape: Shape,
        values: Values,
        *,
        alias: str | None = None,
    ) -> int:
        """The number of rows a write statement changed on `alias` (by default where the
        database router sends a write of `model`: the primary)."""
        alias = write_alias(model, alias)
        statement = await self.statement(build, shape, values)
        return (await self.execute(alias, statement, values))[1]

    async def write_and_read(
        self,
        model: type[Model],
        write: tuple[Builder, Values],
        read: tuple[Builder, Values],
        *,
        alias: str | None = None,
    ) -> tuple[int, list[Any]]:
        """A write, then a read that sees it, on `alias` (as for `write`): the rows
        written, the instances read."""
        alias = write_alias(model, alias)
        to_write = await self.statement(write[0], (), write[1])
        to_read = await self.statement(read[0], (), read[1])
        (_, written), (rows, _) = await self.execute_all(
            alias, [(to_write, write[1]), (to_read, read[1])]
        )
        return written, to_read.instances(alias, rows)

    async def execute(
        self, alias: str, statement: Statement, values: Values, prepare: bool = False
    ) -> tuple[Rows, int]:
        """A statement's rows and row count on `alias`; prepared (planned once per
        connection) when `prepare` is true and the transport can."""
        [result] = await self.execute_all(alias, [(statement, values)], prepare)
        return result

    async def execute_all(
        self, alias: str, batch: Sequence[tuple[Statement, Values]], prepare: bool = False
    ) -> list[tuple[Rows, int]]:
        """Each statement's rows and row count on `alias`, in order, in one round trip
        where the transport can; one that Django knows matches nothing is not sent."""
        sent = [
            Bound(statement.sql, statement.bind(values), statement.writes)
            for statement, values in batch
            if statement.sql
        ]
        results = iter(await self.send_sql(alias, sent, prepare) if sent else [])
        return [next(results) if statement.sql else ([], 0) for statement, _ in batch]

    @abstractmethod
    async def send_sql(
        self, alias: str, batch: list[Bound], prepare: bool
    ) -> list[tuple[Rows, int]]:
        """Run these statements, with their parameters, on `alias`: their rows and row
        counts; prepared (planned once per connection) when `prepare` is true and the
        transport can."""

    @abstractmethod
    async def compile(self, build: Builder, shape: Shape, values: Values) -> Statement:
        """compile_statement, where it may use Django's connection."""

    @abstractmethod
    async def send_signal(self, signal: Signal, **kwargs: Any) -> None:
        """Send a model signal (pre_save...) to its receivers."""

    @abstractmethod
    async def ping(self, alias: str, wait: float) -> psycopg.ConnectionInfo | None:
        """Ask `alias` for `SELECT 1`, waiting at most `wait` seconds for a pooled
        connection: what the connection knows of its server (None on SQLite); a
        DatabaseError if none comes or it does not answer."""


class OnDjangoConnections(Transport):
    """Django's own connections, of the calling thread; no method of it waits.

    A batch with a write is one transaction (`attributed`: a savepoint in an atomic
    block, the admin's or a test's, so that a refused write leaves it usable).
    """

    async def compile(self, build: Builder, shape: Shape, values: Values) -> Statement:
        return compile_statement(build, shape, values)

    async def send_sql(
        self, alias: str, batch: list[Bound], prepare: bool
    ) -> list[tuple[Rows, int]]:
        connection = connections[alias]
        results: list[tuple[Rows, int]] = []
        writes = any(bound.writes for bound in batch)
        with attributed(alias) if writes else nullcontext(), connection.cursor() as cursor:
            for sql, params, _ in batch:
                cursor.execute(sql, params)
                results.append((cursor.fetchall() if cursor.description else [], cursor.rowcount))
        return results

    async def send_signal(self, signal: Signal, **kwargs: Any) -> None:
        signal.send(**kwargs)

    async def ping(self, alias: str, wait: float) -> psycopg.ConnectionInfo | None:
        connection = connections[alias]
        pool = getattr(connection, "pool", None)  # psycopg's, on PostgreSQL
        if pool is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return None
        with connection.wrap_database_errors:
            pool.open()  # as Django does before its first connection; then a no-op
            with pool.connection(timeout=wait) as pooled:
                pooled.execute("SELECT 1")
                server: psycopg.ConnectionInfo = pooled.info
                return server


def run(
    operation: Callable[Concatenate[Transport, P], Coroutine[Any, Any, T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run an operation on Django's connections, in this thread, now.

    Its coroutine finishes at its first step, with no event loop: OnDjangoConnections'
    methods are async only to share the operations' code with OnPools, and never wait.
    """
    coroutine = operation(ON_DJANGO_CONNECTIONS, *args, **kwargs)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError(f"{operation.__name__} awaited something other than its transport")


async def arun(
    operation: Callable[Concatenate[Transport, P], Coroutine[Any, Any, T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run an operation on this event loop's pools if it has them (`serving`), else on
    Django's connections in one trip to the request's thread."""
    pools = OnPools.of_running_loop()
    if pools is None:
        return await sync_to_async(run)(operation, *args, **kwargs)
    return await operation(pools, *args, **kwargs)


ON_DJANGO_CONNECTIONS = OnDjangoConnections()


# The event loop's pools.


def new_pool(alias: str) -> AsyncConnectionPool:
    """A pool like Django's own for `alias` (settings.DATABASES' pool options), async,
    its connections in Django's time zone."""
    wrapper = connections[alias]
    options = wrapper.settings_dict["OPTIONS"].get("pool") or {}
    params = wrapper.get_connection_params()
    # Django's adapters, but psycopg's own timestamptz loader (C, twenty times faster):
    # Django's sets each value's time zone to the connection's, which the session's
    # TimeZone already is.
    adapters = AdaptersMap(params["context"])
    timestamptz = psycopg.adapters.types["timestamptz"].oid
    if loader := psycopg.adapters.get_loader(timestamptz, Format.TEXT):
        adapters.register_loader(timestamptz, loader)
    kwargs = {
        **params,
        "context": adapters,
        "options": f"{params.get('options', '')} -c TimeZone={wrapper.timezone_name}".strip(),
        "autocommit": True,
        # Client-side binding, as Django's cursors; such cursors are never prepared.
        "cursor_factory": psycopg.AsyncClientCursor,
        # A statement run with prepare=True is prepared on its first run.
        "prepare_threshold": 0,
    }
    return AsyncConnectionPool(kwargs=kwargs, open=False, **({} if options is True else options))


class OnPools(Transport):
    """A psycopg AsyncConnectionPool per database alias, on the event loop that opened
    them (`serving`)."""

    opened: "OnPools | None" = None

    @classmethod
    def of_running_loop(cls) -> "OnPools | None":
        """The pools `serving` opened for the running event loop, if any."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a thread's sync code
            return None
        return cls.opened if cls.opened is not None and cls.opened.loop is loop else None

    def __init__(self, loop: asyncio.AbstractEventLoop, aliases: Iterable[str]) -> None:
        self.loop = loop
        self.pools = {alias: new_pool(alias) for alias in aliases}
        # Django's error classes for psycopg's, per alias: made once here, since each
        # request's context would otherwise build a DatabaseWrapper just for them (the
        # wrapper keeps no state per use).
        self.errors = {alias: connections[alias].wrap_database_errors for alias in self.pools}

    async def compile(self, build: Builder, shape: Shape, values: Values) -> Statement:
        # In the request's thread: compiling may ask the server for its version.
        return await sync_to_async(compile_statement)(build, shape, values)

    async def send_sql(
        self, alias: str, batch: list[Bound], prepare: bool
    ) -> list[tuple[Rows, int]]:
        told = 0
        if any(bound.writes for bound in batch) and (writer := writer_json()) is not None:
            # The database learns who writes (attributed), in the write's transaction.
            batch = [Bound(SET_WRITER, [writer], False), *batch]
            told = 1
        with self.errors[alias]:
            async with self.connection(alias) as connection:
                if prepare and len(batch) == 1:
                    # Preparing needs server-side binding: psycopg's plain cursor.
                    cursor = psycopg.AsyncCursor(connection)
                    await cursor.execute(batch[0].sql, batch[0].params, prepare=True)
                else:
                    # Client-side binding sends the statements as one simple query:
                    # one round trip, one implicit transaction (autocommit otherwise).
                    cursor = connection.cursor()
                    sql = "; ".join(bound.sql for bound in batch)
                    await cursor.execute(sql, [param for bound in batch for param in bound.params])
                results = []
                while True:
                    # Not `description`: psycopg builds a Column for each of its fields.
                    result = cursor.pgresult
                    has_rows = result is not None and result.status == ExecStatus.TUPLES_OK
                    rows = await cursor.fetchall() if has_rows else []
                    results.append((rows, cursor.rowcount))
                    if not cursor.nextset():
                        return results[told:]

    async def send_signal(self, signal: Signal, **kwargs: Any) -> None:
        await signal.asend(**kwargs)

    async def ping(self, alias: str, wait: float) -> psycopg.ConnectionInfo | None:
        with self.errors[alias]:
            async with self.connection(alias, wait) as connection:
                await connection.execute("SELECT 1")
                return connection.info

    @asynccontextmanager
    async def connection(
        self, alias: str, wait: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection of `alias`'s pool (waiting at most `wait` seconds for one, by
        default the pool's timeout); an error that shows its server lost (down, or
        read-only now) drains the pool (heroes_site.db.failover)."""
        pool = self.pools[alias]
        async with pool.connection(wait) as connection:
            try:
                yield connection
            except psycopg.Error as error:
                if failover.lost_server(connection, error):
                    await pool.drain()
                raise
            except asyncio.CancelledError:
                # Cancelled (its client went away) maybe between sending statements and
                # reading their answers: the next user would read those as its own.
                await connection.close()
                raise


def primary_pool() -> AsyncConnectionPool | ConnectionPool | None:
    """The pool the running code takes the primary's connections from: the event loop's
    (the API under make serve) or Django's; None on SQLite."""
    pools = OnPools.of_running_loop()
    if pools is not None:
        return pools.pools[DEFAULT_DB_ALIAS]
    return getattr(connections[DEFAULT_DB_ALIAS], "pool", None)


@asynccontextmanager
async def serving() -> AsyncIterator[None]:
    """Within this block, operations run by `arun` on this event loop use its pools
    (PostgreSQL only; elsewhere Django's connections)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        yield
        return
    opened = OnPools(asyncio.get_running_loop(), settings.DATABASES)
    for pool in opened.pools.values():
        await pool.open(wait=False)  # a database down at start-up is no reason to fail
    OnPools.opened = opened
    try:
        yield
    finally:
        OnPools.opened = None
        for pool in opened.pools.values():
            await pool.close()


async def lifespan(receive: Callable, send: Callable) -> None:
    """The ASGI lifespan protocol: the pools open at start-up and close at shutdown."""
    await receive()  # lifespan.startup
    async with serving():
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})


@dataclass(frozen=True)
class CursorPage:
    """The SELECT `build` makes from `values`, as ninja's CursorPagination narrows a
    QuerySet (order_by, a filter on its position, a slice) and reads it (`async for`);
    compiled once per narrowing (see `narrowed`)."""

    model: type[Model]
    build: Builder
    values: Values
    ordering: tuple[str, ...] = ()
    position: tuple[str, object] | None = None
    window: tuple[int, int] | None = None

    def order_by(self, *ordering: str) -> "CursorPage":
        return replace(self, ordering=ordering)

    def filter(self, **lookup: object) -> "CursorPage":
        [(name, value)] = lookup.items()  # the position: a field compared with a value
        field = cast(Field, self.model._meta.get_field(name.partition("__")[0]))
        return replace(self, position=(name, field.get_prep_value(value)))

    def __getitem__(self, window: slice) -> "CursorPage":
        return replace(self, window=(window.start, window.stop))

    async def __aiter__(self) -> AsyncIterator[Any]:
        for found in await arun(self.read):
            yield found

    async def read(self, db: Transport) -> list[Any]:
        lookup, position = self.position or (None, None)
        shape = (self.build, self.ordering, lookup, self.window)
        return await db.read(self.model, narrowed, shape, {**self.values, "position": position})


def narrowed(
    shape: tuple[Builder, tuple[str, ...], str | None, tuple[int, int] | None],
    *,
    position: object,
    **values: Any,
) -> QuerySet:
    """CursorPage's statement: the builder's queryset, ordered, from its position, sliced."""
    build, ordering, position_lookup, window = shape
    queryset = cast(QuerySet, build((), **values)).order_by(*ordering)
    if position_lookup:
        queryset = queryset.filter(**{position_lookup: position})
    return queryset[window[0] : window[1]] if window else queryset
