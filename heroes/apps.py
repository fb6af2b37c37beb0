from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def use_unicode_lower_on_sqlite(
    sender: object, connection: BaseDatabaseWrapper, **kwargs: object
) -> None:
    # SQLite's LOWER() folds ASCII letters only, so "Ärger" and "ärger" would both
    # pass the case-insensitive nickname constraint. PostgreSQL's lower() is
    # Unicode-aware; give SQLite connections the same, so the rule holds on both.
    if connection.vendor == "sqlite":
        connection.connection.create_function("LOWER", 1, unicode_lower, deterministic=True)


class HeroesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "heroes"

    def ready(self) -> None:
        connection_created.connect(use_unicode_lower_on_sqlite)
