"""A monthly budget survives a restart without Redis: the restarted server starts the
key's month from the usage log of the store it shares with the one before (SQLite, and
PostgreSQL where ``CHATGATE_TEST_POSTGRES_URL`` names one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import GATEWAY_KEY, LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "file/m", "messages": HI, "max_tokens": 4},
    "/v1/completions": {"model": "file/m", "prompt": "hi", "max_tokens": 4},
}


def settings(store: str, fake: FakeOpenAI) -> Settings:
    found = Settings(
        embedded=False,
        store_url=store,
        connections=[Connection(name="file", source="custom", base_url=fake.url + "/v1")],
    )
    found.server.api_keys = [GATEWAY_KEY]
    found.server.admin_keys = [GATEWAY_KEY]
    return found


def chat(server: LiveServer, key: str, path: str = "/v1/chat/completions") -> httpx.Response:
    body = BODIES[path]
    return httpx.post(server.url + path, json=body, headers={"x-api-key": key}, timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a store that outlives one server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url = os.environ.get("CHATGATE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "CHATGATE_TEST_POSTGRES_URL is unset, so the PostgreSQL case is skipped: "
            "export CHATGATE_TEST_POSTGRES_URL=$(.ci/postgres) to run it"
        )
    return url


def test_a_spent_budget_is_still_spent_after_a_restart(store: str, fake: FakeOpenAI) -> None:
    team, spare_label = f"team-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    first, uv, thread = start_server(settings(store, fake))
    try:
        with first.client() as admin:
            made = admin.post("/api/keys", json={"label": team, "budget_tokens": 20})
            assert made.status_code == 201, made.text
            key = made.json()["key"]
            other = admin.post("/api/keys", json={"label": spare_label, "budget_tokens": 20})
            spare = other.json()["key"]
        # Each answer of the fake is 15 tokens: the second takes the month past 20.
        assert [chat(first, key).status_code for _ in range(3)] == [200, 200, 429]
    finally:
        uv.should_exit = True
        thread.join(timeout=10)  # a clean stop writes the usage rows still queued
    second, uv, thread = start_server(settings(store, fake))
    try:
        refused = chat(second, key)
        assert refused.status_code == 429, refused.text
        message = refused.json()["error"]["message"]
        assert f"token budget spent for '{team}': 30 of 20 tokens" in message
        assert int(refused.headers["retry-after"]) >= 1
        # On a text door too; and a key that spent nothing before is not refused.
        assert chat(second, key, "/v1/completions").status_code == 429
        assert chat(second, spare).status_code == 200
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
