"""Stored connections: validated on every write, secrets kept out of their JSON."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.store import (
    ConnectionNotFound,
    KeyNotFound,
    Store,
    StoreConflict,
    StoreInvalid,
)
from chatgate.store.connections import merge_patch
from tests.store.conftest import OTHER_KEY, RAW_KEY, StoreSite


def test_add_get_list_delete(store: Store) -> None:
    added = store.add_connection(
        {"name": "oa", "source": "openai", "api_key": RAW_KEY, "models": ["gpt-4o"]}
    )
    assert added.fields == {"name": "oa", "source": "openai", "models": ["gpt-4o"]}
    assert added.revision == 1
    assert added.created == added.updated
    assert added.active_key is not None
    assert (added.active_key.label, added.active_key.masked) == ("default", "sk-...WXYZ")
    store.add_connection({"name": "ab", "source": "claude"})
    assert [c.name for c in store.list_connections()] == ["ab", "oa"]
    assert store.get_connection("oa") == added
    assert store.get_connection("ab").active_key is None
    store.delete_connection("oa")
    assert [c.name for c in store.list_connections()] == ["ab"]
    with pytest.raises(ConnectionNotFound) as caught:
        store.get_connection("oa")
    assert (caught.value.status, caught.value.field) == (404, "name")
    with pytest.raises(ConnectionNotFound):
        store.delete_connection("oa")


def test_the_api_key_becomes_the_default_key_not_a_field(connected: Store, site: StoreSite) -> None:
    assert "api_key" not in connected.get_connection("oa").fields
    assert connected.secret("oa") == RAW_KEY
    assert [(k.label, k.active) for k in connected.list_keys("oa")] == [("default", True)]
    (fields,) = site.sql("SELECT fields FROM connections")
    assert RAW_KEY not in fields[0] and "api_key" not in fields[0]


def test_fields_are_stored_canonically(store: Store) -> None:
    # Aliases and the flat spelling of an option table come back as config reads them.
    stored = store.add_connection(
        {"name": "kc", "source": "kobold", "drop_unsupported_params": True, "context_size": 4096}
    )
    assert stored.fields == {
        "name": "kc",
        "source": "kobold",
        "drop_params": True,
        "text": {"context_size": 4096},
    }
    assert store.gateway_connection("kc").text.context_size == 4096


def test_proxy_password_is_sealed_and_shown_masked(store: Store, site: StoreSite) -> None:
    password = "proxy-pass-1234567890"
    stored = store.add_connection({"name": "px", "source": "openai", "proxy_password": password})
    assert "proxy_password" not in stored.fields
    assert stored.secret_masks == {"proxy_password": "pro...7890"}
    assert stored.secrets_readable
    assert store.gateway_connection("px").proxy_password == password
    assert password in store.every_secret()
    assert password not in repr(site.sql("SELECT * FROM connections"))


def test_a_name_is_taken_once(connected: Store) -> None:
    with pytest.raises(StoreConflict) as caught:
        connected.add_connection({"name": "oa", "source": "claude"})
    assert (caught.value.status, caught.value.field) == (409, "name")


def test_the_config_file_names_are_refused(site: StoreSite) -> None:
    store = site.open(reserved_names=["local", "mine"])
    with pytest.raises(StoreConflict, match="config file") as caught:
        store.add_connection({"name": "mine", "source": "openai"})
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "has space", "source": "openai"}, "name"),
        ({"source": "openai"}, "name"),
        ({"name": "x", "source": "nonsense"}, "source"),
        ({"name": "x", "source": "openai", "modelz": []}, "modelz"),
        ({"name": "x", "source": "openai", "models": "gpt-4o"}, "models"),
        ({"name": "x", "source": "openai", "models": ["a", 3]}, "models.1"),
        ({"name": "x", "source": "openai", "timeout": -1}, "timeout"),
        ({"name": "x", "source": "openai", "text": {"poll_interval": 0}}, "text.poll_interval"),
        ({"name": "x", "source": "openai", "api_key": ""}, "api_key"),
        ({"name": "x", "source": "openai", "api_key": 12345}, "api_key"),
        ({"name": "x", "source": "openai", "api_key": "sk-a\nb"}, "api_key"),
        (
            {"name": "x", "source": "openai", "headers": {"Authorization": "Bearer k"}},
            "headers.Authorization",
        ),
        ({"name": "x", "source": "openai", "base_url": "https://u:pw@h.example/v1"}, "base_url"),
        (
            {"name": "x", "source": "openai", "deployments": {"eu": "https://t@h/v1"}},
            "deployments.eu",
        ),
    ],
)
def test_invalid_fields_name_the_field(store: Store, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(StoreInvalid) as caught:
        store.add_connection(fields)
    error = caught.value
    assert (error.status, error.field, error.param) == (400, field, field)
    assert error.message.startswith(f"{field}: ")
    assert store.list_connections() == []


def test_no_error_quotes_a_key_given_in_the_wrong_field(store: Store) -> None:
    for fields in (
        {"name": "x", "source": "openai", "timeout": RAW_KEY},
        {"name": "x", "source": RAW_KEY},
        {"name": "x", "source": "openai", "headers": {"X-Api-Key": RAW_KEY}},
        {"name": "x", "source": "openai", "base_url": f"https://{RAW_KEY}@h/v1"},
    ):
        with pytest.raises(StoreInvalid) as caught:
            store.add_connection(fields)
        assert RAW_KEY not in str(caught.value) and RAW_KEY not in repr(caught.value)


def test_update_is_a_merge_patch_validated_whole(store: Store) -> None:
    store.add_connection(
        {
            "name": "oa",
            "source": "openai",
            "models": ["a"],
            "extra_body": {"keep": 1, "drop": 2},
            "timeout": 30,
        }
    )
    updated = store.update_connection(
        "oa", {"models": ["b"], "extra_body": {"drop": None, "new": 3}, "timeout": None}
    )
    assert updated.fields == {
        "name": "oa",
        "source": "openai",
        "models": ["b"],
        "extra_body": {"keep": 1, "new": 3},
    }
    assert updated.revision == 2
    assert updated.updated >= updated.created
    # A patch that leaves the whole invalid changes nothing.
    with pytest.raises(StoreInvalid) as caught:
        store.update_connection("oa", {"region": "us-east1"})
    assert "google" in caught.value.message
    assert store.get_connection("oa") == updated


def test_a_flat_option_in_a_patch_replaces_the_stored_one(store: Store) -> None:
    store.add_connection({"name": "kc", "source": "kobold", "context_size": 4096})
    updated = store.update_connection("kc", {"context_size": 8192})
    assert updated.fields["text"] == {"context_size": 8192}


def test_an_update_that_changes_nothing_keeps_the_revision(store: Store) -> None:
    stored = store.add_connection({"name": "oa", "source": "openai", "models": ["a"]})
    assert store.update_connection("oa", {"models": ["a"]}) == stored
    assert store.update_connection("oa", {}) == stored


def test_update_with_a_stale_revision_is_a_conflict(store: Store) -> None:
    store.add_connection({"name": "oa", "source": "openai"})
    store.update_connection("oa", {"models": ["a"]}, revision=1)
    with pytest.raises(StoreConflict) as caught:
        store.update_connection("oa", {"models": ["b"]}, revision=1)
    assert (caught.value.status, caught.value.field) == (409, "revision")
    assert store.get_connection("oa").fields["models"] == ["a"]


def test_a_connection_keeps_its_name(store: Store) -> None:
    store.add_connection({"name": "oa", "source": "openai"})
    assert store.update_connection("oa", {"name": "oa", "models": ["a"]}).name == "oa"
    with pytest.raises(StoreInvalid) as caught:
        store.update_connection("oa", {"name": "renamed"})
    assert caught.value.field == "name"
    with pytest.raises(ConnectionNotFound):
        store.update_connection("missing", {"models": []})


def test_an_api_key_in_a_patch_replaces_the_active_key(connected: Store) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    updated = connected.update_connection("oa", {"api_key": "sk-replacement-000011112222"})
    assert updated.revision == 2
    assert connected.secret("oa") == "sk-replacement-000011112222"
    assert connected.secret("oa", "spare") == OTHER_KEY
    with pytest.raises(StoreInvalid) as caught:
        connected.update_connection("oa", {"api_key": None})
    assert caught.value.field == "api_key"


def test_an_api_key_in_a_patch_is_the_first_key_of_a_keyless_connection(store: Store) -> None:
    store.add_connection({"name": "ab", "source": "claude"})
    store.update_connection("ab", {"api_key": OTHER_KEY})
    assert [(k.label, k.active) for k in store.list_keys("ab")] == [("default", True)]
    assert store.secret("ab") == OTHER_KEY


def test_proxy_password_can_be_patched_and_removed(store: Store) -> None:
    store.add_connection({"name": "px", "source": "openai", "proxy_password": "first-password-1"})
    store.update_connection("px", {"models": ["m"]})
    assert store.gateway_connection("px").proxy_password == "first-password-1"
    changed = store.update_connection("px", {"proxy_password": "second-password-2"})
    assert changed.secret_masks == {"proxy_password": "sec...rd-2"}
    assert store.gateway_connection("px").proxy_password == "second-password-2"
    removed = store.update_connection("px", {"proxy_password": None})
    assert removed.secret_masks == {}
    assert store.gateway_connection("px").proxy_password is None


def test_deleting_a_connection_deletes_its_keys(connected: Store, site: StoreSite) -> None:
    connected.delete_connection("oa")
    assert site.sql("SELECT count(*) FROM connection_keys") == [(0,)]
    connected.add_connection({"name": "oa", "source": "openai"})
    with pytest.raises(KeyNotFound):
        connected.secret("oa")


def test_gateway_connection_is_a_validated_connection(connected: Store) -> None:
    connection = connected.gateway_connection("oa")
    assert (connection.name, connection.source, connection.api_key) == ("oa", "openai", None)
    with pytest.raises(ConnectionNotFound):
        connected.gateway_connection("missing")


@pytest.mark.parametrize(
    ("target", "patch", "merged"),
    [
        ({"a": 1}, {"a": None}, {}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}, {"a": {"c": 2}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": {"c": None}}, {"a": 1, "b": {}}),
        ({"a": "x"}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)
def test_merge_patch_follows_rfc_7386(
    target: dict[str, Any], patch: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == merged
