"""Fixtures of the web page's tests: a real chatgate server with a gateway key (so the
page must ask for the admin key), a store in a temporary directory, the fake OpenAI
upstream, and Debian's Chromium driven headless by Playwright.

Playwright's own browser download is not reachable here, so Chromium is launched from
``/usr/bin/chromium``; without it the browser tests are skipped, saying so. A screenshot
of each step goes to ``tests/artifacts/web/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.config import ServerSettings, Settings
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
ADMIN_KEY = "sk-web-ADMIN-key-0123456789abcdefAB"


@dataclass
class Site:
    """The server the page is tested against, and what it was started with."""

    live: LiveServer
    fake: FakeOpenAI
    store_dir: Path

    @property
    def url(self) -> str:
        """The page's address."""
        return self.live.url + "/"

    def api(self) -> httpx.Client:
        """A client of the admin API with the admin key."""
        return self.live.client()


@dataclass
class Shots:
    """Numbered screenshots of one test module's steps."""

    prefix: str
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Any, step: str) -> None:
        """A full-page screenshot of *page* named after *step*."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}-{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


@pytest.fixture(scope="module")
def site(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A chatgate server with a key and a store of its own, for one test module."""
    store_dir = tmp_path_factory.mktemp("web-store")
    settings = Settings(
        embedded=False,
        store_url=f"sqlite:///{store_dir}/chatgate.db",
        server=ServerSettings(api_keys=[ADMIN_KEY]),
    )
    live, server, thread = start_server(settings)
    try:
        with live.client() as client:
            missing = [
                f"{method} {path}"
                for method, path in (("GET", "/api/sources"), ("POST", "/api/connections"))
                if client.request(method, path, json={}).status_code in (404, 405)
            ]
        if missing:
            pytest.skip(f"the admin API is not there yet: {', '.join(missing)} answer 404/405")
        yield Site(live, fake_openai, store_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    """Debian's Chromium, headless; the module is skipped when it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is not installed (apt-get install chromium); Playwright's own "
            "browser download is not reachable, so the page's browser tests cannot run"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def wait_until(check: Any, timeout: float = 10.0, every: float = 0.1) -> Any:
    """Call *check* until it returns something true (returned), or fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {check}")
        time.sleep(every)
