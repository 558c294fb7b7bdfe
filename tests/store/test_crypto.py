"""The master key: where it comes from, what a lost one means, and sealing itself."""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatgate.errors import ConfigError
from chatgate.store import KeyUnreadable, MasterKeyUnavailable, SecretUnreadable, UsageRow
from chatgate.store.crypto import (
    Sealer,
    Unsealable,
    create_key_file,
    key_context,
    load_sealer,
    parse_key,
    read_key_file,
)
from tests.store.conftest import OTHER_KEY, RAW_KEY, StoreSite

MASTER = bytes(range(32))


def _usage_row() -> UsageRow:
    return UsageRow(datetime.now(UTC), "oa", "gpt-4o", "openai", None, 1, 2, 3, 200)


@pytest.mark.parametrize(
    "text",
    [
        base64.urlsafe_b64encode(MASTER).decode(),
        base64.urlsafe_b64encode(MASTER).decode().rstrip("="),
        base64.b64encode(MASTER).decode(),
        f"  {base64.urlsafe_b64encode(MASTER).decode()}\n",
    ],
)
def test_a_master_key_is_base64_of_32_bytes(text: str) -> None:
    assert parse_key(text) == MASTER


@pytest.mark.parametrize("text", ["", "short", base64.b64encode(bytes(31)).decode(), "!" * 43])
def test_other_master_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64 of 32"):
        parse_key(text)


def test_sealing_binds_the_row_and_the_master_key() -> None:
    sealer = Sealer(MASTER, "test")
    sealed = sealer.seal(RAW_KEY, key_context("oa", "default"))
    assert RAW_KEY.encode() not in sealed
    assert sealer.seal(RAW_KEY, key_context("oa", "default")) != sealed  # a fresh nonce
    assert sealer.open(sealed, key_context("oa", "default")) == RAW_KEY
    for context in (key_context("oa", "other"), key_context("ob", "default")):
        with pytest.raises(Unsealable, match="copied from another row"):
            sealer.open(sealed, context)
    other = Sealer(bytes(32), "the other")
    with pytest.raises(Unsealable, match=f"master key {sealer.key_id}") as caught:
        other.open(sealed, key_context("oa", "default"))
    assert str(other.key_id) in str(caught.value)
    with pytest.raises(Unsealable, match="damaged"):
        sealer.open(b"\x02" + sealed[1:], key_context("oa", "default"))
    with pytest.raises(Unsealable, match="damaged"):
        sealer.open(sealed[:20], key_context("oa", "default"))
    assert MASTER.hex() not in repr(sealer)


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first, made = load_sealer(tmp_path / "fresh", {})
    path = tmp_path / "fresh" / "chatgate.key"
    assert made and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith("# chatgate's master key")
    again, made_again = load_sealer(tmp_path / "fresh", {})
    assert not made_again and again.key_id == first.key_id
    assert [p.name for p in path.parent.iterdir()] == ["chatgate.key"]  # no temporary left


def test_two_processes_making_the_key_file_agree_on_one(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.key"
    results: list[tuple[bytes, bool]] = []
    barrier = threading.Barrier(4)

    def make() -> None:
        barrier.wait()
        results.append(create_key_file(path))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key for key, _ in results}) == 1
    assert sum(made for _, made in results) == 1
    assert read_key_file(path) == results[0][0]


def test_the_variable_replaces_the_key_file(tmp_path: Path) -> None:
    env = {"CHATGATE_SECRET_KEY": base64.urlsafe_b64encode(MASTER).decode()}
    sealer, made = load_sealer(tmp_path, env)
    assert not made and sealer.source == "CHATGATE_SECRET_KEY"
    assert sealer.key_id == Sealer(MASTER, "x").key_id
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_variable_stops_the_start_without_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CHATGATE_SECRET_KEY") as caught:
        load_sealer(tmp_path, {"CHATGATE_SECRET_KEY": RAW_KEY})
    assert RAW_KEY not in str(caught.value)


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    load_sealer(tmp_path, {})
    path = tmp_path / "chatgate.key"
    os.chmod(path, 0o644)
    load_sealer(tmp_path, {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_lost_key_file_leaves_keys_unreadable_and_the_rest_working(
    site: StoreSite, caplog: pytest.LogCaptureFixture
) -> None:
    store = site.open()
    store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    store.record_usage([_usage_row()])
    old_id = store.key_id
    store.close()
    site.key_file.unlink()

    with caplog.at_level(logging.WARNING, logger="chatgate.store"):
        store = site.open()
    assert store.key_id != old_id and site.key_file.exists()  # a new master key
    assert "the keys stored before (1) cannot be read" in caplog.text
    (info,) = store.list_keys("oa")
    assert not info.readable and info.masked == "sk-...WXYZ"
    assert info.problem is not None
    assert f"master key {old_id}" in info.problem and str(store.key_id) in info.problem
    with pytest.raises(KeyUnreadable) as caught:
        store.secret("oa")
    message = caught.value.message
    assert "'oa'" in message and "'default'" in message and "lost or replaced" in message
    assert RAW_KEY not in message
    assert caught.value.status == 500 and caught.value.code == "key_unreadable"
    # Everything else works: connections, usage, new keys, and re-entering the old one.
    assert store.get_connection("oa").active_key == info
    store.update_connection("oa", {"models": ["gpt-4o"]})
    store.record_usage([_usage_row()])
    assert store.usage()[0].requests == 2
    assert store.add_key("oa", "new", OTHER_KEY).readable
    assert store.secret("oa", "new") == OTHER_KEY
    assert store.rotate_key("oa", "default", RAW_KEY).readable
    assert store.secret("oa") == RAW_KEY


def test_a_changed_variable_is_explained_and_a_restored_one_reads_again(site: StoreSite) -> None:
    first = {"CHATGATE_SECRET_KEY": base64.urlsafe_b64encode(MASTER).decode()}
    second = {"CHATGATE_SECRET_KEY": base64.urlsafe_b64encode(bytes(32)).decode()}
    store = site.open(env=first)
    store.add_connection(
        {"name": "oa", "source": "openai", "api_key": RAW_KEY, "proxy_password": "proxy-secret-1"}
    )
    changed = site.open(env=second)
    assert not changed.list_keys("oa")[0].readable
    assert not changed.get_connection("oa").secrets_readable
    with pytest.raises(KeyUnreadable, match="CHATGATE_SECRET_KEY changed"):
        changed.secret("oa")
    with pytest.raises(SecretUnreadable, match="proxy_password"):
        changed.gateway_connection("oa")
    # A patch that leaves the sealed field alone keeps it for the right key to read.
    changed.update_connection("oa", {"models": ["m"]})
    assert changed.every_secret() == []
    restored = site.open(env=first)
    assert restored.secret("oa") == RAW_KEY
    assert restored.gateway_connection("oa").proxy_password == "proxy-secret-1"


def test_an_unusable_key_file_is_explained_not_fatal(site: StoreSite) -> None:
    store = site.open()
    store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    store.close()
    site.key_file.write_text("not a key\n")
    store = site.open()
    assert store.key_id is None
    (info,) = store.list_keys("oa")
    assert info.problem is not None and "cannot be used" in info.problem
    with pytest.raises(KeyUnreadable, match="no master key"):
        store.secret("oa")
    with pytest.raises(MasterKeyUnavailable, match="move it aside") as caught:
        store.add_key("oa", "new", OTHER_KEY)
    assert caught.value.code == "master_key_unavailable"
    store.record_usage([_usage_row()])
    assert [c.name for c in store.list_connections()] == ["oa"]


def test_a_key_file_that_cannot_be_made_leaves_the_store_without_keys(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    sealer, made = load_sealer(tmp_path / "a-file" / "data", {})
    assert not made and sealer.key_id is None
    assert sealer.problem is not None and "cannot be made" in sealer.problem
    with pytest.raises(MasterKeyUnavailable, match="CHATGATE_SECRET_KEY"):
        sealer.seal(RAW_KEY, key_context("oa", "default"))
