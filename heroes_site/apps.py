from django.apps import AppConfig
from django.db.backends.signals import connection_created


class SiteConfig(AppConfig):
    """The project package as an app, for what Django finds only in apps: the
    `{% load project %}` template tags and the `migrate` command under a lock; and
    SQLite connections' heroes_writer() (heroes_site.db.writers)."""

    name = "heroes_site"
    verbose_name = "Site"

    def ready(self) -> None:
        from heroes_site.db.writers import register_sqlite_function

        connection_created.connect(register_sqlite_function)
