"""What /api/v1/health reports: whether the primary database can be reached, and each
read replica's state (SPEC §11, §12).

A load balancer takes an instance out of service on a 503, so the answer must be true
under load: a busy connection pool is not an outage. Both checks run through
heroes_site.db, on the same pools and the same replica bookkeeping as the reads: a
replica is reported `ok` as soon as reads use it again.
"""

import logging
import math
import threading
import time

import psycopg
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection
from psycopg_pool import PoolTimeout

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


class DirectProbe:
    """Asks the database on a connection of its own, outside the pool.

    One probe at a time per process, and whoever waited for the probe in progress
    takes its answer: a crowd of health checks opens one connection, not a crowd
    (which could use up PostgreSQL's max_connections). The connection is closed
    after each probe, so it holds nothing between checks.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered_at = -math.inf
        self.answer = False

    def database_is_up(self) -> bool:
        asked = time.monotonic()
        with self.lock:
            if self.answered_at < asked:
                self.answer = self.ask()
                self.answered_at = time.monotonic()
            return self.answer

    @staticmethod
    def ask() -> bool:
        try:
            with psycopg.connect(**connection.get_connection_params(), autocommit=True) as own:
                own.execute("SELECT 1")
        except psycopg.Error:
            logger.warning("Health check: the database is unreachable", exc_info=True)
            return False
        return True


direct_probe = DirectProbe()


async def database_report() -> dict:
    """The database's part of the health check: `database` ("ok"; "unavailable" when
    the primary does not answer, "migrations pending" when it lacks migrations this
    code has) and `replicas` (replica_statuses)."""
    up = await database_is_up()
    pending = up and await migrations_pending()
    return {
        "database": "migrations pending" if pending else "ok" if up else "unavailable",
        "replicas": await arun(replica_statuses) if routing.replicas.aliases else [],
    }


def pool_exhausted(error: BaseException) -> bool:
    """Whether a database error only means that no pooled connection came free in time:
    the instance is busy, the database may well be up. (Django raises PoolTimeout
    as its OperationalError, caused by it.)"""
    return isinstance(error, PoolTimeout) or isinstance(error.__cause__, PoolTimeout)


async def database_is_up() -> bool:
    """Whether the primary database can be reached.

    A pooled connection is the cheap way to ask; but an exhausted pool (many clients at
    once) only means the instance is busy, and an idle connection broken by a database
    restart only means the pool has yet to replace it: then the direct probe decides.
    """
    if await arun(answers):
        return True
    if connection.vendor != "postgresql":  # no pool: the database itself did not answer
        logger.warning("Health check: the database is unreachable")
        return False
    return await sync_to_async(direct_probe.database_is_up)()


async def answers(db: Transport) -> bool:
    """Whether the primary answers on a pooled connection within HEALTH_POOL_WAIT."""
    try:
        await db.ping(DEFAULT_DB_ALIAS, HEALTH_POOL_WAIT)
    except DatabaseError:
        return False
    return True


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
