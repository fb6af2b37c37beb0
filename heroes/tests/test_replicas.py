"""Which database serves a read (heroes_site.replicas), shown without a live replica.

The routing rule through Django's clients and the production ASGI app, the failover
bookkeeping on a fake clock, and, on PostgreSQL, the replica backend against an
unreachable replica and a "replica" that is the primary itself. The drill against a
real streaming replica is test_replica_drill.py (`make replica-test`).
"""

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, router
from django.test import AsyncClient, RequestFactory
from django.test.utils import CaptureQueriesContext

from heroes.models import ApiToken, Hero
from heroes_site import replicas as routing
from heroes_site.asgi import Application, EventLoopHandler
from heroes_site.db.transports import OnPools, serving
from heroes_site.replicas import (
    RETRY_AFTER,
    ReplicaRouter,
    Replicas,
    WriteToReplica,
    anonymous_reads,
    may_read_from_replica,
    replica_reads,
)
from heroes_site.settings import replica_config

from .helpers import add_alias, http_scope, load_settings, remove_alias

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="replicas are PostgreSQL's; the PostgreSQL run"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def two_replicas(monkeypatch, clock) -> Replicas:
    """The process's replicas are replica_1 and replica_2, on a fake clock."""
    replicas = Replicas(["replica_1", "replica_2"], clock=clock)
    monkeypatch.setattr(routing, "replicas", replicas)
    return replicas


@pytest.fixture
def decisions(monkeypatch, two_replicas) -> list[tuple[str, str, str]]:
    """Route as with two replicas, but run every query on the test database.

    Each decision of the router is recorded as (read or write, model, alias chosen).
    """
    made: list[tuple[str, str, str]] = []
    read, write = ReplicaRouter.db_for_read, ReplicaRouter.db_for_write

    def recorder(kind: str, decide: Callable) -> Callable:
        def record(self, model, **hints) -> str:
            made.append((kind, model._meta.label, decide(self, model, **hints)))
            return DEFAULT_DB_ALIAS

        return record

    monkeypatch.setattr(ReplicaRouter, "db_for_read", recorder("read", read))
    monkeypatch.setattr(ReplicaRouter, "db_for_write", recorder("write", write))
    return made


def aliases(decisions: list[tuple[str, str, str]], kind: str, model: str) -> set[str]:
    return {alias for made, label, alias in decisions if (made, label) == (kind, model)}


# Settings

PRIMARY_URL = "postgres://hero:secret@primary.example.com:5432/heroes"


def test_replica_urls_become_replica_aliases_with_short_timeouts(monkeypatch):
    settings = load_settings(
        monkeypatch,
        DATABASE_URL=PRIMARY_URL,
        DATABASE_REPLICA_URLS="postgres://hero:secret@replica-a:5432/heroes, "
        "postgres://hero:secret@replica-b:5433/heroes",
        DATABASE_REPLICA_TIMEOUT="0.5",
    )
    databases = settings["DATABASES"]
    assert list(databases) == ["default", "replica_1", "replica_2"]
    assert settings["DATABASE_ROUTERS"] == ["heroes_site.replicas.ReplicaRouter"]
    for alias, host, port in [("replica_1", "replica-a", 5432), ("replica_2", "replica-b", 5433)]:
        replica = databases[alias]
        assert (replica["HOST"], replica["PORT"], replica["NAME"]) == (host, port, "heroes")
        assert replica["ENGINE"] == "heroes_site.replica_backend"  # reads fail over
        assert replica["OPTIONS"]["pool"]["timeout"] == 0.5
        assert replica["OPTIONS"]["pool"]["name"] == alias
        assert replica["OPTIONS"]["connect_timeout"] == 2
        assert replica["TEST"] == {"MIRROR": "default"}
    assert databases["default"]["OPTIONS"]["pool"]["timeout"] == 3.0  # the primary's own


def test_no_replica_urls_means_no_replicas(monkeypatch):
    settings = load_settings(monkeypatch, DATABASE_URL=PRIMARY_URL, DATABASE_REPLICA_URLS="")
    assert list(settings["DATABASES"]) == ["default"]


@pytest.mark.parametrize(
    ("primary", "replicas", "message"),
    [
        (PRIMARY_URL, "sqlite:///replica.sqlite3", "DATABASE_REPLICA_URLS must be"),
        (PRIMARY_URL, "postgres://hero:s3cr3t@replica:port/heroes", "DATABASE_REPLICA_URLS must"),
        ("sqlite:///db.sqlite3", "postgres://hero@replica/heroes", "needs a PostgreSQL"),
    ],
)
def test_replicas_must_be_postgresql(monkeypatch, primary, replicas, message):
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        load_settings(monkeypatch, DATABASE_URL=primary, DATABASE_REPLICA_URLS=replicas)
    assert "s3cr3t" not in str(caught.value)


# The rule


def test_writes_and_migrations_use_the_primary_only(two_replicas):
    with anonymous_reads():
        for model in (Hero, ApiToken, get_user_model(), Session):
            assert router.db_for_write(model) == DEFAULT_DB_ALIAS
        assert Hero.objects.select_for_update().db == DEFAULT_DB_ALIAS
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "heroes")
    assert not router.allow_migrate("replica_1", "heroes")
    assert not router.allow_migrate("replica_2", "auth")


def test_only_anonymous_reads_of_heroes_go_to_a_replica(two_replicas):
    assert Hero.objects.all().db == DEFAULT_DB_ALIAS  # outside an anonymous request
    with anonymous_reads():
        assert Hero.objects.all().db == "replica_1"
        assert Hero.objects.filter(role="mage").db == "replica_1"  # the same, all request
        for model in (ApiToken, get_user_model(), Session):
            assert model.objects.all().db == DEFAULT_DB_ALIAS
    with anonymous_reads():
        assert Hero.objects.all().db == "replica_2"  # the next request, the next replica


def test_without_replicas_everything_uses_the_primary():
    assert routing.replicas.aliases == ()
    with anonymous_reads():
        assert Hero.objects.all().db == DEFAULT_DB_ALIAS
    with pytest.raises(MiddlewareNotUsed):
        replica_reads(lambda request: None)


@pytest.mark.parametrize(
    ("method", "headers", "cookies", "anonymous"),
    [
        ("get", {}, {}, True),
        ("head", {}, {}, True),
        ("get", {}, {"csrftoken": "x"}, True),  # has seen a form, is nobody
        ("get", {}, {"sessionid": "x"}, False),
        ("get", {"Authorization": "Bearer x"}, {}, False),
        ("get", {"Authorization": "Basic eDp5"}, {}, False),
        ("post", {}, {}, False),
        ("patch", {}, {}, False),
    ],
)
def test_anonymous_means_a_get_without_session_cookie_or_authorization(
    method, headers, cookies, anonymous
):
    factory = RequestFactory()
    for name, value in cookies.items():
        factory.cookies[name] = value
    request = getattr(factory, method)("/api/v1/heroes", headers=headers)
    assert may_read_from_replica(request) is anonymous


@pytest.fixture
def hero(db) -> Hero:
    return Hero.objects.create(nickname="Routed", role="mage")


def test_anonymous_pages_read_heroes_from_a_replica(client, hero, decisions):
    for path in (
        "/heroes/",
        hero.get_absolute_url(),
        "/api/v1/heroes",
        f"/api/v1/heroes/{hero.pk}",
    ):
        assert client.get(path).status_code == 200, path
    assert aliases(decisions, "read", "heroes.Hero") == {"replica_1", "replica_2"}
    assert not aliases(decisions, "write", "heroes.Hero")


async def test_anonymous_api_reads_on_the_async_client_use_a_replica(hero, decisions):
    client = AsyncClient()
    assert (await client.get("/api/v1/heroes")).status_code == 200
    assert (await client.get(f"/api/v1/heroes/{hero.pk}")).status_code == 200
    assert aliases(decisions, "read", "heroes.Hero") == {"replica_1", "replica_2"}


def asgi_get(application: Application, path: str) -> int:
    scope = http_scope("GET", path)

    async def send() -> int:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=10)
        while (await communicator.receive_output(timeout=10)).get("more_body"):
            pass
        await communicator.wait()
        return start["status"]

    return async_to_sync(send)()


@pytest.mark.django_db(transaction=True)
def test_the_production_asgi_app_sends_anonymous_reads_to_a_replica(decisions):
    """Its request threads get the request's context: the mark reaches the ORM there."""
    hero = Hero.objects.create(nickname="Over Asgi")
    # Loads the middleware with the replicas above.
    application = Application(EventLoopHandler())
    assert asgi_get(application, hero.get_absolute_url()) == 200
    assert asgi_get(application, f"/api/v1/heroes/{hero.pk}") == 200
    assert aliases(decisions, "read", "heroes.Hero") == {"replica_1", "replica_2"}


async def test_a_token_reads_and_writes_on_the_primary(writer_token, hero, decisions):
    client = AsyncClient(authorization=f"Bearer {writer_token}")
    assert (await client.get(f"/api/v1/heroes/{hero.pk}")).status_code == 200
    assert (await client.get("/api/v1/heroes")).status_code == 200
    created = await client.post("/api/v1/heroes", {"nickname": "Mine"}, "application/json")
    assert created.status_code == 201
    assert (await client.get(f"/api/v1/heroes/{created.json()['uuid']}")).status_code == 200
    assert aliases(decisions, "read", "heroes.Hero") == {DEFAULT_DB_ALIAS}
    assert aliases(decisions, "write", "heroes.Hero") == {DEFAULT_DB_ALIAS}
    assert aliases(decisions, "read", "auth.User") == {DEFAULT_DB_ALIAS}  # the token check
    assert {alias for _, _, alias in decisions} == {DEFAULT_DB_ALIAS}
    assert await Hero.objects.filter(nickname="Mine").aexists()


def test_a_logged_in_user_and_the_admin_read_on_the_primary(staff_client, hero, decisions):
    for path in ("/heroes/", hero.get_absolute_url(), "/admin/heroes/hero/"):
        assert staff_client.get(path).status_code == 200, path
    assert staff_client.get(f"/api/v1/heroes/{hero.pk}").status_code == 200  # session cookie
    assert {alias for _, _, alias in decisions} == {DEFAULT_DB_ALIAS}
    assert aliases(decisions, "read", "heroes.Hero") == {DEFAULT_DB_ALIAS}


def test_logging_in_reads_the_user_on_the_primary(client, writer, decisions):
    login = {"username": "writer", "password": "writer-pass-123"}
    assert client.post("/accounts/login/", login).status_code == 302
    assert aliases(decisions, "read", "auth.User") == {DEFAULT_DB_ALIAS}


# Failover bookkeeping


def test_a_failed_replica_is_skipped_then_tried_again_by_one_read(two_replicas, clock):
    two_replicas.failed("replica_1", OperationalError("connection refused"))
    assert [two_replicas.choose() for _ in range(4)] == ["replica_2"] * 4
    two_replicas.failed("replica_2", OperationalError("connection refused"))
    assert two_replicas.choose() == DEFAULT_DB_ALIAS  # none left: the primary

    clock.now += RETRY_AFTER
    probes = [two_replicas.usable("replica_1") for _ in range(3)]
    assert probes == [True, False, False]  # one read tries it; the others wait for it
    clock.now += RETRY_AFTER
    assert two_replicas.usable("replica_1")  # no answer from that probe: another one


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(two_replicas, clock, caplog):
    caplog.set_level(logging.INFO, logger="heroes_site.replicas")
    for _ in range(3):  # a failed read, then failed probes
        two_replicas.failed("replica_1", OperationalError("connection refused"))
        clock.now += RETRY_AFTER
    started = clock()
    clock.now += 0.1
    two_replicas.served("replica_1", started)
    two_replicas.served("replica_1", clock())
    assert [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("WARNING", "Replica replica_1 is unavailable"),
        ("INFO", "Replica replica_1 answers again"),
    ]
    assert two_replicas.choose() == "replica_1" and two_replicas.choose() == "replica_2"


def test_a_read_begun_before_the_failure_does_not_end_the_outage(two_replicas, clock):
    started = clock()
    clock.now += 0.5
    two_replicas.failed("replica_1", OperationalError("server closed the connection"))
    two_replicas.served("replica_1", started)  # a slow read, done after the failure
    assert not two_replicas.usable("replica_1")


# The replica backend, on PostgreSQL


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def add_replica(alias: str, url: str) -> dict:
    """Add a database alias configured by settings.replica_config; its settings."""
    return add_alias(alias, replica_config(alias, url))


REPLICA_ALIASES = ["replica_1", "replica_2"]


@pytest.fixture(scope="module")
def replica_aliases(django_db_setup) -> Iterator[None]:
    """Two aliases made by settings.replica_config, on PostgreSQL: replica_1 is the
    primary itself (a replica never behind), replica_2 a server that is not there.
    Added before each test's database setup, which then lets the test use them."""
    primary = connections[DEFAULT_DB_ALIAS].settings_dict
    for alias, port in zip(REPLICA_ALIASES, [primary["PORT"], closed_port()], strict=True):
        url = (
            f"postgres://{primary['USER']}:{primary['PASSWORD']}@{primary['HOST']}:{port}/"
            f"{primary['NAME']}"
        )
        add_replica(alias, url)["OPTIONS"]["pool"]["timeout"] = 0.5
    yield
    for alias in REPLICA_ALIASES:
        remove_alias(alias)


@pytest.fixture
def use_replicas(replica_aliases, monkeypatch, clock) -> Callable[..., Replicas]:
    """Make some of REPLICA_ALIASES the process's replicas, on the fake clock."""

    def use(*aliases: str) -> Replicas:
        replicas = Replicas(list(aliases), clock=clock)
        monkeypatch.setattr(routing, "replicas", replicas)
        return replicas

    return use


on_replica_aliases = pytest.mark.django_db(
    transaction=True, databases=[DEFAULT_DB_ALIAS, *REPLICA_ALIASES]
)


@postgresql_only
@on_replica_aliases
def test_a_read_on_an_unreachable_replica_is_served_by_the_primary(use_replicas, caplog):
    use_replicas("replica_2")
    hero = Hero.objects.create(nickname="Failover")
    with anonymous_reads():
        started = time.monotonic()
        assert Hero.objects.get(pk=hero.pk).nickname == "Failover"
        first = time.monotonic() - started
        started = time.monotonic()
        assert Hero.objects.filter(nickname="Failover").count() == 1
        second = time.monotonic() - started
    assert first < 2, "the failed read waited past the replica's pool timeout"
    assert second < 0.2, "the replica, known to be down, was tried again at once"
    outages = [r for r in caplog.records if r.name == "heroes_site.replicas"]
    assert [r.levelname for r in outages] == ["WARNING"]
    assert "replica_2 is unavailable" in outages[0].getMessage()


@postgresql_only
@on_replica_aliases
def test_a_replica_that_answers_again_serves_reads_again(use_replicas, clock, caplog):
    caplog.set_level(logging.INFO, logger="heroes_site.replicas")
    replicas = use_replicas("replica_1")
    hero = Hero.objects.create(nickname="Comeback")
    replicas.failed("replica_1", OperationalError("connection refused"))
    with CaptureQueriesContext(connections["replica_1"]) as on_replica:
        with anonymous_reads():
            assert Hero.objects.get(pk=hero.pk) == hero  # served by the primary
        assert len(on_replica) == 0
        clock.now += RETRY_AFTER
        with anonymous_reads():
            assert Hero.objects.get(pk=hero.pk) == hero
        assert len(on_replica) == 1  # the replica served it
    assert [r.levelname for r in caplog.records if r.name == "heroes_site.replicas"] == [
        "WARNING",
        "INFO",
    ]


@postgresql_only
@on_replica_aliases
async def test_health_lists_replicas_and_only_the_primary_decides(use_replicas, async_client):
    use_replicas(*REPLICA_ALIASES)
    response = await async_client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    # replica_1 is the primary itself, which is no standby: its lag is unknown.
    assert response.json()["replicas"] == [
        {"name": "replica_1", "status": "ok", "lag_seconds": None},
        {"name": "replica_2", "status": "unavailable", "lag_seconds": None},
    ]


def test_a_write_sent_to_a_replica_is_refused():
    """Whatever the router says, a replica alias never writes (the backend's compilers)."""
    alias = "replica_9"
    add_replica(alias, "postgres://nobody@127.0.0.1:9/nothing")
    try:
        with pytest.raises(WriteToReplica):
            Hero.objects.using(alias).create(nickname="Astray")
        with pytest.raises(WriteToReplica):
            Hero.objects.using(alias).filter(nickname="Astray").update(role="mage")
    finally:
        remove_alias(alias)


# The API's reads on the event loop's pools (heroes_site.db.OnPools) follow the same rule


@pytest.fixture
def loop_aliases(monkeypatch) -> list[str]:
    """The aliases the pools' statements ran on, in order."""
    used: list[str] = []
    execute_all = OnPools.execute_all

    async def recording(self: OnPools, alias: str, *args: Any, **kwargs: Any) -> list:
        used.append(alias)
        return await execute_all(self, alias, *args, **kwargs)

    monkeypatch.setattr(OnPools, "execute_all", recording)
    return used


@postgresql_only
@on_replica_aliases
async def test_anonymous_api_reads_on_the_event_loop_use_a_replica(
    use_replicas, loop_aliases, writer_token
):
    use_replicas("replica_1")
    hero = await Hero.objects.acreate(nickname="Routed")
    async with serving():
        anonymous = AsyncClient()
        assert (await anonymous.get(f"/api/v1/heroes/{hero.pk}")).status_code == 200
        assert (await anonymous.get("/api/v1/heroes")).status_code == 200
        anonymous_reads, _ = list(loop_aliases), loop_aliases.clear()
        writer = AsyncClient(authorization=f"Bearer {writer_token}")
        assert (await writer.get(f"/api/v1/heroes/{hero.pk}")).status_code == 200
        response = await writer.patch(
            f"/api/v1/heroes/{hero.pk}", {"role": "tank"}, "application/json"
        )
        assert response.status_code == 200
    assert anonymous_reads == ["replica_1", "replica_1"]
    assert set(loop_aliases) == {DEFAULT_DB_ALIAS}  # the token's, its write, its reads


@postgresql_only
@on_replica_aliases
async def test_an_unreachable_replica_on_the_event_loop_fails_over_to_the_primary(
    use_replicas, loop_aliases, caplog
):
    use_replicas("replica_2")
    hero = await Hero.objects.acreate(nickname="Failover")
    async with serving():
        started = time.monotonic()
        response = await AsyncClient().get(f"/api/v1/heroes/{hero.pk}")
        first = time.monotonic() - started
        assert (await AsyncClient().get(f"/api/v1/heroes/{hero.pk}")).status_code == 200
    assert (response.status_code, response.json()["nickname"]) == (200, "Failover")
    assert first < 2, "the failed read waited past the replica's pool timeout"
    assert loop_aliases == ["replica_2", DEFAULT_DB_ALIAS, DEFAULT_DB_ALIAS]
    outages = [r for r in caplog.records if r.name == "heroes_site.replicas"]
    assert [r.levelname for r in outages] == ["WARNING"]
