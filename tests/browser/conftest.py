"""Playwright (sync API) driving Debian's chromium, headless, against pytest-django's live server.

Never `playwright install`: the browser is the system package at /usr/bin/chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from such a
# thread unless told it is fine (the test code itself is synchronous).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make system-deps).")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the browser reported as errors while the test ran (console errors, uncaught exceptions,
    Content-Security-Policy refusals), each prefixed with the page's path."""
    return []


@pytest.fixture
def page(browser, live_server, console_errors) -> Iterator:
    from urllib.parse import urlparse

    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)

    def where() -> str:
        return urlparse(page.url).path

    page.on("console", lambda msg: console_errors.append(f"{where()}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(f"{where()}: {exc}"))
    yield page
    context.close()


@pytest.fixture
def login(page):
    """Log a user in through the real login form."""

    def do_login(user) -> None:
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)

    return do_login
