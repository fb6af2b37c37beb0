"""Nicknames that look alike are one nickname (SPEC §11, Unicode TR39): characters that
render as nothing are refused, so are nicknames with nothing visible and words mixing
look-alike letters of different scripts; nicknames with the same confusable skeleton
clash like a taken nickname, in the database too. One rule (heroes.models), every
door: the API, the pages, the admin."""

import datetime
import logging
import unicodedata

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from heroes import lookalikes
from heroes.models import (
    NICKNAME_LOOKS_TAKEN_MESSAGE,
    NON_TEXT_CATEGORIES,
    Hero,
    NicknameTaken,
    invisible_characters,
)

from .helpers import load_data
from .test_nicknames import DATA, cases, migrate, migrate_to_latest, uuid_of

INVISIBLE = cases("invisible")
NOTHING_VISIBLE = cases("nothing_visible")
MIXED = cases("mixed_scripts")
WELCOME = pytest.mark.parametrize("nickname", DATA["welcome"])
LOOK_ALIKES = cases("look_alikes")
NOTHING_VISIBLE_ERROR = "A nickname needs at least one visible character."
HEROES = "/api/v1/heroes"
TOR = "\u0422\u043e\u0440"  # Cyrillic: looks like the Latin "Top"

pytestmark = pytest.mark.django_db


def invisible_error(case: dict) -> str:
    return f"Control and invisible formatting characters are not allowed (found {case['found']})."


def mixed_error(case: dict) -> str:
    return (
        f"“{case['word']}” mixes letters of different scripts that look alike "
        f"({case['scripts']}): write each word in one script."
    )


def nickname_errors(nickname: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Hero(nickname=nickname).full_clean()
    assert list(caught.value.message_dict) == ["nickname"]
    return caught.value.message_dict["nickname"]


# The Unicode machinery


def test_the_skeleton_is_unicodes_as_icu_computes_it():
    # Computed by ICU's SpoofChecker (the reference implementation of TR39) for a
    # sample of every 25th character confusables.txt maps, and for nicknames.
    expected = load_data("skeletons")["skeletons"]
    assert len(expected) > 250
    assert {text: lookalikes.skeleton(text) for text in expected} == expected


def test_look_alikes_share_a_skeleton_digest_and_others_do_not():
    for case in DATA["look_alikes"]:
        assert lookalikes.skeleton_digest(case["clash"]) == lookalikes.skeleton_digest(
            case["stored"]
        ), case["what"]
    names = ["Zed", "Zoë", "Zoe", TOR, "Tor", "Élodie", "Elodie", "Jean Luc", "JeanLuc"]
    assert len({lookalikes.skeleton_digest(name) for name in names}) == len(names)


def test_invisible_characters_are_exactly_the_refused_categories_and_the_ignorables():
    every_character = "".join(map(chr, range(0x110000)))
    refused = {
        char for char in every_character if unicodedata.category(char) in NON_TEXT_CATEGORIES
    } | set(lookalikes.DEFAULT_IGNORABLE.findall(every_character))
    assert set(invisible_characters(every_character)) == refused
    assert not invisible_characters(f"Zoë O'Brien-{TOR} 李小龙 ☃ 007")
    # Unicode's Default_Ignorable_Code_Point, not a list of our own.
    for char in "\u034f\u115f\u3164\u180b\u17b4\ufe00\ufe0f\U000e0100\u200b":
        assert invisible_characters(char) == [char]


# The model's rules


@INVISIBLE
def test_full_clean_refuses_characters_that_render_as_nothing(case):
    assert nickname_errors(case["nickname"]) == [invisible_error(case)]


@NOTHING_VISIBLE
def test_full_clean_refuses_a_nickname_with_nothing_visible(case):
    assert nickname_errors(case["nickname"]) == [NOTHING_VISIBLE_ERROR]


def test_a_blank_hangul_filler_is_refused_both_ways():
    assert nickname_errors("\u3164") == [
        invisible_error({"found": "U+1160"}),
        NOTHING_VISIBLE_ERROR,
    ]


@MIXED
def test_full_clean_refuses_look_alike_letters_of_mixed_scripts(case):
    assert nickname_errors(case["nickname"]) == [mixed_error(case)]


@WELCOME
def test_names_in_one_script_stay_welcome(nickname):
    hero = Hero(nickname=nickname)
    hero.full_clean()
    hero.save()
    assert Hero.objects.get().nickname == nickname


@LOOK_ALIKES
def test_a_look_alike_of_a_stored_nickname_is_taken(case):
    Hero.objects.create(nickname=case["stored"])
    assert nickname_errors(case["clash"]) == [NICKNAME_LOOKS_TAKEN_MESSAGE]
    with pytest.raises(NicknameTaken) as caught:
        Hero.objects.create(nickname=case["clash"])
    assert caught.value.messages == [NICKNAME_LOOKS_TAKEN_MESSAGE]
    assert list(Hero.objects.values_list("nickname", flat=True)) == [case["stored"]]


def test_the_same_nickname_is_reported_as_taken_not_as_a_look_alike():
    Hero.objects.create(nickname="Top")
    assert nickname_errors("TOP") == ["A hero with this nickname already exists."]


def test_the_database_refuses_a_look_alike_whoever_writes():
    top = Hero.objects.create(nickname="Top")
    zed = Hero.objects.create(nickname="Zed")
    with pytest.raises(IntegrityError, match="skeleton_digest"), transaction.atomic():
        Hero.objects.bulk_create([Hero(nickname=TOR)])
    with pytest.raises(IntegrityError, match="skeleton_digest"), transaction.atomic():
        Hero.objects.filter(pk=zed.pk).update(nickname=TOR)  # no validation
    renamed = Hero.objects.get(pk=zed.pk)
    assert (renamed.nickname, renamed.version) == ("Zed", 1)
    # The digest follows the nickname on every write path.
    Hero.objects.filter(pk=top.pk).update(nickname="Tip")
    Hero.objects.create(nickname=TOR)
    assert Hero.objects.get(nickname="Tip").skeleton_digest == lookalikes.skeleton_digest("Tip")


# The API


@pytest.fixture
def api(writer_token) -> AsyncClient:
    return AsyncClient(authorization=f"Bearer {writer_token}")


async def test_api_refuses_invisible_blank_and_mixed_nicknames(api):
    cases = [
        (DATA["invisible"][0]["nickname"], invisible_error(DATA["invisible"][0])),
        ("\u2800", NOTHING_VISIBLE_ERROR),
        (DATA["mixed_scripts"][0]["nickname"], mixed_error(DATA["mixed_scripts"][0])),
    ]
    for nickname, message in cases:
        response = await api.post(HEROES, {"nickname": nickname}, "application/json")
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"loc": ["body", "nickname"], "msg": f"Value error, {message}", "type": "value_error"}
        ]
    assert not await Hero.objects.aexists()


async def test_api_create_and_patch_to_a_look_alike_are_409(api, transport):
    await Hero.objects.acreate(nickname="Top")
    zed = await Hero.objects.acreate(nickname="Zed")
    response = await api.post(HEROES, {"nickname": TOR}, "application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": NICKNAME_LOOKS_TAKEN_MESSAGE}
    response = await api.patch(f"{HEROES}/{zed.uuid}", {"nickname": TOR}, "application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": NICKNAME_LOOKS_TAKEN_MESSAGE}
    assert sorted([h.nickname async for h in Hero.objects.all()]) == ["Top", "Zed"]
    response = await api.patch(
        f"{HEROES}/{zed.uuid}", {"nickname": f"{TOR} Zed"}, "application/json"
    )
    assert response.status_code == 200
    stored = await Hero.objects.aget(pk=zed.pk)
    assert stored.skeleton_digest == lookalikes.skeleton_digest(f"{TOR} Zed")


@WELCOME
async def test_api_welcomes_names_in_one_script(api, nickname):
    response = await api.post(HEROES, {"nickname": nickname}, "application/json")
    assert response.status_code == 201
    assert (await Hero.objects.aget()).nickname == nickname


# The pages and the admin


def field_errors(response, form: str = "form") -> dict:
    assert response.status_code == 200
    assert '<ul class="errorlist" id="id_nickname_error">' in response.content.decode()
    context = response.context
    return (context["adminform"].form if form == "adminform" else context["form"]).errors


@pytest.mark.parametrize(
    ("url", "form"),
    [(reverse("heroes:create"), "form"), (reverse("admin:heroes_hero_add"), "adminform")],
    ids=["page", "admin"],
)
def test_create_forms_show_each_rule_next_to_the_field(staff_client, url, form):
    Hero.objects.create(nickname="Top")
    cases = [
        ("Zed\u034f", invisible_error({"found": "U+034F"})),
        ("\u2800", NOTHING_VISIBLE_ERROR),
        ("Z\u0435d", mixed_error(DATA["mixed_scripts"][0])),
        (TOR, NICKNAME_LOOKS_TAKEN_MESSAGE),
    ]
    for nickname, message in cases:
        response = staff_client.post(url, {"nickname": nickname, "role": ""})
        assert field_errors(response, form) == {"nickname": [message]}
    assert list(Hero.objects.values_list("nickname", flat=True)) == ["Top"]


def test_edit_page_refuses_a_look_alike_taken_after_validation(staff_client, after_validation):
    zed = Hero.objects.create(nickname="Zed")
    after_validation(lambda hero: Hero.objects.create(nickname="Top"))
    url = reverse("heroes:update", args=[zed.pk])
    response = staff_client.post(url, {"nickname": TOR, "role": "", "version": 1})
    assert response.status_code == 200
    assert response.context["form"].errors == {"nickname": [NICKNAME_LOOKS_TAKEN_MESSAGE]}
    assert Hero.objects.get(pk=zed.pk).nickname == "Zed"


# The data migration

BEFORE = ("heroes", "0006_hero_version")
AFTER = ("heroes", "0007_nickname_skeleton_digest")
# Saved oldest first: (uuid, nickname, keeps a digest, reported).
ROWS = [
    (uuid_of(1), "Top", True, False),
    (uuid_of(2), TOR, False, True),  # looks like Top
    (uuid_of(3), "Zed", True, False),
    (uuid_of(4), "Zed\u034f", False, True),  # looks like Zed; an invisible character
    (uuid_of(5), "Z\u0435d", False, True),  # looks like Zed; mixed scripts
    (uuid_of(6), "\u2800", True, True),  # nothing visible
    (uuid_of(7), "Élodie", True, False),
]


@pytest.mark.django_db(transaction=True)
def test_migration_0007_fills_digests_and_reports_look_alikes_keeping_every_row(caplog):
    caplog.set_level(logging.WARNING, logger="heroes.migrations")
    try:
        OldHero = migrate(BEFORE).get_model("heroes", "Hero")
        OldHero.objects.bulk_create(OldHero(uuid=pk, nickname=name) for pk, name, _, _ in ROWS)
        long_ago = timezone.now() - datetime.timedelta(days=1)
        for age, (pk, *_) in enumerate(ROWS):
            OldHero.objects.filter(pk=pk).update(
                created_at=long_ago + datetime.timedelta(seconds=age), updated_at=long_ago
            )

        NewHero = migrate(AFTER).get_model("heroes", "Hero")
        stored = {hero.uuid: hero for hero in NewHero.objects.all()}
        for pk, nickname, keeps_digest, reported in ROWS:
            hero = stored[pk]
            assert (hero.nickname, hero.updated_at) == (nickname, long_ago)  # untouched
            digest = lookalikes.skeleton_digest(nickname) if keeps_digest else None
            assert hero.skeleton_digest == digest, nickname
            assert (f"Hero {pk}:" in caplog.text) == reported, nickname
        assert f"looks like hero {uuid_of(1)}'s 'Top'" in caplog.text
        assert "A nickname needs at least one visible character." in caplog.text

        # New look-alikes of the whole group are refused from now on.
        with pytest.raises(IntegrityError), transaction.atomic():
            NewHero.objects.create(
                nickname="Top!", skeleton_digest=stored[uuid_of(1)].skeleton_digest
            )

        OldHero = migrate(BEFORE).get_model("heroes", "Hero")
        assert OldHero.objects.count() == len(ROWS)
    finally:
        migrate_to_latest()
