"""What /api/v1/health reports: whether the primary database can be reached and takes
writes, which server it is, and each read replica's state (SPEC §11, §12, §14).

A load balancer takes an instance out of service on a 503, so the answer must be true
under load: a busy connection pool is not an outage. And it must be the primary's
truth: a standby that answers while the primary is down, or a primary fenced
read-only, is no primary (the API could not write). Both checks run through
heroes_site.db, on the same pools and the same replica bookkeeping as the reads: a
replica is reported `ok` as soon as reads use it again.
"""

import logging
import math
import threading
import time
from typing import NamedTuple

import psycopg
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection

from heroes_site import replicas as routing
from heroes_site.db import Statement, Transport, arun
from heroes_site.migrations_state import migrations_pending

logger = logging.getLogger(__name__)

# How long health waits for a pooled connection before asking the database directly:
# well within a load balancer's patience, where the pool's own timeout may not be.
HEALTH_POOL_WAIT = 0.25

# The replay delay: 0 when the replica has replayed all it received (an idle primary
# sends nothing, and the time of the last replayed transaction then only says how
# long the primary has been idle), else the age of the last replayed transaction.
# NULL when the server is no standby or has replayed nothing since it started.
REPLAY_LAG = Statement(
    sql="""
    SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
           ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
    """
)


class Primary(NamedTuple):
    """What health found of the primary: whether it answers and takes writes, and its
    address (host:port; None when down, or for SQLite, which has no server)."""

    up: bool
    address: str | None = None


DOWN = Primary(up=False)


def primary_behind(server: psycopg.ConnectionInfo | None) -> Primary:
    """The Primary a connection that answered talks to (`server` is its info; None for
    SQLite). Its server's reported settings tell, without a query, whether it takes
    writes: a standby (`in_hot_standby`) or a primary fenced read-only
    (`default_transaction_read_only`) answers, but writes there would fail, whatever
    DATABASE_URL says (it may lack target_session_attrs=read-write)."""
    if server is None:
        return Primary(up=True)
    address = f"{server.host}:{server.port}"
    if "on" in (
        server.parameter_status("in_hot_standby"),
        server.parameter_status("default_transaction_read_only"),
    ):
        logger.warning("Health check: %s answers but takes no writes", address)
        return DOWN
    return Primary(up=True, address=address)


class DirectProbe:
    """Asks the database on a connection of its own, outside the pool.

    One probe at a time per process, and whoever waited for the probe in progress
    takes its answer: a crowd of health checks opens one connection, not a crowd
    (which could use up PostgreSQL's max_connections). The connection is closed
    after each probe, so it holds nothing between checks. It has the pools'
    parameters: with several hosts and target_session_attrs=read-write, it goes to
    the one that takes writes, if any does.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered_at = -math.inf
        self.answer = DOWN

    def primary(self) -> Primary:
        asked = time.monotonic()
        with self.lock:
            if self.answered_at < asked:
                self.answer = self.ask()
                self.answered_at = time.monotonic()
            return self.answer

    @staticmethod
    def ask() -> Primary:
        try:
            with psycopg.connect(**connection.get_connection_params(), autocommit=True) as own:
                own.execute("SELECT 1")
                return primary_behind(own.info)
        except psycopg.Error as error:
            logger.warning(
                "Health check: the database is unreachable: %s", routing.first_line(error)
            )
            return DOWN


direct_probe = DirectProbe()


async def database_report() -> dict:
    """The database's part of the health check: `database` ("ok"; "unavailable" unless
    the primary answers and takes writes, "migrations pending" when it lacks migrations
    this code has), `primary` (its host:port) and `replicas` (replica_statuses)."""
    primary = await find_primary()
    pending = primary.up and await migrations_pending()
    return {
        "database": "migrations pending" if pending else "ok" if primary.up else "unavailable",
        "primary": primary.address,
        "replicas": await arun(replica_statuses) if routing.replicas.aliases else [],
    }


async def find_primary() -> Primary:
    """The primary database, if it can be reached and takes writes.

    A pooled connection is the cheap way to ask; but an exhausted pool (many clients at
    once) only means the instance is busy, and an idle connection broken by a database
    restart only means the pool has yet to replace it: then the direct probe decides.
    """
    try:
        return primary_behind(await arun(ping_primary))
    except DatabaseError:
        if connection.vendor != "postgresql":  # no pool: the database itself did not answer
            logger.warning("Health check: the database is unreachable")
            return DOWN
    return await sync_to_async(direct_probe.primary)()


async def ping_primary(db: Transport) -> psycopg.ConnectionInfo | None:
    """What a pooled connection of the primary knows of its server (None on SQLite),
    if one comes within HEALTH_POOL_WAIT."""
    return await db.ping(DEFAULT_DB_ALIAS, HEALTH_POOL_WAIT)


async def replica_statuses(db: Transport) -> list[dict]:
    """Each replica's health: `ok` with its replay lag in seconds, or `unavailable`.

    A replica left alone after a failure is reported unavailable without a query;
    when its retry time has come, this check is the read that tries it again.
    """
    return [await replica_status(db, alias) for alias in routing.replicas.aliases]


async def replica_status(db: Transport, alias: str) -> dict:
    status = {"name": alias, "status": "unavailable", "lag_seconds": None}
    if not routing.replicas.usable(alias):
        return status
    started = routing.replicas.clock()
    try:
        [(lag,)], _ = await db.execute(alias, REPLAY_LAG, {})
    except DatabaseError as error:
        routing.replicas.failed(alias, error)
        return status
    routing.replicas.served(alias, started)
    if lag is not None:
        lag = max(0.0, round(float(lag), 3))  # a clock ahead of the primary's is no lag
    return {**status, "status": "ok", "lag_seconds": lag}
