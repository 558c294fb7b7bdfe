"""Labelled keys: one active, masked when shown, sealed to their own row."""

from __future__ import annotations

import pytest

from chatgate.store import (
    ConnectionNotFound,
    KeyNotFound,
    KeyUnreadable,
    Store,
    StoreConflict,
    StoreInvalid,
)
from tests.store.conftest import OTHER_KEY, RAW_KEY, StoreSite


def test_the_first_key_is_active_and_later_ones_when_asked(store: Store) -> None:
    store.add_connection({"name": "ab", "source": "claude"})
    first = store.add_key("ab", "first", RAW_KEY)
    second = store.add_key("ab", "second", OTHER_KEY)
    assert (first.active, second.active) == (True, False)
    assert store.secret("ab") == RAW_KEY
    third = store.add_key("ab", "third", "sk-third-key-00000000", activate=True)
    assert third.active
    assert [(k.label, k.active) for k in store.list_keys("ab")] == [
        ("first", False),
        ("second", False),
        ("third", True),
    ]
    assert store.secret("ab") == "sk-third-key-00000000"


def test_keys_are_listed_masked(connected: Store) -> None:
    (info,) = connected.list_keys("oa")
    assert (info.connection, info.label, info.masked) == ("oa", "default", "sk-...WXYZ")
    assert info.readable and info.problem is None
    assert RAW_KEY not in repr(info) and RAW_KEY not in repr(connected.get_connection("oa"))


def test_activate_switches_the_active_key(connected: Store) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    assert connected.activate_key("oa", "spare").active
    assert connected.secret("oa") == OTHER_KEY
    assert connected.activate_key("oa", "spare").active  # again: no change
    assert [k.label for k in connected.list_keys("oa") if k.active] == ["spare"]
    with pytest.raises(KeyNotFound):
        connected.activate_key("oa", "missing")


def test_a_key_may_be_chosen_by_label(connected: Store) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    assert connected.secret("oa", "spare") == OTHER_KEY
    assert connected.secret("oa", "default") == RAW_KEY
    with pytest.raises(KeyNotFound) as caught:
        connected.secret("oa", "missing")
    assert (caught.value.status, caught.value.field) == (404, "label")
    with pytest.raises(ConnectionNotFound):
        connected.secret("missing")


def test_a_connection_without_keys_has_no_active_key(store: Store) -> None:
    store.add_connection({"name": "ab", "source": "claude"})
    with pytest.raises(KeyNotFound, match="no active key"):
        store.secret("ab")
    with pytest.raises(ConnectionNotFound):
        store.list_keys("missing")
    with pytest.raises(ConnectionNotFound):
        store.add_key("missing", "x", RAW_KEY)


def test_the_active_key_is_deleted_only_when_it_is_the_last(connected: Store) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    with pytest.raises(StoreConflict, match="activate another") as caught:
        connected.delete_key("oa", "default")
    assert caught.value.field == "label"
    connected.delete_key("oa", "spare")
    connected.delete_key("oa", "default")
    assert connected.list_keys("oa") == []
    assert connected.get_connection("oa").active_key is None
    with pytest.raises(KeyNotFound):
        connected.delete_key("oa", "default")


def test_rotate_replaces_the_secret_and_keeps_the_rest(connected: Store) -> None:
    before = connected.list_keys("oa")[0]
    after = connected.rotate_key("oa", "default", OTHER_KEY)
    assert (after.label, after.active, after.created) == ("default", True, before.created)
    assert after.masked == "sk-...QRST" and after.updated >= before.updated
    assert connected.secret("oa") == OTHER_KEY
    with pytest.raises(KeyNotFound):
        connected.rotate_key("oa", "missing", OTHER_KEY)


def test_a_label_is_taken_once(connected: Store) -> None:
    with pytest.raises(StoreConflict, match="rotate") as caught:
        connected.add_key("oa", "default", OTHER_KEY)
    assert (caught.value.status, caught.value.field) == (409, "label")


@pytest.mark.parametrize(
    ("label", "secret", "field"),
    [
        ("", OTHER_KEY, "label"),
        ("has space", OTHER_KEY, "label"),
        ("a/b", OTHER_KEY, "label"),
        ("x" * 65, OTHER_KEY, "label"),
        ("ok", "", "secret"),
        ("ok", "   ", "secret"),
        ("ok", "sk-with\nnewline-000000", "secret"),
        ("ok", "x" * 20_000, "secret"),
    ],
)
def test_invalid_keys_name_the_field(connected: Store, label: str, secret: str, field: str) -> None:
    with pytest.raises(StoreInvalid) as caught:
        connected.add_key("oa", label, secret)
    assert (caught.value.status, caught.value.field) == (400, field)
    if secret.strip():
        assert secret.strip() not in str(caught.value)


def test_whitespace_around_a_key_is_not_kept(connected: Store) -> None:
    connected.add_key("oa", "padded", f"  {OTHER_KEY}\n")
    assert connected.secret("oa", "padded") == OTHER_KEY


def test_a_sealed_key_moved_to_another_row_does_not_decrypt(
    connected: Store, site: StoreSite
) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    # Someone with write access to the database copies one key's ciphertext over another.
    site.sql(
        "UPDATE connection_keys SET sealed = "
        "(SELECT sealed FROM connection_keys WHERE label = 'default') WHERE label = 'spare'"
    )
    spare = next(k for k in connected.list_keys("oa") if k.label == "spare")
    assert not spare.readable
    assert spare.problem is not None and "copied from another row" in spare.problem
    with pytest.raises(KeyUnreadable) as caught:
        connected.secret("oa", "spare")
    assert (caught.value.connection, caught.value.label) == ("oa", "spare")
    assert "'oa'" in caught.value.message and "'spare'" in caught.value.message
    assert connected.secret("oa") == RAW_KEY


def test_the_raw_key_is_not_in_the_database(connected: Store, site: StoreSite) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    connected.update_connection("oa", {"proxy_password": "proxy-password-in-clear"})
    secrets = (RAW_KEY, OTHER_KEY, "proxy-password-in-clear")
    tables = ("connections", "connection_keys", "usage_log", "schema_version")
    contents = repr([site.sql(f"SELECT * FROM {table}") for table in tables])
    for secret in secrets:
        assert secret not in contents
        # Nor a stretch of it longer than its masked form shows.
        assert secret[3:11] not in contents
    if site.backend == "sqlite":
        # While open (the write-ahead log holds the latest pages), and once closed (they
        # are checkpointed into the file).
        for _ in ("open", "closed"):
            files = sorted(site.directory.iterdir())
            assert site.database_file in files and site.key_file in files
            for path in files:
                data = path.read_bytes()
                for secret in secrets:
                    assert secret.encode() not in data, path.name
                    assert secret.encode("utf-16-le") not in data, path.name
            connected.close()
