"""The library: `Gateway` from sync and async code, with the real embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate import ChatRequest, Gateway, ModelNotFoundError, load_settings
from chatgate.config import Connection, EngineOptions, Settings
from chatgate.engine.model_file import default_model_path
from chatgate.errors import ConfigError

pytestmark = pytest.mark.model

HELLO = [{"role": "user", "content": "Hello"}]


def test_sync_chat_and_stream() -> None:
    with Gateway(load_settings(env={})) as gw:
        answer = gw.chat_sync(messages=HELLO, max_tokens=3, seed=1)
        assert answer.text
        assert answer.usage.completion_tokens <= 3
        chunks = list(gw.stream_sync(messages=HELLO, max_tokens=3, seed=1))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == answer.text
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def test_async_chat_with_a_request_object() -> None:
    async with Gateway(load_settings(env={})) as gw:
        request = ChatRequest.model_validate(
            {"model": "local/smollm2-135m-instruct", "messages": HELLO, "max_tokens": 2}
        )
        answer = await gw.chat(request)
        assert answer.model == "local/smollm2-135m-instruct"
        with pytest.raises(ModelNotFoundError):
            await gw.chat(model="none/x", messages=HELLO)


def test_any_gguf_path_works(tmp_path: Path) -> None:
    copy = tmp_path / "renamed-model.gguf"
    copy.symlink_to(default_model_path())
    engine = EngineOptions(model_path=str(copy), model_alias="tiny", context_size=512)
    conn = Connection(name="mine", source="local", engine=engine)
    with Gateway(Settings(connections=[conn], embedded=False)) as gw:
        assert [m.id for m in gw.models()] == ["mine/tiny"]
        assert gw.chat_sync(model="mine/tiny", messages=HELLO, max_tokens=2).text


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"not a model")
    conn = Connection(name="bad", source="local", engine=EngineOptions(model_path=str(bogus)))
    with (
        Gateway(Settings(connections=[conn], embedded=False)) as gw,
        pytest.raises(ConfigError, match="not a GGUF model file"),
    ):
        gw.start_sync()


def test_unknown_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown source 'martian'"):
        Gateway(Settings(connections=[Connection(name="x", source="martian")], embedded=False))


def test_a_corrupt_model_is_one_clear_error_and_not_retried(tmp_path: Path) -> None:
    # GGUF magic, then garbage: the worker cannot load it and says so once; a file
    # that does not load will not load after a restart either.
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF" + b"\x00" * 64)
    conn = Connection(name="bad", source="local", engine=EngineOptions(model_path=str(bogus)))
    with Gateway(Settings(connections=[conn], embedded=False)) as gw:
        with pytest.raises(ConfigError, match="cannot load model"):
            gw.start_sync()
        status = gw.health()["bad"]
        assert status["worker"] == "failed"
        assert status["restarts"] == 0
