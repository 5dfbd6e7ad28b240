"""Visiting every page reachable by links from a few starting pages, in a real browser."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from playwright.sync_api import Error as PlaywrightError

SKIP = ("/accounts/logout", "/admin/", "/api/", "/static/", "/media/", "download", "export", ".csv", ".png", ".svg")


def crawl(
    page,
    start: list[str],
    *,
    targets: tuple[str, ...],
    max_pages: int,
    on_page: Callable[[str, int], None],
    follow_from: Callable[[str], bool] = lambda path: True,
) -> None:
    """Open `start`, then every same-site link whose path starts with one of `targets` (breadth first, at most
    `max_pages` HTML pages); `on_page(path, status)` runs on each HTML page while it is open. Links are
    collected only on pages where `follow_from(path)`; logout, Django's admin, the API and downloads are left."""
    queue, seen, opened = list(start), set(start), 0
    while queue and opened < max_pages:
        path = queue.pop(0)
        try:
            response = page.goto(path)
        except PlaywrightError as exc:  # a download, not a page
            assert "Download is starting" in str(exc), exc
            continue
        if response is None or "text/html" not in response.headers.get("content-type", ""):
            continue
        opened += 1
        on_page(path, response.status)
        if response.status != 200 or not follow_from(path):
            continue
        for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
            target = urlparse(href)
            if target.netloc or not target.path.startswith("/") or any(s in target.path for s in SKIP):
                continue
            if target.path not in seen and target.path.startswith(targets):
                seen.add(target.path)
                queue.append(target.path)
