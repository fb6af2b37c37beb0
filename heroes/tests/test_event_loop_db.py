"""heroes.event_loop_db: the API's statements on the event loop, compared with the ORM.

PostgreSQL only (the pools are psycopg's), in transactional tests: the pools' own
connections see only committed rows. test_api.py and test_api_auth.py also run each of
their async tests on this path (conftest.api_path); here are the statements shape by
shape, the ASGI handler's hops, the lifespan and health.
"""

import datetime
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import signals
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet
from django.test import AsyncClient
from django.utils import timezone
from psycopg_pool import PoolTimeout

from heroes import event_loop_db
from heroes.event_loop_db import database, hero, hero_page, serving, token_owner
from heroes.models import NEWEST_FIRST, ApiToken, Hero, search_key
from heroes_site.asgi import RequestThread, application

from .helpers import asgi_exchange, hero_permissions, http_scope, make_user

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the pools are PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

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


def comparable(found: Any) -> Any:
    """An instance's stored values and annotations; lists of them; anything else as is."""
    if isinstance(found, list):
        return [comparable(item) for item in found]
    if hasattr(found, "_state"):
        return {name: comparable(value) for name, value in vars(found).items() if name[0] != "_"}
    if isinstance(found, datetime.datetime):
        return found, found.tzinfo  # the same instant in the same time zone
    return found


async def through_orm(build: Callable, shape: Any, values: dict) -> list:
    return await sync_to_async(lambda: list(build(shape, **values)))()


def page_shapes(world: list[Hero]) -> list[tuple[Any, dict]]:
    """The list's shapes as ninja's CursorPagination makes them: orderings, positions
    (at a tie too), windows, with every filter."""
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
        ((ordering, lookup, window), {"search": search, "role": role, "position": position})
        for ordering in (NEWEST_FIRST, OLDEST_FIRST)
        for lookup, position in positions
        for window in ((0, 21), (1, 3), (2, 101))
        for search, role in filters
    ]


async def test_every_read_shape_finds_what_the_orm_finds(world, writer, reader, superuser):
    tokens = {
        user: (await sync_to_async(ApiToken.issue)(user, "t"))[1]
        for user in (writer, reader, superuser)
    }
    cases: list[tuple[type, Callable, Any, dict]] = [
        (Hero, hero, (), {"pk": world[0].pk}),
        (Hero, hero, (), {"pk": uuid.uuid4()}),
        *((Hero, hero_page, shape, values) for shape, values in page_shapes(world)),
        *(
            (get_user_model(), token_owner, permissions, ApiToken.lookup(raw_token))
            for raw_token in [*tokens.values(), "unknown"]
            for permissions in [WRITE_PERMISSIONS, ("heroes.change_hero",), ()]
        ),
    ]
    async with serving():
        db = database()
        for model, build, shape, values in cases:
            on_loop = await db.read(model, build, shape, values)
            orm = await through_orm(build, shape, values)
            assert comparable(on_loop) == comparable(orm), (build.__name__, shape, values)
    sizes = [len(await through_orm(hero_page, s, v)) for s, v in page_shapes(world)]
    assert max(sizes) == len(world) and 0 in sizes  # whole pages, windows and no match


async def test_a_shape_is_compiled_once(world, monkeypatch):
    compiled = []
    compile_statement = event_loop_db.compile_statement

    def counting(*args):
        compiled.append(args[0].__name__)
        return compile_statement(*args)

    monkeypatch.setattr(event_loop_db, "compile_statement", counting)
    async with serving():
        for found in world[:3]:
            assert await event_loop_db.get_hero(found.pk) == found
        for role in ("mage", "tank"):
            page = event_loop_db.hero_listing(search=None, role=role)
            assert {found.role async for found in page.order_by(*NEWEST_FIRST)[0:21]} == {role}
    assert compiled == ["hero", "hero_page"]


# The writes: the same calls through the ORM and on the event loop, from the same rows.


async def rows() -> list[dict]:
    return [comparable(found) async for found in Hero.objects.order_by("nickname")]


@sync_to_async
def restore(saved: list[Hero]) -> None:
    kept = ("created_at", "updated_at", "version")  # which bulk_create would not keep
    stored = {one.pk: {name: getattr(one, name) for name in kept} for one in saved}
    Hero.objects.all().delete()
    Hero.objects.bulk_create(saved)
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
        answer: Any = stamped(comparable(result)) if hasattr(result, "_state") else result
    except Exception as error:  # the outcome to compare
        answer = (type(error).__name__, str(error), getattr(error, "current", None))
    after = [stamped(values) for values in await rows()]
    return answer, after == before or after


async def both_paths(action: Callable[[], Awaitable[Any]]) -> tuple[tuple, tuple]:
    saved = [found async for found in Hero.objects.all()]
    before = await rows()
    orm = await outcome(action, before)
    await restore(saved)
    async with serving():
        on_loop = await outcome(action, before)
    await restore(saved)
    return orm, on_loop


def write_cases(world: list[Hero]) -> list[Callable[[], Awaitable[Any]]]:
    first, second = world[0], world[1]  # version 2: written once by the fixture
    missing = uuid.uuid4()
    change, remove, create = (
        event_loop_db.change_hero,
        event_loop_db.remove_hero,
        event_loop_db.create_hero,
    )
    cases: list[Callable[[], Awaitable[Any]]] = [
        lambda: create(nickname="Newcomer", role="priest"),
        lambda: create(nickname="  \uff2e\uff45\uff57  "),  # normalised
        lambda: create(nickname="superman"),  # taken, ignoring case
        lambda: change(missing, {"role": "tank"}),
        lambda: change(first.pk, {}),
        lambda: change(first.pk, {}, versions=[1]),
        lambda: change(second.pk, {"nickname": "SUPERMAN"}),  # taken
        lambda: change(first.pk, {"nickname": "superman", "role": "tank"}),  # its own
        lambda: remove(missing),
        lambda: remove(first.pk, versions=[]),  # no tag of ours
    ]
    for versions in (None, [2], [1], [1, 2, 7], []):
        cases += [
            partial(change, first.pk, {"role": None}, versions=versions),
            partial(change, second.pk, {"role": "tank"}, versions=versions),
            partial(remove, second.pk, versions=versions),
        ]
    return cases


async def test_every_write_does_what_the_orm_does(world):
    for n, action in enumerate(write_cases(world)):
        orm, on_loop = await both_paths(action)
        assert orm == on_loop, n


async def test_every_token_check_finds_what_the_orm_finds(world, writer, reader, superuser):
    member = await sync_to_async(make_user)("member", ())
    group = await Group.objects.acreate(name="editors")
    await sync_to_async(group.permissions.set)(await sync_to_async(hero_permissions)("delete"))
    await sync_to_async(member.groups.add)(group)
    owners = [writer, reader, superuser, member]
    tokens = [(await sync_to_async(ApiToken.issue)(user, "t"))[1] for user in owners]
    revoked, raw_revoked = await sync_to_async(ApiToken.issue)(writer, "revoked")
    await ApiToken.objects.filter(pk=revoked.pk).aupdate(revoked_at=timezone.now())
    inactive = await sync_to_async(make_user)("gone", ("add",), is_active=False)
    raw_inactive = (await sync_to_async(ApiToken.issue)(inactive, "t"))[1]

    async def used() -> list:
        return [token.last_used_at is not None async for token in ApiToken.objects.order_by("pk")]

    for raw_token in [*tokens, raw_revoked, raw_inactive, "unknown"]:
        answers = []
        for path in ("orm", "event_loop"):
            await ApiToken.objects.aupdate(last_used_at=None)
            if path == "orm":
                user = await event_loop_db.user_for_token(raw_token, WRITE_PERMISSIONS)
            else:
                async with serving():
                    user = await event_loop_db.user_for_token(raw_token, WRITE_PERMISSIONS)
            answers.append((comparable(user) if user else None, await used()))
        assert answers[0] == answers[1]
    flags = [f"has_heroes_{action}_hero" for action in ("add", "change", "delete")]
    async with serving():
        member_flags = await event_loop_db.user_for_token(tokens[3], WRITE_PERMISSIONS)
    assert [getattr(member_flags, flag) for flag in flags] == [False, False, True]


# The ASGI handler: no thread for a request that needs none


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


async def test_an_api_read_on_the_event_loop_starts_no_thread(
    world, signal_threads, request_threads
):
    loop_thread = threading.current_thread().name
    async with serving():
        for _ in range(2):  # the first compiles each statement, in a thread
            request_threads.clear()
            for value in signal_threads.values():
                value.clear()
            status, _, _ = await asgi_exchange(
                http_scope("GET", f"/api/v1/heroes/{world[0].pk}"), b""
            )
            assert status == 200
            status, _, _ = await asgi_exchange(http_scope("GET", "/api/v1/heroes"), b"")
            assert status == 200
    assert request_threads == []
    assert signal_threads == {
        "started": [(loop_thread, False)] * 2,
        "finished": [(loop_thread, False)] * 2,
    }


async def test_a_page_gives_its_connection_back_in_its_own_thread(
    world, signal_threads, request_threads
):
    async with serving():
        status, _, _ = await asgi_exchange(http_scope("GET", "/heroes/"), b"")
    assert status == 200
    assert request_threads  # the page's ORM calls
    [(finished_in, still_connected)] = signal_threads["finished"]
    assert finished_in.startswith("request") and not still_connected
    [(started_in, _)] = signal_threads["started"]
    assert started_in == threading.current_thread().name


async def test_the_lifespan_opens_the_pools_and_closes_them():
    lifespan = ApplicationCommunicator(
        application, {"type": "lifespan", "asgi": {"version": "3.0"}}
    )
    await lifespan.send_input({"type": "lifespan.startup"})
    assert await lifespan.receive_output(timeout=5) == {"type": "lifespan.startup.complete"}
    pools = database().pools
    assert set(pools) == set(connections)
    assert await event_loop_db.database_is_up()
    await lifespan.send_input({"type": "lifespan.shutdown"})
    assert await lifespan.receive_output(timeout=5) == {"type": "lifespan.shutdown.complete"}
    await lifespan.wait()
    assert database() is None
    assert all(pool.closed for pool in pools.values())


# Errors and health


async def test_a_busy_pool_on_the_event_loop_is_a_json_503_saying_busy(world, monkeypatch):
    async def busy(*args, **kwargs):
        raise PoolTimeout("couldn't get a connection after 3.00 sec")

    async with serving():
        monkeypatch.setattr(type(database().pools[DEFAULT_DB_ALIAS]), "getconn", busy)
        response = await AsyncClient().get(f"/api/v1/heroes/{world[0].pk}")
    assert (response.status_code, response["Retry-After"]) == (503, "2")
    assert response.json() == {"detail": "The server is busy; try again shortly."}


async def test_health_is_ok_while_the_event_loop_pool_is_exhausted():
    async with serving():
        pool = database().pools[DEFAULT_DB_ALIAS]
        taken = [await pool.getconn() for _ in range(pool.max_size)]
        try:
            response = await AsyncClient().get("/api/v1/health")
        finally:
            for pooled in taken:
                await pool.putconn(pooled)
    assert (response.status_code, response.json()["database"]) == (200, "ok")


def test_search_keys_are_what_listing_filters_by():
    assert search_key("  \uff33\uff55\uff50\uff45\uff52 ") == "super"
    assert search_key("   ") == ""
