"""The HTML pages and the admin in a real browser: Playwright driving the system Chromium."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from heroes.models import Hero, Role

from .helpers import HERO_ACTIONS, READER_PASSWORD, STAFF_PASSWORD, log_in, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def rows(page: Page):
    return page.locator("tbody tr")


def test_browse_search_filter_and_page_through_the_list(page: Page, heroes):
    Hero.objects.bulk_create(Hero(nickname=f"Archmage {n:02}", role=Role.MAGE) for n in range(30))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/heroes/$"))
    expect(page).to_have_title(f"All heroes | {settings.PROJECT_NAME}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Heroes")
    expect(rows(page)).to_have_count(25)

    page.get_by_label("Search nicknames").fill("blade")
    page.get_by_label("Search nicknames").press("Enter")
    expect(rows(page)).to_have_count(1)
    page.get_by_role("link", name="Shadowblade").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Shadowblade")

    page.goto("/heroes/")
    page.get_by_label("Role").select_option(label="Mage")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#match-count")).to_have_text("32 heroes")
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"[?&]role=mage&page=2$"))
    expect(page.get_by_label("Role")).to_have_value("mage")
    expect(rows(page)).to_have_count(7)
    expect(page.get_by_role("link", name="Next →")).to_have_count(0)


def test_log_in_and_out_through_the_forms(page: Page, staff_user):
    page.goto("/heroes/new/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/heroes/new/$"))
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errorlist")).to_contain_text("Please enter a correct username")

    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/heroes/new/$"))
    expect(page.locator(".account")).to_contain_text("staff")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/heroes/$"))
    expect(page.get_by_role("link", name="Log in")).to_be_visible()


def test_create_a_hero_after_fixing_a_taken_nickname(page: Page, heroes, staff_user):
    log_in(page, "staff", STAFF_PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New hero").click()
    page.get_by_label("Nickname").fill("MYSTRA")
    page.get_by_label("Role").select_option(label="Priest")
    page.get_by_role("button", name="Create hero").click()

    nickname = page.get_by_label("Nickname")
    expect(page.locator("#id_nickname_error")).to_have_text(
        "A hero with this nickname already exists."
    )
    expect(nickname).to_have_attribute("aria-invalid", "true")
    expect(nickname).to_have_value("MYSTRA")
    expect(page.get_by_label("Role")).to_have_value("priest")
    assert Hero.objects.filter(nickname__iexact="mystra").count() == 1

    nickname.fill("Sister Maren")
    page.get_by_role("button", name="Create hero").click()
    expect(page.get_by_role("status")).to_have_text("Hero “Sister Maren” was created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sister Maren")
    hero = Hero.objects.get(nickname="Sister Maren")
    assert hero.role == Role.PRIEST
    expect(page).to_have_url(re.compile(f"/heroes/{hero.pk}/$"))


def test_the_create_page_refuses_look_alike_nicknames(page: Page, heroes, staff_user):
    Hero.objects.create(nickname="Top")
    log_in(page, "staff", STAFF_PASSWORD)
    page.goto("/heroes/new/")
    nickname, error = page.get_by_label("Nickname"), page.locator("#id_nickname_error")
    cyrillic_e, cyrillic_top = "Z\u0435d", "\u0422\u043e\u0440"
    for typed, message in [
        (cyrillic_e, f"“{cyrillic_e}” mixes letters of different scripts that look alike"),
        (cyrillic_top, "A hero with a nickname that looks the same already exists."),
        ("\u2800", "A nickname needs at least one visible character."),
    ]:
        nickname.fill(typed)
        page.get_by_role("button", name="Create hero").click()
        expect(error).to_contain_text(message, timeout=5000)
        expect(nickname).to_have_value(typed, timeout=5000)
    assert not Hero.objects.filter(nickname__in=[cyrillic_e, cyrillic_top, "\u2800"]).exists()


def test_edit_a_hero(page: Page, heroes, staff_user):
    hero = heroes[2]
    log_in(page, "staff", STAFF_PASSWORD)
    page.goto(f"/heroes/{hero.pk}/")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Nickname")).to_have_value("Mystra")
    page.get_by_label("Nickname").fill("Mystra the Wise")
    page.get_by_label("Role").select_option(label="No role")
    page.get_by_role("button", name="Save changes").click()

    expect(page.get_by_role("status")).to_have_text("Hero “Mystra the Wise” was saved.")
    expect(page.locator(".details")).to_contain_text("No role")
    hero.refresh_from_db()
    assert (hero.nickname, hero.role) == ("Mystra the Wise", None)


def test_delete_a_hero_after_confirming(page: Page, heroes, staff_user):
    hero = heroes[2]
    log_in(page, "staff", STAFF_PASSWORD)
    page.goto(f"/heroes/{hero.pk}/")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete Mystra?")
    assert Hero.objects.filter(pk=hero.pk).exists()

    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/heroes/$"))
    expect(page.get_by_role("status")).to_have_text("Hero “Mystra” was deleted.")
    expect(page.get_by_role("link", name="Mystra", exact=True)).to_have_count(0)
    assert not Hero.objects.filter(pk=hero.pk).exists()


def test_a_user_without_permissions_sees_no_write_buttons_and_gets_403(page: Page, heroes, reader):
    hero = heroes[2]
    log_in(page, "reader", READER_PASSWORD)
    expect(page.get_by_role("link", name="New hero")).to_have_count(0)
    page.goto(f"/heroes/{hero.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mystra")
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)

    response = page.goto(f"/heroes/{hero.pk}/edit/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Permission denied")


def test_keyboard_focus_is_visible(page: Page, heroes):
    page.goto("/heroes/")
    page.keyboard.press("Tab")
    skip_link = page.get_by_role("link", name="Skip to content")
    expect(skip_link).to_be_focused()
    expect(skip_link).to_be_in_viewport()
    expect(skip_link).to_have_css("outline-style", "solid")


def test_admin_log_in_add_search_and_filter(page: Page, heroes, staff_user):
    log_in(page, "staff", STAFF_PASSWORD, path="/admin/login/")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    page.goto("/admin/heroes/hero/add/")
    page.get_by_label("Nickname").fill("Thorn")
    page.get_by_label("Role").select_option(label="Assassin")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Hero.objects.get(nickname="Thorn").role == Role.ASSASSIN

    page.locator("#searchbar").fill("THORN")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("Thorn")

    page.goto("/admin/heroes/hero/")
    page.locator("#changelist-filter").get_by_role("link", name="Mage").click()
    expect(page).to_have_url(re.compile(r"role__exact=mage"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)


# Two people editing one hero at the same time


@pytest.fixture
def editor(db):
    """A second staff member, who may add, change and delete heroes."""
    return make_user("editor", HERO_ACTIONS, is_staff=True)


EDITOR_PASSWORD = "editor-pass-123"
ADMIN_CONFIRM_DELETE = "Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure"  # Django's wording
CHANGED_MEANWHILE = "This hero was changed by someone else meanwhile, so nothing was written."


def stored(hero: Hero) -> tuple[str, str | None]:
    hero = Hero.objects.get(pk=hero.pk)
    return hero.nickname, hero.role


def test_two_editors_on_the_pages_lose_nothing(
    page: Page, other_page: Page, heroes, staff_user, editor
):
    hero = heroes[3]  # Brother Aldous, a priest
    log_in(page, "staff", STAFF_PASSWORD)
    log_in(other_page, "editor", EDITOR_PASSWORD)
    page.goto(f"/heroes/{hero.pk}/edit/")
    other_page.goto(f"/heroes/{hero.pk}/edit/")

    page.get_by_label("Role").select_option(label="Mage")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Hero “Brother Aldous” was saved.")

    # The other editor's form still says priest.
    other_page.get_by_label("Nickname").fill("Father Aldous")
    other_page.get_by_role("button", name="Save changes").click()
    refusal = other_page.locator(".errorlist.nonfield")
    expect(refusal).to_contain_text(CHANGED_MEANWHILE)
    expect(refusal).to_contain_text("Now saved: nickname “Brother Aldous”, role “Mage”.")
    expect(other_page.get_by_label("Nickname")).to_have_value("Father Aldous")
    expect(other_page.get_by_label("Role")).to_have_value("priest")
    assert stored(hero) == ("Brother Aldous", "mage")  # the first editor's change stands

    # Having seen it, the second editor saves their values anyway.
    other_page.get_by_role("button", name="Save changes").click()
    expect(other_page.get_by_role("status")).to_have_text("Hero “Father Aldous” was saved.")
    assert stored(hero) == ("Father Aldous", "priest")


def test_deleting_a_hero_changed_since_the_confirmation_page_asks_again(
    page: Page, other_page: Page, heroes, staff_user, editor
):
    hero = heroes[3]
    log_in(page, "staff", STAFF_PASSWORD)
    log_in(other_page, "editor", EDITOR_PASSWORD)
    page.goto(f"/heroes/{hero.pk}/delete/")
    other_page.goto(f"/heroes/{hero.pk}/edit/")
    other_page.get_by_label("Nickname").fill("Father Aldous")
    other_page.get_by_role("button", name="Save changes").click()
    expect(other_page.get_by_role("status")).to_have_text("Hero “Father Aldous” was saved.")

    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".errorlist.nonfield")).to_contain_text(CHANGED_MEANWHILE)
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete Father Aldous?")
    assert stored(hero) == ("Father Aldous", "priest")

    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Hero “Father Aldous” was deleted.")
    assert not Hero.objects.filter(pk=hero.pk).exists()


def test_two_staff_members_in_the_admin_lose_nothing(
    page: Page, other_page: Page, heroes, staff_user, editor
):
    hero = heroes[3]
    change = f"/admin/heroes/hero/{hero.pk}/change/"
    log_in(page, "staff", STAFF_PASSWORD, path="/admin/login/")
    log_in(other_page, "editor", EDITOR_PASSWORD, path="/admin/login/")
    page.goto(change)
    other_page.goto(change)

    page.get_by_label("Role").select_option(label="Mage")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    other_page.get_by_label("Nickname").fill("Father Aldous")
    other_page.get_by_role("button", name="Save", exact=True).click()
    expect(other_page.locator(".errornote")).to_contain_text("Please correct the error below.")
    refusal = other_page.locator(".errorlist.nonfield")
    expect(refusal).to_contain_text(CHANGED_MEANWHILE)
    expect(refusal).to_contain_text("Now saved: nickname “Brother Aldous”, role “Mage”.")
    expect(other_page.get_by_label("Nickname")).to_have_value("Father Aldous")
    expect(other_page.get_by_label("Role")).to_have_value("priest")
    assert stored(hero) == ("Brother Aldous", "mage")

    other_page.get_by_role("button", name="Save", exact=True).click()
    expect(other_page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert stored(hero) == ("Father Aldous", "priest")


def test_the_admin_asks_again_before_deleting_a_hero_changed_meanwhile(
    page: Page, other_page: Page, heroes, staff_user, editor
):
    hero = heroes[3]
    log_in(page, "staff", STAFF_PASSWORD, path="/admin/login/")
    log_in(other_page, "editor", EDITOR_PASSWORD, path="/admin/login/")
    page.goto(f"/admin/heroes/hero/{hero.pk}/delete/")
    other_page.goto(f"/admin/heroes/hero/{hero.pk}/change/")
    other_page.get_by_label("Role").select_option(label="Mage")
    other_page.get_by_role("button", name="Save", exact=True).click()
    expect(other_page.locator(".messagelist")).to_contain_text("was changed successfully")

    page.get_by_role("button", name=ADMIN_CONFIRM_DELETE).click()
    expect(page.locator(".messagelist")).to_contain_text(CHANGED_MEANWHILE)
    expect(page.locator("#content")).to_contain_text(
        "Now saved: nickname “Brother Aldous”, role “Mage”."
    )
    assert stored(hero) == ("Brother Aldous", "mage")

    page.get_by_role("button", name=ADMIN_CONFIRM_DELETE).click()
    expect(page.locator(".messagelist")).to_contain_text("was deleted successfully")
    assert not Hero.objects.filter(pk=hero.pk).exists()
