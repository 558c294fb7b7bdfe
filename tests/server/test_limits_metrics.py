"""Every 429 a gateway key's limits answer is counted in ``/metrics``, by door
(``chatgate_rejections_total``); a refusal of another kind is not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatgate.config import Connection, Settings
from tests.conftest import GATEWAY_KEY, start_server
from tests.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
DOORS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", {"model": "file/m", "messages": HI, "max_tokens": 4}),
    "anthropic": ("/v1/messages", {"model": "file/m", "messages": HI, "max_tokens": 4}),
    "ollama": ("/api/chat", {"model": "file/m", "messages": HI, "stream": False}),
    "completions": ("/v1/completions", {"model": "file/m", "prompt": "hi", "max_tokens": 4}),
}


@pytest.fixture()
def server(tmp_path: Path, fake: FakeOpenAI) -> Iterator[str]:
    settings = Settings(
        embedded=False,
        store_url=f"sqlite:///{tmp_path}/store.db",
        connections=[Connection(name="file", source="custom", base_url=fake.url + "/v1")],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    settings.server.admin_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    yield info.url
    uv.should_exit = True
    thread.join(timeout=10)


def admin(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"}, timeout=30
    )


def rejections(url: str) -> dict[str, float]:
    """``chatgate_rejections_total`` by door, as GET /metrics shows it."""
    with admin(url) as http:
        text = http.get("/metrics").text
    return {
        sample.labels["door"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chatgate_rejections_total"
    }


def make_key(url: str, **fields: Any) -> str:
    with admin(url) as http:
        made = http.post("/api/keys", json=fields)
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def call(url: str, key: str, door: str) -> httpx.Response:
    path, body = DOORS[door]
    return httpx.post(url + path, json=body, headers={"x-api-key": key}, timeout=30)


def test_each_door_counts_its_429s(server: str) -> None:
    assert rejections(server) == {}
    key = make_key(server, label="one-a-minute", rpm=1)
    assert call(server, key, "openai").status_code == 200
    for door in DOORS:
        assert call(server, key, door).status_code == 429, door
    assert call(server, key, "openai").status_code == 429
    assert rejections(server) == {"openai": 2, "anthropic": 1, "ollama": 1, "completions": 1}


def test_a_spent_budget_is_counted_and_a_403_is_not(server: str) -> None:
    spent = make_key(server, label="budget", budget_tokens=1)
    assert call(server, spent, "openai").status_code == 200  # the answer's tokens spend it
    refused = call(server, spent, "anthropic")
    assert refused.status_code == 429 and "budget" in refused.text
    fenced = make_key(server, label="fenced", models=["other/*"], rpm=100)
    assert call(server, fenced, "openai").status_code == 403
    assert rejections(server) == {"anthropic": 1}
