"""Screenshots of the pages for the README: `make screenshots` writes docs/screenshots/.

Not part of the test suite (pytest collects test_*.py only): run it by path. Each
entry of SHOTS is one picture.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page

from heroes.models import Hero

from .helpers import BROWSER_WAIT_MS, STAFF_PASSWORD, log_in

SCREENSHOTS_DIR = settings.BASE_DIR / "docs" / "screenshots"


@dataclass(frozen=True)
class Shot:
    filename: str
    path: str  # "{hero}" stands for a hero's uuid
    logged_in: bool = False  # as the staff user
    fill: dict[str, str] = field(default_factory=dict)  # labelled inputs to fill, then submit


SHOTS = [
    Shot("list.png", "/heroes/"),
    Shot("detail.png", "/heroes/{hero}/", logged_in=True),
    Shot("form-error.png", "/heroes/new/", logged_in=True, fill={"Nickname": "mystra"}),
    Shot("admin-changelist.png", "/admin/heroes/hero/", logged_in=True),
    Shot("swagger.png", "/api/v1/docs"),
]


@pytest.fixture
def screenshot_page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 720})
    context.set_default_timeout(BROWSER_WAIT_MS)
    yield context.new_page()
    context.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shot", SHOTS, ids=lambda shot: shot.filename)
def test_screenshot(shot: Shot, screenshot_page: Page, heroes: list[Hero], staff_user) -> None:
    page = screenshot_page
    if shot.logged_in:
        log_in(page, staff_user.username, STAFF_PASSWORD)
    response = page.goto(shot.path.format(hero=heroes[2].pk))
    assert response is not None and response.status == 200, shot.path
    for label, value in shot.fill.items():
        page.get_by_label(label).fill(value)
    if shot.fill:
        page.locator("main form [type=submit]").click()
    page.wait_for_load_state("networkidle")
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS_DIR / shot.filename, full_page=True)
    assert (SCREENSHOTS_DIR / shot.filename).stat().st_size > 0
