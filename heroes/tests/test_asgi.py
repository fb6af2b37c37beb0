"""The production entry point, heroes_site.asgi.application, driven as uvicorn drives it.

Its Django handler loads Django's middleware as their event-loop twins
(heroes_site.event_loop_middleware), and its wrapper lets each request's thread go
without joining it; these tests show sessions, CSRF, messages and the security headers
behave there as they do under Django's test client.
"""

import pytest

from heroes.models import Hero

from .helpers import AsgiBrowser


@pytest.mark.django_db(transaction=True)
def test_security_headers_and_request_id_on_the_asgi_application():
    status, headers, _ = AsgiBrowser().request("GET", "/api/v1/heroes")
    assert status == 200
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-request-id"]


@pytest.mark.django_db(transaction=True)
def test_a_form_post_without_its_csrf_token_is_refused(writer):
    browser = AsgiBrowser()
    browser.request("GET", "/accounts/login/")  # sets the CSRF cookie
    status, _, _ = browser.request("POST", "/accounts/login/", {"username": "writer"})
    assert status == 403
    assert "sessionid" not in browser.cookies


@pytest.mark.django_db(transaction=True)
def test_a_logged_in_form_post_without_its_csrf_token_gets_the_form_expired_page(writer):
    browser = AsgiBrowser()
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
    browser = AsgiBrowser()
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
    browser = AsgiBrowser()
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
