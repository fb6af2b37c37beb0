from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The project package as an app, for what Django finds only in apps: the
    `{% load project %}` template tags and the `migrate` command under a lock."""

    name = "heroes_site"
    verbose_name = "Site"
