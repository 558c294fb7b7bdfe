"""The store's errors: each is a `ChatgateError`, so the server renders it in the shape
of the door that asked, with the HTTP status it names::

    StoreError                500 store_error
    ├── StoreNotFound         404 not_found            (also a NotFoundError)
    │   ├── ConnectionNotFound
    │   └── KeyNotFound
    ├── StoreConflict         409 conflict
    ├── StoreInvalid          400 invalid_value        (also an InvalidRequestError)
    ├── SecretUnreadable      500 secret_unreadable    (a sealed field: proxy_password)
    │   └── KeyUnreadable     500 key_unreadable
    ├── MasterKeyUnavailable  500 master_key_unavailable
    └── StoreUnavailable      503 store_unavailable

`field` names the one field at fault, where there is one (``models.0``,
``headers.Authorization``); it is also the error's ``param``. No message carries a
secret: they name connections and labels, and show keys masked if at all.
"""

from __future__ import annotations

from typing import ClassVar

from chatgate.errors import ChatgateError, InvalidRequestError, NotFoundError


class StoreError(ChatgateError):
    """Base of every error the store raises."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = "store_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=field, code=code)

    @property
    def field(self) -> str | None:
        """The field at fault (dotted, as pydantic locates it), if one is."""
        return self.param


# The status and type are set again on each subclass: StoreError comes first in their
# method resolution order, and its 500 would otherwise win over NotFoundError's 404.
class StoreNotFound(StoreError, NotFoundError):
    """A connection or key that the store does not hold."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConnectionNotFound(StoreNotFound):
    """No store connection has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no stored connection is named {name!r}", field="name")
        self.name = name


class KeyNotFound(StoreNotFound):
    """The connection has no key with this label (or no active key)."""

    def __init__(self, connection: str, label: str | None) -> None:
        what = f"no key labelled {label!r}" if label else "no active key"
        super().__init__(f"connection {connection!r} has {what}", field="label")
        self.connection, self.label = connection, label


class StoreConflict(StoreError):
    """The request contradicts what is stored: a name taken, a stale revision."""

    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class StoreInvalid(StoreError, InvalidRequestError):
    """A value the store refuses; `field` says which."""

    status = 400
    error_type = "invalid_request_error"
    default_code = "invalid_value"


class SecretUnreadable(StoreError):
    """A stored secret that cannot be decrypted with this store's master key."""

    default_code = "secret_unreadable"

    def __init__(
        self, connection: str, what: str, reason: str, *, field: str | None = None
    ) -> None:
        super().__init__(f"connection {connection!r}, {what}: {reason}", field=field)
        self.connection, self.reason = connection, reason


class KeyUnreadable(SecretUnreadable):
    """A connection's key that cannot be decrypted with this store's master key."""

    default_code = "key_unreadable"

    def __init__(self, connection: str, label: str, reason: str) -> None:
        super().__init__(connection, f"key {label!r}", reason, field="label")
        self.label = label


class MasterKeyUnavailable(StoreError):
    """The store has no usable master key, so it can neither seal nor open a key."""

    default_code = "master_key_unavailable"


class StoreUnavailable(StoreError):
    """The database cannot be reached, or is in a state this chatgate cannot use."""

    status = 503
    default_code = "store_unavailable"
