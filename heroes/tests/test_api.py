"""The JSON API, tested as the article tests it: an async client through the ASGI app,
with every write checked in the database through the async ORM."""

import asyncio
import base64
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from unittest.mock import MagicMock

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, connections
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg_pool import PoolTimeout

from heroes.models import ApiToken, Hero
from heroes_site import migrations_state
from heroes_site.db.writers import SET_WRITER
from heroes_site.health import DirectProbe

from .conftest import EMPTY_POOL, FULL_POOL
from .helpers import (
    NEWEST_FIRST_SQL,
    acaptured_queries,
    hero_list_queries,
    json_through_asgi,
    load_data,
)

DATA = load_data("api")
HEROES = "/api/v1/heroes"

# Every async test runs on each transport of the API (conftest.transport).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("transport")]


def bearer_client(token: str) -> AsyncClient:
    # AsyncClient(headers=...) sends client-wide headers as "http-authorization" in
    # Django 5.2.19; a lower-case ASGI name goes through as is.
    return AsyncClient(authorization=f"Bearer {token}")


@pytest.fixture
def api(writer_token) -> AsyncClient:
    """An async client that authenticates as a user with every hero permission."""
    return bearer_client(writer_token)


@pytest.fixture
def hero(db) -> Hero:
    return Hero.objects.create(**DATA["initial_data"]["hero"])


def hero_json(hero: Hero) -> dict:
    return {
        "uuid": str(hero.uuid),
        "nickname": hero.nickname,
        "role": hero.role,
        "created_at": hero.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": hero.updated_at.isoformat().replace("+00:00", "Z"),
    }


# Health


async def test_health_reports_settings_and_database(async_client, settings):
    response = await async_client.get("/api/v1/health")
    assert response.status_code == 200
    params = connection.get_connection_params()
    assert response.json() == {
        "name": settings.PROJECT_NAME,
        "version": settings.VERSION,
        "description": settings.DESCRIPTION,
        "database": "ok",
        # The server that takes the writes; SQLite has none.
        "primary": f"{params['host']}:{params.get('port') or 5432}"
        if connection.vendor == "postgresql"
        else None,
        "replicas": [],
    }


def refuse_connection(*args, **kwargs):
    raise psycopg.OperationalError("connection refused")


BUSY = "The server is busy; try again shortly."
UNAVAILABLE = "The database is unavailable; try again shortly."


@pytest.mark.parametrize(
    ("cause", "pool", "detail", "retry_after"),
    [
        (PoolTimeout("couldn't get a connection"), FULL_POOL, BUSY, "2"),
        (PoolTimeout("couldn't get a connection"), EMPTY_POOL, UNAVAILABLE, "5"),
        (None, FULL_POOL, UNAVAILABLE, "5"),
    ],
    ids=["every-connection-in-use", "no-connection-made", "connection-refused"],
)
async def test_a_database_error_is_a_503_saying_busy_only_when_busy(
    async_client, monkeypatch, cause, pool, detail, retry_after
):
    async def fail(*args, **kwargs):
        raise OperationalError("no connection") from cause

    monkeypatch.setattr("heroes.models.current_hero", fail)
    monkeypatch.setattr("heroes.api.primary_pool", lambda: pool)
    response = await async_client.get(f"{HEROES}/{uuid.uuid4()}")
    assert (response.status_code, response["Retry-After"]) == (503, retry_after)
    assert response.json() == {"detail": detail}


async def test_health_is_503_when_the_database_fails(async_client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    async def refuse_on_the_event_loop(*args, **kwargs):
        refuse_connection()

    if connection.vendor == "postgresql":  # the pools' connections and the direct probe's
        monkeypatch.setattr(psycopg.Connection, "execute", refuse_connection)
        monkeypatch.setattr(psycopg.AsyncConnection, "execute", refuse_on_the_event_loop)
    else:
        monkeypatch.setattr(type(connection._connections["default"]), "cursor", refuse)
    response = await async_client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


@contextmanager
def every_pooled_connection_taken():
    """Take every connection the PostgreSQL pool may hand out, as a crowd of
    requests would, and give them back at the end."""
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's; this runs in the PostgreSQL suite")
    migrations_state.state.check()  # as a worker does when it starts (gunicorn.conf.py)
    connection.close()  # this thread's: health must not find one open, as in production
    pool = connection.pool
    pool.open()
    stats = pool.get_stats()
    in_use = stats["pool_size"] - stats["pool_available"]
    taken = [pool.getconn() for _ in range(pool.max_size - in_use)]
    try:
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.1)
        yield
    finally:
        for pooled in taken:
            pool.putconn(pooled)


@pytest.mark.django_db(transaction=True)
def test_health_is_ok_while_the_pool_is_exhausted(client):
    with every_pooled_connection_taken():
        started = time.monotonic()
        response = client.get("/api/v1/health")
        took = time.monotonic() - started
    assert (response.status_code, response.json()["database"]) == (200, "ok")
    assert took < 2  # not the pool's whole timeout (3 s)


@pytest.mark.django_db(transaction=True)
def test_health_is_503_when_the_pool_is_exhausted_and_the_database_unreachable(client, monkeypatch):
    with every_pooled_connection_taken():
        monkeypatch.setattr(psycopg, "connect", refuse_connection)
        response = client.get("/api/v1/health")
    assert (response.status_code, response.json()["database"]) == (503, "unavailable")


def test_a_crowd_of_health_checks_opens_one_direct_connection_at_a_time(monkeypatch):
    opened = []
    open_now = threading.Semaphore(1)

    @contextmanager
    def connect(**params):
        assert open_now.acquire(blocking=False), "two probes at once"
        opened.append(params)
        time.sleep(0.2)
        open_now.release()
        yield MagicMock()

    monkeypatch.setattr(psycopg, "connect", connect)
    probe = DirectProbe()
    with ThreadPoolExecutor(max_workers=20) as crowd:
        answers = list(crowd.map(lambda _: probe.primary().up, range(20)))
    assert answers == [True] * 20
    assert len(opened) <= 2  # the first probe, and one for those who asked during it


# Create


async def test_create_hero(api):
    case = DATA["case_create"]
    response = await api.post(HEROES, case["payload"], content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in case["want"]} == case["want"]
    stored = await Hero.objects.aget(uuid=body["uuid"])
    assert body == hero_json(stored)
    assert response["Location"] == f"http://testserver{HEROES}/{stored.uuid}"


async def test_create_strips_the_nickname_and_defaults_role_to_null(api):
    response = await api.post(HEROES, {"nickname": "  Thor  "}, content_type="application/json")
    assert response.status_code == 201
    assert (response.json()["nickname"], response.json()["role"]) == ("Thor", None)
    stored = await Hero.objects.aget()
    assert (stored.nickname, stored.role) == ("Thor", None)


@pytest.mark.parametrize("nickname", ["SUPERMAN", " superman ", "SuperMan"])
async def test_create_duplicate_nickname_is_409(api, hero, nickname):
    response = await api.post(HEROES, {"nickname": nickname}, content_type="application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": "A hero with this nickname already exists."}
    assert await Hero.objects.acount() == 1


async def test_create_duplicate_is_409_beyond_ascii(api):
    await Hero.objects.acreate(nickname="Ärger Σοφία")
    response = await api.post(HEROES, {"nickname": "äRGER σΟΦΊΑ"}, content_type="application/json")
    assert response.status_code == 409
    assert await Hero.objects.acount() == 1


@pytest.mark.asyncio  # on pytest-asyncio's own loop, so the two requests really overlap
@pytest.mark.django_db(transaction=True)
async def test_concurrent_creates_of_one_nickname_give_one_201_and_one_409(writer_token):
    async def create(nickname: str):
        return await bearer_client(writer_token).post(
            HEROES, {"nickname": nickname}, content_type="application/json"
        )

    try:
        responses = await asyncio.gather(create("Twin"), create("TWIN"))
        assert sorted(r.status_code for r in responses) == [201, 409]
        assert [h.nickname async for h in Hero.objects.all()] in (["Twin"], ["TWIN"])
    finally:
        # The worker threads' connections: PostgreSQL cannot drop the test database
        # while they are open.
        await sync_to_async(connections.close_all)()


@pytest.mark.parametrize("case", DATA["invalid_create"], ids=lambda c: c["type"])
async def test_create_invalid_input_is_422_in_fastapi_shape(api, case):
    response = await api.post(HEROES, case["payload"], content_type="application/json")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in detail] == [(case["loc"], case["type"])]
    assert set(detail[0]) == {"loc", "msg", "type"}
    assert detail[0]["msg"]
    assert not await Hero.objects.aexists()


async def test_create_with_an_unparsable_body_is_400_json(api):
    response = await api.post(HEROES, '{"nickname": ', content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()
    assert not await Hero.objects.aexists()


NOT_JSON = [
    ("nickname=Thor", "application/x-www-form-urlencoded"),
    ('{"nickname": "Thor"}', "text/plain"),
    ('{"nickname": "Thor"}', ""),
    ('{"nickname": "Thor"}', "application/jsonx"),
]


@pytest.mark.parametrize(("body", "content_type"), NOT_JSON)
async def test_a_body_that_is_not_json_is_415(api, hero, body, content_type):
    detail = {"detail": "The request body must be JSON: send Content-Type: application/json."}
    response = await api.post(HEROES, body, content_type=content_type)
    assert (response.status_code, response.json()) == (415, detail)
    response = await api.patch(f"{HEROES}/{hero.uuid}", body, content_type=content_type)
    assert (response.status_code, response.json()) == (415, detail)
    assert [h.nickname async for h in Hero.objects.all()] == [hero.nickname]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_bodies_of_any_json_type_are_taken(api, hero, content_type):
    response = await api.patch(f"{HEROES}/{hero.uuid}", '{"role": "tank"}', content_type)
    assert response.status_code == 200
    assert (await Hero.objects.aget(pk=hero.pk)).role == "tank"


# Get


async def test_get_hero(async_client, hero):
    response = await async_client.get(f"{HEROES}/{hero.uuid}")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in DATA["case_get"]["want"]} == DATA["case_get"]["want"]
    assert body == hero_json(await Hero.objects.aget(pk=hero.pk))


async def test_get_missing_hero_is_404(async_client):
    response = await async_client.get(f"{HEROES}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"detail": "The hero hasn't been found!"}


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "' OR 1=1 --", "%00"])
async def test_malformed_uuid_is_a_json_404(async_client, bad):
    response = await async_client.get(f"{HEROES}/{bad}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# Patch


async def test_patch_hero(api, hero):
    case = DATA["case_patch"]
    response = await api.patch(f"{HEROES}/{hero.uuid}", case["payload"], "application/json")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in case["want"]} == case["want"]
    stored = await Hero.objects.aget(pk=hero.pk)
    assert body == hero_json(stored)
    assert stored.created_at == hero.created_at
    assert stored.updated_at > hero.updated_at


async def test_patch_changes_only_the_fields_sent(api, hero):
    response = await api.patch(f"{HEROES}/{hero.uuid}", {"role": "tank"}, "application/json")
    assert response.status_code == 200
    stored = await Hero.objects.aget(pk=hero.pk)
    assert (stored.nickname, stored.role) == ("Superman", "tank")


async def test_patch_role_null_clears_the_role(api, hero):
    response = await api.patch(f"{HEROES}/{hero.uuid}", {"role": None}, "application/json")
    assert response.status_code == 200
    assert response.json()["role"] is None
    assert (await Hero.objects.aget(pk=hero.pk)).role is None


async def test_patch_with_nothing_changes_nothing(api, hero):
    response = await api.patch(f"{HEROES}/{hero.uuid}", {}, "application/json")
    assert response.status_code == 200
    stored = await Hero.objects.aget(pk=hero.pk)
    assert response.json() == hero_json(stored) == hero_json(hero)


async def test_patch_to_own_nickname_in_another_case_is_allowed(api, hero):
    response = await api.patch(
        f"{HEROES}/{hero.uuid}", {"nickname": "SUPERMAN"}, "application/json"
    )
    assert response.status_code == 200
    assert (await Hero.objects.aget(pk=hero.pk)).nickname == "SUPERMAN"


async def test_patch_to_another_heroes_nickname_is_409(api, hero):
    other = await Hero.objects.acreate(nickname="Batman")
    response = await api.patch(
        f"{HEROES}/{other.uuid}", {"nickname": "superman"}, "application/json"
    )
    assert response.status_code == 409
    assert (await Hero.objects.aget(pk=other.pk)).nickname == "Batman"


async def test_patch_missing_hero_is_404(api):
    response = await api.patch(f"{HEROES}/{uuid.uuid4()}", {"role": "tank"}, "application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": "The hero hasn't been found!"}


@pytest.mark.parametrize("case", DATA["invalid_patch"], ids=lambda c: c["type"])
async def test_patch_invalid_input_is_422(api, hero, case):
    response = await api.patch(f"{HEROES}/{hero.uuid}", case["payload"], "application/json")
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (case["loc"], case["type"])
    ]
    assert hero_json(await Hero.objects.aget(pk=hero.pk)) == hero_json(hero)


# Delete


async def test_delete_hero(api, hero):
    response = await api.delete(f"{HEROES}/{hero.uuid}")
    assert response.status_code == 200
    assert response.json() == DATA["case_delete"]["want"]
    assert not await Hero.objects.filter(pk=hero.pk).aexists()


async def test_delete_missing_hero_is_404(api, hero):
    response = await api.delete(f"{HEROES}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"detail": "The hero hasn't been found!"}
    assert await Hero.objects.acount() == 1


# Conditional requests: ETag, If-None-Match, If-Match


def etag_of(hero: Hero) -> str:
    return f'"{hero.version}"'


async def stored(hero: Hero) -> Hero:
    return await Hero.objects.aget(pk=hero.pk)


async def test_get_post_and_patch_answer_with_the_heros_etag(api):
    created = await api.post(HEROES, {"nickname": "Thor"}, content_type="application/json")
    hero = await Hero.objects.aget(pk=created.json()["uuid"])
    assert created["ETag"] == etag_of(hero) == '"1"'

    url = f"{HEROES}/{hero.uuid}"
    read = await api.get(url)
    assert read["ETag"] == created["ETag"]

    patched = await api.patch(url, {"role": "tank"}, "application/json")
    hero = await stored(hero)
    assert patched["ETag"] == etag_of(hero) != created["ETag"]
    assert (await api.get(url))["ETag"] == patched["ETag"]


async def test_patch_with_nothing_keeps_the_etag(api, hero):
    url = f"{HEROES}/{hero.uuid}"
    before = (await api.get(url))["ETag"]
    response = await api.patch(url, {}, "application/json", headers={"If-Match": before})
    assert response.status_code == 200
    assert response["ETag"] == before == (await api.get(url))["ETag"]
    assert hero_json(await stored(hero)) == hero_json(hero)


async def test_every_write_changes_the_etag_even_to_the_same_values(api, hero):
    url = f"{HEROES}/{hero.uuid}"
    before = (await api.get(url))["ETag"]
    response = await api.patch(url, {"nickname": hero.nickname}, "application/json")
    assert response["ETag"] != before  # updated_at, part of the representation, changed
    assert response.json()["updated_at"] != hero_json(hero)["updated_at"]


@pytest.mark.parametrize("tags", ["{current}", "*", "W/{current}", '"999", {current}'])
async def test_get_with_a_current_if_none_match_is_304_without_a_body(async_client, hero, tags):
    url = f"{HEROES}/{hero.uuid}"
    current = (await async_client.get(url))["ETag"]
    response = await async_client.get(url, headers={"If-None-Match": tags.format(current=current)})
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == current


async def test_get_with_a_stale_if_none_match_is_the_hero(async_client, hero):
    url = f"{HEROES}/{hero.uuid}"
    stale = (await async_client.get(url))["ETag"]
    await Hero.objects.achange(hero.pk, {"role": "tank"})
    response = await async_client.get(url, headers={"If-None-Match": stale})
    assert response.status_code == 200
    assert response.json() == hero_json(await stored(hero))
    assert response["ETag"] != stale


async def test_get_of_a_missing_hero_with_if_none_match_star_is_404(async_client):
    response = await async_client.get(f"{HEROES}/{uuid.uuid4()}", headers={"If-None-Match": "*"})
    assert response.status_code == 404


@pytest.mark.parametrize("tags", ["{current}", "*", '"999", {current}'])
async def test_patch_with_a_current_if_match_writes(api, hero, tags):
    url = f"{HEROES}/{hero.uuid}"
    current = (await api.get(url))["ETag"]
    response = await api.patch(
        url,
        {"role": "tank"},
        "application/json",
        headers={"If-Match": tags.format(current=current)},
    )
    assert response.status_code == 200
    hero = await stored(hero)
    assert hero.role == "tank"
    assert response.json() == hero_json(hero)
    assert response["ETag"] == etag_of(hero)


@pytest.mark.parametrize("tags", ["{stale}", "W/{current}", '"999"', "garbage", '"0"'])
async def test_patch_with_no_current_if_match_is_412_and_writes_nothing(api, hero, tags):
    url = f"{HEROES}/{hero.uuid}"
    stale = (await api.get(url))["ETag"]
    await Hero.objects.achange(hero.pk, {"role": "priest"})  # someone else, meanwhile
    current = etag_of(await stored(hero))
    before = hero_json(await stored(hero))
    response = await api.patch(
        url,
        {"nickname": "Overwritten"},
        "application/json",
        headers={"If-Match": tags.format(stale=stale, current=current)},
    )
    assert response.status_code == 412
    assert response.json() == {"detail": "The hero has been changed since you read it."}
    assert response["ETag"] == current
    assert hero_json(await stored(hero)) == before


async def test_patch_with_a_stale_if_match_and_nothing_to_write_is_412(api, hero):
    url = f"{HEROES}/{hero.uuid}"
    stale = (await api.get(url))["ETag"]
    await Hero.objects.achange(hero.pk, {"role": "priest"})
    response = await api.patch(url, {}, "application/json", headers={"If-Match": stale})
    assert response.status_code == 412


@pytest.mark.parametrize("tags", ['"1"', "*"])
async def test_patch_and_delete_of_a_missing_hero_with_if_match_are_404(api, tags):
    url = f"{HEROES}/{uuid.uuid4()}"
    response = await api.patch(
        url, {"role": "tank"}, "application/json", headers={"If-Match": tags}
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "The hero hasn't been found!"}
    response = await api.delete(url, headers={"If-Match": tags})
    assert response.status_code == 404


async def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(api, hero):
    url = f"{HEROES}/{hero.uuid}"
    stale = (await api.get(url))["ETag"]
    await Hero.objects.achange(hero.pk, {"role": "priest"})
    response = await api.delete(url, headers={"If-Match": stale})
    assert response.status_code == 412
    assert response.json() == {"detail": "The hero has been changed since you read it."}
    assert (await stored(hero)).role == "priest"


@pytest.mark.parametrize("tags", ["{current}", "*"])
async def test_delete_with_a_current_if_match_deletes(api, hero, tags):
    url = f"{HEROES}/{hero.uuid}"
    current = (await api.get(url))["ETag"]
    response = await api.delete(url, headers={"If-Match": tags.format(current=current)})
    assert response.status_code == 200
    assert response.json() == DATA["case_delete"]["want"]
    assert not await Hero.objects.filter(pk=hero.pk).aexists()


async def test_writes_without_if_match_behave_as_before(api, hero):
    # A client of the article's service: no ETag is ever sent back.
    url = f"{HEROES}/{hero.uuid}"
    await Hero.objects.achange(hero.pk, {"role": "priest"})  # someone else, meanwhile
    response = await api.patch(url, {"nickname": "Last Writer"}, "application/json")
    assert response.status_code == 200
    assert ((await stored(hero)).nickname, (await stored(hero)).role) == ("Last Writer", "priest")
    assert (await api.delete(url)).status_code == 200
    assert not await Hero.objects.filter(pk=hero.pk).aexists()


WRITERS = 8


@pytest.mark.asyncio  # on pytest-asyncio's own loop, so the requests really overlap
@pytest.mark.django_db(transaction=True)
async def test_of_concurrent_patches_with_one_if_match_exactly_one_writes(
    writer_token, hold_writes
):
    hold_writes(WRITERS)
    hero = await Hero.objects.acreate(nickname="Contested")
    url = f"{HEROES}/{hero.uuid}"
    headers = {"Authorization": f"Bearer {writer_token}", "If-Match": etag_of(hero)}
    try:
        answers = await asyncio.gather(
            *(
                json_through_asgi("PATCH", url, {"nickname": f"Writer {n}"}, headers)
                for n in range(WRITERS)
            )
        )
        assert sorted(status for status, _, _ in answers) == [200] + [412] * (WRITERS - 1)
        stored_hero = await stored(hero)
        assert stored_hero.version == 2  # written once
        [(winner_headers, winner)] = [(h, body) for status, h, body in answers if status == 200]
        assert winner == hero_json(stored_hero)
        assert winner_headers["etag"] == etag_of(stored_hero)
        refused = {body["detail"] for status, _, body in answers if status == 412}
        assert refused == {"The hero has been changed since you read it."}
    finally:
        # The worker threads' connections: PostgreSQL cannot drop the test database
        # while they are open.
        await sync_to_async(connections.close_all)()


# List


@pytest.fixture
def many_heroes(db) -> list[Hero]:
    """45 heroes, newest first; every third a mage, nicknames Hero 00..Hero 44."""
    created = [
        Hero.objects.create(nickname=f"Hero {i:02}", role="mage" if i % 3 == 0 else "tank")
        for i in range(45)
    ]
    return created[::-1]


async def follow(client: AsyncClient, url: str) -> tuple[list[str], list[dict]]:
    """Walk `next` links from url; return the nicknames and every page's body."""
    nicknames, pages = [], []
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        pages.append(response.json())
        nicknames += [hero["nickname"] for hero in pages[-1]["results"]]
        url = pages[-1]["next"]
    return nicknames, pages


async def test_list_is_newest_first_in_pages_of_20(async_client, many_heroes):
    nicknames, pages = await follow(async_client, HEROES)
    assert nicknames == [h.nickname for h in many_heroes]
    assert [len(p["results"]) for p in pages] == [20, 20, 5]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    assert set(pages[0]) == {"results", "next", "previous"}


async def test_list_previous_goes_back(async_client, many_heroes):
    first = (await async_client.get(HEROES)).json()
    second = (await async_client.get(first["next"])).json()
    back = (await async_client.get(second["previous"])).json()
    assert back["results"] == first["results"]


async def test_list_pages_stay_put_when_heroes_are_added(async_client, many_heroes):
    first = (await async_client.get(HEROES, {"page_size": 10})).json()
    await Hero.objects.acreate(nickname="Newcomer")
    second = (await async_client.get(first["next"])).json()
    assert [h["nickname"] for h in second["results"]] == [h.nickname for h in many_heroes[10:20]]


async def test_list_pages_through_heroes_created_in_one_instant_once_each(async_client, transport):
    # Only the uuid tie-breaker orders heroes sharing a created_at: without it
    # PostgreSQL returns the ties in another order for each page's query, and SQLite
    # in the order they were inserted, every time.
    created = await sync_to_async(Hero.objects.bulk_create)(
        [Hero(nickname=f"Twin {i:02}") for i in range(40)]
    )
    await Hero.objects.aupdate(created_at=timezone.now())
    async with acaptured_queries() as queries:
        _, pages = await follow(async_client, f"{HEROES}?page_size=3")
    # The statements Django's connection ran (the pools' are the same statements).
    lists = hero_list_queries(queries)
    assert len(lists) == (len(pages) if transport == "django" else 0)
    assert all(NEWEST_FIRST_SQL.search(sql) for sql in lists)
    listed = [hero["uuid"] for page in pages for hero in page["results"]]
    repeated = sorted(hero_uuid for hero_uuid, times in Counter(listed).items() if times > 1)
    missed = sorted({str(hero.uuid) for hero in created} - set(listed))
    assert (repeated, missed) == ([], [])
    assert listed == sorted(listed, reverse=True)  # ties in uuid order, descending


@pytest.mark.parametrize(("page_size", "expected"), [(5, 5), (100, 45), (1000, 45)])
async def test_list_page_size_is_bounded(async_client, many_heroes, page_size, expected):
    response = await async_client.get(HEROES, {"page_size": page_size})
    assert len(response.json()["results"]) == expected


@pytest.mark.parametrize("page_size", [0, -3])
async def test_a_page_size_below_one_is_422(async_client, page_size):
    response = await async_client.get(HEROES, {"page_size": page_size})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["query", "page_size"], "greater_than_equal")


async def test_list_page_size_is_capped_at_100(async_client):
    await sync_to_async(Hero.objects.bulk_create)([Hero(nickname=f"H{i}") for i in range(105)])
    response = await async_client.get(HEROES, {"page_size": 1000})
    assert len(response.json()["results"]) == 100


async def test_list_filters_by_role_and_keeps_the_filter_across_pages(async_client, many_heroes):
    nicknames, pages = await follow(async_client, f"{HEROES}?role=mage&page_size=4")
    assert nicknames == [h.nickname for h in many_heroes if h.role == "mage"]
    assert len(pages) == 4
    assert all("role=mage" in p["next"] for p in pages[:-1])


async def test_list_searches_nicknames_ignoring_case(async_client, many_heroes):
    response = await async_client.get(HEROES, {"search": "HERO 1"})
    assert [h["nickname"] for h in response.json()["results"]] == [
        f"Hero {i}" for i in range(19, 9, -1)
    ]


async def test_list_combines_search_and_role(async_client, many_heroes):
    response = await async_client.get(HEROES, {"search": "hero 1", "role": "mage"})
    assert [h["nickname"] for h in response.json()["results"]] == ["Hero 18", "Hero 15", "Hero 12"]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"role": "bard"}, ["query", "role"]),
        ({"page_size": "many"}, ["query", "page_size"]),
        ({"search": "a\x00b"}, ["query", "search"]),
        ({"search": "x" * 256}, ["query", "search"]),
        ({"cursor": "not base64!"}, ["query", "cursor"]),
        ({"cursor": base64.b64encode(b"p=yesterday").decode()}, ["query", "cursor"]),
        ({"cursor": base64.b64encode(b"o=-5").decode()}, ["query", "cursor"]),
        ({"cursor": base64.b64encode(b"o=99999999999").decode()}, ["query", "cursor"]),
    ],
)
async def test_list_rejects_bad_parameters_with_422(async_client, params, loc):
    response = await async_client.get(HEROES, params)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


@pytest.mark.django_db
def test_list_query_count_does_not_grow_with_the_page_size(many_heroes):
    # A sync client runs the async view's ORM calls on this thread, where they can be counted.
    client = Client()
    counts = []
    for page_size in (2, 40):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(HEROES, {"page_size": page_size, "role": "tank"})
        assert len(response.json()["results"]) == min(page_size, 30)
        counts.append(len(queries))
    assert counts == [1, 1]


@pytest.mark.django_db
def test_a_get_is_one_query_and_a_patch_three(hero, writer, writer_token):
    writer.is_superuser = True  # whose permissions need no query
    writer.save()
    client = Client(headers={"Authorization": f"Bearer {writer_token}"})
    ApiToken.objects.update(last_used_at=timezone.now())  # recently used: no write due
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{HEROES}/{hero.uuid}").status_code == 200
    assert len(queries) == 1
    if_match = {}
    for role in ("tank", "mage"):
        with CaptureQueriesContext(connection) as queries:
            response = client.patch(
                f"{HEROES}/{hero.uuid}", {"role": role}, "application/json", headers=if_match
            )
        assert response.status_code == 200
        # The token check, the hero's conditional update and the read of what it now
        # is; beside them the transaction (here a savepoint, inside this test's own)
        # and, on PostgreSQL, who writes (SET_WRITER, for the history).
        statements = [
            q["sql"].split()[0] for q in queries if not q["sql"].startswith(SET_WRITER[:20])
        ]
        assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == [
            "SELECT",
            "UPDATE",
            "SELECT",
        ]
        if_match = {"If-Match": response["ETag"]}
    # With If-Match, the version check is the UPDATE's own condition.
    [update] = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert '"version" IN (2)' in update.split(" WHERE ", 1)[1]


# Errors outside the endpoints


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/nothing-here", 404),
        ("get", "/api/v1/heroes/x/y", 404),
        ("put", HEROES, 405),
        ("post", "/api/v1/health", 405),
    ],
)
async def test_errors_outside_the_endpoints_are_json(async_client, method, path, status):
    response = await getattr(async_client, method)(path)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


async def test_unexpected_errors_are_a_json_500_without_traceback(async_client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Hero.objects, "cursor_page", explode)
    response = await async_client.get(HEROES)
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}


async def test_timestamps_keep_microseconds(async_client, hero):
    body = (await async_client.get(f"{HEROES}/{hero.uuid}")).json()
    assert body["created_at"] == hero.created_at.isoformat().replace("+00:00", "Z")
    assert body["created_at"].endswith("Z")


# Docs


async def test_openapi_describes_every_operation(async_client, settings):
    response = await async_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"] == {
        "title": settings.PROJECT_NAME,
        "version": settings.VERSION,
        "description": settings.DESCRIPTION,
    }
    paths = schema["paths"]
    operations = {
        (path, method): operation
        for path, methods in paths.items()
        for method, operation in methods.items()
    }
    hero_path = f"{HEROES}/{{hero_id}}"
    assert set(operations) == {
        ("/api/v1/health", "get"),
        (HEROES, "get"),
        (HEROES, "post"),
        (hero_path, "get"),
        (hero_path, "patch"),
        (hero_path, "delete"),
        (f"{hero_path}/history", "get"),
    }
    responses = {key: set(operation["responses"]) for key, operation in operations.items()}
    # Every operation may answer 400 (malformed) and 503 (unreachable or busy); one
    # with a body 413 (too large) and 415 (not JSON).
    anywhere, body = {"400", "503"}, {"413", "415"}
    assert responses[HEROES, "post"] == {"201", "401", "403", "409", "422", *anywhere, *body}
    assert responses[hero_path, "patch"] == {
        *{"200", "401", "403", "404", "409", "412", "422"},
        *anywhere,
        *body,
    }
    assert responses[hero_path, "delete"] == {"200", "401", "403", "404", "412", *anywhere}
    assert responses[hero_path, "get"] == {"200", "304", "404", *anywhere}
    assert responses[HEROES, "get"] == {"200", "422", *anywhere}
    assert responses["/api/v1/health", "get"] == {"200", *anywhere}
    history = (f"{hero_path}/history", "get")
    assert responses[history] == {"200", "401", "403", "404", "422", *anywhere}
    for key in [(HEROES, "post"), (hero_path, "patch"), (hero_path, "delete"), history]:
        assert operations[key]["security"], key
    for key in [(HEROES, "post"), (hero_path, "patch")]:
        assert "requestBody" in operations[key]
    # Conditional requests: the ETag answered, the If-* headers taken.
    for key, ok in [
        ((hero_path, "get"), "200"),
        ((HEROES, "post"), "201"),
        ((hero_path, "patch"), "200"),
    ]:
        assert "ETag" in operations[key]["responses"][ok]["headers"], key
    assert "content" not in operations[hero_path, "get"]["responses"]["304"]
    assert "412" not in responses[hero_path, "get"]
    headers = {
        key: {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        for key, operation in operations.items()
    }
    assert headers[hero_path, "get"] == {"If-None-Match"}
    assert headers[hero_path, "patch"] == headers[hero_path, "delete"] == {"If-Match"}
    assert headers[HEROES, "post"] == set()
    components = schema["components"]["schemas"]
    assert set(components["HeroRead"]["properties"]) == {
        "uuid",
        "nickname",
        "role",
        "created_at",
        "updated_at",
    }
    assert components["HeroCreate"]["additionalProperties"] is False
    assert {"BearerTokenAuth", "SessionAuth"} <= set(schema["components"]["securitySchemes"])


async def test_swagger_ui_uses_bundled_files(async_client):
    from django.contrib.staticfiles import finders

    response = await async_client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert finders.find("ninja/swagger-ui-bundle.js")
