"""The hero rules, held by the model and by the database itself."""

import datetime
import time
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from heroes.models import Hero, HeroChanged, HeroDeleted, NicknameTaken, Role

pytestmark = pytest.mark.django_db


def constraint_names() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, "hrs_heroes"))


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the trigram index is PostgreSQL's (pg_trgm); on SQLite its migration does nothing",
)
TRIGRAM_INDEX = "ix_hrs_heroes_nickname_trgm"


def test_table_has_the_named_constraints_and_indexes():
    assert {
        "uq_hrs_heroes_nickname",
        "ck_hrs_heroes_role",
        "ck_hrs_heroes_nickname",
        "ix_hrs_heroes_created_at",
        "ix_hrs_heroes_role_created_at",
    } <= constraint_names()


def test_create_strips_the_nickname_and_sets_timestamps():
    hero = Hero.objects.create(nickname="  Mystra \n", role="mage")
    stored = Hero.objects.get(pk=hero.pk)
    assert stored.nickname == "Mystra"
    assert stored.role == "mage"
    assert stored.created_at.tzinfo is not None
    assert (
        datetime.timedelta(0)
        <= stored.updated_at - stored.created_at
        < datetime.timedelta(seconds=1)
    )


@pytest.mark.parametrize("other", ["MYSTRA", "mystra", " Mystra "])
def test_nickname_is_unique_ignoring_case(other):
    Hero.objects.create(nickname="Mystra")
    with pytest.raises(NicknameTaken) as caught:
        Hero.objects.create(nickname=other)
    assert caught.value.message_dict == {"nickname": ["A hero with this nickname already exists."]}
    assert Hero.objects.count() == 1


def test_nickname_is_unique_ignoring_case_beyond_ascii():
    Hero.objects.create(nickname="Ärger Σοφία")
    with pytest.raises(NicknameTaken):
        Hero.objects.create(nickname="ärger σοφία")
    assert Hero.objects.count() == 1


def test_database_rejects_duplicate_nickname_without_save():
    Hero.objects.create(nickname="Mystra")
    with pytest.raises(IntegrityError, match="uq_hrs_heroes_nickname"), transaction.atomic():
        Hero.objects.bulk_create([Hero(nickname="mYSTRA")])
    assert Hero.objects.count() == 1


@pytest.mark.parametrize("role", ["bard", "", "Mage"])
def test_database_rejects_unknown_role(role):
    with pytest.raises(IntegrityError), transaction.atomic():
        Hero.objects.create(nickname="Mystra", role=role)
    with pytest.raises(IntegrityError), transaction.atomic():
        Hero.objects.bulk_create([Hero(nickname="Mystra", role=role)])
    assert not Hero.objects.exists()


@pytest.mark.parametrize("role", [None, *Role.values])
def test_database_accepts_every_role_and_none(role):
    Hero.objects.bulk_create([Hero(nickname="Mystra", role=role)])
    assert Hero.objects.get().role == role


@pytest.mark.parametrize("nickname", ["", " Mystra", "Mystra ", "x" * 256])
def test_database_rejects_bad_nickname_without_save(nickname):
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        Hero.objects.bulk_create([Hero(nickname=nickname)])
    assert not Hero.objects.exists()


def test_empty_nickname_is_rejected_by_save():
    with pytest.raises(IntegrityError), transaction.atomic():
        Hero.objects.create(nickname="   ")
    assert not Hero.objects.exists()


def test_created_at_never_changes_and_updated_at_refreshes():
    hero = Hero.objects.create(nickname="Mystra")
    created_at, updated_at = hero.created_at, hero.updated_at
    time.sleep(0.01)
    hero.role = "mage"
    hero.created_at = created_at - datetime.timedelta(days=365)  # ignored
    hero.save()
    stored = Hero.objects.get(pk=hero.pk)
    assert stored.created_at == created_at
    assert stored.updated_at > updated_at
    assert stored.role == "mage"


def test_saving_a_hero_deleted_meanwhile_does_not_recreate_it():
    hero = Hero.objects.create(nickname="Mystra")
    Hero.objects.filter(pk=hero.pk).delete()
    hero.nickname = "Mystra the Second"
    with pytest.raises(Hero.DoesNotExist) as caught:
        hero.save()
    assert isinstance(caught.value, HeroDeleted)
    assert caught.value.messages == [
        "This hero was deleted by someone else meanwhile, so nothing was written."
    ]
    assert not Hero.objects.exists()


def test_an_update_writes_every_concrete_field_but_the_key_and_created_at():
    hero = Hero.objects.create(nickname="Mystra")
    with CaptureQueriesContext(connection) as queries:
        hero.save()
    [update] = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assigned = update.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    written = {
        field.column
        for field in Hero._meta.concrete_fields
        if connection.ops.quote_name(field.column) + " =" in assigned
    }
    assert written == {
        field.column
        for field in Hero._meta.concrete_fields
        if not field.primary_key and field.name != "created_at"
    }


def test_update_fields_limits_what_an_update_writes():
    hero = Hero.objects.create(nickname="Mystra", role="mage")
    Hero.objects.filter(pk=hero.pk).update(nickname="Renamed")  # as another writer would
    hero.refresh_from_db(fields=["version"])
    hero.role = "tank"
    hero.nickname = "Not written"
    hero.save(update_fields=["role"])
    stored = Hero.objects.get(pk=hero.pk)
    assert (stored.nickname, stored.role, stored.version) == ("Renamed", "tank", hero.version)


def test_every_write_is_a_new_version():
    hero = Hero.objects.create(nickname="Mystra")
    assert hero.version == 1
    hero.role = "mage"
    hero.save()
    assert hero.version == Hero.objects.get(pk=hero.pk).version == 2
    Hero.objects.filter(pk=hero.pk).update(role="tank")  # bulk writes too
    stored = Hero.objects.get(pk=hero.pk)
    assert stored.version == 3
    assert stored.updated_at > hero.updated_at


def test_saving_over_a_version_someone_else_changed_is_refused():
    hero = Hero.objects.create(nickname="Mystra", role="mage")
    Hero.objects.change(hero.pk, {"role": "priest"})  # another writer, meanwhile
    hero.nickname = "Mystra the Wise"
    with pytest.raises(HeroChanged) as caught:
        hero.save()
    assert caught.value.current.role == "priest"
    assert caught.value.messages == [
        "This hero was changed by someone else meanwhile, so nothing was written. "
        "Now saved: nickname “Mystra”, role “Priest”. Submit again to go ahead anyway."
    ]
    stored = Hero.objects.get(pk=hero.pk)
    assert (stored.nickname, stored.role, stored.version) == ("Mystra", "priest", 2)
    assert hero.version == 1  # still the version it was read at


def test_deleting_a_version_someone_else_changed_is_refused():
    hero = Hero.objects.create(nickname="Mystra")
    Hero.objects.change(hero.pk, {"role": "priest"})
    with pytest.raises(HeroChanged):
        hero.delete()
    assert Hero.objects.filter(pk=hero.pk).exists()
    hero.version = 2
    hero.delete()
    assert not Hero.objects.exists()


def test_change_writes_only_at_the_versions_named():
    hero = Hero.objects.create(nickname="Mystra")
    with pytest.raises(HeroChanged):
        Hero.objects.change(hero.pk, {"role": "tank"}, versions=[2, 3])
    assert Hero.objects.get(pk=hero.pk).role is None
    changed = Hero.objects.change(hero.pk, {"role": "tank"}, versions=[1, 3])
    assert (changed.role, changed.version) == ("tank", 2)
    assert Hero.objects.change(hero.pk, {}, versions=[2]) == changed  # nothing to write
    with pytest.raises(HeroDeleted):
        Hero.objects.change(uuid.uuid4(), {"role": "tank"})


def test_describe_names_the_values_a_user_edits():
    assert Hero(nickname="Mystra", role="mage").describe() == "nickname “Mystra”, role “Mage”"
    assert Hero(nickname="Mystra").describe() == "nickname “Mystra”, no role"


def test_renaming_to_own_nickname_in_other_case_is_allowed():
    hero = Hero.objects.create(nickname="Mystra")
    hero.nickname = "MYSTRA"
    hero.full_clean()
    hero.save()
    assert Hero.objects.get().nickname == "MYSTRA"


def test_full_clean_reports_a_taken_nickname_on_the_field():
    Hero.objects.create(nickname="Mystra")
    with pytest.raises(ValidationError) as caught:
        Hero(nickname=" mystra ").full_clean()
    assert caught.value.message_dict == {"nickname": ["A hero with this nickname already exists."]}


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"nickname": ""}, "nickname"),
        ({"nickname": "   "}, "nickname"),
        ({"nickname": "x" * 256}, "nickname"),
        ({"nickname": "Nul\x00"}, "nickname"),
        ({"nickname": "Mystra", "role": "bard"}, "role"),
    ],
)
def test_full_clean_rejects_invalid_fields(fields, error_field):
    with pytest.raises(ValidationError) as caught:
        Hero(**fields).full_clean()
    assert list(caught.value.message_dict) == [error_field]


def test_listing_is_newest_first(heroes):
    listed = list(Hero.objects.listing())
    assert listed == sorted(heroes, key=lambda h: (h.created_at, h.uuid), reverse=True)
    assert listed[0] == heroes[-1]


def test_listing_filters_by_role(heroes):
    mages = list(Hero.objects.listing(role="mage"))
    assert {h.nickname for h in mages} == {"Mystra", "Ärgerlich Öz"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BLADE", {"Shadowblade"}),
        ("ärger", {"Ärgerlich Öz"}),
        ("Öz", {"Ärgerlich Öz"}),
        ("%", set()),
        ("_", set()),
        ("o", {"Shadowblade", "Iron Wall", "Brother Aldous", "Gorath", "Nobody"}),
    ],
)
def test_listing_searches_nicknames_ignoring_case(heroes, text, expected):
    assert {h.nickname for h in Hero.objects.listing(search=text)} == expected


def test_listing_ignores_a_blank_search(heroes):
    assert Hero.objects.listing(search="  ").count() == len(heroes)


def test_listing_combines_search_and_role(heroes):
    assert [h.nickname for h in Hero.objects.listing(search="o", role="warrior")] == ["Gorath"]


@postgresql_only
def test_the_search_has_a_trigram_index_on_the_expression_it_filters(heroes):
    assert TRIGRAM_INDEX in constraint_names()
    with connection.cursor() as cursor:
        # Leave the planner no way but an index: on a few rows it would rather read
        # the table. A bitmap scan needs an index condition, so only an index on the
        # exact expression the ORM writes, LOWER("nickname"), can serve the search.
        for plan in ("seqscan", "indexscan", "indexonlyscan"):
            cursor.execute(f"SET LOCAL enable_{plan} = off")
        plan = Hero.objects.listing(search="BLADE").explain()
    assert f"Bitmap Index Scan on {TRIGRAM_INDEX}" in plan


@pytest.mark.django_db(transaction=True)
def test_migrations_reverse_and_reapply():
    call_command("migrate", "heroes", "zero", verbosity=0)
    assert "hrs_heroes" not in connection.introspection.table_names()
    call_command("migrate", "heroes", verbosity=0)
    assert "uq_hrs_heroes_nickname" in constraint_names()
    if connection.vendor == "postgresql":
        assert TRIGRAM_INDEX in constraint_names()
    Hero.objects.create(nickname="Mystra")
    assert Hero.objects.count() == 1
