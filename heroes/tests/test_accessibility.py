"""Accessibility as a test (SPEC §15): axe-core checks every page and the admin's hero
pages in the browser, as their users see them (JavaScript on, logged in where the page
needs it, forms with their errors shown), and any WCAG 2.1 A or AA violation fails.

axe-core comes from PyPI with axe-playwright-python (its axe.min.js), so `uv sync`
installs it offline-ready with everything else; it runs in the page through
Playwright's evaluate, which the site's CSP does not apply to.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.test import Client
from playwright.sync_api import Browser, Page

from .helpers import HERO_ACTIONS, give_history, make_user

pytestmark = pytest.mark.django_db(transaction=True)

WCAG_21_A_AND_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@dataclass(frozen=True)
class Shown:
    path: str  # "{hero}" stands for a hero's uuid
    fill: dict[str, str] = field(default_factory=dict)  # labelled inputs, then submit
    status: int = 200


# Every page, by who sees it (a browser each, whose cache the pages share, as a person's).
PAGES: dict[str, dict[str, Shown]] = {
    "anonymous": {
        "list": Shown("/heroes/"),
        "list, searched, nothing found": Shown("/heroes/?q=nobody-at-all&role=mage"),
        "detail": Shown("/heroes/{hero}/"),
        "login": Shown("/accounts/login/"),
        "login, with an error": Shown(
            "/accounts/login/", fill={"Username": "staff", "Password": "wrong"}
        ),
        "404": Shown("/heroes/nowhere/", status=404),
        "admin login": Shown("/admin/login/"),
    },
    "staff on the pages": {
        "list": Shown("/heroes/"),
        "detail": Shown("/heroes/{hero}/"),
        "new": Shown("/heroes/new/"),
        "new, with an error": Shown("/heroes/new/", fill={"Nickname": "MYSTRA"}),
        "edit": Shown("/heroes/{hero}/edit/"),
        "edit, with an error": Shown("/heroes/{hero}/edit/", fill={"Nickname": "Shadowblade"}),
        "delete": Shown("/heroes/{hero}/delete/"),
    },
    "staff in the admin": {
        "index": Shown("/admin/"),
        "heroes": Shown("/admin/heroes/hero/"),
        "heroes, filtered and searched": Shown("/admin/heroes/hero/?role__exact=mage&q=myst"),
        "add hero": Shown("/admin/heroes/hero/add/"),
        "add hero, with an error": Shown("/admin/heroes/hero/add/", fill={"Nickname": "MYSTRA"}),
        "change hero": Shown("/admin/heroes/hero/{hero}/change/"),
        "delete hero": Shown("/admin/heroes/hero/{hero}/delete/"),
        "hero history": Shown("/admin/heroes/hero/{hero}/history/"),
    },
    "reader": {"403": Shown("/heroes/{hero}/edit/", status=403)},
    "superuser": {"add API token": Shown("/admin/heroes/apitoken/add/")},
}


@pytest.fixture
def js_page(browser: Browser, live_server) -> Iterator[Page]:
    """A fresh browser context on the live server with JavaScript on (axe runs in the
    page; the admin, as its users see it, needs it)."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=True)
    context.set_default_timeout(10_000)  # a missing label fails soon, not after 30 s
    yield context.new_page()
    context.close()


USERS: dict[str, Callable[[], Any]] = {
    # Who may also see the heroes' history: the pages and the admin show it.
    "staff on the pages": lambda: give_history(make_user("staff", HERO_ACTIONS, is_staff=True)),
    "staff in the admin": lambda: give_history(make_user("staff", HERO_ACTIONS, is_staff=True)),
    "reader": lambda: make_user("reader", ()),
    "superuser": lambda: get_user_model().objects.create_superuser("root", password=None),
}


def log_in_as(page: Page, site: str, username: str) -> None:
    """Give the browser a session of a new user's on the `site` (no login form: that
    page is checked on its own)."""
    client = Client()
    client.force_login(USERS[username]())
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": site}])


def violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A and AA violations on the page, one line each."""
    options = {
        "runOnly": {"type": "tag", "values": WCAG_21_A_AND_AA},
        "resultTypes": ["violations"],
    }
    found = Axe().run(page, options=options).response["violations"]
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} "
        f"at {', '.join(str(node['target']) for node in violation['nodes'])}"
        for violation in found
    ]


@pytest.mark.parametrize("who", PAGES)
def test_every_page_has_no_wcag_violation(who: str, js_page: Page, live_server, heroes):
    page = js_page
    if who in USERS:
        log_in_as(page, live_server.url, who)
    found = {}
    for name, shown in PAGES[who].items():
        response = page.goto(shown.path.format(hero=heroes[2].pk))
        assert response is not None, name
        assert response.request.redirected_from is None, f"{name}: redirected"
        assert response.status == shown.status, name
        for label, value in shown.fill.items():
            page.get_by_label(label).fill(value)
        if shown.fill:
            page.locator("form [type=submit]").last.click()
            page.wait_for_load_state()
            assert page.locator(".errorlist, .errornote").count(), f"{name}: no error shown"
        if problems := violations(page):
            found[name] = problems
    assert found == {}


@pytest.mark.parametrize("template", ["400.html", "413.html", "500.html", "503.html"])
def test_the_error_pages_made_without_a_request_have_no_wcag_violation(
    template: str, js_page: Page, live_server
):
    # Served as if by the site, so the page's styles load from it.
    page = render_to_string(template, {"limit": 2_621_440})
    js_page.route("**/error-page", lambda route: route.fulfill(body=page, content_type="text/html"))
    js_page.goto("/error-page")
    assert violations(js_page) == []


def test_a_violation_is_found(js_page: Page):
    """The check itself: an image without a text alternative is caught."""
    js_page.set_content('<!doctype html><html lang="en"><title>t</title><img src="x.png">')
    assert [line.split()[0] for line in violations(js_page)] == ["image-alt"]
