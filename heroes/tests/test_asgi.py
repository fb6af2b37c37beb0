"""The production entry point, heroes_site.asgi.application, driven as uvicorn drives it.

Its handler loads Django's middleware as the event-loop twins of heroes_site.middleware and
lets each request's thread go without joining it; these tests show sessions, CSRF, messages and the
security headers behave there as they do under Django's test client.
"""

import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync

from heroes.models import Hero

from .conftest import asgi_exchange


class Browser:
    """Requests through the ASGI application, keeping cookies like a browser."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict | None = None
    ) -> tuple[int, dict[str, str], str]:
        body = urlencode(form or {}).encode()
        headers = [(b"host", b"testserver")]
        if self.cookies:
            cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            headers.append((b"cookie", cookie.encode()))
        if form is not None:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        return async_to_sync(self._send)(scope, body)

    async def _send(self, scope: dict, body: bytes) -> tuple[int, dict[str, str], str]:
        status, raw_headers, content = await asgi_exchange(scope, body)
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            if name.lower() == b"set-cookie":
                for morsel in SimpleCookie(value.decode()).values():
                    self.cookies[morsel.key] = morsel.value
            headers[name.decode().lower()] = value.decode()
        return status, headers, content.decode()

    def csrf_token(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@pytest.mark.django_db(transaction=True)
def test_security_headers_and_request_id_on_the_asgi_application():
    status, headers, _ = Browser().request("GET", "/api/v1/heroes")
    assert status == 200
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-request-id"]


@pytest.mark.django_db(transaction=True)
def test_a_form_post_without_its_csrf_token_is_refused(writer):
    browser = Browser()
    browser.request("GET", "/accounts/login/")  # sets the CSRF cookie
    status, _, _ = browser.request("POST", "/accounts/login/", {"username": "writer"})
    assert status == 403
    assert "sessionid" not in browser.cookies


@pytest.mark.django_db(transaction=True)
def test_a_logged_in_form_post_without_its_csrf_token_gets_the_form_expired_page(writer):
    browser = Browser()
    token = browser.csrf_token("/accounts/login/")
    login = {"username": "writer", "password": "writer-pass-123", "csrfmiddlewaretoken": token}
    assert browser.request("POST", "/accounts/login/", login)[0] == 302
    # The page shows the user, whom the failure view must not load on the event loop.
    status, _, page = browser.request("POST", "/heroes/new/", {"nickname": "Asgi Ace"})
    assert status == 403
    assert "<h1>This form has expired</h1>" in page
    assert "writer" in page
    assert not Hero.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_log_in_create_a_hero_and_see_the_message(writer):
    browser = Browser()
    token = browser.csrf_token("/accounts/login/")
    login = {"username": "writer", "password": "writer-pass-123", "csrfmiddlewaretoken": token}
    status, headers, _ = browser.request("POST", "/accounts/login/", login)
    assert (status, headers["location"]) == (302, "/heroes/")
    assert "sessionid" in browser.cookies  # the session was saved

    token = browser.csrf_token("/heroes/new/")  # only a logged-in writer gets the form
    hero = {"nickname": "Asgi Ace", "role": "tank", "csrfmiddlewaretoken": token}
    status, headers, _ = browser.request("POST", "/heroes/new/", hero)
    assert status == 302
    created = Hero.objects.get(nickname="Asgi Ace")
    assert headers["location"] == created.get_absolute_url()

    status, _, page = browser.request("GET", created.get_absolute_url())
    assert status == 200
    assert "Hero “Asgi Ace” was created." in page  # the message, stored in the session
    _, _, page = browser.request("GET", created.get_absolute_url())
    assert "was created" not in page  # and shown once


@pytest.mark.django_db(transaction=True)
def test_pages_for_a_logged_in_user_are_private_on_the_asgi_application(writer):
    browser = Browser()
    status, headers, _ = browser.request("GET", "/heroes/")
    assert status == 200
    assert "private" not in headers.get("cache-control", "")  # a public page

    token = browser.csrf_token("/accounts/login/")
    login = {"username": "writer", "password": "writer-pass-123", "csrfmiddlewaretoken": token}
    status, headers, _ = browser.request("POST", "/accounts/login/", login)
    assert status == 302
    assert "private" in headers["cache-control"]
    for path in ("/heroes/", "/heroes/new/", "/api/v1/heroes"):
        status, headers, _ = browser.request("GET", path)
        assert status == 200, path
        assert "private" in headers["cache-control"], path
