"""Anonymous reads on PostgreSQL streaming replicas (SPEC §12): which database serves a read.

Every alias of DATABASES but "default" is a read replica; settings.py makes them from
DATABASE_REPLICA_URLS (replica_1, replica_2, ...). The rule lives in `read_alias`:

- A read of a model anonymous visitors see (READ_FROM_REPLICAS: the heroes) goes to a
  replica when the request is anonymous (`may_read_from_replica`), so the API's list
  and get and the HTML list and detail pages are served by the replicas.
- Everything else uses the primary: writes, every read of a request with credentials
  (so whoever wrote something reads it back at once), the admin, sessions, users, API
  tokens, lockouts, migrations (`ReplicaRouter.allow_migrate`), and code outside a
  request (commands, the shell).

A replica replays the primary's changes a moment later, so an anonymous reader may
see the registry as it was that moment ago; a writer never misses its own write.

Failover: a read that fails on a replica (down, unreachable, its pool exhausted, its
connection broken) is run again at once on another replica or the primary
(`ReadFailover`, the replica backend's compilers, in heroes_site/replica_backend/),
and the replica is left alone for RETRY_AFTER seconds; then one read tries it again
(`Replicas`). An outage is logged when it starts and when it ends.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from inspect import iscoroutinefunction
from itertools import count
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError
from django.db.models import Model
from django.db.models.sql.compiler import SQLCompiler
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

logger = logging.getLogger(__name__)

# What anonymous visitors read. Users, sessions, tokens and lockouts are never read
# from a replica, even during an anonymous request (a login form post has no session
# cookie yet, and a lagging copy of a password or a lockout must not decide it).
READ_FROM_REPLICAS = frozenset({"heroes.hero"})

# Seconds a replica whose read failed is left alone before one read tries it again.
RETRY_AFTER = 5.0


class Replicas:
    """The read replicas of this process, and which of them can serve a read now.

    Shared by the process's threads. A replica whose read failed is skipped until its
    retry time; then one read (the probe) may use it, while the others keep skipping
    it for another RETRY_AFTER seconds. A read that succeeds after the failure ends
    the outage. Both ends of an outage are logged, not each failed probe.
    """

    def __init__(self, aliases: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.aliases = tuple(aliases)
        self.clock = clock
        self._turn = count()
        self._lock = threading.Lock()
        self._down: dict[str, tuple[float, float]] = {}  # alias: (down since, retry at)

    def choose(self) -> str:
        """A replica that can serve a read now, taking turns; the primary if none can."""
        turn = next(self._turn)
        for offset in range(len(self.aliases)):
            alias = self.aliases[(turn + offset) % len(self.aliases)]
            if self.usable(alias):
                return alias
        return DEFAULT_DB_ALIAS

    def usable(self, alias: str) -> bool:
        """Whether a read may use `alias` now; if it is down, the read becomes the probe."""
        if alias not in self._down:  # the usual case: no lock taken
            return True
        with self._lock:
            down_since, retry_at = self._down.get(alias, (0.0, 0.0))
            now = self.clock()
            if now < retry_at:
                return False
            if alias in self._down:  # this read is the probe: the others wait for it
                self._down[alias] = (down_since, now + RETRY_AFTER)
            return True

    def failed(self, alias: str, error: Exception) -> None:
        with self._lock:
            now = self.clock()
            outage_starts = alias not in self._down
            down_since = now if outage_starts else self._down[alias][0]
            self._down[alias] = (down_since, now + RETRY_AFTER)
        if outage_starts:
            logger.warning(
                "Replica %s is unavailable; its reads go to another database until it "
                "answers again (tried every %gs): %s",
                alias,
                RETRY_AFTER,
                first_line(error),
            )

    def served(self, alias: str, started: float) -> None:
        """A read that `started` at that clock time succeeded on `alias`."""
        if alias not in self._down:
            return
        with self._lock:
            down_since, _ = self._down.get(alias, (started, 0.0))
            # A read begun before the failure says nothing about the replica now.
            back = started > down_since and self._down.pop(alias, None) is not None
        if back:
            logger.info("Replica %s answers again; anonymous reads use it again", alias)


def first_line(error: Exception) -> str:
    """A database error's message without its details, for a one-line log."""
    return str(error).strip().partition("\n")[0]


replicas = Replicas([alias for alias in settings.DATABASES if alias != DEFAULT_DB_ALIAS])


@dataclass
class AnonymousReads:
    """The replica serving an anonymous request's reads, chosen at its first read and
    kept for the rest, so the request's reads all come from one copy."""

    alias: str | None = None


_anonymous_reads: ContextVar[AnonymousReads | None] = ContextVar("anonymous_reads", default=None)


@contextmanager
def anonymous_reads() -> Iterator[AnonymousReads]:
    """Within this block (a request that may_read_from_replica), reads of
    READ_FROM_REPLICAS models go to a replica. Context variables follow the request
    into sync_to_async's threads (the async ORM, template rendering)."""
    reads = AnonymousReads()
    token = _anonymous_reads.set(reads)
    try:
        yield reads
    finally:
        _anonymous_reads.reset(token)


def read_alias(model: type[Model]) -> str:
    """The database that serves a read of `model` for the current request."""
    reads = _anonymous_reads.get()
    if reads is None or model._meta.label_lower not in READ_FROM_REPLICAS:
        return DEFAULT_DB_ALIAS
    if reads.alias is None:
        reads.alias = replicas.choose()
    return reads.alias


def fail_over(alias: str, error: Exception) -> str:
    """Record that a read failed on replica `alias`; the alias to run it on instead."""
    replicas.failed(alias, error)
    reads = _anonymous_reads.get()
    if reads is None:  # a read sent to the replica by name: only the primary is left
        return DEFAULT_DB_ALIAS
    reads.alias = replicas.choose()
    return reads.alias


class ReadFailover(SQLCompiler):
    """A mixin for the read compilers of replica aliases: a read that fails there is
    run again where `fail_over` says. This is where a replica's failure shows: the
    router chose the replica before its pool had to find a connection."""

    def execute_sql(self, *args: Any, **kwargs: Any) -> Any:
        replica, started = self.connection.alias, replicas.clock()
        try:
            result = super().execute_sql(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            elide_empty = self.elide_empty  # type: ignore[attr-defined]  # not in django-stubs
            compiler = self.query.get_compiler(fail_over(replica, error), elide_empty=elide_empty)
            return compiler.execute_sql(*args, **kwargs)
        replicas.served(replica, started)
        return result


class WriteToReplica(DatabaseError):
    """A write was sent to a read replica: a bug, since the router sends none there."""


def refuse_write_to_replica(alias: str) -> None:
    """Raise WriteToReplica if `alias` is not the primary."""
    if alias != DEFAULT_DB_ALIAS:
        raise WriteToReplica(f"{alias} is a read replica; writes go to the primary")


class ReadOnly(SQLCompiler):
    """A mixin for the write compilers of replica aliases: they refuse to run."""

    def execute_sql(self, *args: Any, **kwargs: Any) -> Any:
        refuse_write_to_replica(self.connection.alias)  # raises: only replicas use it


class ReplicaRouter:
    """DATABASE_ROUTERS' router: read_alias for reads, the primary for all else."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return read_alias(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True  # every alias holds the same data

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        return db == DEFAULT_DB_ALIAS


def may_read_from_replica(request: HttpRequest) -> bool:
    """Whether the request is anonymous, cheaply: a GET or HEAD with neither a session
    cookie nor an Authorization header.

    Finding out who a session or a token belongs to costs a query on the primary;
    a request without either cannot be anyone's, and knowing that costs nothing. A
    request with credentials stays on the primary even when they turn out to be
    expired or wrong: that costs a primary read, never a stale one. A client that
    wrote with its token or session reads with them too, so it reads its own writes.
    """
    return (
        request.method in ("GET", "HEAD")
        and settings.SESSION_COOKIE_NAME not in request.COOKIES
        and "authorization" not in request.headers
    )


@sync_and_async_middleware
def replica_reads(get_response: Callable[[HttpRequest], Any]) -> Callable:
    """Sends the reads of anonymous requests (may_read_from_replica) to the replicas.

    Able to run on the event loop: it only looks at the method, a cookie and a header.
    """
    if not replicas.aliases:
        raise MiddlewareNotUsed

    def reads_for(request: HttpRequest) -> AbstractContextManager[object]:
        return anonymous_reads() if may_read_from_replica(request) else nullcontext()

    async def on_event_loop(request: HttpRequest) -> HttpResponseBase:
        with reads_for(request):
            response: HttpResponseBase = await get_response(request)
        return response

    def in_thread(request: HttpRequest) -> HttpResponseBase:
        with reads_for(request):
            response: HttpResponseBase = get_response(request)
        return response

    return on_event_loop if iscoroutinefunction(get_response) else in_thread
