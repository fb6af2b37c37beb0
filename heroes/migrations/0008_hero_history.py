"""The heroes' history (SPEC §13), kept by the database itself.

Triggers on hrs_heroes record every insert, update that changes an editable field
(nickname, role) and delete, in the write's own transaction, whichever way the write
came (the API on either transport, the pages, the admin, a queryset in a shell, even
raw SQL): a write that is refused or rolled back records nothing, and each entry's
"before" is what the row held under its lock, so the history of a hero is one chain
however writers race. Who wrote it is what heroes_site.db.writers told the database:
PostgreSQL's transaction-local setting heroes.writer, SQLite's function
heroes_writer() (a write without one is "other", with no user). SQLite's triggers
record nothing while manage.py flush empties the tables (heroes_flushing()): there
it deletes row by row, and Django's test runner flushes between tests.

The history table is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE,
but a DELETE in a transaction that set heroes.prune_history (manage.py prune_history);
SQLite's refuses UPDATE (Django's test runner empties tables with DELETE), and the
model refuses both.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

POSTGRESQL = [
    """
    CREATE FUNCTION hrs_heroes_record_history() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        writer jsonb := nullif(current_setting('heroes.writer', true), '')::jsonb;
        changes jsonb := '{}';
    BEGIN
        IF TG_OP = 'INSERT' THEN
            changes := jsonb_build_object(
                'nickname', jsonb_build_array(NULL, NEW.nickname),
                'role', jsonb_build_array(NULL, NEW.role));
        ELSIF TG_OP = 'DELETE' THEN
            changes := jsonb_build_object(
                'nickname', jsonb_build_array(OLD.nickname, NULL),
                'role', jsonb_build_array(OLD.role, NULL));
        ELSE
            IF NEW.nickname IS DISTINCT FROM OLD.nickname THEN
                changes := changes || jsonb_build_object(
                    'nickname', jsonb_build_array(OLD.nickname, NEW.nickname));
            END IF;
            IF NEW.role IS DISTINCT FROM OLD.role THEN
                changes := changes || jsonb_build_object(
                    'role', jsonb_build_array(OLD.role, NEW.role));
            END IF;
            IF changes = '{}' THEN
                RETURN NULL;
            END IF;
        END IF;
        INSERT INTO hrs_hero_history
            (hero_uuid, action, changes, version, at, user_id, username, token, via, request_id)
        VALUES (
            CASE TG_OP WHEN 'DELETE' THEN OLD.uuid ELSE NEW.uuid END,
            CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'changed'
                ELSE 'deleted' END,
            changes,
            CASE TG_OP WHEN 'DELETE' THEN OLD.version + 1 ELSE NEW.version END,
            clock_timestamp(),
            (writer ->> 'user_id')::integer,
            coalesce(writer ->> 'username', ''),
            writer ->> 'token',
            coalesce(writer ->> 'via', 'other'),
            coalesce(writer ->> 'request_id', ''));
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE TRIGGER hrs_heroes_history AFTER INSERT OR UPDATE OR DELETE ON hrs_heroes
    FOR EACH ROW EXECUTE FUNCTION hrs_heroes_record_history()
    """,
    """
    CREATE FUNCTION hrs_hero_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('heroes.prune_history', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'hrs_hero_history is append-only (manage.py prune_history prunes it)'
            USING ERRCODE = 'restrict_violation';
    END;
    $$
    """,
    """
    CREATE TRIGGER hrs_hero_history_append_only BEFORE UPDATE OR DELETE ON hrs_hero_history
    FOR EACH ROW EXECUTE FUNCTION hrs_hero_history_append_only()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER hrs_hero_history_append_only ON hrs_hero_history",
    "DROP FUNCTION hrs_hero_history_append_only()",
    "DROP TRIGGER hrs_heroes_history ON hrs_heroes",
    "DROP FUNCTION hrs_heroes_record_history()",
]

# The writer's fields, from heroes_writer() (evaluated once per row).
SQLITE_WRITER = """
    json_extract(w, '$.at'), json_extract(w, '$.user_id'), json_extract(w, '$.username'),
    json_extract(w, '$.token'), json_extract(w, '$.via'), json_extract(w, '$.request_id')
    FROM (SELECT heroes_writer() AS w)
"""
SQLITE_COLUMNS = (
    "hero_uuid, action, changes, version, at, user_id, username, token, via, request_id"
)
SQLITE = [
    f"""
    CREATE TRIGGER hrs_heroes_history_created AFTER INSERT ON hrs_heroes
    WHEN NOT heroes_flushing() BEGIN
        INSERT INTO hrs_hero_history ({SQLITE_COLUMNS})
        SELECT NEW.uuid, 'created',
            json_object('nickname', json_array(NULL, NEW.nickname),
                        'role', json_array(NULL, NEW.role)),
            NEW.version, {SQLITE_WRITER};
    END
    """,
    f"""
    CREATE TRIGGER hrs_heroes_history_changed AFTER UPDATE ON hrs_heroes
    WHEN (OLD.nickname IS NOT NEW.nickname OR OLD.role IS NOT NEW.role)
        AND NOT heroes_flushing() BEGIN
        INSERT INTO hrs_hero_history ({SQLITE_COLUMNS})
        SELECT NEW.uuid, 'changed',
            (SELECT json_group_object(field, json(value)) FROM (
                SELECT 'nickname' AS field, json_array(OLD.nickname, NEW.nickname) AS value
                WHERE OLD.nickname IS NOT NEW.nickname
                UNION ALL
                SELECT 'role', json_array(OLD.role, NEW.role) WHERE OLD.role IS NOT NEW.role)),
            NEW.version, {SQLITE_WRITER};
    END
    """,
    f"""
    CREATE TRIGGER hrs_heroes_history_deleted AFTER DELETE ON hrs_heroes
    WHEN NOT heroes_flushing() BEGIN
        INSERT INTO hrs_hero_history ({SQLITE_COLUMNS})
        SELECT OLD.uuid, 'deleted',
            json_object('nickname', json_array(OLD.nickname, NULL),
                        'role', json_array(OLD.role, NULL)),
            OLD.version + 1, {SQLITE_WRITER};
    END
    """,
    """
    CREATE TRIGGER hrs_hero_history_append_only BEFORE UPDATE ON hrs_hero_history BEGIN
        SELECT RAISE(ABORT, 'hrs_hero_history is append-only');
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER hrs_hero_history_append_only",
    "DROP TRIGGER hrs_heroes_history_deleted",
    "DROP TRIGGER hrs_heroes_history_changed",
    "DROP TRIGGER hrs_heroes_history_created",
]


def run_for_vendor(postgresql, sqlite):
    def run(apps, schema_editor):
        statements = postgresql if schema_editor.connection.vendor == "postgresql" else sqlite
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('heroes', '0007_nickname_skeleton_digest'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='HeroHistory',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('hero_uuid', models.UUIDField()),
                ('action', models.CharField(choices=[('created', 'Created'), ('changed', 'Changed'), ('deleted', 'Deleted')], max_length=8)),
                ('changes', models.JSONField()),
                ('version', models.PositiveIntegerField()),
                ('at', models.DateTimeField()),
                ('username', models.CharField(blank=True, max_length=150)),
                ('token', models.CharField(blank=True, max_length=100, null=True)),
                ('via', models.CharField(choices=[('api', 'API'), ('pages', 'Pages'), ('admin', 'Admin'), ('other', 'Other (a command, the shell)')], max_length=8)),
                ('request_id', models.CharField(blank=True, max_length=128)),
                ('user', models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'hero history entry',
                'verbose_name_plural': 'hero history',
                'db_table': 'hrs_hero_history',
                'ordering': ['-id'],
                'default_permissions': ('view',),
                'indexes': [models.Index(fields=['hero_uuid', '-id'], name='ix_hrs_hero_history_hero'), models.Index(fields=['username'], name='ix_hrs_hero_history_username')],
            },
        ),
        migrations.RunPython(
            run_for_vendor(POSTGRESQL, SQLITE), run_for_vendor(POSTGRESQL_REVERSE, SQLITE_REVERSE)
        ),
    ]
