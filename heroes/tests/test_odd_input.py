"""Odd input gets a 4xx answer, never a 500, and leaves no traceback in the server's
log (SPEC §11): page numbers out of any range, more fields than Django allows,
crafted admin selections."""

import base64
import io

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from heroes.admin import HeroAdmin
from heroes.models import ApiToken, Hero
from heroes.pagination import MAX_ROW_NUMBER
from heroes.views import HeroListView

pytestmark = pytest.mark.django_db

LIST = reverse("heroes:list")
API_LIST = "/api/v1/heroes"
TOO_MANY_FIELDS = {f"f{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
# The largest page whose rows a database could still be asked for.
LAST_QUERYABLE_PAGE = (MAX_ROW_NUMBER - 1) // HeroListView.paginate_by


def assert_quiet(server_log: io.StringIO) -> None:
    """Nothing worse than a warning was logged, and no traceback."""
    log = server_log.getvalue()
    assert " ERROR " not in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    "page",
    [
        str(2**63 - 1),  # bigint out of range on PostgreSQL, OverflowError on SQLite
        str(LAST_QUERYABLE_PAGE + 1),
        "9" * 30,
        "1" + "0" * 5000,  # beyond what int() converts
        "0",
        "-1",
        "-" + "9" * 30,
        "two",
        "1.5",
    ],
)
def test_a_page_beyond_any_page_is_not_found(client, heroes, server_log, page):
    response = client.get(LIST, {"page": page})
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in response.content.decode()
    assert_quiet(server_log)


def test_the_last_page_the_database_can_name_is_queried_and_empty(client, heroes, server_log):
    assert client.get(LIST, {"page": LAST_QUERYABLE_PAGE}).status_code == 404
    assert_quiet(server_log)


@pytest.mark.parametrize("page", ["last", "", "1"])
def test_the_first_and_last_page_of_an_empty_list(client, db, server_log, page):
    response = client.get(LIST, {"page": page})
    assert response.status_code == 200
    assert list(response.context["page_obj"]) == []


def test_too_many_query_parameters_on_a_page_get_a_400_page(client, server_log):
    response = client.get(LIST, TOO_MANY_FIELDS)
    assert response.status_code == 400
    assert "<h1>Bad request</h1>" in response.content.decode()
    assert_quiet(server_log)
    # Django's note on its security logger stays, as one line.
    assert "WARNING django.security.TooManyFieldsSent " in server_log.getvalue()


@pytest.mark.parametrize(
    "path", [reverse("login"), reverse("admin:login"), reverse("heroes:create")]
)
def test_a_form_post_with_too_many_fields_gets_a_400_page(writer, server_log, path):
    # The CSRF check reads the form first, once the request has a (well-formed) cookie.
    client = Client(enforce_csrf_checks=True)
    client.cookies[settings.CSRF_COOKIE_NAME] = "a" * 32
    client.force_login(writer)
    response = client.post(path, TOO_MANY_FIELDS)
    assert response.status_code == 400
    assert "<h1>Bad request</h1>" in response.content.decode()
    assert_quiet(server_log)


def test_too_many_query_parameters_in_the_api_get_a_json_400(client, heroes, server_log):
    response = client.get(API_LIST, TOO_MANY_FIELDS)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "detail": "Bad request: The number of GET/POST parameters exceeded "
        "settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
    }
    assert_quiet(server_log)
    assert "WARNING django.security.TooManyFieldsSent " in server_log.getvalue()


@pytest.mark.parametrize(
    ("page_size", "shown"), [("9" * 30, 7), (str(-(2**63)), None), ("0", None), ("100", 7)]
)
def test_the_api_keeps_a_page_size_within_its_bounds(client, heroes, server_log, page_size, shown):
    response = client.get(API_LIST, {"page_size": page_size})
    if shown is None:  # below 1
        assert response.status_code == 422
    else:
        assert response.status_code == 200
        assert len(response.json()["results"]) == shown
    assert_quiet(server_log)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.b64encode(b"o=99999999999999999999999").decode(),  # an offset beyond any
        base64.b64encode(b"o=-1").decode(),
        base64.b64encode(b"p=not-a-time").decode(),
    ],
)
def test_the_api_refuses_a_cursor_it_did_not_write(client, heroes, server_log, cursor):
    response = client.get(API_LIST, {"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert_quiet(server_log)


@pytest.fixture
def small_pages(monkeypatch) -> None:
    monkeypatch.setattr(HeroAdmin, "list_per_page", 2)


@pytest.mark.parametrize("page", [str(2**63 - 1), "9" * 30, "-1", "x"])
def test_an_admin_page_beyond_any_page_is_a_page(
    staff_client, heroes, small_pages, server_log, page
):
    response = staff_client.get(reverse("admin:heroes_hero_changelist"), {"p": page}, follow=True)
    assert response.status_code == 200
    assert_quiet(server_log)


@pytest.mark.parametrize(
    ("changelist", "action", "selected"),
    [
        ("admin:heroes_hero_changelist", "delete_selected", "not-a-uuid"),
        ("admin:heroes_apitoken_changelist", "revoke", "not-a-number"),
        ("admin:heroes_apitoken_changelist", "revoke", str(2**63)),  # OverflowError on SQLite
        ("admin:auth_user_changelist", "delete_selected", "9" * 30),
    ],
)
def test_an_admin_action_on_a_crafted_selection_changes_nothing(
    superuser_client, heroes, writer, server_log, changelist, action, selected
):
    token, _ = ApiToken.issue(writer, "kept")
    data = {"action": action, "index": "0", ACTION_CHECKBOX_NAME: [selected], "post": "yes"}
    response = superuser_client.post(reverse(changelist), data, follow=True)
    assert response.status_code == 200
    assert "Invalid selection: no items were changed." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None
    assert Hero.objects.count() == len(heroes)
    assert_quiet(server_log)
