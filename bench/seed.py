"""Bulk-load heroes into DATABASE_URL's PostgreSQL database with COPY.

    uv run python bench/seed.py --count 1000000 --uuids /tmp/uuids.txt

Existing heroes are removed first. Timestamps are spread over the past year, so the
newest-first index has real work to do. The table is then vacuumed and analyzed, as
autovacuum would leave it: planner statistics and a visibility map (index-only scans).
A sample of the new heroes' uuids is written for the load scripts.
"""

import argparse
import datetime
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")

import django

django.setup()

from django.db import connection

from heroes.models import Role

ROLES = [*Role.values, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--uuids", type=Path, help="write up to 10,000 of the uuids here")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("seed.py loads PostgreSQL (set DATABASE_URL)")

    started = time.monotonic()
    now = datetime.datetime.now(datetime.UTC)
    sample = []
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE hrs_heroes")
        # Our table has a version column (Hero.version, a Python default); the seed
        # stack's table (bench/seed_stack.py) has none.
        columns = [
            column.name
            for column in connection.introspection.get_table_description(cursor, "hrs_heroes")
        ]
        versioned = "version" in columns
        with cursor.connection.cursor().copy(
            "COPY hrs_heroes (uuid, nickname, role, created_at, updated_at"
            f"{', version' if versioned else ''}) FROM STDIN"
        ) as copy:
            for n in range(args.count):
                hero_uuid = uuid.uuid4()
                created_at = now - datetime.timedelta(seconds=random.uniform(0, 365 * 86400))
                row = (hero_uuid, f"Hero {n:07d}", ROLES[n % len(ROLES)], created_at, created_at)
                copy.write_row((*row, 1) if versioned else row)
                if len(sample) < 10_000:
                    sample.append(str(hero_uuid))
        cursor.execute("VACUUM (ANALYZE) hrs_heroes")
    if args.uuids:
        args.uuids.write_text("\n".join(sample) + "\n")
    print(f"seeded {args.count:,} heroes in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
