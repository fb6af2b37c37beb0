"""Following the primary through a failover (SPEC §14, heroes_site.db.failover), in
process: a multi-host DATABASE_URL reaches every pool; a server that goes away or takes
no writes now is a 503 with Retry-After, never a 500, and its connections leave the
pools at the first error (they are never handed out again); health tells whether the
primary takes writes, and which server it is.

A server "that takes no writes now" is made real with `default_transaction_read_only`
(what fencing a primary does; a standby refuses writes with the same error), one that
"went away" with `pg_terminate_backend` (what a shutdown does to its connections). The
real primary crash and promotion is test_failover_drill.py (`make failover-test`).
"""

import json
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from urllib.parse import urlsplit

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    connection,
    connections,
)
from django.test import AsyncClient
from psycopg.errors import ReadOnlySqlTransaction, UniqueViolation

from heroes.models import Hero
from heroes_site.db import failover, serving
from heroes_site.db.transports import OnPools, new_pool
from heroes_site.settings import database_config

from .helpers import add_alias, load_settings, manage, remove_alias
from .server import free_port

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the pools are PostgreSQL's; the PostgreSQL run"
)
UNAVAILABLE = {"detail": "The database is unavailable; try again shortly."}
HEROES = "/api/v1/heroes"


def django_error(django_class: type, psycopg_error: Exception) -> Exception:
    """A Django database error as Django raises it: wrapping psycopg's."""
    error = django_class(str(psycopg_error))
    error.__cause__ = psycopg_error
    return error


# Which errors mean "try again shortly"


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("the connection is lost"),
        django_error(
            InternalError,
            ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        ),
    ],
    ids=["gone", "lost", "read-only"],
)
def test_an_unreachable_or_read_only_database_is_unavailable(error):
    assert failover.unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        django_error(IntegrityError, UniqueViolation("duplicate key")),
        InternalError("cursor already closed"),
        RuntimeError("a bug"),
    ],
)
def test_other_errors_are_bugs(error):
    assert not failover.unavailable(error)


@pytest.mark.parametrize(
    ("broken", "error", "lost"),
    [
        (True, OperationalError("server closed the connection unexpectedly"), True),
        (False, django_error(InternalError, ReadOnlySqlTransaction("read-only")), True),
        (False, django_error(IntegrityError, UniqueViolation("duplicate key")), False),
        (False, OperationalError("canceling statement due to statement timeout"), False),
    ],
    ids=["broken", "read-only", "refused write", "timeout"],
)
def test_a_server_is_lost_when_its_connection_broke_or_it_takes_no_writes(broken, error, lost):
    assert failover.lost_server(SimpleNamespace(broken=broken), error) is lost


# DATABASE_URL with several hosts

MULTI_HOST = (
    "postgres://hero@h1.example.com:5432,h2.example.com:5433/heroes?target_session_attrs=read-write"
)


@pytest.fixture
def alias_for() -> Iterator[Callable[[str, str], str]]:
    """Add database aliases made by settings.database_config from a URL (never
    connected unless the test does); removed at the end."""
    added: list[str] = []

    def add(alias: str, url: str) -> str:
        add_alias(alias, database_config(url))
        added.append(alias)
        return alias

    yield add
    for alias in added:
        remove_alias(alias)


def test_every_pool_gets_every_host_and_the_session_attributes(alias_for):
    alias = alias_for("several_hosts", MULTI_HOST)
    djangos, event_loops = connections[alias].pool, new_pool(alias)
    for pool in (djangos, event_loops):
        assert {name: pool.kwargs[name] for name in ("host", "port", "target_session_attrs")} == {
            "host": "h1.example.com,h2.example.com",
            "port": "5432,5433",
            "target_session_attrs": "read-write",
        }
        # A failed connection is retried for a few seconds, then on demand: a standby
        # promoted later is found at once, not after psycopg_pool's growing delays.
        assert pool.reconnect_timeout == 5


def test_replica_urls_work_beside_a_multi_host_url(monkeypatch):
    replica = "postgres://hero@h3.example.com:5432/heroes"
    databases = load_settings(monkeypatch, DATABASE_URL=MULTI_HOST, DATABASE_REPLICA_URLS=replica)[
        "DATABASES"
    ]
    assert (databases["default"]["HOST"], databases["replica_1"]["HOST"]) == (
        "h1.example.com,h2.example.com",
        "h3.example.com",
    )
    assert databases["default"]["OPTIONS"]["target_session_attrs"] == "read-write"
    assert "target_session_attrs" not in databases["replica_1"]["OPTIONS"]


def live_server_url(database_url: str, *, first: str = "", query: str = "") -> str:
    """The URL `database_url` (a database on a live server) with the host `first` (as
    host:port) before its own when given, and with `query`."""
    scheme, _, rest = database_url.partition("://")
    user_and_host, _, database = rest.partition("/")
    user, _, host = user_and_host.rpartition("@")
    hosts = ",".join(filter(None, [first, host]))
    return f"{scheme}://{user}@{hosts}/{database}{'?' + query if query else ''}"


def test_both_pools_connect_to_the_host_that_answers(alias_for, fresh_postgres_database):
    url = live_server_url(
        fresh_postgres_database,
        first=f"127.0.0.1:{free_port()}",  # nothing listens there
        query="target_session_attrs=read-write",
    )
    alias = alias_for("dead_first", url)
    live = urlsplit(fresh_postgres_database).port or 5432

    async def event_loops_port() -> int:
        async with new_pool(alias) as pool, pool.connection() as pooled:
            return pooled.info.port

    djangos = connections[alias].pool  # Django's connections come from it
    djangos.open()
    with djangos.connection() as pooled:
        assert pooled.info.port == int(live)
    assert async_to_sync(event_loops_port)() == int(live)


# A server that takes no writes now, or went away: 503, and its connections go


@pytest.fixture
def djangos_pool():
    """Django's pool of the test database, with this thread's connection given back
    (the next query takes one from the pool); drained at the end, whatever the test
    left in it."""
    connection.close()
    yield connection.pool
    connection.close()
    connection.pool.drain()


def settled(pool) -> int:
    """How many connections a pool (sync or async) holds once every one it manages is
    idle in it: none lent out, none being made. A connection still being made when the
    idle ones are taken out would be handed out before them once they are back."""
    deadline = time.monotonic() + 10
    while (stats := pool.get_stats())["pool_available"] < stats["pool_size"]:
        assert time.monotonic() < deadline, f"the pool never settled: {stats}"
        time.sleep(0.01)
    return stats["pool_available"]


def idle_connections(pool) -> list:
    """Every connection of a settled pool (sync), taken out; give them back."""
    return [pool.getconn() for _ in range(settled(pool))]


async def aidle_connections(pool) -> list:
    """Every connection of a settled async pool, taken out; give them back."""
    return [await pool.getconn() for _ in range(await sync_to_async(settled)(pool))]


def fence(connection: psycopg.Connection) -> None:
    connection.execute("SET default_transaction_read_only = on")


def terminate(connections_: list) -> None:
    """End the server side of these connections, as a shutdown would."""
    pids = [pooled.info.backend_pid for pooled in connections_]
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])


# A server that takes no writes now (its connections fenced), or went away (terminated).
SERVERS_LOST = {"read-only": InternalError, "gone": OperationalError}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_djangos_pool_drops_its_connections_at_the_first_error(djangos_pool):
    for server, error in SERVERS_LOST.items():
        old = idle_connections(djangos_pool)
        if server == "read-only":
            for pooled in old:
                fence(pooled)
        else:
            terminate(old)
        for pooled in old:
            djangos_pool.putconn(pooled)

        with pytest.raises(error) as caught:
            Hero.objects.create(nickname=f"Refused {server}")
        assert failover.unavailable(caught.value)
        connection.close()
        # The pool was drained: the connection in use is closed as it comes back, the
        # idle ones at once; none is handed out again.
        assert all(pooled.closed for pooled in old), server
        Hero.objects.create(nickname=f"Written {server}")
        connection.close()  # its connection back to the pool, for the next server
    assert sorted(Hero.objects.values_list("nickname", flat=True)) == [
        "Written gone",
        "Written read-only",
    ]


@postgresql_only
@pytest.mark.django_db(transaction=True)
async def test_the_event_loops_pools_drop_their_connections_at_the_first_error(writer_token):
    api = AsyncClient(authorization=f"Bearer {writer_token}")
    async with serving():
        pool = OnPools.opened.pools[DEFAULT_DB_ALIAS]
        for server in SERVERS_LOST:
            old = await aidle_connections(pool)
            if server == "read-only":
                for pooled in old:
                    await pooled.execute("SET default_transaction_read_only = on")
            else:
                terminate(old)
            for pooled in old:
                await pool.putconn(pooled)

            refused = await api.post(
                HEROES, {"nickname": f"Refused {server}"}, content_type="application/json"
            )
            assert (refused.status_code, refused.json(), refused["Retry-After"]) == (
                503,
                UNAVAILABLE,
                "5",
            ), server
            # Every write after it gets a new connection, to wherever the primary is now.
            for n in range(len(old) + 1):
                written = await api.post(
                    HEROES, {"nickname": f"Written {server} {n}"}, content_type="application/json"
                )
                assert written.status_code == 201, written.json()
            assert all(pooled.closed for pooled in old), server
    assert not await Hero.objects.filter(nickname__startswith="Refused").aexists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_write_on_djangos_connection_to_a_server_that_takes_no_writes_is_a_503(
    client, superuser_client, writer_token, djangos_pool
):
    # The sync clients run the API's operations and the pages on this thread's connection.
    connection.ensure_connection()
    fence(connection.connection)
    api = client.post(
        HEROES,
        {"nickname": "Refused"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {writer_token}",
    )
    assert (api.status_code, api.json(), api["Retry-After"]) == (503, UNAVAILABLE, "5")
    connection.close()
    connection.ensure_connection()
    fence(connection.connection)
    page = superuser_client.post("/heroes/new/", {"nickname": "Refused", "role": "mage"})
    assert (page.status_code, page["Retry-After"]) == (503, "5")
    assert "Temporarily unavailable" in page.content.decode()
    connection.close()
    assert not Hero.objects.exists()


# Health: the primary's truth


def test_health_is_503_while_the_primary_is_down_and_a_replica_answers(fresh_postgres_database):
    # A database whose sessions are read-only, as a standby's are, is the URL's second
    # host; its first answers nothing (the primary, down). The same server is a replica.
    database = fresh_postgres_database.rsplit("/", 1)[1]
    with psycopg.connect(fresh_postgres_database, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    primary_down = live_server_url(
        fresh_postgres_database,
        first=f"127.0.0.1:{free_port()}",
        query="target_session_attrs=read-write",
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.test import Client; "
        "response = Client().get('/api/v1/health'); "
        "print(response.status_code, response.content.decode())",
        DATABASE_URL=primary_down,
        DATABASE_REPLICA_URLS=fresh_postgres_database,
        ALLOWED_HOSTS="testserver",
        DEBUG="True",
    )
    status, _, body = result.stdout.strip().splitlines()[-1].partition(" ")
    health = json.loads(body)
    assert (status, health["database"], health["primary"]) == ("503", "unavailable", None)
    assert health["replicas"][0]["status"] == "ok"
    assert "Traceback" not in result.stderr


@postgresql_only
@pytest.mark.django_db(transaction=True)
async def test_health_is_503_while_the_primary_takes_no_writes(transport, djangos_pool):
    # Whatever the URL says (target_session_attrs may be missing from it): a server
    # that refuses writes, a standby or a fenced primary, is no primary.
    if OnPools.opened:
        pool = OnPools.opened.pools[DEFAULT_DB_ALIAS]
        for pooled in await aidle_connections(pool):
            await pooled.execute("SET default_transaction_read_only = on")
            await pool.putconn(pooled)
    else:
        for pooled in idle_connections(djangos_pool):
            fence(pooled)
            djangos_pool.putconn(pooled)
    response = await AsyncClient().get("/api/v1/health")
    health = response.json()
    assert (response.status_code, health["database"], health["primary"]) == (
        503,
        "unavailable",
        None,
    )


def test_openapi_documents_the_primary_in_health(client):
    schema = client.get("/api/v1/openapi.json").json()
    health = schema["components"]["schemas"]["HealthCheck"]
    primary = health["properties"]["primary"]
    assert {kind["type"] for kind in primary["anyOf"]} == {"string", "null"}
    assert "host:port" in primary["description"]
    assert {"database", "primary", "replicas"} <= set(health["required"])
