"""The Content-Security-Policy in a real browser, with JavaScript on: Swagger UI, the
admin and the HTML pages work under it, and the browser reports no violation."""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Response, expect

from heroes.models import ApiToken, Hero, Role
from heroes_site.middleware import CONTENT_SECURITY_POLICY

from .helpers import BROWSER_WAIT_MS, STAFF_PASSWORD, log_in

pytestmark = pytest.mark.django_db(transaction=True)

# Runs before the page's own scripts, outside the page's CSP (Playwright injects it).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline code"}`
    + ` at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    """What the browser refused under the CSP (as the page's events and the console
    report it), and any page served without the site's CSP, which nothing would refuse."""
    return []


@pytest.fixture
def js_page(browser: Browser, live_server, csp_violations: list[str]) -> Iterator[Page]:
    """A fresh browser context on the live server, with JavaScript on (Swagger UI and
    the admin need it), recording into csp_violations."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=True)
    context.set_default_timeout(BROWSER_WAIT_MS)

    def on_violation(report: str) -> None:
        csp_violations.append(f"event: {report}")

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            csp_violations.append(f"console: {message.text}")

    def on_response(response: Response) -> None:
        if response.request.resource_type != "document":
            return
        if response.headers.get("content-security-policy") != CONTENT_SECURITY_POLICY:
            csp_violations.append(f"served without the CSP: {response.url}")

    context.expose_function("reportCspViolation", on_violation)
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.on("console", on_console)
    page.on("response", on_response)
    yield page
    context.close()


def test_violations_are_caught(js_page: Page, csp_violations: list[str]):
    # Guards the other tests: an inline script and a third-party image are refused,
    # and both the page's events and the console report them.
    js_page.goto("/heroes/")
    refused = js_page.evaluate(
        """() => new Promise((resolve) => {
          let refused = 0;
          document.addEventListener("securitypolicyviolation", () => ++refused === 2 && resolve(2));
          // Without the CSP nothing is refused: answer rather than wait forever.
          setTimeout(() => resolve(refused), BROWSER_WAIT_MS);
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.body.append(script);
          const image = document.createElement("img");
          image.src = "https://cdn.example.com/pixel.png";
          document.body.append(image);
        })""".replace("BROWSER_WAIT_MS", str(BROWSER_WAIT_MS))
    )
    assert refused == 2
    assert js_page.evaluate("window.inlineRan") is None
    for source in ("event", "console"):
        reports = [v for v in csp_violations if v.startswith(f"{source}:")]
        assert len(reports) == 2, csp_violations


def operation(page: Page, method: str, path: str) -> Locator:
    """Swagger UI's block for one operation."""
    return page.locator(f".opblock-{method}").filter(
        has=page.get_by_role("link", name=path, exact=True)
    )


def test_swagger_ui_renders_and_calls_the_api(js_page: Page, csp_violations: list[str], heroes):
    js_page.goto("/api/v1/docs")
    for method in ("get", "post"):
        expect(operation(js_page, method, "/api/v1/heroes")).to_be_visible()
    list_heroes = operation(js_page, "get", "/api/v1/heroes")
    list_heroes.locator(".opblock-summary").click()
    list_heroes.get_by_role("button", name="Try it out").click()
    list_heroes.get_by_role("button", name="Execute").click()
    responses = list_heroes.locator(".live-responses-table")
    expect(responses.locator("tbody .response-col_status")).to_have_text("200")
    expect(responses).to_contain_text("Shadowblade")
    assert csp_violations == []


def test_admin_changelist_and_forms(js_page: Page, csp_violations: list[str], heroes, staff_user):
    log_in(js_page, "staff", STAFF_PASSWORD, path="/admin/login/")
    expect(js_page).to_have_url(re.compile(r"/admin/$"))
    js_page.goto("/admin/heroes/hero/")

    # actions.js: ticking a row counts it and enables the action.
    js_page.locator("#result_list tbody tr").filter(has_text="Mystra").get_by_role(
        "checkbox"
    ).check()
    expect(js_page.locator(".action-counter")).to_contain_text("1 of")
    js_page.get_by_label("Action:").select_option(label="Delete selected heroes")
    js_page.get_by_role("button", name="Go").click()
    js_page.get_by_role("button", name="Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure").click()
    expect(js_page.locator(".messagelist")).to_contain_text("Successfully deleted 1 hero")
    assert not Hero.objects.filter(nickname="Mystra").exists()

    js_page.get_by_role("link", name="Add hero").click()
    js_page.get_by_label("Nickname").fill("Thorn")
    js_page.get_by_label("Role").select_option(label="Assassin")
    js_page.get_by_role("button", name="Save", exact=True).click()
    expect(js_page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Hero.objects.get(nickname="Thorn").role == Role.ASSASSIN
    assert csp_violations == []


def test_admin_autocomplete_widget(js_page: Page, csp_violations: list[str], django_user_model):
    django_user_model.objects.create_superuser("root", password=STAFF_PASSWORD)
    log_in(js_page, "root", STAFF_PASSWORD, path="/admin/login/")
    js_page.goto("/admin/heroes/apitoken/add/")
    # The user field is select2's autocomplete: it searches users over the admin's JSON view.
    js_page.locator(".select2-selection").click()
    js_page.locator(".select2-search__field").fill("roo")
    js_page.get_by_role("option", name="root").click()
    js_page.get_by_label("Name").fill("deploys")
    js_page.get_by_role("button", name="Save", exact=True).click()
    expect(js_page.get_by_role("heading", level=1)).to_contain_text("token")
    assert ApiToken.objects.get().name == "deploys"
    assert csp_violations == []


def test_html_pages(js_page: Page, csp_violations: list[str], heroes, staff_user):
    hero = heroes[2]
    js_page.goto("/heroes/")
    expect(js_page.get_by_role("link", name="Skip to content")).to_have_css(
        "position",
        "absolute",  # site.css is applied
    )
    js_page.get_by_role("link", name="Mystra").click()
    expect(js_page.get_by_role("heading", level=1)).to_have_text("Mystra")

    log_in(js_page, "staff", STAFF_PASSWORD)
    js_page.goto("/heroes/new/")
    js_page.get_by_label("Nickname").fill("gorath")
    js_page.get_by_role("button", name="Create hero").click()
    expect(js_page.locator("#id_nickname_error")).to_be_visible()
    js_page.goto(f"/heroes/{hero.pk}/edit/")
    js_page.get_by_label("Nickname").fill("Mystra II")
    js_page.get_by_role("button", name="Save changes").click()
    expect(js_page.get_by_role("status")).to_have_text("Hero “Mystra II” was saved.")
    assert csp_violations == []
