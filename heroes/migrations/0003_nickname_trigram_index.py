"""A trigram index for the nickname search, on PostgreSQL only.

`HeroQuerySet.search()` is `LOWER(nickname) LIKE '%text%'`: a B-tree cannot serve a
pattern with a leading wildcard, so without this index a search that matches few
heroes reads the whole table. A GIN index of the trigrams of the same expression
serves it. SQLite (development) has no such index type; there the migration does
nothing.
"""

from django.db import migrations

INDEX = "ix_hrs_heroes_nickname_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # pg_trgm is a trusted extension: the database owner may create it.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The expression must be the one the ORM writes, LOWER("nickname"), or the
    # planner cannot use the index. Not CONCURRENTLY: replicas migrate one at a time
    # under an advisory lock (heroes_site/management/commands/migrate.py), and a
    # concurrent build waits for every older snapshot, including that of a replica
    # waiting for the lock: a deadlock. The build blocks writes meanwhile (about 4 s
    # for a million heroes here).
    schema_editor.execute(
        f"CREATE INDEX {INDEX} ON hrs_heroes USING gin (LOWER(nickname) gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # The extension stays: other tables may use it.
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("heroes", "0002_api_tokens"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
