"""Crafted admin list URLs are a 4xx, never a 500 (SPEC §11), on every admin list: the
lookups the database refuses (an invalid regular expression, a NUL character, a year
out of range...) get Django's invalid-lookup redirect, as unknown fields already do."""

import pytest
from django.contrib import admin
from django.db import connection, models
from django.urls import reverse

from heroes.models import Hero
from heroes_site.admin import CheckedLookupsAdmin

# transaction=True: on PostgreSQL a refused query would end the test's own transaction.
pytestmark = pytest.mark.django_db(transaction=True)

ADMINS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def first_field(model: type[models.Model], kind: type[models.Field]) -> str | None:
    return next(
        (f.name for f in model._meta.concrete_fields if isinstance(f, kind) and not f.primary_key),
        None,
    )


def crafted_lookups(model: type[models.Model]) -> list[dict[str, str]]:
    """Lookups on the model's fields that only the query's run refuses."""
    text, when = first_field(model, models.CharField), first_field(model, models.DateField)
    lookups = [{"pk__gt": "9" * 30}, {"pk__in": "1,x"}]
    if text:
        lookups += [{f"{text}__regex": "("}, {f"{text}__iregex": "[a-"}, {f"{text}__exact": "\0"}]
        lookups += [{f"{text}__contains": "\0"}, {"q": "\0"}]
    if when:
        lookups += [{f"{when}__year": "99999999"}, {f"{when}__year__gt": "-99999999"}]
        lookups += [{f"{when}__gte": "99999-01-01"}, {f"{when}__date": "0000-00-00"}]
    return lookups


def test_every_registered_admin_checks_its_lookups():
    assert {model._meta.label for model, _ in ADMINS} >= {
        "heroes.Hero",
        "heroes.ApiToken",
        "auth.User",
        "auth.Group",
        "axes.AccessAttempt",
    }
    for _, model_admin in ADMINS:
        assert isinstance(model_admin, CheckedLookupsAdmin), model_admin


@pytest.mark.parametrize(("model", "model_admin"), ADMINS, ids=[m._meta.label for m, _ in ADMINS])
def test_crafted_list_urls_are_never_a_500(superuser_client, model, model_admin):
    Hero.objects.create(nickname="Mystra")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert superuser_client.get(url).status_code == 200
    for lookup in crafted_lookups(model):
        response = superuser_client.get(url, lookup)
        assert response.status_code in (200, 302, 400), (lookup, response.status_code)
        if response.status_code == 302:
            assert response["Location"] == f"{url}?e=1", lookup


@pytest.mark.parametrize(
    ("lookup", "refused_by"),
    [
        ({"nickname__regex": "("}, {"sqlite", "postgresql"}),
        ({"role__exact": "\0"}, {"postgresql"}),  # SQLite stores and compares NULs
        ({"created_at__year": "99999999"}, {"sqlite", "postgresql"}),
    ],
    ids=["invalid-regex", "nul", "year-out-of-range"],
)
def test_the_probes_lookups_get_the_invalid_lookup_redirect(
    superuser_client, server_log, lookup, refused_by
):
    url = reverse("admin:heroes_hero_changelist")
    response = superuser_client.get(url, lookup)
    if connection.vendor in refused_by:
        assert (response.status_code, response["Location"]) == (302, f"{url}?e=1")
        assert "Invalid lookup on /admin/heroes/hero/" in server_log.getvalue()
        assert "Traceback" not in server_log.getvalue()
    else:
        assert response.status_code == 200
