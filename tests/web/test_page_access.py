"""The page by keyboard alone, and every control with a name: the tabs as a WAI-ARIA
tablist, a visible focus, Escape closing dialogs, and labels checked both in the markup
and in Chromium's own accessibility tree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import ADMIN_KEY, Shots, Site

TABS = ["connections", "playground", "inspector", "usage"]
# The roles of controls, in Chromium's accessibility tree, that must have a name.
CONTROL_ROLES = {
    "button", "checkbox", "combobox", "link", "listbox", "radio", "searchbox", "slider",
    "spinbutton", "switch", "tab", "textbox", "menuitem", "option",
}  # fmt: skip


@pytest.fixture(scope="module")
def page(site: Site, playwright_browser: Any) -> Iterator[Any]:
    """A fresh page (its own sessionStorage: it asks for the admin key again)."""
    context = playwright_browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def _focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def test_keyboard_only(site: Site, page: Any) -> None:
    shots = Shots("keyboard")
    page.goto(site.url)
    page.wait_for_selector("#auth-dialog[open]")
    assert _focused(page) == "auth-key"
    page.keyboard.press("Escape")  # a dialog closes with Escape: no key is given
    expect(page.locator("#alert")).to_contain_text("an admin key is needed")
    # The playground's call asks again; Escape again, then start over.
    page.wait_for_selector("#auth-dialog[open]")
    page.keyboard.press("Escape")
    expect(page.locator("#auth-dialog")).to_be_hidden()

    page.reload()
    page.wait_for_selector("#auth-dialog[open]")
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready='true']")
    page.evaluate("document.activeElement.blur()")

    for _ in range(6):  # the skip link, then the selected tab
        page.keyboard.press("Tab")
        if _focused(page).startswith("tab-"):
            break
    assert _focused(page) == "tab-connections"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focus must be visible"
    shots.take(page, "tab-focused")

    def selected() -> list[str]:
        return [
            name
            for name in TABS
            if page.get_attribute(f"#tab-{name}", "aria-selected") == "true"
            and page.is_visible(f"#panel-{name}")
        ]

    page.keyboard.press("ArrowRight")
    assert _focused(page) == "tab-playground" and selected() == ["playground"]
    page.keyboard.press("End")
    assert _focused(page) == "tab-usage" and selected() == ["usage"]
    page.keyboard.press("ArrowRight")  # wraps around
    assert _focused(page) == "tab-connections" and selected() == ["connections"]
    page.keyboard.press("ArrowLeft")
    assert _focused(page) == "tab-usage" and selected() == ["usage"]
    page.keyboard.press("Home")
    assert _focused(page) == "tab-connections" and selected() == ["connections"]
    page.keyboard.press("ArrowRight")
    shots.take(page, "playground-by-keyboard")

    # Only the selected tab is in the Tab order: Tab leaves the tablist.
    page.keyboard.press("Tab")
    assert not _focused(page).startswith("tab-")
    page.keyboard.press("Shift+Tab")
    assert _focused(page) == "tab-playground"

    # Into the panel and its form by Tab, and a message sent with the keyboard only.
    for _ in range(8):
        page.keyboard.press("Tab")
        if _focused(page) == "chat-input":
            break
    assert _focused(page) == "chat-input"
    tabindexes = page.evaluate(
        "[...document.querySelectorAll('[tabindex]')].map((e) => e.tabIndex)"
    )
    assert max(tabindexes) <= 0, "no positive tabindex: the order is the document's"


def _unnamed_controls(page: Any) -> list[str]:
    """The inputs, selects, textareas and buttons without a label or another name."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
              .filter((el) => el.type !== 'hidden')
              .filter((el) => {
                const labelled = (el.labels && [...el.labels].some((l) => l.textContent.trim()))
                  || (el.getAttribute('aria-label') || '').trim()
                  || (el.getAttribute('aria-labelledby') || '').split(/\\s+/).some(
                    (id) => id && document.getElementById(id)?.textContent.trim());
                const text = el.tagName === 'BUTTON' && el.textContent.trim();
                return !(labelled || text);
              })
              .map((el) => el.id || el.outerHTML.slice(0, 80))"""
        )
    )


def _unnamed_in_tree(page: Any) -> list[str]:
    session = page.context.new_cdp_session(page)
    try:
        nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()
    missing = []
    for node in nodes:
        role = (node.get("role") or {}).get("value")
        if node.get("ignored") or role not in CONTROL_ROLES:
            continue
        name = str((node.get("name") or {}).get("value") or "").strip()
        if not name:
            missing.append(f"{role} {node.get('backendDOMNodeId')}")
    return missing


def test_every_control_has_a_label(site: Site, page: Any) -> None:
    if page.url != site.url and not page.url.startswith(site.url):
        page.goto(site.url)
    page.wait_for_selector("body[data-ready='true']")
    assert _unnamed_controls(page) == []
    for name in TABS:
        page.click(f"#tab-{name}")
        page.wait_for_selector(f"#panel-{name}:not([hidden])")
        assert _unnamed_in_tree(page) == [], f"unnamed controls on the {name} panel"
    # The controls of the dialogs, open.
    page.click("#tab-connections")
    page.evaluate("document.getElementById('rotate-dialog').showModal()")
    assert _unnamed_in_tree(page) == []
    page.keyboard.press("Escape")
    expect(page.locator("#rotate-dialog")).to_be_hidden()
    for radio in page.locator("input[type='radio']").all():
        assert radio.evaluate("(el) => el.labels.length") == 1


def test_the_form_follows_the_api_type_and_the_source(site: Site, page: Any) -> None:
    page.click("#tab-connections")
    page.click("#conn-new")
    page.check("input[name='api'][value='text']")
    sources = page.locator("#conn-source option").evaluate_all("(os) => os.map((o) => o.value)")
    assert "kobold" in sources and "llamacpp" in sources and "openai" not in sources
    page.select_option("#conn-source", "kobold")
    assert page.is_visible("#conn-template")  # text sources: the instruct template
    assert page.inner_text("#conn-url-label") == "Server URL (optional)"
    assert "5001" in page.inner_text("#conn-url-help")
    assert page.is_hidden("#conn-proxy")
    page.check("input[name='api'][value='chat']")
    page.select_option("#conn-source", "openai")
    assert page.is_hidden("#conn-template-field")
    # A provider behind a reverse proxy: its URL and password together.
    assert page.inner_text("#conn-url-label") == "Reverse proxy URL (optional)"
    assert page.locator("#conn-proxy #conn-url").count() == 1
    assert page.is_visible("#conn-proxy-password")
    assert page.get_attribute("#conn-key-url", "href") == "https://platform.openai.com/api-keys"
    page.select_option("#conn-source", "deepseek")  # its post-processing is forced
    assert page.is_disabled("#conn-pp") and page.input_value("#conn-pp") == "semi-strict-tools"


def test_a_refused_field_is_shown_beside_it(site: Site, page: Any) -> None:
    page.click("#tab-connections")
    page.click("#conn-new")
    page.select_option("#conn-source", "custom")
    page.click("#conn-connect")  # nothing filled in: the page asks for the name first
    expect(page.locator("#conn-name")).to_have_attribute("aria-invalid", "true")
    assert "is needed" in page.inner_text("#conn-name-error")
    page.fill("#conn-name", "not a valid name!")
    page.fill("#conn-url", "http://127.0.0.1:9/v1")
    page.fill("#conn-key", "sk-web-refused-0000111122223333")
    page.click("#conn-connect")
    expect(page.locator("#conn-name-error")).not_to_contain_text("is needed")
    assert page.get_attribute("#conn-name", "aria-invalid") == "true"
    described = page.get_attribute("#conn-name", "aria-describedby") or ""
    assert described.split()[0] == "conn-name-error"
    assert page.input_value("#conn-key") == ""  # even a refused key leaves the page
    Shots("form").take(page, "refused-field")
