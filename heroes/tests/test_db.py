"""heroes_site.db: statements compiled once, bound and read back on both transports.

Every read shape the API makes is compared with Django's own evaluation of the same
queryset, on Django's connections (every database) and on the event loop's pools
(PostgreSQL, in transactional tests: the pools' connections see only committed rows);
every write case gives the same answer and the same rows on both transports. Then the
ASGI wrapper's threads, the lifespan, and errors on the pools.
"""

import asyncio
import contextlib
import copy
import datetime
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_save
from django.test import AsyncClient, RequestFactory
from django.utils import timezone
from psycopg.pq import Format

from heroes.models import (
    NEWEST_FIRST,
    ApiToken,
    Hero,
    hero_by_pk,
    hero_listing,
    hero_update,
    search_key,
    token_owners,
)
from heroes_site.asgi import RequestThread, application
from heroes_site.db import Delete, Statement, Transport, arun, run, serving, transports
from heroes_site.db.statements import Statements, compile_statement
from heroes_site.db.transports import OnDjangoConnections, OnPools, narrowed, new_pool
from heroes_site.db.writers import Writer, current_writer
from heroes_site.replicas import WriteToReplica
from heroes_site.settings import database_config

from .helpers import (
    add_alias,
    asgi_exchange,
    hero_permissions,
    http_scope,
    make_user,
    remove_alias,
)

pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the pools are PostgreSQL's"
)
# The cursor pages backwards too.
OLDEST_FIRST = tuple(field.removeprefix("-") for field in NEWEST_FIRST)
WRITE_PERMISSIONS = ("heroes.add_hero", "heroes.change_hero", "heroes.delete_hero")
NICKNAMES = [
    "Superman",
    "Super_Girl",
    "100% Hero",
    "Back\\slash",
    "ÄRGER Σοφία",
    "Mystra",
    "Thor",
    "Batman",
]


@pytest.fixture
def world(db) -> list[Hero]:
    """Heroes of every role and none, nicknames with LIKE's special characters, and
    created_at ties (the cursor's offsets), oldest first."""
    base = timezone.now() - datetime.timedelta(days=1)
    heroes = []
    for n, nickname in enumerate(NICKNAMES):
        made = Hero.objects.create(nickname=nickname, role=[None, "mage", "tank"][n % 3])
        Hero.objects.filter(pk=made.pk).update(
            created_at=base + datetime.timedelta(seconds=n // 3)  # three by three
        )
        heroes.append(Hero.objects.get(pk=made.pk))
    return heroes


# The pools are PostgreSQL's: elsewhere only Django's connections.
@pytest.fixture(params=["django", "pools"] if connection.vendor == "postgresql" else ["django"])
def on(request) -> Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    """Await an action on one transport: Django's connections, or the pools."""

    async def on_transport(action: Callable[[], Awaitable[Any]]) -> Any:
        if request.param == "django":
            return await action()
        async with serving():
            return await action()

    return on_transport


def comparable(found: Any) -> Any:
    """An instance's stored values and annotations; lists of them; anything else as is."""
    if isinstance(found, list):
        return [comparable(item) for item in found]
    if hasattr(found, "_state"):
        values = {name: comparable(value) for name, value in vars(found).items() if name[0] != "_"}
        return values, found._state.db, found._state.adding
    if isinstance(found, datetime.datetime):
        return found, found.utcoffset()  # the same instant, in the same time zone
    return found


def page_shapes(world: list[Hero]) -> list[tuple[Any, dict]]:
    """The list's shapes as ninja's CursorPagination makes them: orderings, positions
    (at a tie too), windows, with every filter (the search as cursor_page keys it)."""
    tie = world[4].created_at
    positions = [(None, None), ("created_at__lte", tie), ("created_at__gte", tie)]
    filters = [
        (None, None),
        ("super", None),
        (None, "mage"),
        ("super", "tank"),
        ("%", None),
        ("_", None),
        ("\\", None),
        ("σοφία", None),
        ("nobody", None),
    ]
    return [
        (
            (hero_listing, ordering, lookup, window),
            {"search": search, "role": role, "position": position},
        )
        for ordering in (NEWEST_FIRST, OLDEST_FIRST)
        for lookup, position in positions
        for window in ((0, 21), (1, 3), (2, 101))
        for search, role in filters
    ]


async def evaluated(build: Callable, shape: Any, values: dict) -> list:
    """What Django's own iteration of the built queryset finds."""
    return await sync_to_async(lambda: list(build(shape, **values)))()


async def test_every_read_shape_finds_what_django_finds(world, writer, reader, superuser, on):
    tokens = [(await sync_to_async(ApiToken.issue)(user, "t"))[1] for user in (writer, reader)]
    cases: list[tuple[type, Callable, Any, dict]] = [
        (Hero, hero_by_pk, (), {"pk": world[0].pk}),
        (Hero, hero_by_pk, (), {"pk": uuid.uuid4()}),
        *((Hero, narrowed, shape, values) for shape, values in page_shapes(world)),
        *(
            (get_user_model(), token_owners, permissions, ApiToken.lookup(raw_token))
            for raw_token in [*tokens, "unknown"]
            for permissions in [WRITE_PERMISSIONS, ("heroes.change_hero",), ()]
        ),
    ]

    async def read_all(db: Transport) -> list:
        return [await db.read(model, *case) for model, *case in cases]

    found = await on(lambda: arun(read_all))
    for (_, build, shape, values), read in zip(cases, found, strict=True):
        assert comparable(read) == comparable(await evaluated(build, shape, values)), (
            build.__name__,
            shape,
            values,
        )
    sizes = [len(await evaluated(narrowed, s, v)) for s, v in page_shapes(world)]
    assert max(sizes) == len(world) and 0 in sizes  # whole pages, windows and no match


async def test_a_shape_is_compiled_once(world, monkeypatch, on):
    compiled = []

    def counting(*args):
        compiled.append(args[0].__name__)
        return compile_statement(*args)

    monkeypatch.setattr(transports, "statements", Statements())  # none compiled yet
    monkeypatch.setattr(transports, "compile_statement", counting)

    async def read() -> None:
        for found in world[:3]:
            assert await Hero.objects.acurrent(found.pk) == found
        for role in ("mage", "tank"):
            page = Hero.objects.cursor_page(role=role).order_by(*NEWEST_FIRST)[0:21]
            assert {found.role async for found in page} == {role}

    await on(read)
    assert compiled == ["hero_by_pk", "narrowed"]


def test_statements_it_cannot_compile_faithfully_are_refused():
    def tokens_with_users(shape: Any, *, name: str) -> QuerySet:
        return ApiToken.objects.select_related("user").filter(name=name)

    def upper_nickname(shape: Any, *, nickname: str) -> QuerySet:
        return Hero.objects.filter(nickname=nickname.upper())  # the value is not a parameter

    def all_heroes(shape: Any) -> Delete:
        return Delete(Hero.objects.all())

    with pytest.raises(ImproperlyConfigured, match="select_related"):
        compile_statement(tokens_with_users, (), {"name": "deploys"})
    with pytest.raises(ImproperlyConfigured, match="value 0 of a statement"):
        compile_statement(upper_nickname, (), {"nickname": "Thor"})
    post_delete.connect(receiver := lambda **kwargs: None, sender=Hero)
    try:
        with pytest.raises(ImproperlyConfigured, match="collector"):
            compile_statement(all_heroes, (), {})
    finally:
        post_delete.disconnect(receiver, sender=Hero)
    with pytest.raises(TypeError, match="only a SELECT"):
        compile_statement(all_heroes, (), {}).instances(DEFAULT_DB_ALIAS, [])


def test_the_least_recently_used_statements_go_first(monkeypatch):
    monkeypatch.setattr("heroes_site.db.statements.MAX_STATEMENTS", 2)
    compiled = Statements()
    for key in ("a", "b"):
        compiled.add(key, Statement(sql=key))
    assert compiled.get("a") == Statement(sql="a")  # now used more recently than b
    compiled.add("c", Statement(sql="c"))
    assert [compiled.get(key) is None for key in ("a", "b", "c")] == [False, True, False]


def test_search_keys_are_what_listing_filters_by():
    assert search_key("  \uff33\uff55\uff50\uff45\uff52 ") == "super"
    assert search_key("   ") == ""


# Model semantics on either transport


async def test_a_create_sends_the_model_signals_and_stamps_the_hero(on):
    received = []

    def receiver(sender, instance, **kwargs):
        received.append((kwargs["signal"], instance.nickname, instance._state.adding))

    pre_save.connect(receiver, sender=Hero)
    post_save.connect(receiver, sender=Hero)
    try:
        before = timezone.now()
        hero = await on(lambda: Hero.objects.acreate(nickname=" Newcomer "))
    finally:
        pre_save.disconnect(receiver, sender=Hero)
        post_save.disconnect(receiver, sender=Hero)
    assert received == [(pre_save, "Newcomer", True), (post_save, "Newcomer", False)]
    assert hero.created_at >= before and hero.updated_at >= before
    assert (hero.version, hero._state.db) == (1, DEFAULT_DB_ALIAS)
    assert comparable(await Hero.objects.aget(pk=hero.pk)) == comparable(hero)


# SQL in a value: the pools send a write, the writer's set_config and a read-back as one
# query string, with the values quoted into it (client-side binding).
CRAFTED = ["x'); DELETE FROM hrs_heroes; --", "50%% off %s \\' \"; SELECT 1"]


@pytest.mark.parametrize("nickname", CRAFTED)
async def test_sql_in_a_value_is_stored_as_text_on_either_transport(world, nickname, on):
    created = await on(lambda: Hero.objects.acreate(nickname=nickname, role="tank"))
    changed = await on(
        lambda: Hero.objects.achange(world[0].pk, {"nickname": nickname + "!", "role": None})
    )
    assert (created.nickname, changed.nickname) == (nickname, nickname + "!")
    assert await Hero.objects.acount() == len(world) + 1  # nothing deleted
    assert (await Hero.objects.aget(pk=created.pk)).nickname == nickname
    assert (await Hero.objects.aget(pk=world[0].pk)).nickname == nickname + "!"


async def test_token_checks_agree_with_djangos_permission_checks(writer, reader, superuser, on):
    member = await sync_to_async(make_user)("member", ())
    group = await Group.objects.acreate(name="editors")
    await sync_to_async(group.permissions.set)(await sync_to_async(hero_permissions)("delete"))
    await sync_to_async(member.groups.add)(group)
    inactive = await sync_to_async(make_user)("gone", ("add",), is_active=False)
    owners = [writer, reader, superuser, member, inactive]
    tokens = [(await sync_to_async(ApiToken.issue)(user, "t"))[1] for user in owners]
    revoked, raw_revoked = await sync_to_async(ApiToken.issue)(writer, "revoked")
    await ApiToken.objects.filter(pk=revoked.pk).aupdate(revoked_at=timezone.now())

    async def check(raw_token: str) -> Any:
        return await ApiToken.auser_for(raw_token, WRITE_PERMISSIONS)

    for owner, raw_token in zip(owners, tokens, strict=True):
        found = await on(lambda raw_token=raw_token: check(raw_token))
        if not owner.is_active:
            assert found is None
            continue
        assert found.pk == owner.pk
        flags = [getattr(found, f"has_{name.replace('.', '_')}") for name in WRITE_PERMISSIONS]
        fresh = await get_user_model().objects.aget(pk=owner.pk)
        assert flags == [await fresh.ahas_perm(name) for name in WRITE_PERMISSIONS], owner
    assert await on(lambda: check(raw_revoked)) is None
    assert await on(lambda: check("unknown")) is None
    touched = [token.last_used_at is not None async for token in ApiToken.objects.order_by("pk")]
    assert touched == [True, True, True, True, False, False]  # not the inactive's, revoked's


# What both transports share: failover, routing; the pools' settings


async def test_a_read_that_a_replica_cannot_answer_is_served_by_the_primary(world, caplog):
    class ReplicaDown(OnDjangoConnections):
        async def send_sql(self, alias: str, batch: list, prepare: bool) -> list:
            if alias == "replica_1":
                raise OperationalError("connection to replica_1 refused")
            return await super().send_sql(alias, batch, prepare)

    async def read(db: Transport) -> list:
        return await db.read(Hero, hero_by_pk, (), {"pk": world[0].pk}, alias="replica_1")

    class AllDown(OnDjangoConnections):
        async def send_sql(self, alias: str, batch: list, prepare: bool) -> list:
            raise OperationalError(f"connection to {alias} refused")

    [found] = await sync_to_async(run)(lambda db: read(ReplicaDown()))
    assert (found, found._state.db) == (world[0], DEFAULT_DB_ALIAS)
    [outage] = [r for r in caplog.records if r.name == "heroes_site.replicas"]
    assert "replica_1 is unavailable" in outage.getMessage()
    with pytest.raises(OperationalError, match="default refused"):  # no other to ask
        await sync_to_async(run)(lambda db: read(AllDown()))


async def test_a_write_sent_to_a_replica_is_refused_before_it_leaves(world):
    async def write(db: Transport) -> int:
        values = {"pk": world[0].pk, "versions": None, "values": {"role": "tank"}}
        return await db.write(Hero, hero_update, (), values, alias="replica_1")

    with pytest.raises(WriteToReplica):
        await arun(write)
    assert await Hero.objects.acurrent(world[0].pk) == world[0]


@pytest.fixture
def postgresql_alias() -> Iterator[str]:
    """A PostgreSQL database alias (whatever the tests' database is), never connected."""
    url = "postgres://hero:secret@db.example.com:6543/heroes?sslmode=require"
    connections.settings["elsewhere"] = connections.configure_settings(
        {
            DEFAULT_DB_ALIAS: connections.settings[DEFAULT_DB_ALIAS],
            "elsewhere": database_config(url),
        }
    )["elsewhere"]
    yield "elsewhere"
    del connections["elsewhere"]
    del connections.settings["elsewhere"]


def test_a_pool_takes_djangos_connection_settings(postgresql_alias):
    pool = new_pool(postgresql_alias)
    kwargs = pool.kwargs
    assert {name: kwargs[name] for name in ("dbname", "user", "host", "port", "sslmode")} == {
        "dbname": "heroes",
        "user": "hero",
        "host": "db.example.com",
        "port": 6543,
        "sslmode": "require",
    }
    assert "-c TimeZone=UTC" in kwargs["options"]  # as Django sets its connections'
    assert kwargs["autocommit"] is True and kwargs["prepare_threshold"] == 0
    pool_options = connections[postgresql_alias].settings_dict["OPTIONS"]["pool"]
    assert (pool.min_size, pool.max_size, pool.timeout) == (
        pool_options["min_size"],
        pool_options["max_size"],
        pool_options["timeout"],
    )
    assert pool.closed  # opened only by `serving`, on the worker's event loop
    timestamptz = psycopg.adapters.types["timestamptz"].oid
    loader = kwargs["context"].get_loader(timestamptz, Format.TEXT)
    assert loader is psycopg.adapters.get_loader(timestamptz, Format.TEXT)  # psycopg's own


async def test_the_pools_run_statements_on_any_postgresql(fresh_postgres_database):
    """The event loop's transport, on a PostgreSQL server whatever the tests' database is:
    a read, a prepared one, a write that tells the database who writes, a ping."""
    await sync_to_async(add_alias)("elsewhere", database_config(fresh_postgres_database))
    pools = OnPools(asyncio.get_running_loop(), ["elsewhere"])
    await pools.pools["elsewhere"].open()
    writer = Writer("api", "req-7", RequestFactory().get("/api/v1/heroes"))
    token = current_writer.set(writer)
    try:
        assert await pools.execute("elsewhere", Statement(sql="SELECT 1"), {}) == ([(1,)], 1)
        prepared = Statement(sql="SELECT %s::int + 1", params=(41,))
        assert (await pools.execute("elsewhere", prepared, {}, prepare=True))[0] == [(42,)]
        # A write is a transaction that first tells the database who writes.
        told = Statement(sql="SELECT current_setting('heroes.writer', true)", writes=True)
        [(seen,)], _ = await pools.execute("elsewhere", told, {})
        assert json.loads(seen) == json.loads(writer.as_json())
        assert json.loads(seen)["request_id"] == "req-7"
        assert (await pools.ping("elsewhere", 1.0)).dbname == fresh_postgres_database.rsplit(
            "/", 1
        )[1]
        await pools.send_signal(post_delete, sender=Hero, instance=None)  # no receiver
    finally:
        current_writer.reset(token)
        await pools.pools["elsewhere"].close()
        await sync_to_async(remove_alias)("elsewhere")


# The writes: the same calls on both transports, from the same rows (PostgreSQL).


async def rows() -> list:
    return [comparable(found)[0] async for found in Hero.objects.order_by("nickname")]


@sync_to_async
def restore(saved: list[Hero]) -> None:
    kept = ("created_at", "updated_at", "version")  # which bulk_create would not keep
    stored = {one.pk: {name: getattr(one, name) for name in kept} for one in saved}
    Hero.objects.all().delete()
    Hero.objects.bulk_create([copy.copy(one) for one in saved])  # it stamps what it saves
    for pk, values in stored.items():
        QuerySet.update(Hero.objects.filter(pk=pk), **values)


async def outcome(action: Callable[[], Awaitable[Any]], before: list[dict]) -> tuple:
    """What the action returned (or raised), and the rows after it; the timestamps it
    wrote and the uuids it made are replaced by "now" and "new" (they differ from one
    run to the next)."""
    started = timezone.now()
    known = {values["uuid"] for values in before}

    def stamped(values: dict) -> dict:
        return {
            name: "now"
            if isinstance(value, tuple) and value[0] >= started  # a timestamp (comparable)
            else "new"
            if isinstance(value, uuid.UUID) and value not in known
            else value
            for name, value in values.items()
        }

    try:
        result = await action()
        answer: Any = stamped(comparable(result)[0]) if hasattr(result, "_state") else result
    except Exception as error:  # the outcome to compare
        answer = (type(error).__name__, str(error), getattr(error, "current", None))
    after = [stamped(values) for values in await rows()]
    return answer, after == before or after


def write_cases(world: list[Hero]) -> list[Callable[[], Awaitable[Any]]]:
    first, second = world[0], world[1]  # version 2: written once by the fixture
    missing = uuid.uuid4()
    heroes = Hero.objects
    cases: list[Callable[[], Awaitable[Any]]] = [
        lambda: heroes.acreate(nickname="Newcomer", role="priest"),
        lambda: heroes.acreate(nickname="  \uff2e\uff45\uff57  "),  # normalised
        lambda: heroes.acreate(nickname="superman"),  # taken, ignoring case
        lambda: heroes.achange(missing, {"role": "tank"}),
        lambda: heroes.achange(first.pk, {}),
        lambda: heroes.achange(first.pk, {}, versions=[1]),
        lambda: heroes.achange(second.pk, {"nickname": "SUPERMAN"}),  # taken
        lambda: heroes.achange(first.pk, {"nickname": "superman", "role": "tank"}),  # its own
        lambda: heroes.aremove(missing),
        lambda: heroes.aremove(first.pk, versions=[]),  # no tag of ours
    ]
    for versions in (None, [2], [1], [1, 2, 7], []):
        cases += [
            partial(heroes.achange, first.pk, {"role": None}, versions=versions),
            partial(heroes.achange, second.pk, {"role": "tank"}, versions=versions),
            partial(heroes.aremove, second.pk, versions=versions),
        ]
    return cases


@postgresql_only
async def test_every_write_does_the_same_on_both_transports(world):
    saved = [found async for found in Hero.objects.all()]
    before = await rows()
    for n, action in enumerate(write_cases(world)):
        on_django = await outcome(action, before)
        await restore(saved)
        async with serving():
            on_pools = await outcome(action, before)
        await restore(saved)
        assert on_django == on_pools, n


def test_a_sync_run_refuses_an_operation_that_waits():
    async def waits(db: Transport) -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waits awaited something other than its transport"):
        run(waits)


# The ASGI wrapper: no thread for a request that needs none


@pytest.fixture
def signal_threads() -> Iterator[dict[str, list[tuple[str, bool]]]]:
    """The thread each request signal's receivers run in, and whether this thread then
    still had a database connection (after close_old_connections, connected first)."""
    seen: dict[str, list[tuple[str, bool]]] = {"started": [], "finished": []}

    def recorder(name: str) -> Callable:
        def record(**kwargs: object) -> None:
            has_connection = connections[DEFAULT_DB_ALIAS].connection is not None
            seen[name].append((threading.current_thread().name, has_connection))

        return record

    receivers = {"started": recorder("started"), "finished": recorder("finished")}
    signals.request_started.connect(receivers["started"])
    signals.request_finished.connect(receivers["finished"])
    yield seen
    signals.request_started.disconnect(receivers["started"])
    signals.request_finished.disconnect(receivers["finished"])


@pytest.fixture
def request_threads(monkeypatch) -> list[str]:
    """What the requests' threads were given to run."""
    submitted: list[str] = []
    submit = RequestThread.submit

    def recording(self: RequestThread, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        submitted.append(getattr(fn, "__qualname__", repr(fn)))
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(RequestThread, "submit", recording)
    return submitted


async def test_an_api_read_needs_no_thread_on_the_pools(world, signal_threads, request_threads):
    loop_thread = threading.current_thread().name
    async with serving():
        pools = OnPools.opened is not None  # PostgreSQL
        for _ in range(2):  # the first compiles each statement, in a thread
            request_threads.clear()
            for value in signal_threads.values():
                value.clear()
            status, _, _ = await asgi_exchange(
                http_scope("GET", f"/api/v1/heroes/{world[0].pk}"), b""
            )
            assert status == 200
    if pools:
        assert request_threads == []
        assert signal_threads == {
            "started": [(loop_thread, False)],
            "finished": [(loop_thread, False)],
        }
    else:  # Django's connection, in one trip to the request's thread, which closes it
        assert len(request_threads) == 2  # the operation, then response.close()
        [(finished_in, _)] = signal_threads["finished"]
        assert finished_in.startswith("request")


async def test_a_page_gives_its_connection_back_in_its_own_thread(world, signal_threads):
    async with serving():
        status, _, _ = await asgi_exchange(http_scope("GET", "/heroes/"), b"")
    assert status == 200
    [(finished_in, still_connected)] = signal_threads["finished"]
    assert finished_in.startswith("request")
    # Given back to the pool (SQLite's in-memory test database is never closed).
    assert not still_connected or connection.vendor == "sqlite"


async def test_the_lifespan_opens_the_pools_and_closes_them():
    lifespan = ApplicationCommunicator(
        application, {"type": "lifespan", "asgi": {"version": "3.0"}}
    )
    await lifespan.send_input({"type": "lifespan.startup"})
    assert await lifespan.receive_output(timeout=5) == {"type": "lifespan.startup.complete"}
    opened = OnPools.opened
    assert (opened is not None) == (connection.vendor == "postgresql")
    response = await AsyncClient().get("/api/v1/health")
    assert (response.status_code, response.json()["database"]) == (200, "ok")
    await lifespan.send_input({"type": "lifespan.shutdown"})
    assert await lifespan.receive_output(timeout=5) == {"type": "lifespan.shutdown.complete"}
    await lifespan.wait()
    assert OnPools.opened is None
    if opened is not None:
        assert set(opened.pools) == set(connections)
        assert all(pool.closed for pool in opened.pools.values())


# Errors and health on the pools


@postgresql_only
async def test_with_every_pooled_connection_taken_health_is_ok_and_a_read_says_busy(world):
    async with serving():
        pool = OnPools.opened.pools[DEFAULT_DB_ALIAS]
        taken = [await pool.getconn() for _ in range(pool.max_size)]
        try:
            health = await AsyncClient().get("/api/v1/health")
            pool.timeout = 0.2  # not its 3 s
            read = await AsyncClient().get(f"/api/v1/heroes/{world[0].pk}")
        finally:
            for pooled in taken:
                await pool.putconn(pooled)
    assert (health.status_code, health.json()["database"]) == (200, "ok")
    assert (read.status_code, read["Retry-After"]) == (503, "2")
    assert read.json() == {"detail": "The server is busy; try again shortly."}


async def test_an_operation_cancelled_midway_leaves_no_connection_answering_out_of_turn(world):
    """A client that goes away cancels its request (Django's ASGI handler does so), maybe
    after statements went out and before their answers came back: that connection must
    not serve another operation, which would read the cancelled one's answers as its
    own (a bench saw valid tokens refused, 401, and heroes not found after such cancels
    on the pools). Each operation is cancelled after a delay that grows by steps up to
    5 ms. On either transport: on Django's connections (SQLite) the operation's thread
    runs it to its end, and the next one waits for that."""
    heroes = Hero.objects
    operations = [
        lambda n: heroes.achange(world[n % 8].pk, {"role": ["tank", "mage"][n % 2]}),
        lambda n: heroes.acreate(nickname=f"Cancelled {n}"),
        lambda n: heroes.acurrent(world[n % 8].pk),
    ]
    async with serving():
        for n in range(150):
            operation = asyncio.create_task(operations[n % 3](n))
            await asyncio.sleep(n % 50 / 10_000)
            operation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await operation
            for hero in world:
                assert (await heroes.acurrent(hero.pk)).pk == hero.pk, n
