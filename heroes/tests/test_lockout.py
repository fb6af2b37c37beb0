"""Password guessing is throttled (django-axes): five failures for one username from
one client address lock that pair on both login pages, until the cool-off has passed
or staff clear the lock."""

import asyncio
import contextlib
import http.client
import io
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone
from django.utils.module_loading import import_string

from heroes_site.event_loop_middleware import EVENT_LOOP_TWINS
from heroes_site.middleware import bounded_logins

from .helpers import REPO_ROOT, STAFF_PASSWORD, AsgiBrowser, csrf_token_in, make_user, manage

SERVED_APP = "heroes_site.asgi:application"
LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]
WRONG_PASSWORD = "not-the-password"


def log_in(
    client: Client,
    username: str,
    password: str,
    page: str = "/accounts/login/",
    headers: dict[str, str] | None = None,
):
    return client.post(page, {"username": username, "password": password}, headers=headers)


def lock_out(client: Client, username: str = "staff", page: str = "/accounts/login/") -> None:
    statuses = [log_in(client, username, WRONG_PASSWORD, page).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_five_failures_lock_the_pair_and_then_the_right_password_is_refused(
    client, staff_user, page
):
    lock_out(client, page=page)
    response = log_in(client, "staff", STAFF_PASSWORD, page)
    assert response.status_code == 429
    assert not is_logged_in(client)
    for other_page in LOGIN_PAGES:  # the lock is the pair's, whichever page is used
        assert log_in(client, "staff", STAFF_PASSWORD, other_page).status_code == 429


@pytest.mark.django_db
def test_four_failures_do_not_lock(client, staff_user):
    for _ in range(4):
        assert log_in(client, "staff", WRONG_PASSWORD).status_code == 200
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 302
    assert is_logged_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_lockout_page_says_what_happened_and_when_to_try_again(client, staff_user, page):
    lock_out(client, page=page)
    asked_at = timezone.now()
    response = log_in(client, "staff", STAFF_PASSWORD, page)
    text = response.content.decode()
    assert response.status_code == 429
    assert {"registration/locked_out.html", "base.html"} <= {t.name for t in response.templates}
    assert "<h1>Too many failed logins</h1>" in text
    assert "Logging in as <strong>staff</strong> from your address" in text
    assert "paused for 15 minutes" in text and "even the right password is refused" in text
    retry_at = datetime.fromisoformat(re.search(r'<time datetime="([^"]+)"', text).group(1))
    # The attempt just made restarted the 15 minutes; the page rounds up to the minute.
    assert asked_at + timedelta(minutes=15) < retry_at <= asked_at + timedelta(minutes=16)
    assert f'Try again at <time datetime="{retry_at.isoformat()}">' in text
    assert response["Retry-After"] == "900"
    assert "Traceback" not in text


@pytest.mark.django_db
def test_the_lockout_page_escapes_the_username(client, staff_user):
    username = "<script>x</script>"
    lock_out(client, username)
    text = log_in(client, username, WRONG_PASSWORD).content.decode()
    assert username not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text


@pytest.mark.django_db
def test_the_failure_limit_is_a_setting(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    assert log_in(client, "staff", WRONG_PASSWORD).status_code == 200
    assert log_in(client, "staff", WRONG_PASSWORD).status_code == 429
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 429


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_other_users_from_the_same_address_are_not_affected(client, staff_user, page):
    make_user("colleague", (), is_staff=True)
    lock_out(client, page=page)
    assert log_in(client, "colleague", "colleague-pass-123", page).status_code == 302
    assert is_logged_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_same_user_from_another_address_is_not_affected(client, staff_user, page):
    lock_out(client, page=page)
    elsewhere = Client(REMOTE_ADDR="203.0.113.7")
    assert log_in(elsewhere, "staff", STAFF_PASSWORD, page).status_code == 302
    assert is_logged_in(elsewhere)


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_failures_with_ever_new_usernames_lock_the_address(client, staff_user, settings, page):
    settings.AXES_ADDRESS_FAILURE_LIMIT = 4
    statuses = [log_in(client, f"nobody{n}", WRONG_PASSWORD, page).status_code for n in range(4)]
    assert statuses == [200] * 3 + [429]
    response = log_in(client, "staff", STAFF_PASSWORD, page)  # any username, right password
    assert response.status_code == 429
    assert not is_logged_in(client)
    text = response.content.decode()
    assert "Logging in from your address has failed too many times, whatever the username" in text
    assert "<strong>staff</strong>" not in text
    # Another address is not affected.
    elsewhere = Client(REMOTE_ADDR="203.0.113.7")
    assert log_in(elsewhere, "staff", STAFF_PASSWORD, page).status_code == 302


@pytest.mark.django_db
def test_the_address_limit_is_higher_than_the_pairs_by_default(client, staff_user):
    assert settings.AXES_ADDRESS_FAILURE_LIMIT > settings.AXES_FAILURE_LIMIT
    for n in range(settings.AXES_ADDRESS_FAILURE_LIMIT - 1):
        assert log_in(client, f"typo{n}", WRONG_PASSWORD).status_code == 200
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 302


@pytest.mark.asyncio
async def test_login_attempts_beyond_the_limit_wait_then_get_the_busy_page(settings):
    settings.LOGINS_AT_ONCE, settings.LOGIN_WAIT = 2, 0.2
    release, both_running = asyncio.Event(), asyncio.Event()
    running = []

    async def slow_login(request):
        running.append(request)
        if len(running) == 2:
            both_running.set()
        if request.method == "POST" and request.path in LOGIN_PAGES:
            await asyncio.wait_for(release.wait(), timeout=10)
        return HttpResponse("checked")

    gate = bounded_logins(slow_login)
    post = RequestFactory().post
    first = [asyncio.create_task(gate(post(page))) for page in LOGIN_PAGES]
    await asyncio.wait_for(both_running.wait(), timeout=10)
    turned_away = await gate(post("/accounts/login/"))
    assert turned_away.status_code == 503
    assert turned_away["Retry-After"] == "2"
    assert "is too busy to answer this request right now" in turned_away.content.decode()
    # Other requests, and logins once a place is free, go straight through.
    assert (await gate(RequestFactory().get("/accounts/login/"))).status_code == 200
    assert (await gate(post("/heroes/new/"))).status_code == 200
    release.set()
    assert [(await task).status_code for task in first] == [200, 200]
    assert (await gate(post("/admin/login/"))).status_code == 200
    assert len(running) == 5


@pytest.mark.django_db
def test_ipv6_clients_count_by_their_64_network(staff_user):
    lock_out(Client(REMOTE_ADDR="2001:db8:1:2::10"))
    same_subscriber = Client(REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:1")
    assert log_in(same_subscriber, "staff", STAFF_PASSWORD).status_code == 429
    neighbour = Client(REMOTE_ADDR="2001:db8:1:3::10")
    assert log_in(neighbour, "staff", STAFF_PASSWORD).status_code == 302


@pytest.mark.django_db
def test_ipv4_mapped_ipv6_is_the_same_address(client, staff_user):
    lock_out(client)  # from 127.0.0.1
    mapped = Client(REMOTE_ADDR="::ffff:127.0.0.1")
    assert log_in(mapped, "staff", STAFF_PASSWORD).status_code == 429


@pytest.mark.django_db
def test_a_peer_that_is_no_address_is_still_counted(staff_user):
    # What a trusted proxy could forward: uvicorn passes it on as the client.
    proxied = Client(REMOTE_ADDR="unknown")
    lock_out(proxied)
    assert log_in(proxied, "staff", STAFF_PASSWORD).status_code == 429
    assert AccessAttempt.objects.get().ip_address is None


@pytest.mark.django_db
def test_attempts_are_stored_in_the_database(client, staff_user):
    lock_out(client)
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == (
        "staff",
        "127.0.0.1",
        5,
    )
    assert "not-the-password" not in attempt.post_data  # axes masks it


@pytest.mark.django_db
def test_a_lock_recorded_by_another_worker_is_honoured(client, staff_user):
    # What another process, replica or browser left in the shared database.
    AccessAttempt.objects.create(
        username="staff",
        ip_address="127.0.0.1",
        user_agent="another browser",
        failures_since_start=5,
        path_info="/admin/login/",
        get_data="",
        post_data="",
        http_accept="*/*",
    )
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 429


@pytest.mark.django_db
def test_staff_see_the_lockout_in_the_admin_and_deleting_it_unlocks(client, staff_user):
    lock_out(client)
    desk = make_user("desk", (), is_staff=True)
    desk.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="axes",
            codename__in=["view_accessattempt", "delete_accessattempt"],
        )
    )
    admin = Client()
    admin.force_login(desk)

    assert "Access attempts" in admin.get("/admin/").content.decode()
    changelist = admin.get("/admin/axes/accessattempt/", {"locked_out": "yes"}).content.decode()
    attempt = AccessAttempt.objects.get()
    assert f"/admin/axes/accessattempt/{attempt.pk}/change/" in changelist
    assert '<td class="field-username">staff</td>' in changelist
    assert "127.0.0.1" in changelist

    response = admin.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("command", [["axes_reset"], ["axes_reset_username", "staff"]])
def test_the_reset_commands_unlock(client, staff_user, command):
    lock_out(client)
    call_command(*command, stdout=io.StringIO())
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_lock_ends_when_the_cool_off_has_passed(client, staff_user):
    lock_out(client)

    def last_failure_ago(**delta: float) -> None:
        AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(**delta))

    last_failure_ago(minutes=14, seconds=50)
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 429
    # That attempt restarted the cool-off.
    assert AccessAttempt.objects.get().attempt_time > timezone.now() - timedelta(minutes=1)

    last_failure_ago(minutes=15, seconds=1)
    assert log_in(client, "staff", STAFF_PASSWORD).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_a_forged_x_forwarded_for_neither_dodges_nor_resets_the_lock(client, staff_user, page):
    statuses = [
        log_in(client, "staff", WRONG_PASSWORD, page, {"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(5)
    ]
    assert [response.status_code for response in statuses] == [200, 200, 200, 200, 429]
    forged = {"X-Forwarded-For": "198.51.100.99", "X-Real-IP": "198.51.100.98"}
    assert log_in(client, "staff", STAFF_PASSWORD, page, forged).status_code == 429
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["127.0.0.1"]


# Through the ASGI application and the production server


def test_the_lockout_keeps_the_asgi_middleware_on_the_event_loop():
    # A sync-only middleware would send every request through a thread (heroes_site.asgi).
    chain = [import_string(EVENT_LOOP_TWINS.get(path, path)) for path in settings.MIDDLEWARE]
    assert "axes.middleware.AxesMiddleware" in settings.MIDDLEWARE
    assert all(getattr(middleware, "async_capable", False) for middleware in chain)


@pytest.mark.django_db(transaction=True)
def test_the_asgi_application_answers_a_lockout_with_the_429_page(staff_user):
    browser = AsgiBrowser()
    token = browser.csrf_token("/admin/login/")
    guess = {"username": "staff", "password": WRONG_PASSWORD, "csrfmiddlewaretoken": token}
    statuses = [browser.request("POST", "/admin/login/", guess)[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    right = {**guess, "password": STAFF_PASSWORD}
    status, headers, page = browser.request("POST", "/admin/login/", right)
    assert (status, headers["retry-after"]) == (429, "900")
    assert "<h1>Too many failed logins</h1>" in page
    assert "sessionid" not in browser.cookies
    assert AccessAttempt.objects.get().failures_since_start == 6


class Visitor:
    """A browser of the real server, connecting from a loopback address of its own."""

    def __init__(self, port: int, source: str) -> None:
        self.port = port
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict | None = None, headers: dict | None = None
    ) -> tuple[int, str]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(self.source, 0)
        )
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                for morsel in SimpleCookie(header).values():
                    self.cookies[morsel.key] = morsel.value
            return response.status, response.read().decode()
        finally:
            connection.close()

    def log_in(self, username: str, password: str, forwarded_for: str = "") -> int:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        status, page = self.request("GET", "/accounts/login/", headers=headers)
        assert status == 200, page
        token = csrf_token_in(page)
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
        return self.request("POST", "/accounts/login/", form, headers)[0]


@contextlib.contextmanager
def production_server(
    folder: Path, database_url: str, static_root: Path, forwarded_allow_ips: str
) -> Iterator[int]:
    """make serve's gunicorn on a migrated SQLite database in `folder`, with users alice
    and bob added, and the collected static files; yields its port."""
    env = {
        "DEBUG": "False",
        "HTTPS": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "STATIC_ROOT": str(static_root),
        "PORT": "0",  # any free port: the log says which
        "WEB_CONCURRENCY": "2",
        "FORWARDED_ALLOW_IPS": forwarded_allow_ips,
    }
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "[get_user_model().objects.create_user(n, password=n + '-pass-123') "
        "for n in ('alice', 'bob')]",
        **env,
    )
    assert result.returncode == 0, result.stderr
    log = folder / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "heroes_site/gunicorn.conf.py", SERVED_APP],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (listening := re.search(r"Listening at: http://[\d.]+:(\d+)", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = int(listening.group(1))
        while log.read_text().count("Application startup complete") < 2:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def stored_attempts(folder: Path) -> set[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(folder / "db.sqlite3")) as db:
        rows = db.execute(
            "SELECT username, ip_address, failures_since_start FROM axes_accessattempt"
        )
        return set(rows.fetchall())


def test_the_production_server_keys_the_lock_on_the_peer_unless_it_is_a_trusted_proxy(
    tmp_path, sqlite_url, collected_static
):
    # Only 127.0.0.2 is a trusted proxy: a client connecting from 127.0.0.1 is not, as a
    # client on the internet would not be (the default, 127.0.0.1, would trust it).
    with production_server(tmp_path, sqlite_url, collected_static, "127.0.0.2") as port:
        attacker = Visitor(port, source="127.0.0.1")
        statuses = [
            attacker.log_in("alice", WRONG_PASSWORD, forwarded_for=f"198.51.100.{n}")
            for n in range(8)
        ]
        assert statuses == [200] * 4 + [429] * 4
        assert attacker.log_in("alice", "alice-pass-123", forwarded_for="203.0.113.1") == 429
        assert Visitor(port, source="127.0.0.1").log_in("bob", "bob-pass-123") == 302

        # Behind the trusted proxy, the address it forwards is the client's.
        proxy = Visitor(port, source="127.0.0.2")
        for _ in range(5):
            proxy.log_in("bob", WRONG_PASSWORD, forwarded_for="198.51.100.1")
        assert Visitor(port, "127.0.0.2").log_in("bob", "bob-pass-123", "198.51.100.1") == 429
        assert Visitor(port, "127.0.0.2").log_in("bob", "bob-pass-123", "198.51.100.2") == 302

    assert stored_attempts(tmp_path) == {("alice", "127.0.0.1", 9), ("bob", "198.51.100.1", 6)}
