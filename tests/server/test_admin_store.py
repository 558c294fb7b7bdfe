"""The admin API over the store, end to end: a connection added through the API serves
at once, edits and key changes apply to the next request, a deleted one answers 404,
no key is ever returned, and a lost key file is explained, not fatal."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import GATEWAY_KEY, LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

KEY_A = "sk-store-key-aaaa-000111"
KEY_B = "sk-store-key-bbbb-222333"
KEY_C = "sk-store-key-cccc-444555"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _settings(store: Path, fake: FakeOpenAI) -> Settings:
    settings = Settings(
        embedded=False,
        store_url=f"sqlite:///{store}/store.db",
        connections=[Connection(name="file", source="custom", base_url=fake.url + "/v1")],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    return settings


class Running:
    """A chatgate server on a store directory, restartable on the same store."""

    def __init__(self, store: Path, fake: FakeOpenAI) -> None:
        self.store, self.fake = store, fake
        self.server: Any = None
        self.start()

    def start(self) -> None:
        self.info, self.server, self.thread = start_server(_settings(self.store, self.fake))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def live(self) -> LiveServer:
        return self.info


@pytest.fixture()
def running(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Running]:
    server = Running(tmp_path, fake)
    yield server
    server.stop()


def _client(running: Running) -> httpx.Client:
    return running.live.client()


def _upstream_key(fake: FakeOpenAI) -> str:
    return fake.last("/chat/completions").headers["authorization"].removeprefix("Bearer ")


def _no_key_in(*answers: httpx.Response) -> None:
    for answer in answers:
        for key in (KEY_A, KEY_B, KEY_C):
            assert key not in answer.text


def _add(client: httpx.Client, fake: FakeOpenAI, **fields: Any) -> httpx.Response:
    body = {
        "name": "mine",
        "source": "custom",
        "base_url": fake.url + "/v1",
        "api_key": KEY_A,
        "models": ["m"],
        **fields,
    }
    return client.post("/api/connections", json=body)


def test_a_connection_added_through_the_api_serves_at_once_and_a_deleted_one_is_a_404(
    running: Running, fake: FakeOpenAI
) -> None:
    with _client(running) as client:
        added = _add(client, fake)
        assert added.status_code == 201, added.text
        shown = added.json()
        assert shown["origin"] == "store" and not shown["read_only"]
        assert [k["label"] for k in shown["keys"]] == ["default"]
        assert shown["keys"][0]["masked"].startswith("sk-") and shown["keys"][0]["active"]
        answer = client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
        assert answer.status_code == 200, answer.text
        assert _upstream_key(fake) == KEY_A
        listed = client.get("/api/connections")
        origins = {c["name"]: c["origin"] for c in listed.json()["connections"]}
        assert origins == {"file": "config", "mine": "store"}
        one = client.get("/api/connections/mine")
        assert client.delete("/api/connections/mine").status_code == 204
        gone = client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
        assert gone.status_code == 404
        assert client.get("/api/connections/mine").status_code == 404
    _no_key_in(added, listed, one)


def test_a_connection_outlives_a_restart(running: Running, fake: FakeOpenAI) -> None:
    with _client(running) as client:
        assert _add(client, fake).status_code == 201
    running.stop()
    running.start()
    with _client(running) as client:
        answer = client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
    assert answer.status_code == 200 and _upstream_key(fake) == KEY_A


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"base_url": 5}, 400, "base_url"),
        ({"source": "no-such-source"}, 400, "source"),
        ({"name": "has space"}, 400, "name"),
        ({"name": "file"}, 409, "name"),
        ({"models": "m"}, 400, "models"),
        ({"colour": "red"}, 400, "colour"),
    ],
)
def test_a_bad_connection_is_refused_naming_the_field(
    running: Running, fake: FakeOpenAI, fields: dict[str, Any], status: int, param: str
) -> None:
    with _client(running) as client:
        refused = _add(client, fake, **fields)
    assert refused.status_code == status, refused.text
    error = refused.json()["error"]
    assert error["param"] == param, error
    _no_key_in(refused)


def test_the_config_files_connections_are_read_only(running: Running) -> None:
    with _client(running) as client:
        patched = client.patch("/api/connections/file", json={"models": ["x"]})
        deleted = client.delete("/api/connections/file")
        keyed = client.post("/api/connections/file/keys", json={"label": "a", "key": KEY_B})
    assert [patched.status_code, deleted.status_code, keyed.status_code] == [409, 409, 409]


def test_an_edit_applies_to_the_next_request(running: Running, fake: FakeOpenAI) -> None:
    with _client(running) as client:
        assert _add(client, fake).status_code == 201
        patched = client.patch("/api/connections/mine", json={"models": ["m", "n"]})
        assert patched.status_code == 200, patched.text
        assert patched.json()["models"] == ["m", "n"]
        answer = client.post("/v1/chat/completions", json={"model": "mine/n", **CHAT})
        assert answer.status_code == 200
        bad = client.patch("/api/connections/mine", json={"timeout": "soon"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "timeout"


def test_labelled_keys_rotate_activate_and_are_chosen_per_request(
    running: Running, fake: FakeOpenAI
) -> None:
    model = {"model": "mine/m", **CHAT}
    with _client(running) as client:
        assert _add(client, fake).status_code == 201
        team = client.post("/api/connections/mine/keys", json={"label": "team", "key": KEY_B})
        assert team.status_code == 201 and not team.json()["active"]
        client.post("/v1/chat/completions", json=model, headers={"x-chatgate-key-label": "team"})
        assert _upstream_key(fake) == KEY_B
        client.post("/v1/chat/completions", json=model)
        assert _upstream_key(fake) == KEY_A
        unknown = client.post(
            "/v1/chat/completions", json=model, headers={"x-chatgate-key-label": "nope"}
        )
        assert unknown.status_code == 404 and "team" in unknown.json()["error"]["message"]
        rotated = client.put("/api/connections/mine/keys/default", json={"key": KEY_C})
        assert rotated.status_code == 200 and rotated.json()["active"]
        client.post("/v1/chat/completions", json=model)
        assert _upstream_key(fake) == KEY_C
        activated = client.post("/api/connections/mine/keys/team/activate", json={})
        assert activated.status_code == 200 and activated.json()["active"]
        client.post("/v1/chat/completions", json=model)
        assert _upstream_key(fake) == KEY_B
        active_gone = client.delete("/api/connections/mine/keys/team")
        assert active_gone.status_code == 400
        assert client.delete("/api/connections/mine/keys/default").status_code == 204
        keys = client.get("/api/connections/mine").json()["keys"]
        assert [k["label"] for k in keys] == ["team"]
    _no_key_in(team, rotated, activated)


def test_usage_counts_each_request(running: Running, fake: FakeOpenAI) -> None:
    with _client(running) as client:
        assert _add(client, fake).status_code == 201
        for _ in range(3):
            client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
        client.post("/v4/beta/chat/completions", json={"model": "mine/m", **CHAT})
        grouped = client.get("/api/usage", params={"group_by": "connection,door"})
        assert grouped.status_code == 200, grouped.text
        rows = {(g["connection"], g["door"]): g for g in grouped.json()["groups"]}
        assert rows[("mine", "openai")]["requests"] == 3
        assert rows[("mine", "sgp")]["requests"] == 1
        assert rows[("mine", "openai")]["tokens_out"] > 0
        assert grouped.json()["total"]["requests"] == 4
        only = client.get("/api/usage", params={"connection": "file"}).json()
        assert only["total"]["requests"] == 0
        bad = client.get("/api/usage", params={"group_by": "colour"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
        late = client.get("/api/usage", params={"since": "yesterday"})
        assert late.status_code == 400 and late.json()["error"]["param"] == "since"


def test_a_lost_key_file_is_explained_and_the_rest_works(
    running: Running, fake: FakeOpenAI, tmp_path: Path
) -> None:
    with _client(running) as client:
        assert _add(client, fake).status_code == 201
    running.stop()
    (tmp_path / "chatgate.key").unlink()
    running.start()
    with _client(running) as client:
        shown = client.get("/api/connections/mine").json()
        assert shown["keys"][0]["readable"] is False and shown["unavailable"]
        refused = client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "key_unreadable"
        # Everything else works; entering the key again mends the connection.
        assert client.post("/v1/chat/completions", json={"model": "file/x", **CHAT}).is_success
        assert client.put("/api/connections/mine/keys/default", json={"key": KEY_A}).is_success
        again = client.post("/v1/chat/completions", json={"model": "mine/m", **CHAT})
    assert again.status_code == 200 and _upstream_key(fake) == KEY_A


def test_sources_and_preview_say_what_the_page_needs(running: Running) -> None:
    with _client(running) as client:
        catalogue = client.get("/api/sources").json()
        preview = client.post(
            "/api/preview",
            json={"model": "file/x", "messages": [{"role": "user", "content": "hi"}]},
        ).json()
    ids = {s["id"] for s in catalogue["sources"]}
    assert {"openai", "claude", "custom", "kobold", "llamacpp"} <= ids and "local" not in ids
    assert "chatml" in catalogue["instruct_templates"]
    assert preview["messages_before"] == [{"role": "user", "content": "hi"}]
    assert preview["messages_after"][-1]["content"] == "hi"


@pytest.fixture()
def postgres_url() -> str:
    url = os.environ.get("CHATGATE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "CHATGATE_TEST_POSTGRES_URL is unset, so the PostgreSQL case is skipped: "
            "export CHATGATE_TEST_POSTGRES_URL=$(.ci/postgres) to run it"
        )
    return url


def test_two_servers_share_a_postgresql_store(postgres_url: str, fake: FakeOpenAI) -> None:
    name = f"pg{uuid.uuid4().hex[:8]}"
    servers = []
    for _ in range(2):
        settings = _settings(Path("/unused"), fake)
        settings.store_url = postgres_url
        servers.append(start_server(settings))
    try:
        first, second = (info for info, _, _ in servers)
        with first.client() as client:
            assert _add(client, fake, name=name).status_code == 201
            first_chat = client.post("/v1/chat/completions", json={"model": f"{name}/m", **CHAT})
            assert first_chat.status_code == 200
            client.get("/api/usage")  # writes this server's queued usage rows now
        # The second server reads the store at start: a restart of it serves the new one.
        _, server, thread = servers.pop()
        server.should_exit = True
        thread.join(timeout=10)
        settings = _settings(Path("/unused"), fake)
        settings.store_url = postgres_url
        servers.append(start_server(settings))
        second = servers[-1][0]
        with second.client() as client:
            answer = client.post("/v1/chat/completions", json={"model": f"{name}/m", **CHAT})
            assert answer.status_code == 200 and _upstream_key(fake) == KEY_A
            usage = client.get("/api/usage", params={"connection": name}).json()
            # Usage from both servers, in one query.
            assert usage["total"]["requests"] == 2
            assert client.delete(f"/api/connections/{name}").status_code == 204
    finally:
        for _, server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)
