"""Gateway keys in the store: made once, kept hashed, listed, revoked; on SQLite, and
on PostgreSQL when it is configured; and a version-1 store migrated to hold them."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import pytest

from chatgate.store import Store, StoreConflict, StoreInvalid, StoreNotFound
from chatgate.store.gateway_keys import KEY_PREFIX, digest, new_key, prefix_of
from chatgate.store.migrations import LATEST, version
from chatgate.store.tables import gateway_keys
from tests.store.conftest import StoreSite


def test_a_key_is_random_url_safe_and_long_enough() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) >= len(KEY_PREFIX) + 43
        assert all(c.isalnum() or c in "-_" for c in key)
        assert prefix_of(key) == key[3:11]
    assert prefix_of("sk-not-ours") is None
    assert prefix_of("cg-short") is None


def test_the_digest_depends_on_the_pepper() -> None:
    key = new_key()
    assert digest(b"a" * 32, key) == digest(b"a" * 32, key)
    assert digest(b"a" * 32, key) != digest(b"b" * 32, key)
    assert len(digest(b"a" * 32, key)) == 32


def test_a_key_is_stored_hashed_and_returned_once(store: Store, site: StoreSite) -> None:
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    row, key = store.create_gateway_key(
        label="alice",
        models=["oa/gpt-4o"],
        connections=["oa"],
        rpm=10,
        tpm=1000,
        budget_tokens=50_000,
        expires_at=expiry,
    )
    assert (row.label, row.role, row.rpm, row.tpm, row.budget_tokens) == (
        "alice",
        "client",
        10,
        1000,
        50_000,
    )
    assert row.models == ("oa/gpt-4o",) and row.connections == ("oa",)
    assert row.expires_at == expiry and row.revoked_at is None
    assert row.prefix == prefix_of(key) and row.masked == f"cg-{row.prefix}..."
    assert hmac.compare_digest(row.digest, digest(store.pepper, key))
    # The key itself is nowhere in the database.
    for stored in site.sql(f"SELECT * FROM {gateway_keys.name}"):
        assert key not in repr(stored)
        assert key.encode() not in b"".join(v for v in stored if isinstance(v, bytes))
    assert [k.label for k in store.list_gateway_keys()] == ["alice"]


def test_admin_role_and_defaults(store: Store) -> None:
    row, _ = store.create_gateway_key(label="ops", role="admin")
    assert row.role == "admin"
    assert (row.models, row.connections, row.rpm, row.tpm, row.budget_tokens) == (
        (),
        (),
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"label": "has space"}, "label"),
        ({"label": ""}, "label"),
        ({"label": "a", "role": "root"}, "role"),
        ({"label": "a", "rpm": 0}, "rpm"),
        ({"label": "a", "tpm": -1}, "tpm"),
        ({"label": "a", "rpm": 2**31}, "rpm"),
        ({"label": "a", "budget_tokens": 2**63}, "budget_tokens"),
        ({"label": "a", "budget_tokens": True}, "budget_tokens"),
        ({"label": "a", "models": "oa/x"}, "models"),
        ({"label": "a", "connections": [""]}, "connections"),
        ({"label": "a", "expires_at": datetime(2030, 1, 1)}, "expires_at"),
    ],
)
def test_invalid_fields_are_refused(store: Store, fields: dict[str, object], field: str) -> None:
    with pytest.raises(StoreInvalid) as caught:
        store.create_gateway_key(**fields)
    assert caught.value.field == field


def test_a_label_is_unique(store: Store) -> None:
    store.create_gateway_key(label="bob")
    with pytest.raises(StoreConflict):
        store.create_gateway_key(label="bob")


def test_revoke_keeps_the_row(store: Store) -> None:
    store.create_gateway_key(label="carol")
    before = datetime.now(UTC) - timedelta(seconds=1)
    revoked = store.revoke_gateway_key("carol")
    assert revoked.revoked_at is not None and revoked.revoked_at >= before
    again = store.revoke_gateway_key("carol")
    assert again.revoked_at == revoked.revoked_at  # revoking twice changes nothing
    assert store.list_gateway_keys()[0].revoked_at == revoked.revoked_at
    with pytest.raises(StoreNotFound):
        store.revoke_gateway_key("nobody")


def test_two_stores_on_one_database_share_the_keys(site: StoreSite) -> None:
    first = site.open(env={"CHATGATE_SECRET_KEY": "A" * 43})
    second = site.open(env={"CHATGATE_SECRET_KEY": "A" * 43})
    _, key = first.create_gateway_key(label="dave")
    assert second.pepper == first.pepper
    found = second.list_gateway_keys()[0]
    assert hmac.compare_digest(found.digest, digest(second.pepper, key))


def test_a_version_1_store_is_migrated(fresh_site: StoreSite) -> None:
    fresh_site.open().close()
    fresh_site.sql(f"DROP TABLE {gateway_keys.name}")
    fresh_site.sql("DELETE FROM schema_version WHERE version > 1")
    store = fresh_site.open()
    assert store.applied_migrations == (2, 3)
    assert version(store._db) == LATEST
    store.create_gateway_key(label="erin")
    assert [k.label for k in store.list_gateway_keys()] == ["erin"]
