"""Whether the primary database can be reached, for /api/v1/health (heroes.api).

A load balancer takes an instance out of service on a 503, so the answer must be
true under load: a busy connection pool is not an outage.
"""

import logging
import math
import threading
import time

import psycopg
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection
from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)


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


def pool_exhausted(error: BaseException) -> bool:
    """Whether a database error only means that no pooled connection came free in time:
    the instance is busy, the database may well be up. (Django raises PoolTimeout
    as its OperationalError, caused by it.)"""
    return isinstance(error, PoolTimeout) or isinstance(error.__cause__, PoolTimeout)


# How long health waits for a pooled connection before asking the database directly:
# well within a load balancer's patience, where the pool's own timeout may not be.
HEALTH_POOL_WAIT = 0.25


@sync_to_async
def database_is_up() -> bool:
    """Whether the database can be reached.

    On PostgreSQL a pooled connection is the cheap way to ask, but an exhausted pool
    (many clients at once) only means the instance is busy, and an idle connection
    broken by a database restart only means the pool has yet to replace it: then the
    direct probe decides.
    """
    pool = getattr(connection, "pool", None)  # the psycopg pool; None on SQLite
    try:
        if pool is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        else:
            pool.open()  # as Django does before its first connection; then a no-op
            with pool.connection(timeout=HEALTH_POOL_WAIT) as pooled:
                pooled.execute("SELECT 1")
    except (DatabaseError, psycopg.Error):
        if pool is not None:
            return direct_probe.database_is_up()
        logger.warning("Health check: the database is unreachable", exc_info=True)
        return False
    return True
