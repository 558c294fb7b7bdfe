"""`chatgate connections ...` and `chatgate preview` against the fake upstream."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from chatgate.cli import main
from tests.fakes.kobold_server import KoboldState
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-cli-key-7777mnop"


def config(tmp_path: Path, fake: FakeOpenAI, extra: str = "") -> str:
    path = tmp_path / "chatgate.toml"
    path.write_text(f"""
embedded = false
[[connections]]
name = "fake"
source = "custom"
base_url = "{fake.url}/v1"
api_key = "{KEY}"
models = ["manual-model"]
{extra}

[[connections]]
name = "pplx"
source = "perplexity"
base_url = "{fake.url}"
api_key = "{KEY}"
""")
    return str(path)


def test_list(tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, fake), "connections", "list"]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "custom" in out and "sk-...mnop" in out
    assert KEY not in out


def test_status_all(tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, fake), "connections", "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("fake: ok - 2 models")
    assert out[1].startswith("pplx: unchecked")


def test_status_failure_and_bypass(
    tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.missing_models_prefixes = ("/v1",)
    assert main(["--config", config(tmp_path, fake), "connections", "status", "fake"]) == 1
    assert "fake: FAILED - connection 'fake': upstream answered 404" in capsys.readouterr().out
    bypass = config(tmp_path, fake, "bypass_status_check = true")
    assert main(["--config", bypass, "connections", "status", "fake"]) == 0
    assert "fake: warning" in capsys.readouterr().out


def test_models(tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config(tmp_path, fake), "connections", "models", "fake"]) == 0
    assert capsys.readouterr().out.split() == ["manual-model", "gpt-fake-1", "gpt-fake-2"]


def test_test_message(tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--config",
            config(tmp_path, fake),
            "connections",
            "test",
            "fake",
            "-m",
            "gpt-fake-1",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reply"] == "Hello from the fake." and result["billed"] is True


def test_unknown_connection(
    tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", config(tmp_path, fake), "connections", "models", "nope"]) == 1
    assert "no connection named 'nope'" in capsys.readouterr().err


def test_preview_from_stdin(
    tmp_path: Path,
    fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = {"model": "fake/gpt-fake-1", "messages": [{"role": "user", "content": "Hi"}]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(request)))
    assert main(["--config", config(tmp_path, fake), "preview"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["url"] == f"{fake.url}/v1/chat/completions"
    assert shown["headers"]["Authorization"] == "Bearer sk-...mnop"
    assert shown["body"]["model"] == "gpt-fake-1"
    assert fake.seen == []


def test_preview_shows_the_connection_mode_and_config_placeholder(
    tmp_path: Path,
    fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, fake, extra='post_processing = "semi_tools"\nnames = "none"')
    Path(path).write_text('prompt_placeholder = "[Begin]"\n' + Path(path).read_text())
    request = {
        "model": "fake/gpt-fake-1",
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "name": "Kim", "content": "a"},
            {"role": "system", "content": "late"},
        ],
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(request)))
    assert main(["--config", path, "preview"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a\n\nlate"},
    ]
    assert shown["post_processing"]["mode"] == "semi-strict-tools"
    assert shown["post_processing"]["set_by"] == "connection"
    # Perplexity's forced strict uses the configured placeholder.
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            json.dumps({**request, "model": "pplx/sonar", "messages": request["messages"][:1]})
        ),
    )
    assert main(["--config", path, "preview"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["messages"][1] == {"role": "user", "content": "[Begin]"}
    assert shown["post_processing"]["forced"] == "strict"


def test_a_text_source_through_every_connection_command(
    tmp_path: Path,
    kobold_fake: KoboldState,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "text.toml"
    path.write_text(
        f'embedded = false\n[[connections]]\nname = "kcpp"\nsource = "kobold"\n'
        f'base_url = "{kobold_fake.url}"\n[connections.text]\ninstruct_template = "alpaca"\n'
    )
    cfg = ["--config", str(path)]
    assert main([*cfg, "connections", "status", "kcpp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert main([*cfg, "connections", "models", "kcpp"]) == 0
    assert capsys.readouterr().out.split() == [kobold_fake.model]
    assert main([*cfg, "connections", "test", "kcpp", "-m", "any", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reply"] and result["billed"] is True
    assert kobold_fake.last("/api/v1/generate").body["prompt"].startswith("### Instruction:")
    request = {"model": "kcpp/any", "messages": [{"role": "user", "content": "Hi"}]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(request)))
    assert main([*cfg, "preview"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["url"] == f"{kobold_fake.url}/api/v1/generate"
    assert shown["prompt"]["template"] == "alpaca"
    assert shown["prompt"]["text"] == "### Instruction:\nHi\n\n### Response:\n"
