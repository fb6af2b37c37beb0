from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.backends.signals import connection_created


class SiteConfig(AppConfig):
    """The project package as an app, for what Django finds only in apps: the
    `{% load project %}` template tags and the `migrate` command under a lock; and what
    each new database connection gets: on PostgreSQL, the watch for a lost primary
    (heroes_site.db.failover), on SQLite heroes_writer() (heroes_site.db.writers)."""

    default = True  # the app "heroes_site" (AdminConfig below is the admin's)
    name = "heroes_site"
    verbose_name = "Site"

    def ready(self) -> None:
        from heroes_site.db.failover import watch_connection
        from heroes_site.db.writers import register_sqlite_function

        connection_created.connect(watch_connection)
        connection_created.connect(register_sqlite_function)


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with heroes_site.admin.HeroesAdminSite as its site."""

    default = False
    default_site = "heroes_site.admin.HeroesAdminSite"
