"""Whether the database lacks migrations this code has, for /api/v1/health (heroes.api).

An instance whose database is behind its code answers 500 on most pages, so health
says 503 "migrations pending" and a load balancer sends it no traffic. Reading the
migration graph costs a query and a walk through every migration module, so it is
not done per request: once per process (as a gunicorn worker starts, see
heroes_site/gunicorn.conf.py, else at the first health check), then, while
migrations are pending, again at most every RECHECK_SECONDS (another process, such as
the next release's `migrate`, may apply them), and again in this process after its
own `migrate` (post_migrate). Once none are pending, none can appear without a new
deploy, that is a new process.
"""

import math
import threading
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models.signals import post_migrate

RECHECK_SECONDS = 5.0


class MigrationsState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: bool | None = None  # None: not known yet
        self.checked_at = -math.inf

    def stale(self) -> bool:
        if self.pending is None:
            return True
        return self.pending and time.monotonic() - self.checked_at >= RECHECK_SECONDS

    def check(self) -> bool:
        """Read the migration graph and the applied migrations (one query)."""
        with self.lock:
            if self.stale():  # unless a check made while waiting for the lock answered
                try:
                    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
                    targets = executor.loader.graph.leaf_nodes()
                    self.pending = bool(executor.migration_plan(targets))
                except DatabaseError:
                    return False  # unknown: health's own database check answers for it
                self.checked_at = time.monotonic()
            return bool(self.pending)

    def forget(self, **kwargs: Any) -> None:
        """Know nothing, so the next call checks again (after a migrate, in tests)."""
        self.pending, self.checked_at = None, -math.inf


state = MigrationsState()
post_migrate.connect(state.forget, dispatch_uid="heroes_site.migrations_state")


async def migrations_pending() -> bool:
    """Whether the default database lacks migrations that this code has.

    Answered from memory, without a thread or a query, but for the first call of a
    process and the rechecks while migrations are pending.
    """
    if state.stale():
        return await sync_to_async(state.check)()
    return bool(state.pending)
