"""``[doors.<name>]``: which connections a door may reach, its model list, and the
model a door uses when a request names none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatgate.config import DoorOptions, Settings, load_settings
from chatgate.errors import ConfigError, ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.server.doors.reach import default_model, may_reach
from tests.conftest import start_server
from tests.fakes.openai_server import FakeOpenAI

CONFIG = """
embedded = false
[[connections]]
name = "a"
source = "custom"
base_url = "{url}/v1"
models = ["m"]
[[connections]]
name = "b"
source = "custom"
base_url = "{url}/v1"
models = ["m"]
[doors.openai]
connections = ["a"]
"""


def _settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "chatgate.toml"
    path.write_text(text)
    return load_settings(path, env={})


@pytest.fixture()
def server(fake: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    info, uvicorn_server, thread = start_server(_settings(tmp_path, CONFIG.format(url=fake.url)))
    yield info.url
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_a_door_reaches_only_its_connections(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.post("/v1/chat/completions", json=_chat("a/m")).status_code == 200
        refused = client.post("/v1/chat/completions", json=_chat("b/m"))
        # The SGP door is not restricted: the same connection answers there.
        v4 = client.post("/v4/beta/chat/completions", json=_chat("b/m"))
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        one = client.get("/v1/models/b/m")
    assert refused.status_code == 404
    error = refused.json()["error"]
    assert error["param"] == "model" and "[doors.openai] connections" in error["message"]
    assert v4.status_code == 200
    assert "a/m" in listed and all(m.startswith("a/") for m in listed)
    assert one.status_code == 404


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[doors.telnet]\nconnections = []\n", "unknown door 'telnet'"),
        ("[doors.ollama]\nconnections = ['nope']\n", "doors.ollama: no connection is named 'nope'"),
        ("[doors.ollama]\ndefault_connection = 'zzz'\n", "no connection is named 'zzz'"),
        ("[doors.kobold]\ncolour = 'red'\n", "colour"),
    ],
)
def test_door_options_are_checked(tmp_path: Path, extra: str, words: str) -> None:
    text = CONFIG.format(url="http://127.0.0.1:9").replace(
        '[doors.openai]\nconnections = ["a"]\n', ""
    )
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, text + extra)
    assert words in caught.value.message


def test_the_default_model_is_the_doors_else_the_top_level_one() -> None:
    settings = Settings(embedded=False, default_model="a/top")
    settings.doors["kobold"] = DoorOptions(default_model="b/door")
    gateway = Gateway(settings)
    assert default_model(gateway, "kobold") == "b/door"
    assert default_model(gateway, "llamacpp") == "a/top"
    assert may_reach(gateway, "kobold", "anything@deployment")


def test_no_default_model_says_what_to_set() -> None:
    gateway = Gateway(Settings(embedded=False))
    with pytest.raises(ModelNotFoundError) as caught:
        default_model(gateway, "llamacpp")
    assert "[doors.llamacpp]" in caught.value.message and caught.value.status == 404


def test_a_fallback_does_not_reach_past_the_doors_connections(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    text = CONFIG.format(url=fake.url).replace('models = ["m"]', 'models = ["m", "error-500"]')
    text = text.replace("[doors.openai]", '[fallbacks]\n"a/error-500" = ["b/m"]\n[doors.openai]')
    info, uvicorn_server, thread = start_server(_settings(tmp_path, text))
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:
            blocked = client.post("/v1/chat/completions", json=_chat("a/error-500"))
            # The SGP door may reach b: there the fallback answers.
            fell_back = client.post("/v4/beta/chat/completions", json=_chat("a/error-500"))
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
    assert blocked.status_code >= 500, blocked.text
    assert fell_back.status_code == 200, fell_back.text
    assert fell_back.json()["model"] == "b/m"
