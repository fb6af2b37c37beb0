from typing import Any

from django.core.management.commands.flush import Command as DjangoFlushCommand

from heroes_site.db.writers import flushing


class Command(DjangoFlushCommand):
    """Django's flush, during which the database records no history: it resets the
    database, it deletes no hero (heroes_site.db.writers.flushing). Django's test runner
    flushes between transactional tests."""

    def handle(self, **options: Any) -> None:
        resetting = flushing.set(True)
        try:
            super().handle(**options)
        finally:
            flushing.reset(resetting)
