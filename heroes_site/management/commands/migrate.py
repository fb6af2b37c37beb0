from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import connections

from heroes_site.connectivity import unreachable

# Any constant shared by every replica: the key of the advisory lock around migrating.
MIGRATION_LOCK_KEY = 0x4845524F4553  # "HEROES"


class Command(DjangoMigrateCommand):
    """Django's migrate, one replica at a time on PostgreSQL, and one line when the
    database cannot be reached (which, with the pool, would otherwise be a warning per
    connection attempt and a traceback).

    Replicas that start together each run `migrate`; without a lock two of them could
    both try to apply the same migration. The session-level advisory lock makes the
    others wait and then find nothing left to do. It is released when the command
    ends, or by PostgreSQL if the process dies.
    """

    def handle(self, *args: Any, **options: Any) -> None:
        if problem := unreachable(options["database"]):
            raise CommandError(problem)
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            super().handle(*args, **options)
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            super().handle(*args, **options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
