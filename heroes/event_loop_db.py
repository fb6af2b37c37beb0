"""The JSON API's database work on the event loop, on PostgreSQL (used by heroes.api only).

Django's async ORM runs each query in a worker thread, and under load those thread
hops cost the API more than its SQL. Here the API's hero queries, its token check and
its health check run on the event loop instead: each worker process opens a psycopg
AsyncConnectionPool per database alias when the ASGI server starts it (`lifespan`,
heroes_site.asgi), and closes them when it stops.

The SQL is still Django's, from the models' own methods:

- A *builder* describes a statement with them (Hero.objects.listing, at_versions,
  ApiToken.owners...). Django compiles it once per *shape* (which values are None, how
  many versions, the page's window...), in a worker thread since compiling may ask the
  server's version, with a sample in place of each value. The Statement is cached; a
  request puts its own values where the samples landed among the compiled parameters
  (`Statement.bind`), and rows become instances with Model.from_db.
- Writes keep the model's rules: Hero.normalize and Hero.written say what is written,
  Hero.stored_at what a conditional write that matched nothing means (HeroChanged,
  HeroDeleted), reporting_nickname_taken turns a nickname clash into NicknameTaken,
  and database errors become Django's (wrap_database_errors), so the API answers them
  as on the ORM path (409, 503).
- Hero reads go to the alias heroes_site.replicas.read_alias chooses, and fail over as
  the replicas' ORM reads do.

Where no pools were opened for the running loop (SQLite, Django's test clients,
runserver), each function runs the ORM's async methods instead, with the same results:
heroes/tests/test_event_loop_db.py compares both paths for every statement shape.
"""

import asyncio
import datetime
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple, cast

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import EmptyResultSet, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import Field, Model, QuerySet
from django.db.models.deletion import Collector
from django.db.models.sql import DeleteQuery, InsertQuery, UpdateQuery
from django.utils import timezone
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool

from heroes_site import health
from heroes_site.replicas import fail_over, read_alias, replicas

from .models import ApiToken, Hero, HeroQuerySet, reporting_nickname_taken, search_key

Values = dict[str, Any]
# A statement's shape: what its compiled SQL depends on besides its values.
Shape = Hashable

# The values a statement takes as parameters; anything else (None, an expression) is
# part of its shape.
BOUND_TYPES = (str, uuid.UUID, datetime.datetime, int)
# Samples: a string survives normalisation, lower-casing and LIKE escaping unchanged.
SAMPLE_NUMBER = 1_987_654_321  # within PostgreSQL's integer range
SAMPLE_TIME = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
MAX_STATEMENTS = 1024  # per worker; the least recently used go first


def is_bound(value: object) -> bool:
    return isinstance(value, BOUND_TYPES) and not isinstance(value, bool)


def leaves(value: object) -> Iterator[object]:
    """The values in `value`, through dicts, lists and tuples, in order."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def shape_of(value: object) -> Hashable:
    if isinstance(value, dict):
        return tuple((key, shape_of(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return (list, tuple(shape_of(item) for item in value))
    return type(value) if is_bound(value) else value


def with_samples(value: Any, samples: list[object]) -> Any:
    """`value` with a distinct sample of the same type in place of each bound value."""
    if isinstance(value, dict):
        return {key: with_samples(item, samples) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(with_samples(item, samples) for item in value)
    if not is_bound(value):
        return value
    n = len(samples)
    if isinstance(value, str):
        sample: object = f"zqsample{n}zq"
    elif isinstance(value, uuid.UUID):
        sample = uuid.UUID(int=SAMPLE_NUMBER + n)
    elif isinstance(value, datetime.datetime):
        sample = SAMPLE_TIME + datetime.timedelta(microseconds=n)
    else:
        sample = SAMPLE_NUMBER + n
    samples.append(sample)
    return sample


class Slot(NamedTuple):
    """Where the `value`th bound value of a request goes among the parameters."""

    param: int
    value: int
    # The parameter's type when Django wrapped the value (psycopg's Int4 for an integer).
    wrap: type | None = None
    # A LIKE pattern (contains, startswith...) around the sample, and its escaping.
    pattern: str | None = None
    sample: str = ""
    escape: Callable[[str], str] | None = None


class Update(NamedTuple):
    queryset: QuerySet
    values: Values


class Delete(NamedTuple):
    queryset: QuerySet


class Insert(NamedTuple):
    model: type[Model]
    values: Values  # each concrete field's attname: its value as saved


# Builds a statement, given its shape and its values (samples, when compiled).
Builder = Callable[..., QuerySet | Update | Delete | Insert]


@dataclass(frozen=True)
class Statement:
    """One shape of a builder's statement, compiled by Django."""

    sql: str | None  # None: Django knows it matches nothing (EmptyResultSet)
    params: tuple[object, ...]
    slots: tuple[Slot, ...]
    # What a row is read as (a SELECT): the model, its fields' range in the row, and
    # the annotations' positions, as Django's ModelIterable reads them.
    model: type[Model] | None = None
    fields: tuple[str, ...] = ()
    field_range: tuple[int, int] = (0, 0)
    annotations: tuple[tuple[str, int], ...] = ()

    def bind(self, values: Values) -> list[object]:
        params = list(self.params)
        bound = [value for value in leaves(values) if is_bound(value)]
        for slot in self.slots:
            value = bound[slot.value]
            if slot.pattern is not None and slot.escape is not None:
                value = slot.pattern.replace(slot.sample, slot.escape(str(value)))
            elif slot.wrap is not None:
                value = slot.wrap(value)
            params[slot.param] = value
        return params

    def instances(self, alias: str, rows: list[tuple[Any, ...]]) -> list[Model]:
        if self.model is None:
            raise TypeError("only a SELECT's rows are read as instances")
        start, end = self.field_range
        made = []
        for row in rows:
            instance = self.model.from_db(alias, self.fields, row[start:end])
            for name, position in self.annotations:
                setattr(instance, name, row[position])
            made.append(instance)
        return made


def compile_statement(build: Builder, shape: Shape, values: Values) -> Statement:
    """Compile `build`'s statement for this shape, with samples for `values`.

    Runs in a worker thread: compiling may need the database's version.
    """
    samples: list[object] = []
    built = build(shape, **with_samples(values, samples))
    connection = connections[DEFAULT_DB_ALIAS]
    read: dict[str, Any] = {}
    try:
        if isinstance(built, QuerySet):
            compiler = built.query.get_compiler(DEFAULT_DB_ALIAS)
            sql, params = compiler.as_sql()
            read = rows_read_by(compiler)
        elif isinstance(built, Update):
            update = cast(UpdateQuery, built.queryset.query.chain(UpdateQuery))
            update.add_update_values(built.values)
            if update.related_updates:
                raise ImproperlyConfigured("an update of inherited fields is several statements")
            sql, params = update.get_compiler(DEFAULT_DB_ALIAS).as_sql()
        elif isinstance(built, Delete):
            collector = Collector(DEFAULT_DB_ALIAS, origin=built.queryset)
            if not collector.can_fast_delete(built.queryset):
                raise ImproperlyConfigured("this delete needs Django's collector (cascades...)")
            delete = built.queryset.query.chain(DeleteQuery)
            sql, params = delete.get_compiler(DEFAULT_DB_ALIAS).as_sql()
        else:
            insert = InsertQuery(built.model)
            # raw: the values are as saved already (the caller ran each field's pre_save).
            fields = built.model._meta.local_concrete_fields
            insert.insert_values(fields, [built.model(**built.values)], raw=True)
            [(sql, params)] = insert.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    except EmptyResultSet:
        return Statement(sql=None, params=(), slots=())
    slots = tuple(locate(samples, params, connection.ops.prep_for_like_query))
    return Statement(sql=sql, params=tuple(params), slots=slots, **read)


def rows_read_by(compiler: Any) -> dict[str, Any]:
    """How Django's ModelIterable reads this (compiled) SELECT's rows."""
    klass_info = compiler.klass_info
    if klass_info.get("related_klass_infos"):
        raise ImproperlyConfigured("select_related() is not supported on the event loop")
    expressions = [column for column, _, _ in compiler.select]
    if compiler.get_converters(expressions):
        raise ImproperlyConfigured("columns that need Django's converters are not supported")
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    return {
        "model": klass_info["model"],
        "fields": tuple(column.target.attname for column, _, _ in compiler.select[start:end]),
        "field_range": (start, end),
        "annotations": tuple(compiler.annotation_col_map.items()),
    }


def locate(
    samples: list[object], params: Sequence[object], escape: Callable[[str], str]
) -> Iterator[Slot]:
    """The slots of the samples among the compiled parameters; each must be found."""
    for n, sample in enumerate(samples):
        found = False
        for i, param in enumerate(params):
            if isinstance(param, bool):
                continue
            if param == sample:
                yield Slot(i, n, wrap=type(param) if type(param) is not type(sample) else None)
            elif isinstance(param, str) and isinstance(sample, str) and sample in param:
                yield Slot(i, n, pattern=param, sample=sample, escape=escape)
            else:
                continue
            found = True
        if not found:
            raise ImproperlyConfigured(f"value {n} of a statement is not one of its parameters")


async def configure_time_zone(name: str | None, connection: psycopg.AsyncConnection) -> None:
    """A new connection's time zone, as Django sets its own connections'."""
    if name and connection.info.parameter_status("TimeZone") != name:
        await connection.execute("SELECT set_config('TimeZone', %s, false)", [name])


def new_pool(alias: str) -> AsyncConnectionPool:
    """A pool like Django's own for `alias` (settings.DATABASES' pool options), async."""
    wrapper = connections[alias]
    options = wrapper.settings_dict["OPTIONS"].get("pool") or {}
    params = wrapper.get_connection_params()
    # Django's adapters, but psycopg's own timestamptz loader (C, twenty times faster):
    # Django's sets each value's time zone to the connection's, which the session's
    # TimeZone already is (configure_time_zone).
    adapters = AdaptersMap(params["context"])
    timestamptz = psycopg.adapters.types["timestamptz"].oid
    if loader := psycopg.adapters.get_loader(timestamptz, Format.TEXT):
        adapters.register_loader(timestamptz, loader)
    kwargs = {
        **params,
        "context": adapters,
        "autocommit": True,
        # Client-side binding, as Django's cursors; such cursors are never prepared.
        "cursor_factory": psycopg.AsyncClientCursor,
        # A statement read with prepare=True is prepared on its first run.
        "prepare_threshold": 0,
    }
    return AsyncConnectionPool(
        kwargs=kwargs,
        open=False,
        configure=partial(configure_time_zone, wrapper.timezone_name),
        **({} if options is True else options),
    )


class Database:
    """The pools of this worker, on the event loop that opened them, and its statements."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools = {alias: new_pool(alias) for alias in settings.DATABASES}
        self.statements: OrderedDict[Hashable, Statement] = OrderedDict()

    async def statement(self, build: Builder, shape: Shape, values: Values) -> Statement:
        key = (build, shape, shape_of(values))
        try:
            self.statements.move_to_end(key)
            return self.statements[key]
        except KeyError:
            statement = await sync_to_async(compile_statement)(build, shape, values)
        self.statements[key] = statement
        if len(self.statements) > MAX_STATEMENTS:
            self.statements.popitem(last=False)
        return statement

    async def execute(
        self, alias: str, statement: Statement, values: Values, prepare: bool = False
    ) -> tuple[list[tuple[Any, ...]], int]:
        """The rows and the row count of a statement run on `alias`; prepared (and so
        planned once per connection) when `prepare` is true."""
        if statement.sql is None:
            return [], 0
        params = statement.bind(values)
        with connections[alias].wrap_database_errors:
            async with self.pools[alias].connection() as connection:
                if prepare:  # with server-side binding, which preparing needs
                    cursor = psycopg.AsyncCursor(connection)
                    await cursor.execute(statement.sql, params, prepare=True)
                else:
                    cursor = await connection.execute(statement.sql, params)
                rows = await cursor.fetchall() if cursor.description else []
                return rows, cursor.rowcount

    async def read(
        self,
        model: type[Model],
        build: Builder,
        shape: Shape,
        values: Values,
        prepare: bool = False,
    ) -> list[Any]:
        """The instances a SELECT finds, where read_alias(model) says, failing over
        from a replica that cannot answer as ReadFailover does."""
        statement = await self.statement(build, shape, values)
        alias = read_alias(model)
        while True:
            started = replicas.clock()
            try:
                rows, _ = await self.execute(alias, statement, values, prepare)
            except (OperationalError, InterfaceError) as error:
                if alias == DEFAULT_DB_ALIAS:
                    raise
                alias = fail_over(alias, error)
                continue
            replicas.served(alias, started)
            return statement.instances(alias, rows)

    async def write(self, build: Builder, shape: Shape, values: Values) -> int:
        """The number of rows a write statement changed, on the primary."""
        statement = await self.statement(build, shape, values)
        return (await self.execute(DEFAULT_DB_ALIAS, statement, values))[1]

    async def write_and_read(
        self, write: tuple[Builder, Values], read: tuple[Builder, Values]
    ) -> tuple[int, list[Any]]:
        """A write, then a read, on the primary in one round trip (a pipeline: one
        implicit transaction, so the read sees the write): the number of rows written
        and the instances read."""
        to_write = await self.statement(write[0], (), write[1])
        to_read = await self.statement(read[0], (), read[1])
        with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
            async with self.pools[DEFAULT_DB_ALIAS].connection() as connection:
                written = found = None
                async with connection.pipeline():
                    if to_write.sql is not None:
                        written = await connection.execute(to_write.sql, to_write.bind(write[1]))
                    if to_read.sql is not None:
                        found = await connection.execute(to_read.sql, to_read.bind(read[1]))
                rows = await found.fetchall() if found else []
        return written.rowcount if written else 0, to_read.instances(DEFAULT_DB_ALIAS, rows)


_database: Database | None = None


def database() -> Database | None:
    """The pools opened for the running event loop, if any."""
    if _database is not None and _database.loop is asyncio.get_running_loop():
        return _database
    return None


@asynccontextmanager
async def serving() -> AsyncIterator[None]:
    """Within this block the API's queries run on this event loop (PostgreSQL only)."""
    global _database
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        yield
        return
    opened = Database(asyncio.get_running_loop())
    for pool in opened.pools.values():
        await pool.open(wait=False)  # a database down at start-up is no reason to fail
    _database = opened
    try:
        yield
    finally:
        _database = None
        for pool in opened.pools.values():
            await pool.close()


async def lifespan(receive: Callable, send: Callable) -> None:
    """The ASGI lifespan protocol: the pools open at start-up and close at shutdown."""
    await receive()  # lifespan.startup
    async with serving():
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})


# The builders: each statement the API runs, with the models' methods.


def hero(shape: Shape, *, pk: uuid.UUID) -> QuerySet:
    return Hero.objects.filter(pk=pk)


def hero_page(
    shape: tuple[tuple[str, ...], str | None, tuple[int, int] | None],
    *,
    search: str | None,
    role: str | None,
    position: datetime.datetime | None,
) -> QuerySet:
    ordering, position_lookup, window = shape
    heroes = Hero.objects.listing(search=search, role=role).order_by(*ordering)
    if position_lookup:
        heroes = heroes.filter(**{position_lookup: position})
    return heroes[window[0] : window[1]] if window else heroes


def hero_update(
    shape: Shape, *, pk: uuid.UUID, versions: Collection[int] | None, values: Values
) -> Update:
    return Update(Hero.objects.at_versions(pk, versions), values)


def hero_delete(shape: Shape, *, pk: uuid.UUID, versions: Collection[int] | None) -> Delete:
    return Delete(Hero.objects.at_versions(pk, versions))


def hero_insert(shape: Shape, *, values: Values) -> Insert:
    return Insert(Hero, values)


def token_owner(
    permissions: tuple[str, ...], *, key_hash: str, touch_before: datetime.datetime
) -> QuerySet:
    return ApiToken.owners(key_hash, touch_before, permissions)


def token_touch(shape: Shape, *, pk: int, last_used_at: datetime.datetime) -> Update:
    return Update(ApiToken.objects.filter(pk=pk), {"last_used_at": last_used_at})


# What the API calls: each on the event loop if it can, else through the ORM.


async def get_hero(pk: uuid.UUID) -> Hero:
    """The hero `pk`; Hero.DoesNotExist if there is none."""
    if (db := database()) is None:
        return await Hero.objects.aget(pk=pk)
    found: list[Hero] = await db.read(Hero, hero, (), {"pk": pk})
    if not found:
        raise Hero.DoesNotExist("Hero matching query does not exist.")
    return found[0]


@dataclass(frozen=True)
class HeroPage:
    """Hero.objects.listing(search=..., role=...) as ninja's CursorPagination narrows it
    (order_by, a filter on its position, a slice) and reads it (`async for`)."""

    db: Database
    search: str | None
    role: str | None
    ordering: tuple[str, ...] = ()
    position: tuple[str, object] | None = None
    window: tuple[int, int] | None = None

    def order_by(self, *ordering: str) -> "HeroPage":
        return replace(self, ordering=ordering)

    def filter(self, **lookup: object) -> "HeroPage":
        [(name, value)] = lookup.items()
        field = Hero._meta.get_field(name.partition("__")[0])
        if not isinstance(field, Field):
            raise TypeError(f"{name}: the position is a field of the hero")
        return replace(self, position=(name, field.get_prep_value(value)))

    def __getitem__(self, window: slice) -> "HeroPage":
        return replace(self, window=(window.start, window.stop))

    async def __aiter__(self) -> AsyncIterator[Hero]:
        lookup, position = self.position or (None, None)
        shape = (self.ordering, lookup, self.window)
        values = {"search": self.search, "role": self.role, "position": position}
        for found in await self.db.read(Hero, hero_page, shape, values):
            yield found


def hero_listing(search: str | None, role: str | None) -> HeroQuerySet | HeroPage:
    """The heroes the list shows, newest first, for ninja's pagination to page through."""
    if (db := database()) is None:
        return Hero.objects.listing(search=search, role=role)
    # What listing() would filter by; a blank search or role filters nothing.
    return HeroPage(db, search_key(search or "") or None, role or None)


async def current_hero(db: Database, pk: uuid.UUID, versions: Collection[int] | None) -> Hero:
    """HeroQuerySet.current on the event loop."""
    found = await db.read(Hero, hero, (), {"pk": pk})
    return Hero.stored_at(found[0] if found else None, versions)


async def create_hero(**fields: object) -> Hero:
    """A new hero, saved (Hero.save's insert); NicknameTaken if the nickname is taken."""
    if (db := database()) is None:
        return await Hero.objects.acreate(**fields)
    new = Hero(**fields)
    new.normalize()
    # As Django's INSERT: each field's value as pre_save gives it (auto_now stamps).
    values = {
        field.attname: field.pre_save(new, True) for field in Hero._meta.local_concrete_fields
    }
    with reporting_nickname_taken(DEFAULT_DB_ALIAS):
        await db.write(hero_insert, (), {"values": values})
    new._state.adding, new._state.db = False, DEFAULT_DB_ALIAS
    return new


async def change_hero(
    pk: uuid.UUID, changes: Values, versions: Collection[int] | None = None
) -> Hero:
    """HeroQuerySet.change: one conditional UPDATE, then the hero as stored."""
    if (db := database()) is None:
        return await Hero.objects.achange(pk, changes, versions=versions)
    if not changes:
        return await current_hero(db, pk, versions)
    update = {"pk": pk, "versions": versions, "values": Hero.written(changes)}
    # Read back on the primary, where read_alias sends every read of a write request.
    with reporting_nickname_taken(DEFAULT_DB_ALIAS):
        written, found = await db.write_and_read((hero_update, update), (hero, {"pk": pk}))
    # When nothing was written, stored_at says why: changed or deleted.
    return Hero.stored_at(found[0] if found else None, None if written else versions)


async def remove_hero(pk: uuid.UUID, versions: Collection[int] | None = None) -> None:
    """HeroQuerySet.remove: one conditional DELETE; HeroChanged or HeroDeleted if it
    deleted nothing."""
    if (db := database()) is None:
        await Hero.objects.aremove(pk, versions=versions)
        return
    if not await db.write(hero_delete, (), {"pk": pk, "versions": versions}):
        await current_hero(db, pk, versions)  # raises: changed or deleted meanwhile


async def user_for_token(raw_token: str, permissions: tuple[str, ...]) -> AbstractBaseUser | None:
    """ApiToken.auser_for: the token's user, with a flag per permission, in one query."""
    if (db := database()) is None:
        return await ApiToken.auser_for(raw_token, permissions)
    # Prepared: planning its permission subqueries costs ten times more than running them.
    lookup = ApiToken.lookup(raw_token)
    for user in await db.read(get_user_model(), token_owner, permissions, lookup, prepare=True):
        if user.token_needs_touch:
            touch = {"pk": user.token_id, "last_used_at": timezone.now()}
            await db.write(token_touch, (), touch)
        return cast(AbstractBaseUser, user)
    return None


async def database_is_up() -> bool:
    """heroes_site.health.database_is_up, asking a pooled connection of the event loop:
    if none answers within HEALTH_POOL_WAIT, the direct probe decides, as there."""
    if (db := database()) is None:
        return await health.database_is_up()
    try:
        pool = db.pools[DEFAULT_DB_ALIAS]
        async with pool.connection(timeout=health.HEALTH_POOL_WAIT) as connection:
            await connection.execute("SELECT 1")
    except psycopg.Error:
        return await sync_to_async(health.direct_probe.database_is_up)()
    return True
