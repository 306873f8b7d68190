"""The main path in a real browser: Debian's Chromium driven by Playwright.

Log in, add a Demo integration pointing at the fake provider, add an org, press Connect,
come back connected, press Refresh now, find the event in the history and the org on
the dashboard's timeline. Screenshots of the dashboard and the org page are saved in
var/test-artifacts/ (or $TEST_ARTIFACTS_DIR).
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tokens.models import Org, Token, TokenEvent

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).parent.parent / "var" / "test-artifacts")
)
# Headless, and quiet: this machine's network is closed, so no background connections.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(autouse=True)
def orm_beside_playwright(monkeypatch) -> None:
    """Playwright's sync API keeps an event loop in this thread, which makes Django take
    the test's own (blocking, ordinary) ORM calls for calls from async code."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium (`make test` installs it; Playwright cannot download its own here)."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_server, settings) -> Iterator[Page]:
    """A fresh browser page; the console's public URL is the live server's."""
    settings.CONSOLE_BASE_URL = live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
    # While Playwright's loop runs, this thread's ORM calls use their own connections
    # (Django keys them by async context); close them, or PostgreSQL cannot drop the
    # test database afterwards.
    connections.close_all()


def test_an_admin_connects_refreshes_and_audits_an_org(
    page: Page, live_server, provider, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "a-long-password")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "a-long-password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Token Console")

    page.goto(f"{live_server.url}/admin/tokens/integration/add/")
    page.fill("#id_name", "Demo")
    page.select_option("#id_provider", "webex")
    page.fill("#id_client_id", provider.client_id)
    page.fill("#id_client_secret", provider.client_secret)
    page.fill("#id_authorize_url", provider.authorize_url)
    page.fill("#id_token_url", provider.token_url)
    page.fill("#id_userinfo_url", provider.userinfo_url)
    page.fill("#id_revocation_url", provider.revoke_url)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    page.goto(f"{live_server.url}/admin/tokens/org/add/")
    page.locator("#id_name").press_sequentially("Acme Contact Center")
    expect(page.locator("#id_slug")).to_have_value("acme-contact-center")  # admin's own JS
    page.select_option("#id_integration", label="Demo")
    page.click("input[name=_continue]")
    expect(page.locator(".org-status")).to_have_text("Pending")

    page.click("button.connect-link")  # a POST: to the fake provider and straight back
    expect(page.locator(".messagelist")).to_contain_text("connected")
    expect(page.locator(".org-status")).to_have_text("Connected")
    org = Org.objects.get(slug="acme-contact-center")
    assert Token.objects.get(org=org).version == 1

    page.click("button.refresh-now")
    expect(page.locator(".messagelist")).to_contain_text("Refreshed to version 2")
    assert Token.objects.get(org=org).version == 2
    page.screenshot(path=str(ARTIFACTS / "org-page.png"), full_page=True)

    page.click("text=All events of this org")
    first_row = page.locator("#result_list tbody tr").first
    expect(first_row).to_contain_text("Refreshed")
    expect(first_row).to_contain_text("Manual")
    expect(first_row).to_contain_text("admin")
    assert TokenEvent.objects.filter(org=org, kind="refreshed", trigger="manual").exists()

    page.goto(f"{live_server.url}/admin/")
    row = page.locator(f'svg.expiry-timeline g.timeline-row[data-org="{org.pk}"]')
    expect(row).to_contain_text("Acme Contact Center")
    expect(page.locator("#dashboard .status-connected .figure")).to_have_text("1")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    body = page.content() + page.context.cookies().__repr__()
    token = Token.objects.get(org=org)
    for secret in (token.access_token, token.refresh_token, provider.client_secret):
        assert secret not in body
    assert re.search(r"refresh token expires", body)


SIZES = [(1280, 800), (1920, 1080)]
THEMES = ["light", "dark"]


def log_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "a-long-password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Token Console")


def fits_the_window(page: Page) -> bool:
    """Neither the page nor a changelist's own table scrolls sideways."""
    return page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth
            && [...document.querySelectorAll("#changelist .results")].every(
                r => r.scrollWidth <= r.clientWidth)"""
    )


def test_the_console_pages_fit_1280_and_1920_in_light_and_dark(
    browser: Browser, live_server, settings, connected_org, provider, django_user_model
):
    settings.CONSOLE_BASE_URL = live_server.url
    django_user_model.objects.create_superuser("admin", "admin@example.com", "a-long-password")
    pending = Org.objects.create(
        name="Globex International Holdings", slug="globex", integration=connected_org.integration
    )
    from tokens import services

    services.api_client_create(name="contact-center-flows", orgs=[connected_org])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    pages = {
        "dashboard": "/admin/",
        "org-list": "/admin/tokens/org/",
        "org-pending": f"/admin/tokens/org/{pending.pk}/change/",
        "org-connected": f"/admin/tokens/org/{connected_org.pk}/change/",
        "token-history": "/admin/tokens/tokenevent/",
        "api-client-list": "/admin/tokens/apiclient/",
    }
    lists = {"org-list", "token-history", "api-client-list", "dashboard"}
    try:
        for width, height in SIZES:
            for theme in THEMES:
                context = browser.new_context(
                    viewport={"width": width, "height": height}, color_scheme=theme
                )
                context.add_init_script(f"localStorage.setItem('theme', '{theme}')")
                page = context.new_page()
                page.set_default_timeout(15_000)
                log_in(page, base)
                for name, path in pages.items():
                    page.goto(base + path)
                    assert page.evaluate("document.documentElement.dataset.theme") == theme
                    if name in lists:
                        assert fits_the_window(page), f"{name} scrolls sideways at {width}px"
                    if name == "dashboard":
                        check_timeline(page, theme)
                    page.screenshot(
                        path=str(ARTIFACTS / f"{name}-{width}-{theme}.png"), full_page=True
                    )
                context.close()
    finally:
        connections.close_all()


def check_timeline(page: Page, theme: str) -> None:
    """The timeline fills its column, its labels are 11 px or more, in the theme's colours."""
    svg_width, column_width = page.evaluate(
        """() => {
            const svg = document.querySelector("svg.expiry-timeline");
            const column = svg.parentElement;
            const style = getComputedStyle(column);
            const inner = column.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
            return [svg.getBoundingClientRect().width, inner];
        }"""
    )
    assert svg_width >= 0.9 * column_width
    sizes = page.evaluate(
        """() => [...document.querySelectorAll("svg.expiry-timeline text")]
            .filter(t => t.getBoundingClientRect().height > 0)
            .map(t => parseFloat(getComputedStyle(t).fontSize))"""
    )
    assert min(sizes) >= 11
    fill = page.evaluate(
        """() => getComputedStyle(document.querySelector("svg.expiry-timeline text.legend")).fill"""
    )
    assert fill == ("rgb(238, 238, 238)" if theme == "dark" else "rgb(51, 51, 51)")


def test_refresh_now_shows_its_busy_state_while_the_provider_answers(
    page: Page, live_server, connected_org, provider, django_user_model, settings
):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "HTTP_TIMEOUT": 10.0}
    django_user_model.objects.create_superuser("admin", "admin@example.com", "a-long-password")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tokens/org/{connected_org.pk}/change/")
    button = page.locator("button.refresh-now")
    expect(button).to_be_enabled()
    provider.latency = 2.0  # the fake provider holds its answer this long
    # While the request runs, read the page as it is (a locator would wait for the next one).
    busy = page.evaluate(
        """() => new Promise(done => {
            const button = document.querySelector("button.refresh-now");
            button.click();
            setTimeout(() => done([button.disabled, button.textContent]), 300);
        })"""
    )
    assert busy == [True, "Refreshing…"]
    expect(page.locator(".messagelist")).to_contain_text("Refreshed to version 2")
    expect(page.locator("button.refresh-now")).to_have_text("Refresh now")
    assert Token.objects.get(org=connected_org).version == 2
