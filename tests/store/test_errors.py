"""The store's errors are chatgate errors, with the status each names."""

from __future__ import annotations

import pytest

from chatgate.errors import ChatgateError, InvalidRequestError, NotFoundError
from chatgate.store import (
    ConnectionNotFound,
    KeyNotFound,
    KeyUnreadable,
    MasterKeyUnavailable,
    SecretUnreadable,
    StoreConflict,
    StoreError,
    StoreInvalid,
    StoreUnavailable,
)


@pytest.mark.parametrize(
    ("error", "status", "code", "also"),
    [
        (ConnectionNotFound("oa"), 404, "not_found", NotFoundError),
        (KeyNotFound("oa", "spare"), 404, "not_found", NotFoundError),
        (StoreConflict("taken", field="name"), 409, "conflict", StoreError),
        (StoreInvalid("models: bad", field="models"), 400, "invalid_value", InvalidRequestError),
        (KeyUnreadable("oa", "default", "why"), 500, "key_unreadable", SecretUnreadable),
        (MasterKeyUnavailable("none"), 500, "master_key_unavailable", StoreError),
        (StoreUnavailable("down"), 503, "store_unavailable", StoreError),
    ],
)
def test_status_code_and_family(
    error: StoreError, status: int, code: str, also: type[Exception]
) -> None:
    assert isinstance(error, StoreError) and isinstance(error, ChatgateError)
    assert isinstance(error, also)
    assert (error.status, error.code) == (status, code)


def test_the_field_is_the_param_the_doors_render() -> None:
    error = StoreInvalid("models.0: Input should be a valid string", field="models.0")
    assert error.field == error.param == "models.0"
    assert error.to_dict()["error"]["param"] == "models.0"
    assert ConnectionNotFound("oa").to_dict()["error"]["message"] == (
        "no stored connection is named 'oa'"
    )


def test_an_unreadable_key_names_its_connection_and_label() -> None:
    error = KeyUnreadable("oa", "spare", "the key file was lost")
    assert error.message == "connection 'oa', key 'spare': the key file was lost"
    assert (error.connection, error.label, error.field) == ("oa", "spare", "label")
