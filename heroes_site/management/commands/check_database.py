from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from heroes_site.connectivity import unreachable


class Command(BaseCommand):
    help = (
        "Whether the settings hold and the database answers: silent if so, else one line "
        "saying why and a non-zero exit. make serve's gunicorn runs it before it starts."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        if problem := unreachable(database):
            raise CommandError(problem)
