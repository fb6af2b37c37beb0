"""The admin site as a whole (each app registers its own models in its admin.py).

HeroesAdminSite is Django's default admin site (settings.INSTALLED_APPS names
heroes_site.apps.AdminConfig for "django.contrib.admin"), so every admin registered
on it, the project's and other apps' (users, groups, django-axes), answers a crafted
list URL as an invalid lookup, never with a 500.
"""

import logging
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db import DataError, connections, router
from django.db.models import Model
from django.http import HttpRequest

logger = logging.getLogger(__name__)


class CheckedLookupsAdmin(admin.ModelAdmin):
    """A list whose lookups the database refuses is an invalid lookup (Django's
    redirect to `?e=1`), as one Django refuses itself already is.

    Django checks a list URL's lookups when it builds the query (an unknown field, a
    value the field cannot take); what only the query's run finds out went on to a
    500: an invalid regular expression or a NUL character on PostgreSQL (DataError), a
    year beyond 9999 (ValueError, OverflowError). Building the list counts the
    filtered rows, which runs the query's WHERE clause; the page's rows are read here
    too, while the lookups can still be refused.
    """

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        try:
            self.check_regular_expressions(request)
            changelist = super().get_changelist_instance(request)
            len(changelist.result_list)  # the page's rows, read now
        except (DataError, ValueError, OverflowError) as error:
            logger.warning("Invalid lookup on %s: %s", request.path, error)
            raise IncorrectLookupParameters(error) from error
        return changelist

    def check_regular_expressions(self, request: HttpRequest) -> None:
        """On SQLite, Django matches `regex` lookups with Python's re, and a pattern re
        refuses fails the query as an OperationalError, which also means the database
        is unavailable: check the patterns with re first there."""
        if connections[router.db_for_read(self.model)].vendor != "sqlite":
            return
        for name, values in request.GET.lists():
            if name.endswith(("__regex", "__iregex")):
                for pattern in values:
                    try:
                        re.compile(pattern)
                    except re.error as error:
                        raise ValueError(f"{name}: {error}") from None


class HeroesAdminSite(admin.AdminSite):
    site_header = settings.PROJECT_NAME
    site_title = settings.PROJECT_NAME

    def register(
        self,
        model_or_iterable: type[Model] | Iterable[type[Model]],
        admin_class: type[admin.ModelAdmin] | None = None,
        **options: Any,
    ) -> None:
        """Register as Django does, with the admin class's list lookups checked
        (CheckedLookupsAdmin), whoever registers it."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, CheckedLookupsAdmin):
            bases = (CheckedLookupsAdmin, admin_class)
            admin_class = type(admin_class.__name__, bases, {"__module__": admin_class.__module__})
        super().register(model_or_iterable, admin_class, **options)
