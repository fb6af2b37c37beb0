"""Pages served to a logged-in user carry `Cache-Control: private`, so no shared cache
keeps them (SPEC §11); public pages and static files stay cacheable. The same through
the production ASGI application: test_asgi.py."""

import pytest
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import get_max_age

pytestmark = pytest.mark.django_db


def cache_control(response) -> set[str]:
    return {d.strip() for d in response.get("Cache-Control", "").split(",") if d.strip()}


def logged_in_pages(hero) -> list[str]:
    return [
        reverse("heroes:list"),
        hero.get_absolute_url(),
        reverse("heroes:update", args=[hero.pk]),
        reverse("heroes:create"),
        reverse("admin:index"),
        reverse("admin:heroes_hero_changelist"),
        "/api/v1/heroes",
        f"/api/v1/heroes/{hero.pk}",
    ]


def test_pages_for_a_logged_in_user_are_private(staff_client, heroes):
    for path in logged_in_pages(heroes[0]):
        response = staff_client.get(path)
        assert response.status_code == 200, path
        assert "private" in cache_control(response), path
        assert "public" not in cache_control(response), path


def test_an_error_page_for_a_logged_in_user_is_private(staff_client):
    response = staff_client.get("/heroes/no-such-page/")
    assert response.status_code == 404
    assert "private" in cache_control(response)


def test_the_response_that_logs_a_user_in_is_private(client, writer):
    response = client.post(reverse("login"), {"username": "writer", "password": "writer-pass-123"})
    assert response.status_code == 302
    assert settings.SESSION_COOKIE_NAME in response.cookies
    assert "private" in cache_control(response)


def test_public_pages_are_not_made_private(client, heroes):
    for path in [reverse("heroes:list"), heroes[0].get_absolute_url(), "/api/v1/heroes"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "private" not in cache_control(response), path


def test_static_files_stay_cacheable_for_a_logged_in_user(staff_client):
    response = staff_client.get(static("css/site.css"))
    assert response.status_code == 200
    assert "private" not in cache_control(response)
    assert get_max_age(response) is not None
