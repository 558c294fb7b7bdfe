"""The key table the edge holds: found by prefix and hash, revoked and expired keys
refused saying so, and the last good read kept when the store fails."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatgate.errors import AuthenticationError
from chatgate.server import key_snapshot
from chatgate.server.key_snapshot import KeyRefresher, KeySnapshot
from chatgate.store import StoreUnavailable
from chatgate.store.gateway_keys import GatewayKey, digest, new_key, prefix_of

PEPPER = os.urandom(32)


def row(key: str, label: str, **fields: Any) -> GatewayKey:
    prefix = prefix_of(key)
    assert prefix is not None
    values: dict[str, Any] = {
        "label": label,
        "role": "client",
        "prefix": prefix,
        "digest": digest(PEPPER, key),
        "connections": (),
        "models": ("a/*",),
        "rpm": 5,
        "tpm": None,
        "budget_tokens": 9,
        "expires_at": None,
        "revoked_at": None,
        "created": datetime.now(UTC),
    }
    return GatewayKey(**{**values, **fields})


def test_find() -> None:
    good, revoked, expired = new_key(), new_key(), new_key()
    snapshot = KeySnapshot()
    assert not snapshot.any
    past = datetime.now(UTC) - timedelta(seconds=1)
    snapshot.replace(
        PEPPER,
        [
            row(good, "good", role="admin"),
            row(revoked, "gone", revoked_at=past),
            row(expired, "old", expires_at=past),
        ],
    )
    assert snapshot.any
    caller = snapshot.find(good)
    assert caller is not None
    assert (caller.id, caller.admin, caller.models, caller.rpm, caller.budget_tokens) == (
        "good",
        True,
        ("a/*",),
        5,
        9,
    )
    assert snapshot.find(new_key()) is None
    assert snapshot.find(good[:-1] + ("A" if good[-1] != "A" else "B")) is None  # same prefix
    assert snapshot.find("sk-something-else") is None
    with pytest.raises(AuthenticationError, match="'gone' was revoked") as caught:
        snapshot.find(revoked)
    assert caught.value.code == "revoked_api_key" and revoked not in caught.value.message
    with pytest.raises(AuthenticationError, match="'old' expired") as caught:
        snapshot.find(expired)
    assert caught.value.code == "expired_api_key"


class FlakyStore:
    """A store whose key table read fails after the first one."""

    pepper = PEPPER

    def __init__(self, keys: list[GatewayKey]) -> None:
        self.keys = keys
        self.reads = 0

    def list_gateway_keys(self) -> list[GatewayKey]:
        self.reads += 1
        if self.reads > 1:
            raise StoreUnavailable("the database is away")
        return self.keys


class Managed:
    def __init__(self, store: FlakyStore) -> None:
        self.store = store

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


async def test_the_last_read_stands_when_the_store_fails(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_snapshot, "REFRESH_SECONDS", 0.01)
    key = new_key()
    store = FlakyStore([row(key, "kept")])
    snapshot = KeySnapshot()
    refresher = KeyRefresher(Managed(store), snapshot)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "chatgate.server"):
        await refresher.start()
        await asyncio.sleep(0.1)
        await refresher.stop()
    assert store.reads > 3
    found = snapshot.find(key)
    assert found is not None and found.id == "kept"
    warnings = [r for r in caplog.records if "not refreshed" in r.getMessage()]
    assert len(warnings) == 1 and "the database is away" in warnings[0].getMessage()
