"""Staff edit heroes in the Django admin."""

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AbstractUser, Permission
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from heroes.admin import HeroAdmin
from heroes.forms import HeroForm
from heroes.models import HERO_DELETED_MESSAGE, ApiToken, Hero
from heroes.pagination import EstimatedCountPaginator

from .helpers import found, in_another_connection, make_user, needs_a_second_connection

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:heroes_hero_changelist")
ADD = reverse("admin:heroes_hero_add")


def changelist_nicknames(response) -> list[str]:
    return [hero.nickname for hero in response.context["cl"].result_list]


def test_anonymous_users_are_sent_to_the_admin_login(client):
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_can_log_in_through_the_admin_login_form(client, staff_user):
    response = client.post(
        reverse("admin:login"),
        {"username": "staff", "password": "staff-pass-123", "next": CHANGELIST},
    )
    assert response.status_code == 302
    assert client.get(CHANGELIST).status_code == 200


def test_admin_index_names_the_model_heroes(staff_client):
    response = staff_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert f'<a href="{CHANGELIST}">Heroes</a>' in response.content.decode()
    assert "Heros" not in response.content.decode()


def test_changelist_lists_newest_first_with_the_columns(staff_client, heroes):
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    assert changelist_nicknames(response) == [h.nickname for h in reversed(heroes)]
    content = response.content.decode()
    for column in ("column-nickname", "column-role", "column-created_at", "column-updated_at"):
        assert column in content
    assert f"<title>Select hero to change | {settings.PROJECT_NAME}</title>" in content
    assert f'<a href="/admin/">{settings.PROJECT_NAME}</a>' in content


def test_changelist_searches_nicknames_ignoring_case(staff_client, heroes):
    response = staff_client.get(CHANGELIST, {"q": "ärger"})
    assert changelist_nicknames(response) == ["Ärgerlich Öz"]


@pytest.mark.parametrize(
    ("search", "found"),
    [
        # Django's own admin search ANDs the words, in any order: it would find these.
        ("blade shadow", []),
        ("wall iron", []),
        ("ron wa", ["Iron Wall"]),
        # As on the HTML list, the typed text is trimmed, and a blank one finds all.
        (" BLADE ", ["Shadowblade"]),
        ("  ", None),
    ],
)
def test_changelist_search_is_the_shared_nickname_search(staff_client, heroes, search, found):
    expected = [h.nickname for h in reversed(heroes)] if found is None else found
    assert changelist_nicknames(staff_client.get(CHANGELIST, {"q": search})) == expected
    assert [h.nickname for h in Hero.objects.listing(search=search)] == expected


def test_changelist_filters_by_role(staff_client, heroes):
    response = staff_client.get(CHANGELIST, {"role__exact": "mage"})
    assert changelist_nicknames(response) == ["Ärgerlich Öz", "Mystra"]
    assert 'href="?role__exact=tank"' in response.content.decode()


def hero_counts(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "hrs_heroes" in q["sql"]]


def test_changelist_runs_a_single_capped_count(staff_client, heroes):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(CHANGELIST, {"q": "o"})
    assert response.status_code == 200
    counts = hero_counts(queries)
    assert len(counts) == 1, counts
    # COUNT(*) FROM (... LIMIT 1001): never more rows read than the limit.
    assert f"LIMIT {EstimatedCountPaginator.count_limit + 1}" in counts[0]


@pytest.fixture
def small_pages(monkeypatch) -> None:
    """Two heroes a page, and counts exact up to three heroes only."""
    monkeypatch.setattr(HeroAdmin, "list_per_page", 2)
    monkeypatch.setattr(EstimatedCountPaginator, "count_limit", 3)


def test_changelist_beyond_the_count_limit_estimates_on_postgresql_and_counts_elsewhere(
    staff_client, heroes, small_pages
):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(CHANGELIST, {"p": 2})
    assert response.status_code == 200
    assert changelist_nicknames(response) == [h.nickname for h in reversed(heroes)][2:4]
    cl, content = response.context["cl"], response.content.decode()
    if connection.vendor == "postgresql":  # the planner's estimate, no row read past 4
        counts = hero_counts(queries)
        assert counts and all("LIMIT 4" in sql for sql in counts), counts
        assert cl.paginator.count_is_estimated and cl.result_count > 3
        assert f"about {cl.result_count} heroes" in content
    else:  # SQLite has no estimate to offer: Django's exact count
        assert not cl.paginator.count_is_estimated
        assert cl.result_count == len(heroes)
        assert f"{len(heroes)} heroes" in content


def test_add_form_creates_a_hero(staff_client):
    response = staff_client.get(ADD)
    assert isinstance(response.context["adminform"].form, HeroForm)  # shared with the pages
    response = staff_client.post(ADD, {"nickname": "  Mystra  ", "role": "mage"})
    assert response.status_code == 302
    hero = Hero.objects.get()
    assert (hero.nickname, hero.role) == ("Mystra", "mage")


def test_add_form_shows_a_taken_nickname_next_to_the_field(staff_client, heroes):
    response = staff_client.post(ADD, {"nickname": "MYSTRA", "role": ""})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "nickname": ["A hero with this nickname already exists."]
    }
    assert Hero.objects.count() == len(heroes)


@pytest.mark.django_db(transaction=True)
@needs_a_second_connection
def test_add_form_reports_a_nickname_taken_between_validation_and_save(
    staff_client, heroes, after_validation
):
    after_validation(
        lambda hero: in_another_connection(lambda: Hero.objects.create(nickname="ZED"))
    )
    response = staff_client.post(ADD, {"nickname": "Zed", "role": "tank"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {"nickname": ["A hero with this nickname already exists."]}
    assert form["nickname"].value() == "Zed"  # what the user typed, to fix
    assert "Please correct the error below." in response.content.decode()
    # The admin's transaction was rolled back: nothing saved, nothing logged.
    assert [h.nickname for h in Hero.objects.filter(nickname__iexact="zed")] == ["ZED"]
    assert not LogEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
@needs_a_second_connection
def test_change_form_reports_a_nickname_taken_between_validation_and_save(
    staff_client, heroes, after_validation
):
    hero = heroes[0]

    def take_the_nickname(edited: Hero) -> None:
        in_another_connection(lambda: Hero.objects.change(heroes[2].pk, {"nickname": "Zed"}))

    after_validation(take_the_nickname)
    response = staff_client.post(change_url(hero), {"nickname": "ZED", "role": ""})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "nickname": ["A hero with this nickname already exists."]
    }
    assert response.context["original"] == hero
    assert Hero.objects.get(pk=hero.pk).version == hero.version  # not written
    assert not LogEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
@needs_a_second_connection
def test_change_form_of_a_hero_deleted_between_validation_and_save_says_so(
    staff_client, heroes, after_validation
):
    hero = heroes[0]
    after_validation(
        lambda edited: in_another_connection(lambda: Hero.objects.filter(pk=hero.pk).delete())
    )
    response = staff_client.post(change_url(hero), {"nickname": "Back Again", "role": "tank"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {NON_FIELD_ERRORS: [HERO_DELETED_MESSAGE]}
    assert (form["nickname"].value(), form["role"].value()) == ("Back Again", "tank")
    assert not Hero.objects.filter(pk=hero.pk).exists()  # not re-created
    assert not LogEntry.objects.exists()


def test_change_form_of_a_hero_deleted_while_open_says_so(staff_client, heroes):
    hero = heroes[0]
    staff_client.get(change_url(hero))
    Hero.objects.filter(pk=hero.pk).delete()
    response = staff_client.post(change_url(hero), {"nickname": "Back Again", "role": "tank"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {NON_FIELD_ERRORS: [HERO_DELETED_MESSAGE]}
    assert form["nickname"].value() == "Back Again"
    assert not Hero.objects.filter(pk=hero.pk).exists()


def test_change_form_of_a_malformed_id_is_the_admins_not_found(staff_client):
    response = staff_client.post(
        reverse("admin:heroes_hero_change", args=["not-a-uuid"]), {"nickname": "X"}
    )
    assert response.status_code == 302
    assert not Hero.objects.exists()


# Two editors: the version a form was opened on


def change_url(hero: Hero) -> str:
    return reverse("admin:heroes_hero_change", args=[hero.pk])


def delete_url(hero: Hero) -> str:
    return reverse("admin:heroes_hero_delete", args=[hero.pk])


def opened_version(response) -> str:
    return found(r'name="version" value="(\d+)"', response.content.decode())


def test_a_stale_change_is_refused_keeping_the_input_and_showing_what_is_saved(
    staff_client, heroes
):
    hero = heroes[2]  # Mystra, a mage
    version = opened_version(staff_client.get(change_url(hero)))
    Hero.objects.change(hero.pk, {"role": "priest"})  # another staff member saves first
    stored = Hero.objects.get(pk=hero.pk)

    typed = {"nickname": "Mystra the Wise", "role": "mage", "version": version}
    response = staff_client.post(change_url(hero), typed)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {
        NON_FIELD_ERRORS: [
            "This hero was changed by someone else meanwhile, so nothing was written. "
            "Now saved: nickname “Mystra”, role “Priest”. Submit again to go ahead anyway."
        ]
    }
    assert (form["nickname"].value(), form["role"].value()) == ("Mystra the Wise", "mage")
    assert opened_version(response) == str(stored.version)
    assert Hero.objects.get(pk=hero.pk).version == stored.version  # nothing written
    assert not LogEntry.objects.exists()

    response = staff_client.post(change_url(hero), {**typed, "version": stored.version})
    assert response.status_code == 302
    saved = Hero.objects.get(pk=hero.pk)
    assert (saved.nickname, saved.role) == ("Mystra the Wise", "mage")


@pytest.mark.django_db(transaction=True)
@needs_a_second_connection
def test_a_change_that_loses_the_race_after_validation_is_refused(
    staff_client, heroes, after_validation
):
    hero = heroes[2]
    version = opened_version(staff_client.get(change_url(hero)))
    after_validation(
        lambda edited: in_another_connection(
            lambda: Hero.objects.change(hero.pk, {"role": "priest"})
        )
    )
    response = staff_client.post(
        change_url(hero), {"nickname": "Mystra II", "role": "mage", "version": version}
    )
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors[NON_FIELD_ERRORS]
    assert "Now saved: nickname “Mystra”, role “Priest”." in message
    stored = Hero.objects.get(pk=hero.pk)
    assert (stored.nickname, stored.role) == ("Mystra", "priest")
    assert opened_version(response) == str(stored.version)
    assert not LogEntry.objects.exists()


def test_deleting_a_hero_changed_since_the_confirmation_is_refused(staff_client, heroes):
    hero = heroes[2]
    confirmation = staff_client.get(delete_url(hero))
    assert "Now saved: nickname “Mystra”, role “Mage”." in confirmation.content.decode()
    version = opened_version(confirmation)
    Hero.objects.change(hero.pk, {"nickname": "Mystra Reborn"})
    stored = Hero.objects.get(pk=hero.pk)

    response = staff_client.post(delete_url(hero), {"post": "yes", "version": version}, follow=True)
    assert response.redirect_chain == [(delete_url(hero), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "This hero was changed by someone else meanwhile, so nothing was written. "
        "Now saved: nickname “Mystra Reborn”, role “Mage”. Submit again to go ahead anyway."
    ]
    assert opened_version(response) == str(stored.version)
    assert Hero.objects.filter(pk=hero.pk).exists()
    assert not LogEntry.objects.exists()

    response = staff_client.post(delete_url(hero), {"post": "yes", "version": stored.version})
    assert response.status_code == 302
    assert not Hero.objects.filter(pk=hero.pk).exists()


@pytest.mark.django_db(transaction=True)
@needs_a_second_connection
def test_a_delete_that_loses_the_race_after_validation_is_refused(
    staff_client, heroes, after_validation
):
    hero = heroes[2]
    version = opened_version(staff_client.get(delete_url(hero)))
    after_validation(
        lambda deleted: in_another_connection(
            lambda: Hero.objects.change(hero.pk, {"role": "priest"})
        )
    )
    response = staff_client.post(delete_url(hero), {"post": "yes", "version": version}, follow=True)
    assert response.redirect_chain == [(delete_url(hero), 302)]
    [message] = response.context["messages"]
    assert "changed by someone else meanwhile" in str(message)
    assert Hero.objects.get(pk=hero.pk).role == "priest"
    assert not LogEntry.objects.exists()


def test_add_form_rejects_an_unknown_role(staff_client):
    response = staff_client.post(ADD, {"nickname": "Mystra", "role": "bard"})
    assert "role" in response.context["adminform"].form.errors
    assert not Hero.objects.exists()


def test_change_form_edits_a_hero_and_keeps_identity_read_only(staff_client, heroes):
    hero = heroes[0]
    url = reverse("admin:heroes_hero_change", args=[hero.pk])
    response = staff_client.get(url)
    assert response.status_code == 200
    form = response.context["adminform"].form
    # uuid and timestamps are read-only; version, hidden, is the one the form shows.
    assert set(form.fields) == {"nickname", "role", "version"}
    assert form["version"].is_hidden
    assert str(hero.uuid) in response.content.decode()

    response = staff_client.post(url, {"nickname": "Shadowblade II", "role": ""})
    assert response.status_code == 302
    hero.refresh_from_db()
    assert (hero.nickname, hero.role) == ("Shadowblade II", None)


def test_delete_from_the_admin(staff_client, heroes):
    url = reverse("admin:heroes_hero_delete", args=[heroes[0].pk])
    response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Hero.objects.filter(pk=heroes[0].pk).exists()


def test_admin_issues_a_token_and_shows_it_once(superuser_client, writer):
    response = superuser_client.post(
        reverse("admin:heroes_apitoken_add"), {"user": writer.pk, "name": "deploys"}
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    raw_token = response.context["token"].raw_token
    assert raw_token in response.content.decode()
    assert token.key_hash == ApiToken.hash(raw_token)
    assert (token.user, token.name) == (writer, "deploys")

    page = superuser_client.get(reverse("admin:heroes_apitoken_change", args=[token.pk]))
    assert page.status_code == 200
    assert raw_token not in page.content.decode()
    assert token.prefix in page.content.decode()


@pytest.mark.parametrize("as_superuser", [True, False], ids=["superuser", "staff"])
def test_the_add_token_form_starts_with_the_user_who_opens_it(
    client, superuser, token_staff, writer, as_superuser
):
    user = superuser if as_superuser else token_staff
    client.force_login(user)
    page = client.get(reverse("admin:heroes_apitoken_add"))
    assert page.context["adminform"].form["user"].value() == user.pk
    assert f'<option value="{user.pk}" selected>' in page.content.decode()


def test_admin_revokes_tokens_and_shows_last_use(superuser_client, writer):
    used, _ = ApiToken.issue(writer, "used")
    ApiToken.objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    unused, _ = ApiToken.issue(writer, "unused")
    changelist = reverse("admin:heroes_apitoken_changelist")
    response = superuser_client.get(changelist)
    assert "column-last_used_at" in response.content.decode()
    response = superuser_client.post(
        changelist, {"action": "revoke", "_selected_action": [used.pk, unused.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.filter(revoked_at=None).count() == 0


# API tokens: only a superuser deals with another user's tokens

TOKEN_ADD = reverse("admin:heroes_apitoken_add")
TOKEN_CHANGELIST = reverse("admin:heroes_apitoken_changelist")
USERS_AUTOCOMPLETE = reverse("admin:autocomplete") + (
    "?app_label=heroes&model_name=apitoken&field_name=user&term="
)


@pytest.fixture
def token_staff(db) -> AbstractUser:
    """Staff, no superuser, whose only permissions are to issue and see API tokens."""
    user = make_user("tokens", (), is_staff=True)
    grant(user, "heroes.add_apitoken", "heroes.view_apitoken")
    return user


def grant(user: AbstractUser, *permissions: str) -> None:
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def test_staff_cannot_issue_a_token_for_another_user(client, token_staff, superuser):
    client.force_login(token_staff)
    # The crafted POST: the superuser's id, which the form never offered.
    response = client.post(TOKEN_ADD, {"user": superuser.pk, "name": "escalate"})
    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not ApiToken.objects.exists()


def test_staff_issue_tokens_for_themselves(client, token_staff, superuser):
    client.force_login(token_staff)
    form = client.get(TOKEN_ADD).context["adminform"].form
    assert list(form.fields["user"].queryset) == [token_staff]  # no one else to choose
    assert form["user"].value() == token_staff.pk
    response = client.post(TOKEN_ADD, {"user": token_staff.pk, "name": "mine"})
    assert response.status_code == 200
    token = ApiToken.objects.get()
    assert (token.user, token.key_hash) == (
        token_staff,
        ApiToken.hash(response.context["token"].raw_token),
    )


def test_saving_a_token_for_another_user_is_refused_even_past_the_form(token_staff, writer, rf):
    # save_model is the last guard, should a form ever let another user through.
    request = rf.post(TOKEN_ADD)
    request.user = token_staff
    token_admin = admin.site.get_model_admin(ApiToken)
    with pytest.raises(PermissionDenied):
        token_admin.save_model(request, ApiToken(user=writer, name="escalate"), None, False)
    assert not ApiToken.objects.exists()


def test_staff_see_and_open_only_their_own_tokens(client, token_staff, writer):
    grant(token_staff, "heroes.delete_apitoken")
    own, _ = ApiToken.issue(token_staff, "mine")
    others, _ = ApiToken.issue(writer, "theirs")
    client.force_login(token_staff)
    response = client.get(TOKEN_CHANGELIST)
    assert list(response.context["cl"].result_list) == [own]
    assert others.prefix not in response.content.decode()
    assert client.get(reverse("admin:heroes_apitoken_change", args=[own.pk])).status_code == 200
    # Another's token "doesn't exist": the admin sends them back to its index.
    for view in ("change", "history", "delete"):
        response = client.get(reverse(f"admin:heroes_apitoken_{view}", args=[others.pk]))
        assert (response.status_code, response["Location"]) == (302, reverse("admin:index"))


@pytest.mark.parametrize("select_across", ["0", "1"])
def test_staff_revoke_only_their_own_tokens(client, token_staff, writer, select_across):
    grant(token_staff, "heroes.change_apitoken")
    own, _ = ApiToken.issue(token_staff, "mine")
    others, _ = ApiToken.issue(writer, "theirs")
    client.force_login(token_staff)
    response = client.post(
        TOKEN_CHANGELIST,
        {
            "action": "revoke",
            "_selected_action": [own.pk, others.pk],
            "select_across": select_across,
        },
    )
    assert response.status_code == 302
    own.refresh_from_db()
    others.refresh_from_db()
    assert own.revoked_at is not None
    assert others.revoked_at is None


def test_a_superuser_sees_everyones_tokens(superuser_client, token_staff, writer):
    tokens = [ApiToken.issue(token_staff, "staff's")[0], ApiToken.issue(writer, "writer's")[0]]
    response = superuser_client.get(TOKEN_CHANGELIST)
    assert set(response.context["cl"].result_list) == set(tokens)


def test_the_owner_autocomplete_offers_staff_only_themselves(client, token_staff, writer):
    client.force_login(token_staff)
    assert client.get(USERS_AUTOCOMPLETE).status_code == 403  # may not view users at all
    grant(token_staff, "auth.view_user")
    results = client.get(USERS_AUTOCOMPLETE).json()["results"]
    assert results == [{"id": str(token_staff.pk), "text": "tokens"}]
    # The user admin's own search is not narrowed.
    response = client.get(reverse("admin:auth_user_changelist"))
    assert {user.username for user in response.context["cl"].result_list} == {"tokens", "writer"}


def test_the_owner_autocomplete_offers_a_superuser_everyone(superuser_client, token_staff):
    results = superuser_client.get(USERS_AUTOCOMPLETE).json()["results"]
    assert {result["text"] for result in results} == {"root", "tokens"}
