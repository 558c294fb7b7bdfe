"""The command line: real commands, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.cli import main


def test_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["local/smollm2-135m-instruct"]


@pytest.mark.model
def test_chat_no_stream(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "Hi", "--no-stream", "--max-tokens", "3", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "model ready" in captured.err


@pytest.mark.model
def test_chat_streams_with_system(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "chat",
            "Hi",
            "--system",
            "Answer in French.",
            "-m",
            "local/smollm2-135m-instruct",
            "--max-tokens",
            "3",
            "--seed",
            "2",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip()


def test_unknown_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "Hi", "-m", "nowhere/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("chatgate: error: the model 'nowhere/x' does not exist")
    assert "Traceback" not in err


def test_serve_refuses_public_bind_without_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHATGATE_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without gateway keys" in err


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[server]\nport = 'x'\n")
    assert main(["--config", str(bad), "models"]) == 1
    assert capsys.readouterr().err.startswith("chatgate: error: config: server.port")
