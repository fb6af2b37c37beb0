"""Nicknames are plain text (SPEC §11): NFKC-normalised before they are validated,
compared and stored; control and invisible format characters are refused. The rule is
the model's, and every front door (the API, the HTML pages, the admin) applies it."""

import datetime
import unicodedata
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from heroes.models import (
    NON_TEXT_CATEGORIES,
    Hero,
    NicknameTaken,
    non_text_characters,
    normalize_nickname,
)

from .helpers import load_data

DATA = load_data("nicknames")


def cases(name: str) -> pytest.MarkDecorator:
    """Run the test for each case of data/nicknames.json's list `name`, named by its "what"."""
    return pytest.mark.parametrize("case", DATA[name], ids=lambda case: case["what"])


NON_TEXT = cases("non_text")
NORMALIZED = cases("normalized")
# 15 characters, 270 once normalised: U+FDFA is an 18-character Arabic phrase in NFKC.
EXPANDS_BEYOND_MAX = "\ufdfa" * 15
# 400 characters, 200 once normalised: "e" + combining acute accent becomes "é".
SHRINKS_WITHIN_MAX = "e\u0301" * 200
FULL_WIDTH_SUPERMAN = "\uff33uperman"

pytestmark = pytest.mark.django_db


def non_text_error(case: dict) -> str:
    return f"Control and invisible formatting characters are not allowed (found {case['found']})."


def nickname_errors(**fields) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Hero(**fields).full_clean()
    assert list(caught.value.message_dict) == ["nickname"]
    return caught.value.message_dict["nickname"]


# The model's rule


def test_the_rule_refuses_exactly_the_control_format_and_separator_categories():
    for code_point in range(0x110000):
        char = chr(code_point)
        refused = unicodedata.category(char) in NON_TEXT_CATEGORIES
        assert bool(non_text_characters(f"a{char}b")) == refused, f"U+{code_point:04X}"
    assert {"Cc", "Cf"} <= NON_TEXT_CATEGORIES


@NON_TEXT
def test_full_clean_refuses_control_and_format_characters_on_the_field(case):
    assert nickname_errors(nickname=case["nickname"]) == [non_text_error(case)]


def test_surrounding_whitespace_controls_are_stripped_not_refused():
    hero = Hero(nickname="\t\r\n Mystra \n")
    hero.full_clean()
    assert hero.nickname == "Mystra"


@NORMALIZED
def test_nicknames_are_stored_normalized(case):
    hero = Hero(nickname=case["nickname"])
    hero.full_clean()
    hero.save()
    assert Hero.objects.get().nickname == case["stored"]


def test_save_normalizes_even_without_validation():
    Hero.objects.create(nickname=FULL_WIDTH_SUPERMAN)
    assert Hero.objects.get().nickname == "Superman"


def test_a_full_width_twin_is_taken():
    Hero.objects.create(nickname="Superman")
    assert nickname_errors(nickname=FULL_WIDTH_SUPERMAN.upper()) == [
        "A hero with this nickname already exists."
    ]
    with pytest.raises(NicknameTaken):
        Hero.objects.create(nickname=FULL_WIDTH_SUPERMAN)
    assert Hero.objects.count() == 1


def test_the_length_is_checked_after_normalization():
    assert len(normalize_nickname(EXPANDS_BEYOND_MAX)) == 270
    assert nickname_errors(nickname=EXPANDS_BEYOND_MAX) == [
        "Ensure this value has at most 255 characters (it has 270)."
    ]
    hero = Hero(nickname=SHRINKS_WITHIN_MAX)
    hero.full_clean()
    hero.save()
    assert Hero.objects.get().nickname == "\u00e9" * 200


def test_normalization_is_stable():
    for case in DATA["normalized"]:
        assert normalize_nickname(case["stored"]) == case["stored"]


def test_search_is_normalized_like_nicknames():
    Hero.objects.create(nickname="Superman")
    Hero.objects.create(nickname="Batman")
    assert [h.nickname for h in Hero.objects.listing(search="\uff33\uff35\uff30er")] == ["Superman"]
    assert Hero.objects.listing(search="\u3000").count() == 2  # blank once normalised


# The API


HEROES = "/api/v1/heroes"


@pytest.fixture
def api(writer_token) -> AsyncClient:
    return AsyncClient(authorization=f"Bearer {writer_token}")


@pytest.fixture
def superman(db) -> Hero:
    return Hero.objects.create(nickname="Superman", role="warrior")


def assert_nickname_422(response, msg: str, error_type: str = "value_error") -> None:
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "nickname"], "msg": msg, "type": error_type}]
    }


@NON_TEXT
async def test_api_create_refuses_control_and_format_characters(api, case):
    response = await api.post(HEROES, {"nickname": case["nickname"]}, "application/json")
    assert_nickname_422(response, f"Value error, {non_text_error(case)}")
    assert not await Hero.objects.aexists()


@NON_TEXT
async def test_api_patch_refuses_control_and_format_characters(api, superman, case):
    response = await api.patch(
        f"{HEROES}/{superman.uuid}", {"nickname": case["nickname"]}, "application/json"
    )
    assert_nickname_422(response, f"Value error, {non_text_error(case)}")
    stored = await Hero.objects.aget()
    assert (stored.nickname, stored.updated_at) == ("Superman", superman.updated_at)


@NORMALIZED
async def test_api_create_stores_the_normalized_nickname(api, case):
    response = await api.post(HEROES, {"nickname": case["nickname"]}, "application/json")
    assert response.status_code == 201
    assert response.json()["nickname"] == case["stored"]
    assert (await Hero.objects.aget()).nickname == case["stored"]


async def test_api_create_of_a_full_width_twin_is_409(api, superman):
    response = await api.post(HEROES, {"nickname": FULL_WIDTH_SUPERMAN}, "application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": "A hero with this nickname already exists."}
    assert [h.nickname async for h in Hero.objects.all()] == ["Superman"]


async def test_api_patch_to_a_full_width_twin_is_409(api, superman):
    batman = await Hero.objects.acreate(nickname="Batman")
    response = await api.patch(
        f"{HEROES}/{batman.uuid}", {"nickname": FULL_WIDTH_SUPERMAN}, "application/json"
    )
    assert response.status_code == 409
    assert (await Hero.objects.aget(pk=batman.pk)).nickname == "Batman"


async def test_api_patch_stores_the_normalized_nickname(api, superman):
    response = await api.patch(
        f"{HEROES}/{superman.uuid}", {"nickname": "\ufb01rebrand"}, "application/json"
    )
    assert response.status_code == 200
    assert response.json()["nickname"] == "firebrand"
    assert (await Hero.objects.aget(pk=superman.pk)).nickname == "firebrand"


async def test_api_checks_the_length_after_normalization(api):
    response = await api.post(HEROES, {"nickname": EXPANDS_BEYOND_MAX}, "application/json")
    assert_nickname_422(response, "String should have at most 255 characters", "string_too_long")
    assert not await Hero.objects.aexists()
    response = await api.post(HEROES, {"nickname": SHRINKS_WITHIN_MAX}, "application/json")
    assert response.status_code == 201
    assert (await Hero.objects.aget()).nickname == "\u00e9" * 200


async def test_api_search_is_normalized(async_client, superman):
    await Hero.objects.acreate(nickname="Batman")
    response = await async_client.get(HEROES, {"search": "\uff33uper"})
    assert response.status_code == 200
    assert [h["nickname"] for h in response.json()["results"]] == ["Superman"]


# The HTML pages


CREATE = reverse("heroes:create")


def form_errors(response) -> dict:
    assert response.status_code == 200
    content = response.content.decode()
    assert '<ul class="errorlist" id="id_nickname_error">' in content  # next to the field
    return response.context["form"].errors


@NON_TEXT
def test_create_page_refuses_control_and_format_characters(staff_client, case):
    response = staff_client.post(CREATE, {"nickname": case["nickname"], "role": ""})
    assert form_errors(response) == {"nickname": [non_text_error(case)]}
    assert not Hero.objects.exists()


def test_create_page_refuses_a_full_width_twin(staff_client, superman):
    response = staff_client.post(CREATE, {"nickname": FULL_WIDTH_SUPERMAN, "role": ""})
    assert form_errors(response) == {"nickname": ["A hero with this nickname already exists."]}
    assert f'value="{FULL_WIDTH_SUPERMAN}"' in response.content.decode()  # as typed
    assert Hero.objects.count() == 1


def test_create_page_checks_the_length_after_normalization(staff_client):
    response = staff_client.post(CREATE, {"nickname": EXPANDS_BEYOND_MAX, "role": ""})
    assert form_errors(response) == {
        "nickname": ["Ensure this value has at most 255 characters (it has 270)."]
    }
    response = staff_client.post(CREATE, {"nickname": SHRINKS_WITHIN_MAX, "role": ""})
    assert response.status_code == 302
    assert Hero.objects.get().nickname == "\u00e9" * 200


def test_create_page_stores_the_normalized_nickname(staff_client):
    response = staff_client.post(CREATE, {"nickname": "\u2167 Legion", "role": ""})
    assert response.status_code == 302
    assert Hero.objects.get().nickname == "VIII Legion"


@pytest.mark.parametrize(
    ("nickname", "error"),
    [
        ("Super\u202eman", non_text_error({"found": "U+202E"})),
        ("\uff22\uff41\uff54\uff4d\uff41\uff4e", "A hero with this nickname already exists."),
    ],
    ids=["bidi-override", "full-width-twin"],
)
def test_edit_page_reports_the_rule_next_to_the_field(staff_client, superman, nickname, error):
    Hero.objects.create(nickname="Batman")
    url = reverse("heroes:update", args=[superman.pk])
    response = staff_client.post(url, {"nickname": nickname, "role": ""})
    assert form_errors(response) == {"nickname": [error]}
    assert Hero.objects.get(pk=superman.pk).nickname == "Superman"


def test_list_search_is_normalized(client, superman):
    Hero.objects.create(nickname="Batman")
    response = client.get(reverse("heroes:list"), {"q": "\uff33uper"})
    assert [h.nickname for h in response.context["hero_list"]] == ["Superman"]


# The admin


ADMIN_ADD = reverse("admin:heroes_hero_add")


def admin_form_errors(response) -> dict:
    assert response.status_code == 200
    assert "Please correct the error below." in response.content.decode()
    return response.context["adminform"].form.errors


@NON_TEXT
def test_admin_add_refuses_control_and_format_characters(staff_client, case):
    response = staff_client.post(ADMIN_ADD, {"nickname": case["nickname"], "role": ""})
    assert admin_form_errors(response) == {"nickname": [non_text_error(case)]}
    assert not Hero.objects.exists()


def test_admin_add_refuses_a_full_width_twin(staff_client, superman):
    response = staff_client.post(ADMIN_ADD, {"nickname": FULL_WIDTH_SUPERMAN, "role": ""})
    assert admin_form_errors(response) == {
        "nickname": ["A hero with this nickname already exists."]
    }
    assert Hero.objects.count() == 1


def test_admin_change_refuses_control_characters_and_checks_the_normalized_length(
    staff_client, superman
):
    url = reverse("admin:heroes_hero_change", args=[superman.pk])
    response = staff_client.post(url, {"nickname": "Super\x1bman", "role": ""})
    assert admin_form_errors(response) == {"nickname": [non_text_error({"found": "U+001B"})]}
    response = staff_client.post(url, {"nickname": EXPANDS_BEYOND_MAX, "role": ""})
    assert admin_form_errors(response) == {
        "nickname": ["Ensure this value has at most 255 characters (it has 270)."]
    }
    assert Hero.objects.get().nickname == "Superman"
    response = staff_client.post(url, {"nickname": SHRINKS_WITHIN_MAX, "role": ""})
    assert response.status_code == 302
    assert Hero.objects.get().nickname == "\u00e9" * 200
    response = staff_client.post(url, {"nickname": "\uff33uperman \u2167", "role": ""})
    assert response.status_code == 302
    assert Hero.objects.get().nickname == "Superman VIII"


def test_admin_search_is_normalized(staff_client, superman):
    Hero.objects.create(nickname="Batman")
    response = staff_client.get(reverse("admin:heroes_hero_changelist"), {"q": "\uff33uper"})
    assert [h.nickname for h in response.context["cl"].result_list] == ["Superman"]


# The data migration

BEFORE = ("heroes", "0004_hero_verbose_name_plural")
AFTER = ("heroes", "0005_normalize_nicknames")


def migrate(target: tuple[str, str]):
    """Migrate the test database to `target`; the app registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def uuid_of(n: int) -> uuid.UUID:
    """A uuid whose first 8 hex digits (those of a rename's suffix) are n's."""
    return uuid.UUID(f"{n:08x}-0000-4000-8000-000000000000")


# Saved oldest first: (uuid, nickname before, nickname after the migration).
TWIN_UUID = uuid_of(2)
ODD_ROWS = [
    (uuid_of(1), FULL_WIDTH_SUPERMAN, f"Superman (renamed {uuid_of(1).hex[:8]})"),
    (uuid_of(3), "Superman", "Superman"),  # already plain: keeps its nickname
    (uuid_of(4), "Super\u200bman", f"Superman (renamed {uuid_of(4).hex[:8]})"),
    (uuid_of(5), "\u202eevil\u202c", "evil"),
    (uuid_of(6), "Bad\x1b[31mRed", "Bad[31mRed"),
    (uuid_of(7), "Line\u2028Break\tTab\r\nEnd", "Line Break Tab  End"),
    (uuid_of(8), "\u200b\u200d", "unnamed"),
    (uuid_of(9), "\ufeff", f"unnamed (renamed {uuid_of(9).hex[:8]})"),
    (uuid_of(10), EXPANDS_BEYOND_MAX, normalize_nickname(EXPANDS_BEYOND_MAX)[:255]),
    (uuid_of(11), "e\u200b\u0301tude", "\u00e9tude"),  # joined once the ZWSP is gone
    (uuid_of(12), "x" * 255, "x" * 255),
    (uuid_of(13), "x" * 254 + "\uff58", "x" * 236 + f" (renamed {uuid_of(13).hex[:8]})"),
    (uuid_of(14), "Twin", "Twin"),
    (uuid_of(15), f"Twin (renamed {TWIN_UUID.hex[:8]})", f"Twin (renamed {TWIN_UUID.hex[:8]})"),
    (TWIN_UUID, "\uff34win", f"Twin (renamed {TWIN_UUID.hex[:8]}-2)"),
    (uuid_of(16), "Mystra", "Mystra"),
]


@pytest.mark.django_db(transaction=True)
def test_migration_0005_normalizes_existing_rows_and_reverses():
    try:
        apps = migrate(BEFORE)
        OldHero = apps.get_model("heroes", "Hero")
        # Written as an older version of the app could have: no normalisation, no rule.
        OldHero.objects.bulk_create(OldHero(uuid=pk, nickname=old) for pk, old, _ in ODD_ROWS)
        long_ago = timezone.now() - datetime.timedelta(days=1)
        for age, (pk, _, _) in enumerate(ODD_ROWS):
            OldHero.objects.filter(pk=pk).update(
                created_at=long_ago + datetime.timedelta(seconds=age), updated_at=long_ago
            )

        apps = migrate(AFTER)
        rows = {hero.uuid: hero for hero in apps.get_model("heroes", "Hero").objects.all()}
        assert {pk: rows[pk].nickname for pk, _, _ in ODD_ROWS} == {
            pk: new for pk, _, new in ODD_ROWS
        }
        for pk, old, new in ODD_ROWS:
            # Every row now follows the rule; only the changed ones were touched.
            assert normalize_nickname(new) == new and not non_text_characters(new)
            assert 0 < len(new) <= 255
            assert (rows[pk].updated_at == long_ago) == (old == new), new

        # Backwards, a no-op: the nicknames stay as they are.
        OldHero = migrate(BEFORE).get_model("heroes", "Hero")
        assert dict(OldHero.objects.values_list("uuid", "nickname")) == {
            pk: new for pk, _, new in ODD_ROWS
        }
    finally:
        migrate_to_latest()
