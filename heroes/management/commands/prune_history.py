import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date

from heroes.models import HeroHistory


class Command(BaseCommand):
    help = (
        "Delete the hero history recorded before a date (UTC), the one way entries go: "
        "the history is append-only otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--before", required=True, help="YYYY-MM-DD: entries from before this day go."
        )

    def handle(self, *args: object, before: str, **options: object) -> None:
        try:
            day = parse_date(before)
        except ValueError:
            day = None
        if day is None:
            raise CommandError(f"--before must be a date, YYYY-MM-DD, not {before!r}.")
        start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
        pruned = HeroHistory.objects.prune(start)
        self.stdout.write(f"Deleted {pruned} history entries recorded before {day} (UTC).")
