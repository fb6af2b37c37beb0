"""The heroes' history (SPEC §13): every write, through every door, on both transports
and both databases, recorded by the database in the write's own transaction; nothing
for a write that does not happen; one chain under racing writers; append-only; seen
only by users with heroes.view_herohistory."""

import asyncio
import datetime
import itertools
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AbstractUser
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from heroes.models import AppendOnly, Hero, HeroHistory

from .helpers import HERO_ACTIONS, give_history, json_through_asgi, make_user

pytestmark = pytest.mark.django_db

HEROES = "/api/v1/heroes"


@pytest.fixture
def historian(db) -> AbstractUser:
    """A staff user who may write heroes and see their history."""
    return give_history(make_user("historian", HERO_ACTIONS, is_staff=True))


def recorded(hero: uuid.UUID | str) -> list[tuple]:
    """The hero's entries, oldest first: what happened, who, through which door."""
    return [
        (e.action, e.changes, e.version, e.username, e.token, e.via, e.request_id)
        for e in HeroHistory.objects.filter(hero_uuid=hero).order_by("id")
    ]


arecorded = sync_to_async(recorded)


# Every door


async def test_api_writes_by_token_are_recorded_with_the_token(writer_token, transport):
    api = AsyncClient(authorization=f"Bearer {writer_token}")
    created = await api.post(
        HEROES, {"nickname": "Thor"}, "application/json", headers={"X-Request-ID": "a1"}
    )
    url = f"{HEROES}/{created.json()['uuid']}"
    await api.patch(url, {"nickname": "Thor II", "role": "tank"}, "application/json")
    await api.patch(url, {"role": None}, "application/json", headers={"X-Request-ID": "a3"})
    assert (await api.delete(url, headers={"X-Request-ID": "a4"})).status_code == 200
    entries = await arecorded(created.json()["uuid"])
    assert [entry[:3] for entry in entries] == [
        ("created", {"nickname": [None, "Thor"], "role": [None, None]}, 1),
        ("changed", {"nickname": ["Thor", "Thor II"], "role": [None, "tank"]}, 2),
        ("changed", {"role": ["tank", None]}, 3),
        ("deleted", {"nickname": ["Thor II", None], "role": [None, None]}, 4),
    ]
    assert {entry[3:6] for entry in entries} == {("writer", "tests", "api")}
    request_ids = [entry[6] for entry in entries]
    assert request_ids[0] == "a1" and request_ids[2:] == ["a3", "a4"]
    assert len(request_ids[1]) == 32  # generated, as the response's X-Request-ID


async def test_api_writes_by_session_are_recorded_without_a_token(writer):
    api = AsyncClient()
    await api.aforce_login(writer)
    created = await api.post(HEROES, {"nickname": "Thor"}, "application/json")
    assert created.status_code == 201
    [entry] = await arecorded(created.json()["uuid"])
    assert entry[:6] == (
        "created",
        {"nickname": [None, "Thor"], "role": [None, None]},
        1,
        "writer",
        None,
        "api",
    )


def test_page_writes_are_recorded(client, writer):
    client.force_login(writer)
    client.post(reverse("heroes:create"), {"nickname": "Mystra", "role": "mage"})
    hero = Hero.objects.get()
    client.post(reverse("heroes:update", args=[hero.pk]), {"nickname": "Mystra", "role": ""})
    client.post(reverse("heroes:delete", args=[hero.pk]), {"version": 2})
    assert not Hero.objects.exists()
    assert [(e[0], e[3], e[5]) for e in recorded(hero.pk)] == [
        ("created", "writer", "pages"),
        ("changed", "writer", "pages"),
        ("deleted", "writer", "pages"),
    ]


def test_admin_writes_are_recorded_the_bulk_delete_too(client, staff_user):
    client.force_login(staff_user)
    client.post(reverse("admin:heroes_hero_add"), {"nickname": "Zed", "role": "tank"})
    zed = Hero.objects.get()
    change = reverse("admin:heroes_hero_change", args=[zed.pk])
    client.post(change, {"nickname": "Zed", "role": "mage", "version": 1})
    other = Hero.objects.create(nickname="Other")
    response = client.post(
        reverse("admin:heroes_hero_changelist"),
        {"action": "delete_selected", "_selected_action": [zed.pk, other.pk], "post": "yes"},
    )
    assert response.status_code == 302 and not Hero.objects.exists()
    assert [(e[0], e[1], e[3], e[5]) for e in recorded(zed.pk)] == [
        ("created", {"nickname": [None, "Zed"], "role": [None, "tank"]}, "staff", "admin"),
        ("changed", {"role": ["tank", "mage"]}, "staff", "admin"),
        ("deleted", {"nickname": ["Zed", None], "role": ["mage", None]}, "staff", "admin"),
    ]
    assert [(e[0], e[3], e[5]) for e in recorded(other.pk)] == [
        ("created", "", "other"),  # made here, outside a request
        ("deleted", "staff", "admin"),
    ]


def test_writes_outside_a_request_are_recorded_as_other():
    hero = Hero.objects.create(nickname="Shell")
    hero.role = "priest"
    hero.save()
    Hero.objects.filter(pk=hero.pk).update(nickname="Shelled")
    [bulk] = Hero.objects.bulk_create([Hero(nickname="Bulk")])
    Hero.objects.filter(pk__in=[hero.pk, bulk.pk]).delete()
    entries = recorded(hero.pk)
    assert [entry[:3] for entry in entries] == [
        ("created", {"nickname": [None, "Shell"], "role": [None, None]}, 1),
        ("changed", {"role": [None, "priest"]}, 2),
        ("changed", {"nickname": ["Shell", "Shelled"]}, 3),
        ("deleted", {"nickname": ["Shelled", None], "role": ["priest", None]}, 4),
    ]
    assert {entry[3:] for entry in entries} == {("", None, "other", "")}  # no user, no request
    assert [e[0] for e in recorded(bulk.pk)] == ["created", "deleted"]


# What records nothing


async def test_refused_writes_record_nothing(writer_token, transport):
    api = AsyncClient(authorization=f"Bearer {writer_token}")
    hero = await Hero.objects.acreate(nickname="Kept")
    await Hero.objects.acreate(nickname="Taken")
    before = await HeroHistory.objects.acount()
    url = f"{HEROES}/{hero.pk}"
    answers = [
        await api.patch(url, {"nickname": "taken"}, "application/json"),  # 409
        await api.patch(url, {"role": "tank"}, "application/json", headers={"If-Match": '"7"'}),
        await api.patch(url, {"role": "nobody"}, "application/json"),  # 422
        await api.patch(f"{HEROES}/{uuid.uuid4()}", {"role": "tank"}, "application/json"),
        await api.patch(url, {}, "application/json"),  # nothing to write
        await api.post(HEROES, {"nickname": "TAKEN"}, "application/json"),  # 409
        await api.delete(url, headers={"If-Match": '"7"'}),
    ]
    assert [answer.status_code for answer in answers] == [409, 412, 422, 404, 200, 409, 412]
    assert await HeroHistory.objects.acount() == before


def test_a_save_that_changes_nothing_and_a_rolled_back_write_record_nothing():
    hero = Hero.objects.create(nickname="Still")
    hero.save()  # the same values: a new version, but no change to tell
    with pytest.raises(RuntimeError), transaction.atomic():
        Hero.objects.filter(pk=hero.pk).update(role="tank")
        raise RuntimeError("rolled back")
    assert [e[0] for e in recorded(hero.pk)] == ["created"]
    assert Hero.objects.get(pk=hero.pk).version == 2


# Racing writers


RACERS = 20


@pytest.mark.asyncio  # on pytest-asyncio's own loop, so the requests really overlap
@pytest.mark.django_db(transaction=True)
async def test_racing_renames_leave_one_unbroken_chain(writer_token, transport):
    hero = await Hero.objects.acreate(nickname="Racer")
    url, headers = f"{HEROES}/{hero.pk}", {"Authorization": f"Bearer {writer_token}"}
    try:
        answers = await asyncio.gather(
            *(
                json_through_asgi("PATCH", url, {"nickname": f"Racer {n}"}, headers)
                for n in range(RACERS)
            )
        )
        assert [status for status, _, _ in answers] == [200] * RACERS
        entries = await arecorded(hero.pk)
        final = (await Hero.objects.aget(pk=hero.pk)).nickname
    finally:
        await sync_to_async(connections.close_all)()  # the test's worker thread's
    assert len(entries) == RACERS + 1
    assert [entry[2] for entry in entries] == list(range(1, RACERS + 2))  # versions grow
    for previous, entry in itertools.pairwise(entries):
        before, _ = entry[1]["nickname"]
        assert before == previous[1]["nickname"][1]  # each before is the previous after
    assert entries[-1][1]["nickname"][1] == final


# Append-only


def test_the_history_cannot_be_edited_or_deleted_but_pruned(capsys):
    hero = Hero.objects.create(nickname="Ancient")
    entry = HeroHistory.objects.get()
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        HeroHistory.objects.update(username="forger")
    with pytest.raises(AppendOnly):
        HeroHistory.objects.all().delete()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE hrs_hero_history SET username = 'forger'")  # the trigger
    if connection.vendor == "postgresql":  # SQLite's test flush deletes with DELETE
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM hrs_hero_history")
    assert HeroHistory.objects.get().username == ""

    hero.delete()  # a second entry, recorded now
    today = timezone.now().date()
    call_command("prune_history", "--before", str(today))  # nothing as old
    assert HeroHistory.objects.count() == 2
    call_command("prune_history", "--before", str(today + datetime.timedelta(days=1)))
    assert not HeroHistory.objects.exists()
    assert "Deleted 2 history entries" in capsys.readouterr().out


def test_prune_history_refuses_a_bad_date():
    with pytest.raises(Exception, match="YYYY-MM-DD"):
        call_command("prune_history", "--before", "last week")


def test_a_deleted_users_entries_keep_the_username(client, writer):
    client.force_login(writer)
    client.post(reverse("heroes:create"), {"nickname": "Witnessed"})
    writer_id = writer.pk
    writer.delete()
    [entry] = HeroHistory.objects.all()
    assert (entry.username, entry.user_id) == ("writer", writer_id)


# Who sees it: the API


async def test_api_history_needs_credentials_and_the_permission(writer_token, reader_token):
    hero = await Hero.objects.acreate(nickname="Private")
    url = f"{HEROES}/{hero.pk}/history"
    assert (await AsyncClient().get(url)).status_code == 401
    for token in (writer_token, reader_token):  # may write heroes, or only log in
        answer = await AsyncClient(authorization=f"Bearer {token}").get(url)
        assert answer.status_code == 403
        assert answer.json() == {
            "detail": "You do not have the heroes.view_herohistory permission."
        }


async def test_api_history_pages_newest_first_and_outlives_the_hero(historian, transport):
    api = AsyncClient()
    await api.aforce_login(historian)
    created = await api.post(HEROES, {"nickname": "Ephemeral"}, "application/json")
    url = f"{HEROES}/{created.json()['uuid']}"
    await api.patch(url, {"role": "mage"}, "application/json")
    await api.delete(url)
    first = (await api.get(f"{url}/history", {"page_size": 2})).json()
    assert [entry["action"] for entry in first["results"]] == ["deleted", "changed"]
    assert first["results"][0] == {
        "action": "deleted",
        "at": first["results"][0]["at"],
        "version": 3,
        "user": "historian",
        "token": None,
        "via": "api",
        "request_id": first["results"][0]["request_id"],
        "changes": {"nickname": ["Ephemeral", None], "role": ["mage", None]},
    }
    second = (await api.get(first["next"])).json()
    assert [entry["action"] for entry in second["results"]] == ["created"]
    assert second["next"] is None and second["previous"]
    assert (await api.get(f"{HEROES}/{uuid.uuid4()}/history")).status_code == 404
    assert (await api.get(f"{url}/history", {"cursor": "cD1ub3QtYW4taWQ="})).status_code == 422


# Who sees it: the pages and the admin


def test_the_detail_page_shows_the_history_only_to_who_may_see_it(
    client, staff_user, writer, historian
):
    client.force_login(staff_user)
    client.post(reverse("heroes:create"), {"nickname": "Watched"})
    hero = Hero.objects.get()
    page = reverse("heroes:detail", args=[hero.pk])
    for viewer in (None, writer):  # anonymous; may write heroes but not see who did
        viewer_client = Client()
        if viewer:
            viewer_client.force_login(viewer)
        content = viewer_client.get(page).content.decode()
        assert "Last changed by" not in content and "History" not in content
        assert "staff" not in content  # the editor's name
    client.force_login(historian)
    content = client.get(page).content.decode()
    assert "Last changed by staff, <time" in content
    assert '<h2 id="history-heading">History</h2>' in content
    assert "<strong>nickname</strong>: — → Watched" in content


def test_the_admin_history_page_and_changed_by_filter(client, staff_user, historian):
    client.force_login(staff_user)
    client.post(reverse("admin:heroes_hero_add"), {"nickname": "Audited", "role": "tank"})
    hero = Hero.objects.get()
    Hero.objects.create(nickname="Untouched")
    history = reverse("admin:heroes_hero_history", args=[hero.pk])
    changelist = reverse("admin:heroes_hero_changelist")
    assert client.get(history).status_code == 403  # staff without the permission
    assert "changed by" not in client.get(changelist).content.decode()
    assert LogEntry.objects.exists()  # the admin's own log, which this page no longer shows

    client.force_login(historian)
    content = client.get(history).content.decode()
    assert "<td>staff</td>" in content and "Created (version 1)" in content
    assert "<strong>nickname</strong>: — → Audited" in content
    listed = client.get(changelist, {"changed_by": "staff"}).content.decode()
    assert "changed by" in listed
    assert "Audited" in listed and "Untouched" not in listed
