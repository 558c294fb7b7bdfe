"""``chatgate keys create|list|revoke``: on the store itself, the key printed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatgate.cli import main
from chatgate.store import Store


@pytest.fixture()
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("CHATGATE_STORE_URL", url)
    return url


def test_create_list_revoke(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "keys",
                "create",
                "--label",
                "ci",
                "--rpm",
                "5",
                "--tpm",
                "900",
                "--models",
                "a/x, b/y",
                "--admin",
            ]
        )
        == 0
    )
    made = capsys.readouterr()
    key = made.out.strip()
    assert key.startswith("cg-") and len(key) >= 46
    assert "not shown again" in made.err and key not in made.err
    with Store(store_url) as store:
        (row,) = store.list_gateway_keys()
    assert (row.role, row.rpm, row.tpm, row.models) == ("admin", 5, 900, ("a/x", "b/y"))
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and "active" in listed and "rpm=5" in listed and key not in listed
    assert main(["keys", "list", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["label"] == "ci" and shown["masked"] == f"cg-{key[3:11]}..."
    assert main(["keys", "revoke", "ci"]) == 0
    assert "revoked 'ci'" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out


def test_errors_are_one_line(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "revoke", "nobody"]) == 1
    assert "no gateway key is labelled 'nobody'" in capsys.readouterr().err
    assert main(["keys", "create", "--label", "a", "--rpm", "0"]) == 1
    assert "rpm" in capsys.readouterr().err
    assert main(["keys", "create", "--label", "a", "--expires", "tomorrow"]) == 1
    assert "expires_at" in capsys.readouterr().err
