from django.apps import AppConfig
from django.db.backends.signals import connection_created

from heroes_site.db.failover import watch_connection


class SiteConfig(AppConfig):
    """The project package as an app, for what Django finds only in apps: the
    `{% load project %}` template tags, the `migrate` command under a lock, and the
    watch on Django's PostgreSQL connections for a lost primary (heroes_site.db.failover)."""

    name = "heroes_site"
    verbose_name = "Site"

    def ready(self) -> None:
        connection_created.connect(watch_connection)
