"""The server-rendered hero pages, through Django's test client."""

import re
import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import OperationalError, connection
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.views.defaults import server_error
from psycopg_pool import PoolTimeout

from heroes.models import HERO_DELETED_MESSAGE as DELETED
from heroes.models import Hero, HeroQuerySet, Role
from heroes.pagination import LookaheadPaginator
from heroes.views import HeroListView

from .conftest import EMPTY_POOL, FULL_POOL
from .helpers import NEWEST_FIRST_SQL, STAFF_PASSWORD, found, hero_list_queries, hero_permissions

pytestmark = pytest.mark.django_db

LIST = reverse("heroes:list")
CREATE = reverse("heroes:create")
LOGIN = reverse("login")


def detail_url(hero: Hero) -> str:
    return reverse("heroes:detail", args=[hero.pk])


def update_url(hero: Hero) -> str:
    return reverse("heroes:update", args=[hero.pk])


def delete_url(hero: Hero) -> str:
    return reverse("heroes:delete", args=[hero.pk])


def listed(response) -> list[str]:
    return [hero.nickname for hero in response.context["hero_list"]]


def shown_range(response) -> tuple[int, int]:
    page = response.context["page_obj"]
    return page.start_index(), page.end_index()


def match_count(response) -> str:
    return found(r'<p class="muted" id="match-count">([^<]*)</p>', response.content.decode())


def title(text: str) -> str:
    return f"<title>{text} | {settings.PROJECT_NAME}</title>"


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def make_heroes(count: int, role: str | None = None, prefix: str = "Hero") -> list[Hero]:
    """`count` heroes, saved oldest first."""
    return [Hero.objects.create(nickname=f"{prefix} {n:02}", role=role) for n in range(count)]


# Every page


def test_root_redirects_to_the_list(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == LIST


def test_layout_has_viewport_stylesheet_skip_link_and_login_link(client, heroes):
    content = client.get(LIST).content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in content
    assert '<link rel="stylesheet" href="/static/css/site.css">' in content
    assert '<a class="skip-link" href="#content">' in content
    assert (
        f'<a href="{LOGIN}?next=/heroes/%3Fq%3Dx">Log in</a>'
        in client.get(LIST, {"q": "x"}).content.decode()
    )
    assert finders.find("css/site.css")


def test_logged_in_users_get_a_logout_form_in_the_header(reader_client):
    content = reader_client.get(LIST).content.decode()
    assert "reader" in content
    assert f'<form method="post" action="{reverse("logout")}">' in content
    assert "csrfmiddlewaretoken" in content
    assert ">Log in<" not in content


# The list


def test_list_shows_heroes_newest_first(client, heroes):
    response = client.get(LIST)
    assert response.status_code == 200
    assert listed(response) == [h.nickname for h in reversed(heroes)]
    content = response.content.decode()
    assert title("All heroes") in content
    assert "<h1>Heroes</h1>" in content
    assert match_count(response) == "7 heroes"
    assert f'<a href="{detail_url(heroes[0])}">Shadowblade</a>' in content
    assert '<span class="role role--assassin">Assassin</span>' in content


def test_list_searches_nicknames_and_keeps_the_typed_text(client, heroes):
    response = client.get(LIST, {"q": " BLADE "})
    assert listed(response) == ["Shadowblade"]
    assert 'value=" BLADE "' in response.content.decode()
    assert match_count(response) == "1 hero"


def test_list_filters_by_role_and_search_together(client, heroes):
    assert listed(client.get(LIST, {"role": "mage"})) == ["Ärgerlich Öz", "Mystra"]
    response = client.get(LIST, {"role": "warrior", "q": "o"})
    assert listed(response) == ["Gorath"]
    assert '<option value="warrior" selected>Warrior</option>' in response.content.decode()


def test_list_says_when_nothing_matches(client, heroes):
    response = client.get(LIST, {"q": "zzz"})
    assert listed(response) == []
    assert "No heroes match these filters." in response.content.decode()


@pytest.mark.parametrize(
    ("filters", "field"), [({"role": "bard"}, "role"), ({"q": "Nul\x00"}, "q")]
)
def test_list_reports_invalid_filters_next_to_the_field(client, heroes, filters, field):
    response = client.get(LIST, filters)
    assert response.status_code == 200
    assert list(response.context["search_form"].errors) == [field]
    assert f'id="id_{field}_error"' in response.content.decode()
    assert listed(response) == []


def test_list_paginates_25_per_page_and_keeps_the_filters(client):
    mages = make_heroes(30, role=Role.MAGE)
    make_heroes(5, role=Role.TANK, prefix="Tank")

    first = client.get(LIST, {"q": "hero", "role": "mage"})
    assert listed(first) == [h.nickname for h in reversed(mages)][:25]
    content = first.content.decode()
    assert 'href="?q=hero&amp;role=mage&amp;page=2"' in content
    assert 'rel="prev"' not in content
    assert shown_range(first) == (1, 25)

    second = client.get(LIST, {"q": "hero", "role": "mage", "page": 2})
    assert listed(second) == [h.nickname for h in reversed(mages)][25:]
    content = second.content.decode()
    assert 'href="?q=hero&amp;role=mage&amp;page=1"' in content
    assert 'rel="next"' not in content
    assert shown_range(second) == (26, 30)
    assert match_count(second) == "30 heroes"


def test_a_list_of_exactly_one_page_shows_no_next_page(client):
    heroes = make_heroes(25)
    response = client.get(LIST)
    assert listed(response) == [h.nickname for h in reversed(heroes)]
    assert not response.context["page_obj"].has_next()
    assert 'aria-label="Pages"' not in response.content.decode()
    assert match_count(response) == "25 heroes"
    assert client.get(LIST, {"page": 2}).status_code == 404


def test_one_hero_beyond_a_page_gets_a_next_page(client):
    heroes = make_heroes(26)
    first = client.get(LIST)
    assert listed(first) == [h.nickname for h in reversed(heroes)][:25]
    assert 'rel="next" href="?page=2"' in first.content.decode()

    second = client.get(LIST, {"page": 2})
    assert listed(second) == [heroes[0].nickname]
    assert 'rel="next"' not in second.content.decode()
    assert shown_range(second) == (26, 26)
    assert match_count(second) == "26 heroes"


def test_list_pages_through_heroes_created_in_one_instant_once_each(client, monkeypatch):
    # Only newest_first's uuid tie-breaker orders heroes sharing a created_at: without
    # it PostgreSQL returns the ties in another order for each page's OFFSET query, and
    # SQLite in the order they were inserted, every time.
    monkeypatch.setattr(HeroListView, "paginate_by", 3)
    heroes = make_heroes(40)
    Hero.objects.update(created_at=timezone.now())
    shown, page = [], 1
    with CaptureQueriesContext(connection) as queries:
        while True:
            response = client.get(LIST, {"page": page})
            shown += listed(response)
            if not response.context["page_obj"].has_next():
                break
            page += 1
    pages = hero_list_queries(queries)
    assert len(pages) == page and all(NEWEST_FIRST_SQL.search(sql) for sql in pages)
    repeated = sorted(nickname for nickname, times in Counter(shown).items() if times > 1)
    missed = sorted({hero.nickname for hero in heroes} - set(shown))
    assert (repeated, missed) == ([], [])
    by_uuid = sorted(heroes, key=lambda hero: hero.uuid, reverse=True)
    assert shown == [hero.nickname for hero in by_uuid]  # ties in uuid order, descending


def test_a_single_page_shows_no_pagination(client, heroes):
    assert 'aria-label="Pages"' not in client.get(LIST).content.decode()


@pytest.mark.parametrize("page", ["3", "0", "-1", "two"])
def test_list_pages_that_do_not_exist_are_404(client, page):
    make_heroes(30)
    response = client.get(LIST, {"page": page})
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def count_queries(client, params: dict) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LIST, params).status_code == 200
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]


def test_list_never_counts_the_whole_table(client):
    make_heroes(30)
    counts = count_queries(client, {"page": 1})
    assert len(counts) == 1
    assert "LIMIT 1001" in counts[0]
    assert count_queries(client, {"page": 2}) == []  # the last page tells the total
    assert count_queries(client, {"q": "hero 0"}) == []  # a single page too


def test_list_count_stops_at_the_limit(client, monkeypatch):
    monkeypatch.setattr(LookaheadPaginator, "count_limit", 3)
    make_heroes(3, role=Role.MAGE)
    make_heroes(1, role=Role.TANK, prefix="Tank")
    assert match_count(client.get(LIST)) == "More than 3 heroes"
    assert match_count(client.get(LIST, {"role": "mage"})) == "3 heroes"


def test_new_hero_button_needs_the_add_permission(client, reader, staff_user):
    client.force_login(reader)
    assert CREATE not in client.get(LIST).content.decode()
    client.force_login(staff_user)
    assert f'href="{CREATE}"' in client.get(LIST).content.decode()


# The detail page


def test_detail_shows_the_hero(client, heroes):
    hero = heroes[2]
    response = client.get(detail_url(hero))
    assert response.status_code == 200
    content = response.content.decode()
    assert title("Mystra") in content
    assert "<h1>Mystra</h1>" in content
    assert '<span class="role role--mage">Mage</span>' in content
    assert str(hero.uuid) in content
    assert f'<time datetime="{hero.created_at.isoformat()}">' in content


def test_detail_of_a_missing_hero_is_the_404_page(client):
    response = client.get(reverse("heroes:detail", args=[uuid.uuid4()]))
    assert response.status_code == 404
    assert title("Page not found") in response.content.decode()


@pytest.mark.parametrize(
    ("actions", "shows_edit", "shows_delete"),
    [((), False, False), (("change",), True, False), (("change", "delete"), True, True)],
)
def test_detail_shows_only_the_buttons_the_user_may_use(
    client, heroes, reader, actions, shows_edit, shows_delete
):
    reader.user_permissions.set(hero_permissions(*actions))
    client.force_login(reader)
    content = client.get(detail_url(heroes[0])).content.decode()
    assert (update_url(heroes[0]) in content) is shows_edit
    assert (delete_url(heroes[0]) in content) is shows_delete


# Who may write

WRITE_PAGES = [
    pytest.param(lambda hero: CREATE, "add", id="create"),
    pytest.param(update_url, "change", id="update"),
    pytest.param(delete_url, "delete", id="delete"),
]
CHANGES = {"nickname": "Changed", "role": "tank"}


def unchanged(heroes: list[Hero]) -> bool:
    stored = {h.pk: (h.nickname, h.role) for h in Hero.objects.all()}
    return stored == {h.pk: (h.nickname, h.role) for h in heroes}


@pytest.mark.parametrize(("url_of", "action"), WRITE_PAGES)
def test_anonymous_writers_are_sent_to_log_in(client, heroes, url_of, action):
    url = url_of(heroes[0])
    for response in (client.get(url), client.post(url, CHANGES)):
        assert response.status_code == 302
        assert response["Location"] == f"{LOGIN}?next={url}"
    assert unchanged(heroes)


@pytest.mark.parametrize(("url_of", "action"), WRITE_PAGES)
def test_users_without_the_permission_get_the_403_page(reader_client, heroes, url_of, action):
    url = url_of(heroes[0])
    for response in (reader_client.get(url), reader_client.post(url, CHANGES)):
        assert response.status_code == 403
        content = response.content.decode()
        assert title("Permission denied") in content
        assert "You are logged in as reader, but this account may not do that." in content
    assert unchanged(heroes)


@pytest.mark.parametrize(("url_of", "action"), WRITE_PAGES)
def test_the_matching_permission_is_enough(client, reader, heroes, url_of, action):
    reader.user_permissions.set(hero_permissions(action))
    client.force_login(reader)
    assert client.get(url_of(heroes[0])).status_code == 200


@pytest.mark.parametrize(("url_of", "action"), WRITE_PAGES)
def test_writes_need_a_csrf_token(staff_user, heroes, url_of, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    url = url_of(heroes[0])
    assert client.post(url, CHANGES).status_code == 403
    assert unchanged(heroes)

    client.get(url)  # sets the CSRF cookie, as a browser showing the form would
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post(url, {**CHANGES, "csrfmiddlewaretoken": token}).status_code == 302
    assert not unchanged(heroes)


@pytest.mark.parametrize(
    ("referer", "link"),
    [
        ("http://testserver/heroes/new/", "http://testserver/heroes/new/"),
        ("https://evil.example.com/heroes/new/", None),  # never a link to another site
        (None, None),
    ],
)
def test_a_post_without_csrf_token_gets_the_form_expired_page(writer, referer, link):
    client = Client(enforce_csrf_checks=True)
    client.force_login(writer)
    headers = {"Referer": referer} if referer else {}
    response = client.post(CREATE, {"nickname": "Zed", "role": ""}, headers=headers)
    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403_csrf.html", "base.html"]
    content = response.content.decode()
    assert title("Form expired") in content
    assert "<h1>This form has expired</h1>" in content
    assert "Nothing was saved." in content
    assert "writer" in content  # base.html's header, with the user's context
    back = re.search(r'<a [^>]*href="([^"]*)">Back to the form</a>', content)
    assert (back and back[1]) == link
    assert f'<a href="{LIST}">← All heroes</a>' in content
    assert not Hero.objects.exists()


# Creating


def test_create_form_has_labelled_fields(staff_client):
    response = staff_client.get(CREATE)
    content = response.content.decode()
    assert title("New hero") in content
    assert "<h1>New hero</h1>" in content
    assert '<label for="id_nickname">Nickname:</label>' in content
    assert '<label for="id_role">Role:</label>' in content
    assert '<option value="" selected>No role</option>' in content
    assert "csrfmiddlewaretoken" in content


def test_create_saves_the_hero_and_shows_it(staff_client):
    response = staff_client.post(CREATE, {"nickname": "  Zed  ", "role": "mage"}, follow=True)
    hero = Hero.objects.get()
    assert (hero.nickname, hero.role) == ("Zed", "mage")
    assert response.redirect_chain == [(detail_url(hero), 302)]
    assert messages_of(response) == ["Hero “Zed” was created."]
    assert 'class="message message--success" role="status"' in response.content.decode()


def test_create_without_a_role_stores_null(staff_client):
    staff_client.post(CREATE, {"nickname": "Zed", "role": ""})
    assert Hero.objects.get().role is None


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"nickname": "MYSTRA"}, {"nickname": ["A hero with this nickname already exists."]}),
        ({"nickname": ""}, {"nickname": ["This field is required."]}),
        ({"nickname": "   "}, {"nickname": ["This field is required."]}),
        (
            {"nickname": "x" * 256},
            {"nickname": ["Ensure this value has at most 255 characters (it has 256)."]},
        ),
        (
            {"nickname": "Zed", "role": "bard"},
            {"role": ["Select a valid choice. bard is not one of the available choices."]},
        ),
    ],
    ids=["taken", "empty", "blank", "too-long", "bad-role"],
)
def test_create_shows_errors_next_to_the_field_and_keeps_typed_values(
    staff_client, heroes, fields, errors
):
    response = staff_client.post(CREATE, {"role": "tank", **fields})
    assert response.status_code == 200
    assert response.context["form"].errors == errors
    content = response.content.decode()
    [field] = errors
    assert f'<ul class="errorlist" id="id_{field}_error">' in content
    assert f'aria-describedby="id_{field}_helptext id_{field}_error"' in content
    if fields["nickname"].strip():
        assert f'value="{fields["nickname"]}"' in content
    assert unchanged(heroes)


def test_create_reports_a_nickname_taken_between_validation_and_save(
    staff_client, after_validation
):
    after_validation(lambda hero: Hero.objects.create(nickname="ZED"))
    response = staff_client.post(CREATE, {"nickname": "Zed", "role": ""})
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "nickname": ["A hero with this nickname already exists."]
    }
    assert [h.nickname for h in Hero.objects.all()] == ["ZED"]


# Editing


def test_edit_form_shows_the_current_values(staff_client, heroes):
    response = staff_client.get(update_url(heroes[2]))
    content = response.content.decode()
    assert title("Edit Mystra") in content
    assert "<h1>Edit Mystra</h1>" in content
    assert 'value="Mystra"' in content
    assert '<option value="mage" selected>Mage</option>' in content


def test_edit_saves_the_changes(staff_client, heroes):
    hero = heroes[2]
    response = staff_client.post(
        update_url(hero), {"nickname": "Mystra II", "role": ""}, follow=True
    )
    assert response.redirect_chain == [(detail_url(hero), 302)]
    assert messages_of(response) == ["Hero “Mystra II” was saved."]
    stored = Hero.objects.get(pk=hero.pk)
    assert (stored.nickname, stored.role) == ("Mystra II", None)
    assert stored.updated_at > hero.updated_at
    assert stored.created_at == hero.created_at


def test_edit_may_change_only_the_letter_case(staff_client, heroes):
    staff_client.post(update_url(heroes[2]), {"nickname": "MYSTRA", "role": "mage"})
    assert Hero.objects.get(pk=heroes[2].pk).nickname == "MYSTRA"


def test_edit_rejects_another_heros_nickname_and_keeps_the_page_title(staff_client, heroes):
    response = staff_client.post(update_url(heroes[2]), {"nickname": "gorath", "role": ""})
    assert response.context["form"].errors == {
        "nickname": ["A hero with this nickname already exists."]
    }
    content = response.content.decode()
    assert title("Edit Mystra") in content
    assert 'value="gorath"' in content
    assert unchanged(heroes)


def test_editing_a_hero_deleted_meanwhile_says_so_and_keeps_the_input(staff_client, heroes):
    hero = heroes[2]
    staff_client.get(update_url(hero))
    Hero.objects.filter(pk=hero.pk).delete()
    response = staff_client.post(update_url(hero), {"nickname": "Mystra II", "role": "tank"})
    assert response.status_code == 200
    assert response.context["form"].errors == {NON_FIELD_ERRORS: [DELETED]}
    content = response.content.decode()
    assert 'value="Mystra II"' in content
    assert '<option value="tank" selected>Tank</option>' in content
    assert title("Edit hero") in content
    assert not Hero.objects.filter(pk=hero.pk).exists()


def test_a_hero_deleted_between_validation_and_save_is_not_recreated(
    staff_client, heroes, after_validation
):
    hero = heroes[2]
    after_validation(lambda edited: Hero.objects.filter(pk=edited.pk).delete())
    response = staff_client.post(update_url(hero), {"nickname": "Mystra II"})
    assert response.status_code == 200
    assert response.context["form"].errors == {NON_FIELD_ERRORS: [DELETED]}
    assert 'value="Mystra II"' in response.content.decode()
    assert not Hero.objects.filter(pk=hero.pk).exists()
    assert not Hero.objects.filter(nickname="Mystra II").exists()


# Two editors: the version a form was opened on


def opened_version(client, url: str) -> str:
    """The version a form page carries in its hidden field, as a browser would send it."""
    return found(r'name="version" value="(\d+)"', client.get(url).content.decode())


def test_edit_form_carries_the_heros_version(staff_client, heroes):
    hero = heroes[2]
    Hero.objects.filter(pk=hero.pk).update(role="tank")  # version 2
    assert opened_version(staff_client, update_url(hero)) == "2"
    assert opened_version(staff_client, delete_url(hero)) == "2"


def test_a_stale_edit_is_refused_keeping_the_input_and_showing_what_is_saved(staff_client, heroes):
    hero = heroes[2]  # Mystra, a mage
    version = opened_version(staff_client, update_url(hero))
    Hero.objects.change(hero.pk, {"role": "priest"})  # another editor saves first
    stored = Hero.objects.get(pk=hero.pk)

    typed = {"nickname": "Mystra the Wise", "role": "mage", "version": version}
    response = staff_client.post(update_url(hero), typed)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {
        NON_FIELD_ERRORS: [
            "This hero was changed by someone else meanwhile, so nothing was written. "
            "Now saved: nickname “Mystra”, role “Priest”. Submit again to go ahead anyway."
        ]
    }
    content = response.content.decode()
    assert 'class="errorlist nonfield"' in content
    assert 'value="Mystra the Wise"' in content  # what the user typed, kept
    assert '<option value="mage" selected>Mage</option>' in content
    # The form now carries the version just shown, so sending it again is knowing.
    assert f'name="version" value="{stored.version}"' in content
    assert Hero.objects.get(pk=hero.pk).version == stored.version  # nothing written

    response = staff_client.post(update_url(hero), {**typed, "version": stored.version})
    assert response.status_code == 302
    saved = Hero.objects.get(pk=hero.pk)
    assert (saved.nickname, saved.role, saved.version) == (
        "Mystra the Wise",
        "mage",
        stored.version + 1,
    )


def test_a_stale_edit_reports_its_other_errors_too(staff_client, heroes):
    hero = heroes[2]
    version = opened_version(staff_client, update_url(hero))
    Hero.objects.change(hero.pk, {"role": "priest"})
    response = staff_client.post(
        update_url(hero), {"nickname": "gorath", "role": "mage", "version": version}
    )
    errors = response.context["form"].errors
    assert errors["nickname"] == ["A hero with this nickname already exists."]
    assert "changed by someone else meanwhile" in errors[NON_FIELD_ERRORS][0]


def test_an_edit_that_loses_the_race_after_validation_is_refused(
    staff_client, heroes, after_validation
):
    hero = heroes[2]
    version = opened_version(staff_client, update_url(hero))
    after_validation(lambda edited: Hero.objects.change(edited.pk, {"role": "priest"}))
    response = staff_client.post(
        update_url(hero), {"nickname": "Mystra II", "role": "mage", "version": version}
    )
    assert response.status_code == 200
    [message] = response.context["form"].errors[NON_FIELD_ERRORS]
    assert "Now saved: nickname “Mystra”, role “Priest”." in message
    assert 'value="Mystra II"' in response.content.decode()
    stored = Hero.objects.get(pk=hero.pk)
    assert (stored.nickname, stored.role) == ("Mystra", "priest")
    assert f'name="version" value="{stored.version}"' in response.content.decode()


def test_an_edit_sent_without_a_version_saves_as_before(staff_client, heroes):
    # A form not rendered by this site: checked against the version read on arrival.
    hero = heroes[2]
    Hero.objects.change(hero.pk, {"role": "priest"})
    response = staff_client.post(update_url(hero), {"nickname": "Mystra II", "role": "tank"})
    assert response.status_code == 302
    assert Hero.objects.get(pk=hero.pk).role == "tank"


@pytest.mark.parametrize("version", ["abc", "0", "-1", "99999999999"])
def test_a_forged_version_is_a_form_error_and_writes_nothing(staff_client, heroes, version):
    hero = heroes[2]
    for url in (update_url(hero), delete_url(hero)):
        response = staff_client.post(url, {"nickname": "Forged", "version": version})
        assert response.status_code == 200
        assert response.context["form"].errors
    assert unchanged(heroes)


def test_a_new_hero_starts_at_the_first_version_whatever_is_sent(staff_client):
    staff_client.post(CREATE, {"nickname": "Zed", "role": "", "version": "41"})
    assert Hero.objects.get().version == 1


def test_a_stale_delete_is_refused_showing_what_is_saved(staff_client, heroes):
    hero = heroes[2]
    version = opened_version(staff_client, delete_url(hero))
    Hero.objects.change(hero.pk, {"nickname": "Mystra Reborn"})
    stored = Hero.objects.get(pk=hero.pk)

    response = staff_client.post(delete_url(hero), {"version": version})
    assert response.status_code == 200
    [message] = response.context["form"].errors[NON_FIELD_ERRORS]
    assert "changed by someone else meanwhile" in message
    assert "Now saved: nickname “Mystra Reborn”, role “Mage”." in message
    content = response.content.decode()
    assert "<h1>Delete Mystra Reborn?</h1>" in content
    assert f'name="version" value="{stored.version}"' in content
    assert Hero.objects.filter(pk=hero.pk).exists()

    response = staff_client.post(delete_url(hero), {"version": stored.version}, follow=True)
    assert messages_of(response) == ["Hero “Mystra Reborn” was deleted."]
    assert not Hero.objects.filter(pk=hero.pk).exists()


def test_a_delete_that_loses_the_race_after_validation_is_refused(
    staff_client, heroes, after_validation
):
    hero = heroes[2]
    version = opened_version(staff_client, delete_url(hero))
    after_validation(lambda deleted: Hero.objects.change(deleted.pk, {"role": "priest"}))
    response = staff_client.post(delete_url(hero), {"version": version})
    assert response.status_code == 200
    assert (
        "changed by someone else meanwhile" in response.context["form"].errors[NON_FIELD_ERRORS][0]
    )
    assert Hero.objects.get(pk=hero.pk).role == "priest"


# Deleting


def test_delete_asks_for_confirmation(staff_client, heroes):
    response = staff_client.get(delete_url(heroes[2]))
    content = response.content.decode()
    assert title("Delete Mystra") in content
    assert "<h1>Delete Mystra?</h1>" in content
    assert '<button type="submit" class="button button--danger">Delete</button>' in content
    assert Hero.objects.filter(pk=heroes[2].pk).exists()


def test_delete_removes_the_hero(staff_client, heroes):
    response = staff_client.post(delete_url(heroes[2]), follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert messages_of(response) == ["Hero “Mystra” was deleted."]
    assert not Hero.objects.filter(pk=heroes[2].pk).exists()
    assert Hero.objects.count() == len(heroes) - 1


def test_deleting_a_hero_already_deleted_is_404(staff_client, heroes):
    Hero.objects.filter(pk=heroes[2].pk).delete()
    response = staff_client.post(delete_url(heroes[2]))
    assert response.status_code == 404
    assert "it may have been deleted" in response.content.decode()


# Logging in and out


def test_login_page_has_a_labelled_form(client):
    response = client.get(LOGIN, {"next": CREATE})
    content = response.content.decode()
    assert title("Log in") in content
    assert '<label for="id_username">Username:</label>' in content
    assert '<label for="id_password">Password:</label>' in content
    assert f'<input type="hidden" name="next" value="{CREATE}">' in content


def test_login_goes_to_next(client, staff_user):
    response = client.post(LOGIN, {"username": "staff", "password": STAFF_PASSWORD, "next": CREATE})
    assert response.status_code == 302
    assert response["Location"] == CREATE
    assert client.get(CREATE).status_code == 200


def test_login_with_a_wrong_password_says_so(client, staff_user):
    response = client.post(LOGIN, {"username": "staff", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(staff_client):
    assert staff_client.get(reverse("logout")).status_code == 405
    response = staff_client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == LIST
    assert "_auth_user_id" not in staff_client.session


# Error pages


def test_server_error_page_needs_no_context():
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    content = response.content.decode()
    assert title("Server error") in content
    assert '<link rel="stylesheet" href="/static/css/site.css">' in content


@pytest.mark.parametrize(
    ("template", "heading"),
    [
        ("400.html", "Bad request"),
        ("413.html", "Request too large"),
        ("500.html", "Server error"),
        ("503.html", "Temporarily unavailable"),
    ],
)
def test_error_pages_made_without_a_request_share_the_base_and_need_no_context(
    template, heading, settings
):
    settings.PROJECT_NAME = "Guild"
    content = render_to_string(template)
    assert f"<title>{heading} | Guild</title>" in content
    assert f'<a class="site-name" href="{LIST}">Guild</a>' in content
    assert f"<h1>{heading}</h1>" in content
    assert 'class="site-nav"' not in content  # the menu and the account need the request


def test_a_busy_pool_gets_the_busy_page_not_unavailable(client, monkeypatch):
    def busy(*args, **kwargs):
        raise OperationalError("couldn't get a connection") from PoolTimeout("3.00 sec")

    monkeypatch.setattr(HeroQuerySet, "listing", busy)
    for pool, retry_after, page in [
        (FULL_POOL, "2", "is too busy to answer this request right now"),
        (EMPTY_POOL, "5", "cannot reach its database"),  # no connection could be made
    ]:
        monkeypatch.setattr("heroes_site.middleware.primary_pool", lambda pool=pool: pool)
        response = client.get(LIST)
        assert (response.status_code, response["Retry-After"]) == (503, retry_after)
        assert f"{settings.PROJECT_NAME} {page}" in response.content.decode()


def test_the_database_unavailable_page_is_a_503_to_retry(client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(HeroQuerySet, "listing", unreachable)
    response = client.get(LIST)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    content = response.content.decode()
    assert title("Temporarily unavailable") in content
    assert f"{settings.PROJECT_NAME} cannot reach its database right now" in content
