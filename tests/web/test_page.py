"""The page in a real browser, as a person uses it, against a real chatgate server (with
a gateway key, so the page asks for the admin key) and the fake OpenAI upstream.

The tests are one journey, in order: add a custom connection and test it, chat with
streaming and stop, inspect, rotate a key, read the usage, delete the connection. Every
response the page receives is kept, and no raw key may appear in any of them, nor on
the page, nor in its storage (the admin key lives in sessionStorage by design).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import ADMIN_KEY, Shots, Site, wait_until

RAW_KEY = "sk-web-RAWKEY-0123456789abcdefWXYZ"
ROTATED_KEY = "sk-web-ROTATED-9876543210zyxwvuQRST"
TEAM_KEY = "sk-web-TEAM-5555444433332222EFGH"
SECRETS = (RAW_KEY, ROTATED_KEY, TEAM_KEY, ADMIN_KEY)
CONNECTION_SECRETS = (RAW_KEY, ROTATED_KEY, TEAM_KEY)
NAME = "fakeup"


@dataclass
class Journey:
    """One browser page kept across the module's tests, and every answer it received."""

    page: Any
    site: Site
    shots: Shots
    responses: list[Any] = field(default_factory=list)
    chats: int = 0  # answers from fakeup/gpt-fake-1 through a door, for the usage


@pytest.fixture(scope="module")
def journey(site: Site, playwright_browser: Any) -> Iterator[Journey]:
    """The page, opened and given the admin key."""
    context = playwright_browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    trip = Journey(page, site, Shots("page"))
    page.on("response", lambda response: trip.responses.append(response))
    page.goto(site.url)
    dialog = page.locator("#auth-dialog")
    dialog.wait_for(state="visible")
    trip.shots.take(page, "asks-for-the-admin-key")
    page.fill("#auth-key", ADMIN_KEY)
    page.press("#auth-key", "Enter")
    page.wait_for_selector("body[data-ready='true']")
    assert page.input_value("#auth-key") == ""
    yield trip
    context.close()


def _tab(page: Any, name: str) -> None:
    page.click(f"#tab-{name}")
    page.wait_for_selector(f"#panel-{name}:not([hidden])")


def _row(page: Any, table: str, key: str) -> Any:
    return page.locator(f"#{table} tr[data-{'label' if table == 'keys-rows' else 'name'}='{key}']")


def _upstream_key(site: Site) -> str:
    return str(site.fake.last("/chat/completions").headers.get("authorization"))


def test_add_a_custom_connection_see_its_status_and_models_and_test_it(journey: Journey) -> None:
    page, site = journey.page, journey.site
    assert page.is_checked("input[name='api'][value='chat']")
    page.select_option("#conn-source", "custom")
    assert "/v1" in page.inner_text("#conn-hint")  # the seeds' hint
    assert page.is_visible("#conn-key-help")  # "a lost key cannot be shown again"
    page.fill("#conn-name", NAME)
    page.fill("#conn-url", f"{site.fake.url}/v1")
    page.fill("#conn-key", RAW_KEY)
    page.fill("#conn-model-id", "stall-model")  # a typed id: the fake's slow stream
    journey.shots.take(page, "new-connection-filled")
    page.click("#conn-connect")
    page.wait_for_selector("#conn-status .light[data-state='ok']")
    assert "Connected: 2 models listed" in page.inner_text("#conn-status-text")
    options = page.locator("#conn-model option").all_inner_texts()
    assert {"gpt-fake-1", "gpt-fake-2", "stall-model"} <= set(options)
    assert page.input_value("#conn-key") == ""  # the key left the page once saved
    assert "Current key: sk-" in page.inner_text("#conn-key-current")
    assert RAW_KEY not in page.inner_text("#conn-key-current")
    assert "store" in _row(page, "conn-rows", NAME).inner_text()
    page.select_option("#conn-model", "gpt-fake-1")
    page.click("#conn-test")
    expect(page.locator("#conn-test-result")).to_contain_text("Hello from the fake.")
    assert " ms." in page.inner_text("#conn-test-result")
    assert _upstream_key(site) == f"Bearer {RAW_KEY}"
    journey.shots.take(page, "connected-and-tested")


def _send(journey: Journey, text: str) -> Any:
    page = journey.page
    if page.input_value("#chat-model") == f"{NAME}/gpt-fake-1":
        journey.chats += 1
    before = page.locator("#transcript li.assistant").count()
    page.fill("#chat-input", text)
    page.click("#chat-send")
    answer = page.locator("#transcript li.assistant").nth(before)
    answer.wait_for()
    return answer


def test_chat_with_streaming_and_stop_it(journey: Journey) -> None:
    page = journey.page
    _tab(page, "playground")
    models = page.locator("#chat-model option").all_inner_texts()
    assert f"{NAME}/gpt-fake-1" in models and f"{NAME}/stall-model" in models
    page.select_option("#chat-model", f"{NAME}/gpt-fake-1")
    assert page.is_checked("#chat-stream")
    answer = _send(journey, "Hi")
    expect(answer).to_have_attribute("aria-busy", "false")
    assert answer.locator(".text").inner_text() == "Hello from the fake."
    assert "OpenAI Chat Completions" in answer.locator(".meta").inner_text()
    assert "first token after" in answer.locator(".meta").inner_text()

    # The fake sends two pieces of stall-* models, then is silent for two seconds.
    page.select_option("#chat-model", f"{NAME}/stall-model")
    answer = _send(journey, "And now slowly")
    wait_until(lambda: answer.locator(".text").inner_text() == "Hello from")
    assert page.is_enabled("#chat-stop") and not page.is_enabled("#chat-send")
    journey.shots.take(page, "streaming")
    page.click("#chat-stop")
    wait_until(lambda: "Stopped after" in answer.locator(".meta").inner_text())
    time.sleep(2.3)  # past the stall: nothing more may arrive
    assert answer.locator(".text").inner_text() == "Hello from"
    assert page.is_enabled("#chat-send") and not page.is_enabled("#chat-stop")
    journey.shots.take(page, "stopped")


def test_the_sgp_door_streams_in_its_own_shape(journey: Journey) -> None:
    page = journey.page
    page.select_option("#chat-door", "sgp")
    page.select_option("#chat-model", f"{NAME}/gpt-fake-1")
    answer = _send(journey, "Hi through SGP")
    wait_until(lambda: "SGP v4" in answer.locator(".meta").inner_text())
    assert answer.locator(".text").inner_text() == "Hello from the fake."
    page.select_option("#chat-door", "openai")


def test_the_anthropic_door_streams_in_its_own_shape(journey: Journey) -> None:
    page, site = journey.page, journey.site
    with site.api() as client:
        probe = client.post("/v1/messages", json={})
    if probe.status_code in (404, 405):
        pytest.skip("the Anthropic door (/v1/messages) is not there yet")
    page.select_option("#chat-door", "anthropic")
    page.select_option("#chat-model", f"{NAME}/gpt-fake-1")
    answer = _send(journey, "Hi through Anthropic")
    wait_until(lambda: "Anthropic Messages" in answer.locator(".meta").inner_text())
    assert answer.locator(".text").inner_text() == "Hello from the fake."
    page.select_option("#chat-door", "openai")


def test_the_inspector_shows_the_upstream_request_with_keys_masked(journey: Journey) -> None:
    page, site = journey.page, journey.site
    page.select_option("#chat-model", f"{NAME}/gpt-fake-1")
    page.fill("#s-temperature", "0.3")
    page.fill("#s-memory", "1")
    _send(journey, "Inspect me")
    expect(page.locator("#chat-send")).to_be_enabled()
    _tab(page, "inspector")
    page.wait_for_selector("#inspect-out section.inspect")
    out = page.inner_text("#inspect-out")
    assert f"{site.fake.url}/v1/chat/completions" in out
    assert "Prompt post-processing" in out and "Memory strategy" in out
    assert "Messages before and after" in out
    assert '"temperature": 0.3' in out
    assert "Inspect me" in out
    header = page.locator("#inspect-out tr", has_text="authorization").inner_text()
    assert "Bearer sk-" in header and "..." in header
    journey.shots.take(page, "inspector")
    _assert_no_secret_on_the_page(journey)


def test_rotate_a_key(journey: Journey) -> None:
    page, site = journey.page, journey.site
    _tab(page, "connections")
    _row(page, "conn-rows", NAME).get_by_role("button", name=f"Edit {NAME}").click()
    page.wait_for_selector("#keys:not([hidden])")
    default = _row(page, "keys-rows", "default")
    assert "active" in default.inner_text()
    masked_before = default.locator("td.mono").inner_text()

    page.fill("#key-label", "team")
    page.fill("#key-secret", TEAM_KEY)
    page.click("#key-add-form button[type='submit']")
    _row(page, "keys-rows", "team").wait_for()
    assert page.input_value("#key-secret") == ""

    default.get_by_role("button", name="Rotate key default").click()
    page.wait_for_selector("#rotate-dialog[open]")
    page.fill("#rotate-key", ROTATED_KEY)
    journey.shots.take(page, "rotate-dialog")
    page.press("#rotate-key", "Enter")
    wait_until(lambda: default.locator("td.mono").inner_text() != masked_before)
    assert default.locator("td.mono").inner_text().endswith(ROTATED_KEY[-4:])
    assert ROTATED_KEY[-4:] in page.inner_text("#conn-key-current")
    assert page.input_value("#rotate-key") == ""
    assert "active" in default.inner_text()  # the label kept its being active
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Rotate key default", "the focus comes back to where it was"

    page.click("#conn-test")
    expect(page.locator("#conn-test-result")).to_contain_text("Hello from the fake.")
    assert _upstream_key(site) == f"Bearer {ROTATED_KEY}"

    _row(page, "keys-rows", "team").get_by_role("button", name="Activate key team").click()
    wait_until(lambda: "active" in _row(page, "keys-rows", "team").inner_text())
    page.evaluate("document.getElementById('conn-test-result').textContent = ''")
    page.click("#conn-test")
    expect(page.locator("#conn-test-result")).to_contain_text("Hello from the fake.")
    assert _upstream_key(site) == f"Bearer {TEAM_KEY}"
    journey.shots.take(page, "keys-rotated")


def test_edit_the_connection(journey: Journey) -> None:
    page, site = journey.page, journey.site
    page.check("#conn-bypass")
    page.select_option("#conn-pp", "merge")
    page.click("#conn-connect")  # a PATCH of what changed, then the status call again
    page.wait_for_selector("#conn-status .light[data-state='ok']")
    with site.api() as client:
        shown = client.get(f"/api/connections/{NAME}").json()
    assert shown["bypass_status_check"] is True and shown["post_processing"] == "merge"
    assert shown["base_url"] == f"{site.fake.url}/v1"  # unchanged: not in the patch
    assert page.is_checked("#conn-bypass") and page.input_value("#conn-pp") == "merge"
    assert "Current key: sk-" in page.inner_text("#conn-key-current")


def _usage_count(site: Site) -> int:
    with site.api() as client:
        answer = client.get("/api/usage", params={"group_by": "connection,model"})
    answer.raise_for_status()
    groups = answer.json()["groups"]
    return sum(
        g["requests"] for g in groups if g["connection"] == NAME and g["model"] == "gpt-fake-1"
    )


def test_the_usage_chart_counts_the_requests(journey: Journey) -> None:
    page, site = journey.page, journey.site
    # The rows are written in batches, off the requests' path: wait until they are all
    # in (the chats through the doors, and the test messages if they are logged too).
    counts: list[int] = []

    def settled() -> int:
        counts.append(_usage_count(site))
        stable = len(counts) > 2 and counts[-1] == counts[-3]
        return counts[-1] if stable and counts[-1] >= journey.chats else 0

    expected = wait_until(settled, timeout=20, every=0.5)
    _tab(page, "usage")
    bar = page.locator(f"svg.chart rect.bar[data-series='{NAME}/gpt-fake-1']").first
    bar.wait_for()
    assert bar.get_attribute("data-value") == str(expected)
    assert str(expected) in bar.locator("title").text_content()
    row = page.locator(f"#usage-table tr[data-key='{NAME}/gpt-fake-1']")
    assert row.locator("td.num").first.inner_text() == str(expected)
    over_time = page.locator(f"svg.chart rect.bar[data-series='{NAME}/gpt-fake-1']")
    assert over_time.count() >= 2  # the per-model chart and the requests over time
    journey.shots.take(page, "usage")


def test_delete_the_connection(journey: Journey) -> None:
    page, site = journey.page, journey.site
    _tab(page, "connections")
    delete = _row(page, "conn-rows", NAME).get_by_role("button", name=f"Delete {NAME}")
    delete.click()
    page.wait_for_selector("#confirm-dialog[open]")
    page.keyboard.press("Escape")  # Escape is Cancel: nothing is deleted
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert page.evaluate("document.activeElement.textContent") == f"Delete {NAME}"
    delete.click()
    page.wait_for_selector("#confirm-dialog[open]")
    journey.shots.take(page, "confirm-delete")
    page.click("#confirm-ok")
    _row(page, "conn-rows", NAME).wait_for(state="detached")
    with site.api() as client:
        assert client.get(f"/api/connections/{NAME}").status_code == 404
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert not any(m.startswith(f"{NAME}/") for m in models)
    journey.shots.take(page, "deleted")


def _assert_no_secret_on_the_page(journey: Journey) -> None:
    page = journey.page
    shown = page.evaluate(
        """() => [document.documentElement.outerHTML,
                  ...[...document.querySelectorAll('input, textarea')].map((i) => i.value),
                  location.href, document.title,
                  JSON.stringify(Object.entries(localStorage))]"""
    )
    stored = page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    for secret in SECRETS:
        assert not any(secret in text for text in shown), "a raw key is on the page"
    for secret in CONNECTION_SECRETS:
        assert secret not in stored


def test_no_raw_key_in_any_response_or_on_the_page(journey: Journey) -> None:
    _assert_no_secret_on_the_page(journey)
    read = 0
    for response in journey.responses:
        assert not any(secret in response.url for secret in SECRETS)
        try:
            body = response.body()
        except Exception:  # a stream the page stopped has no body to give
            continue
        read += 1
        for secret in SECRETS:
            assert secret.encode() not in body, f"a raw key in the answer of {response.url}"
        for name, value in response.headers.items():
            assert not any(s in value for s in SECRETS), f"a raw key in header {name}"
    assert read >= 20  # the page, its modules and the calls of the whole journey
