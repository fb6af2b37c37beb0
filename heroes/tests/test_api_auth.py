"""Who may write through the API: bearer tokens, sessions with CSRF, permissions."""

import io
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from heroes.models import ApiToken, Hero

from .helpers import hero_permissions, make_user

HEROES = "/api/v1/heroes"
CSRF_TOKEN = "a" * 32

# Every async test runs on each transport of the API (conftest.transport).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("transport")]


@pytest.fixture
def hero(db) -> Hero:
    return Hero.objects.create(nickname="Superman", role="warrior")


WRITES = [
    ("post", HEROES, {"nickname": "Thor"}),
    ("patch", f"{HEROES}/{{uuid}}", {"role": "mage"}),
    ("delete", f"{HEROES}/{{uuid}}", None),
]


async def write(client: AsyncClient, method: str, path: str, payload, hero: Hero, **extra):
    path = path.format(uuid=hero.uuid)
    if payload is None:
        return await getattr(client, method)(path, **extra)
    return await getattr(client, method)(path, payload, content_type="application/json", **extra)


async def unchanged(hero: Hero) -> bool:
    """Only the fixture's hero exists, as it was."""
    heroes = [(h.uuid, h.nickname, h.role) async for h in Hero.objects.all()]
    return heroes == [(hero.uuid, hero.nickname, hero.role)]


@pytest.mark.parametrize(("method", "path", "payload"), WRITES)
async def test_reads_are_public_and_writes_without_credentials_are_401(
    async_client, hero, method, path, payload
):
    assert (await async_client.get(f"{HEROES}/{hero.uuid}")).status_code == 200
    response = await write(async_client, method, path, payload, hero)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()
    assert await unchanged(hero)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-token", "Bearer ", "Basic d3JpdGVyOndyaXRlci1wYXNzLTEyMw==", "Token abc"],
)
async def test_unknown_tokens_and_schemes_are_401(hero, authorization):
    client = AsyncClient(authorization=authorization)
    response = await client.post(HEROES, {"nickname": "Thor"}, content_type="application/json")
    assert response.status_code == 401
    assert await unchanged(hero)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_bearer_scheme_is_case_insensitive(writer_token, scheme):
    # RFC 9110 §11.1: an auth scheme's name is case-insensitive.
    client = AsyncClient(authorization=f"{scheme} {writer_token}")
    response = await client.post(HEROES, {"nickname": "Thor"}, content_type="application/json")
    assert response.status_code == 201
    assert await Hero.objects.filter(nickname="Thor").aexists()


async def test_a_revoked_token_is_401(writer, hero):
    token, raw_token = await sync_to_async(ApiToken.issue)(writer, "revoked")
    await ApiToken.objects.filter(pk=token.pk).aupdate(revoked_at=timezone.now())
    client = AsyncClient(authorization=f"Bearer {raw_token}")
    response = await client.post(HEROES, {"nickname": "Thor"}, content_type="application/json")
    assert response.status_code == 401
    assert await unchanged(hero)


async def test_an_inactive_users_token_is_401(writer, writer_token, hero):
    await type(writer).objects.filter(pk=writer.pk).aupdate(is_active=False)
    client = AsyncClient(authorization=f"Bearer {writer_token}")
    response = await client.post(HEROES, {"nickname": "Thor"}, content_type="application/json")
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path", "payload"), WRITES)
async def test_a_token_without_the_permission_is_403(reader_token, hero, method, path, payload):
    client = AsyncClient(authorization=f"Bearer {reader_token}")
    response = await write(client, method, path, payload, hero)
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]
    assert await unchanged(hero)


@pytest.mark.parametrize(
    ("action", "allowed"),
    [("add", ("post",)), ("change", ("patch",)), ("delete", ("delete",))],
)
async def test_each_write_needs_its_own_permission(action, allowed):
    user = await sync_to_async(make_user)("partial", (action,))
    _, raw_token = await sync_to_async(ApiToken.issue)(user, "partial")
    client = AsyncClient(authorization=f"Bearer {raw_token}")
    for method, path, payload in WRITES:
        hero = await Hero.objects.acreate(nickname=f"Hero {uuid.uuid4()}")
        response = await write(client, method, path, payload, hero)
        expected = {"post": 201, "patch": 200, "delete": 200}[method] if method in allowed else 403
        assert response.status_code == expected, method


async def test_permissions_given_to_a_group_count(hero):
    group = await Group.objects.acreate(name="editors")
    await sync_to_async(group.permissions.set)(await sync_to_async(hero_permissions)("change"))
    user = await sync_to_async(make_user)("member", ())
    await sync_to_async(user.groups.add)(group)
    _, raw_token = await sync_to_async(ApiToken.issue)(user, "member")
    client = AsyncClient(authorization=f"Bearer {raw_token}")
    assert (await write(client, *WRITES[1], hero)).status_code == 200
    assert (await write(client, *WRITES[2], hero)).status_code == 403  # not given


async def test_a_superuser_needs_no_permission_given(superuser, hero):
    _, raw_token = await sync_to_async(ApiToken.issue)(superuser, "root")
    client = AsyncClient(authorization=f"Bearer {raw_token}")
    for method, path, payload in WRITES:
        response = await write(client, method, path, payload, hero)
        assert response.status_code in (200, 201), method


async def test_a_token_revoked_between_two_requests_is_refused_at_the_second(writer, hero):
    token, raw_token = await sync_to_async(ApiToken.issue)(writer, "soon revoked")
    client = AsyncClient(authorization=f"Bearer {raw_token}")
    assert (await write(client, *WRITES[1], hero)).status_code == 200
    await ApiToken.objects.filter(pk=token.pk).aupdate(revoked_at=timezone.now())
    assert (await write(client, *WRITES[1], hero)).status_code == 401


async def test_token_use_is_recorded(writer, writer_token, hero):
    client = AsyncClient(authorization=f"Bearer {writer_token}")
    response = await client.patch(f"{HEROES}/{hero.uuid}", {"role": "tank"}, "application/json")
    assert response.status_code == 200
    token = await ApiToken.objects.aget(user=writer)
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < ApiToken.LAST_USED_RESOLUTION


@pytest.mark.django_db
def test_a_token_check_is_one_indexed_query(writer, writer_token):
    ApiToken.objects.update(last_used_at=timezone.now())  # recently used: no write due
    with CaptureQueriesContext(connection) as queries:
        user = async_to_sync(ApiToken.auser_for)(writer_token)
    assert user == writer
    assert len(queries) == 1
    assert "key_hash" in queries[0]["sql"]


@pytest.mark.django_db
def test_tokens_are_stored_hashed(writer):
    token, raw_token = ApiToken.issue(writer, "hashed")
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw_token not in str(stored)
    assert stored["key_hash"] == ApiToken.hash(raw_token)
    assert stored["prefix"] == raw_token[:8]


# Sessions


async def session_client(user, *, csrf: bool) -> AsyncClient:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    if csrf:
        client.cookies["csrftoken"] = CSRF_TOKEN
    return client


@pytest.mark.parametrize(("method", "path", "payload"), WRITES)
async def test_a_session_with_csrf_may_write(writer, hero, method, path, payload):
    client = await session_client(writer, csrf=True)
    response = await write(client, method, path, payload, hero, x_csrftoken=CSRF_TOKEN)
    assert response.status_code in (200, 201)
    assert not await unchanged(hero)


@pytest.mark.parametrize(("method", "path", "payload"), WRITES)
async def test_a_session_without_csrf_is_403(writer, hero, method, path, payload):
    client = await session_client(writer, csrf=False)
    response = await write(client, method, path, payload, hero)
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert await unchanged(hero)


async def test_a_session_without_the_permission_is_403(reader, hero):
    client = await session_client(reader, csrf=True)
    response = await client.delete(f"{HEROES}/{hero.uuid}", x_csrftoken=CSRF_TOKEN)
    assert response.status_code == 403
    assert await unchanged(hero)


async def test_a_bearer_token_needs_no_csrf_even_with_a_session(writer, writer_token, hero):
    client = await session_client(writer, csrf=False)
    client.defaults["authorization"] = f"Bearer {writer_token}"
    response = await client.delete(f"{HEROES}/{hero.uuid}")
    assert response.status_code == 200
    assert not await Hero.objects.aexists()


# create_api_token


@pytest.mark.django_db
def test_create_api_token_prints_a_working_token_last(writer, capsys):
    call_command("create_api_token", "writer", "--name", "deploys")
    raw_token = capsys.readouterr().out.strip().splitlines()[-1]
    token = ApiToken.objects.get(name="deploys")
    assert token.user == writer
    assert token.key_hash == ApiToken.hash(raw_token)
    assert async_to_sync(ApiToken.auser_for)(raw_token) == writer


@pytest.mark.django_db
def test_create_api_token_says_it_issued_the_token_in_green_not_in_error_red(writer):
    said, printed = io.StringIO(), io.StringIO()
    call_command("create_api_token", "writer", stdout=printed, stderr=said, force_color=True)
    assert "issued for writer" in said.getvalue()
    assert said.getvalue().startswith("\x1b[32;1m")  # Django's SUCCESS style
    assert "\x1b[31" not in said.getvalue()  # ERROR's red
    assert len(printed.getvalue().splitlines()) == 1  # stdout: the token alone


@pytest.mark.django_db
def test_create_api_token_for_an_unknown_user_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost")
    assert not ApiToken.objects.exists()
