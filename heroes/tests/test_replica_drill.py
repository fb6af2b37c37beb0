"""The replica drill: anonymous reads on a real streaming replica, under a real server.

bench/replica.py makes a hot standby of the PostgreSQL at 127.0.0.1:5432
(`pg_basebackup -R -X stream`, then pg_ctl on a free port); a fresh database on the
primary, streamed to the standby, serves `make serve`'s gunicorn with
DATABASE_REPLICA_URLS pointing at the standby. Black box, over HTTP:

- with the standby's replay paused (`pg_wal_replay_pause()`), heroes just created
  are missing for anonymous readers (API get and list, HTML list and detail) and
  there for their creators (token, session); after `pg_wal_replay_resume()` anyone
  sees them;
- with the standby stopped, anonymous reads still succeed and health stays 200 with
  the replica `unavailable`, logged once; started again, the standby serves reads
  again (shown by pausing its replay once more).

It takes 30-60 s (most of it copying the primary), so it is kept out of
`make test` (marker `replica`) and run by `make replica-test` and `.ci/run`.
"""

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import psycopg
import pytest

from .helpers import REPO_ROOT
from .server import (
    Visitor,
    eventually,
    free_port,
    prepare_to_serve,
    production_env,
    start_gunicorn,
    superuser_token,
)

pytestmark = pytest.mark.replica

PRIMARY = "postgres://postgres@127.0.0.1:5432"
OUTAGE_LOGGED = "Replica replica_1 is unavailable"
BACK_LOGGED = "Replica replica_1 answers again"


class Standby:
    """The streaming replica, driven by bench/replica.py as developers drive it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}"

    def script(self, action: str) -> None:
        result = subprocess.run(
            [sys.executable, "bench/replica.py", action, "--port", str(self.port)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr

    def query(self, sql: str) -> object:
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as standby:
            row = standby.execute(sql).fetchone()
            assert row is not None
            return row[0]

    @contextlib.contextmanager
    def replay_paused(self) -> Iterator[None]:
        self.query("SELECT pg_wal_replay_pause()")
        try:
            eventually(
                lambda: self.query("SELECT pg_get_wal_replay_pause_state()") == "paused",
                10,
                "replay paused",
            )
            yield
        finally:
            self.query("SELECT pg_wal_replay_resume()")


def sees(visitor: Visitor, uuid: str, nickname: str) -> dict[str, bool]:
    """Whether the visitor finds the hero by each anonymous read path."""
    api_get, _ = visitor.get(f"/api/v1/heroes/{uuid}")
    _, api_list = visitor.get("/api/v1/heroes?page_size=100")
    page, _ = visitor.get(f"/heroes/{uuid}/")
    _, html_list = visitor.get(f"/heroes/?{urlencode({'q': nickname})}")
    assert api_get in (200, 404) and page in (200, 404)
    assert isinstance(api_list, dict) and isinstance(html_list, str)
    return {
        "api get": api_get == 200,
        "api list": uuid in {hero["uuid"] for hero in api_list["results"]},
        "html detail": page == 200,
        "html list": f"/heroes/{uuid}/" in html_list,  # its link
    }


EVERYWHERE = {"api get": True, "api list": True, "html detail": True, "html list": True}
NOWHERE = dict.fromkeys(EVERYWHERE, False)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database on the primary; the standby gets it by replication."""
    name = f"heroes_replica_drill_{secrets.token_hex(4)}"
    with psycopg.connect(f"{PRIMARY}/postgres", autocommit=True) as primary:
        primary.execute(f"CREATE DATABASE {name}")
    yield name
    with psycopg.connect(f"{PRIMARY}/postgres", autocommit=True) as primary:
        primary.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def standby(database) -> Iterator[Standby]:
    standby = Standby()
    standby.script("start")
    yield standby
    standby.script("remove")


@pytest.fixture(scope="module")
def server(database, standby, tmp_path_factory) -> Iterator[dict]:
    """make serve's gunicorn (one worker, so its log counts are one process's) on the
    primary and the standby; its base URL, an API token and a user's credentials."""
    work = tmp_path_factory.mktemp("replica-drill")
    env = production_env(
        work,
        DATABASE_URL=f"{PRIMARY}/{database}",
        DATABASE_REPLICA_URLS=f"{standby.url}/{database}",
        WEB_CONCURRENCY="1",
        LOG_LEVEL="INFO",
    )
    run = prepare_to_serve(env)
    password = secrets.token_urlsafe(12)
    token = superuser_token(run, password)
    log = work / "server.log"
    process = start_gunicorn(env, log)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        yield {"base": base, "token": token, "password": password, "log": log, "db": database}
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def stored_nicknames(database: str) -> set[str]:
    with psycopg.connect(f"{PRIMARY}/{database}") as primary:
        return {row[0] for row in primary.execute("SELECT nickname FROM hrs_heroes")}


def test_anonymous_readers_lag_while_writers_read_their_own_writes(server, standby):
    anonymous = Visitor(server["base"])
    api_writer = Visitor(server["base"], server["token"])
    browser = Visitor(server["base"])
    browser.log_in("drill", server["password"])
    tag = secrets.token_hex(3)

    with standby.replay_paused():
        by_token = (api_writer.create_with_api(f"Token {tag}"), f"Token {tag}")
        by_session = (browser.create_with_form(f"Session {tag}"), f"Session {tag}")
        assert {f"Token {tag}", f"Session {tag}"} <= stored_nicknames(server["db"])
        for hero in (by_token, by_session):
            assert sees(anonymous, *hero) == NOWHERE, hero
        # Each creator, and any client sending credentials, reads the primary.
        assert sees(api_writer, *by_token) == EVERYWHERE
        assert sees(browser, *by_session) == EVERYWHERE
        assert sees(browser, *by_token) == EVERYWHERE

        status, health = anonymous.get("/api/v1/health")
        assert status == 200 and health["database"] == "ok"
        [replica] = health["replicas"]
        assert (replica["name"], replica["status"]) == ("replica_1", "ok")
        assert replica["lag_seconds"] > 0  # it received our writes and replayed none

    for hero in (by_token, by_session):
        eventually(lambda hero=hero: sees(anonymous, *hero) == EVERYWHERE, 15, "replay resumed")
    [replica] = anonymous.get("/api/v1/health")[1]["replicas"]
    assert replica["status"] == "ok" and replica["lag_seconds"] is not None


def test_a_stopped_replica_costs_no_error_and_serves_again_once_back(server, standby):
    anonymous = Visitor(server["base"])
    api_writer = Visitor(server["base"], server["token"])
    tag = secrets.token_hex(3)
    before = api_writer.create_with_api(f"Before {tag}")
    eventually(lambda: anonymous.get(f"/api/v1/heroes/{before}")[0] == 200, 15, "replicated")
    outages_before = server["log"].read_text().count(OUTAGE_LOGGED)

    standby.script("stop")
    try:
        during = (api_writer.create_with_api(f"During {tag}"), f"During {tag}")
        for _ in range(5):  # the primary serves: the newest hero is there at once
            started = time.monotonic()
            assert sees(anonymous, *during) == EVERYWHERE
            assert time.monotonic() - started < 4  # four reads, none waiting long
        status, health = anonymous.get("/api/v1/health")
        assert (status, health["database"]) == (200, "ok")
        assert health["replicas"] == [
            {"name": "replica_1", "status": "unavailable", "lag_seconds": None}
        ]
        assert server["log"].read_text().count(OUTAGE_LOGGED) == outages_before + 1
    finally:
        standby.script("start")

    # The standby serves reads again, without a restart of the server: with its
    # replay paused, a new hero goes missing for anonymous readers.
    with standby.replay_paused():
        after = api_writer.create_with_api(f"After {tag}")
        eventually(lambda: anonymous.get(f"/api/v1/heroes/{after}")[0] == 404, 15, "back")
        # Health tells it at once: it asks where the reads do, on the same bookkeeping.
        [replica] = anonymous.get("/api/v1/health")[1]["replicas"]
        assert replica["status"] == "ok"
        assert api_writer.get(f"/api/v1/heroes/{after}")[0] == 200
    eventually(lambda: anonymous.get(f"/api/v1/heroes/{after}")[0] == 200, 15, "replayed")
    log = server["log"].read_text()
    assert log.count(OUTAGE_LOGGED) == outages_before + 1
    assert log.count(BACK_LOGGED) == log.count(OUTAGE_LOGGED)  # each outage ends once
