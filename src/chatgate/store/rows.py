"""What the store hands out and takes in: plain frozen dataclasses, no secrets in any.

A key's plaintext is in none of them; `Store.secret` returns it as a bare string, to the
gateway only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from chatgate.store.errors import StoreInvalid

GroupName = Literal["connection", "model", "door", "caller", "day", "hour"]
GROUP_NAMES: tuple[GroupName, ...] = ("connection", "model", "door", "caller", "day", "hour")
GroupValue = str | datetime | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One labelled key of a connection, as it may be shown: masked, never in full."""

    connection: str
    label: str
    masked: str
    active: bool
    created: datetime
    updated: datetime
    readable: bool
    # Why the key cannot be decrypted, in words a person can act on; None when readable.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class StoredConnection:
    """A connection kept in the store: its ``[[connections]]`` fields without secrets."""

    name: str
    # The fields as given (validated by `chatgate.config.Connection`), without `api_key`
    # (a key, in the keys table) and `proxy_password` (sealed; see `secret_masks`).
    fields: Mapping[str, Any]
    revision: int
    created: datetime
    updated: datetime
    # Sealed fields by name, masked ("proxy_password" → "pa...word").
    secret_masks: Mapping[str, str] = field(default_factory=dict)
    secrets_readable: bool = True
    active_key: KeyInfo | None = None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One request as the usage log keeps it."""

    time: datetime  # when the request arrived, timezone-aware
    connection: str
    model: str
    door: str
    caller: str | None  # the gateway key's label; None without gateway keys
    tokens_in: int
    tokens_out: int
    latency_ms: int
    status: int  # the HTTP status answered
    error_code: str | None = None
    streamed: bool = False

    def __post_init__(self) -> None:
        # Checked here, where the row is made on the request path, rather than in a
        # batch written later, where one bad row would fail the others with it.
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise StoreInvalid("time: a timezone-aware datetime", field="time")
        for name in ("connection", "model", "door"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise StoreInvalid(f"{name}: a non-empty string", field=name)
        for name in ("tokens_in", "tokens_out", "latency_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StoreInvalid(f"{name}: a whole number, 0 or more", field=name)
        if not isinstance(self.status, int) or not 0 <= self.status <= 999:
            raise StoreInvalid("status: an HTTP status (0 when none was sent)", field="status")


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """Totals of the usage rows that share one value of each grouped column."""

    # The grouped columns and their values: "day" and "hour" are the UTC start of the
    # bucket; "caller" may be None. Empty when nothing was grouped (the total).
    key: Mapping[str, GroupValue]
    requests: int
    errors: int  # HTTP status 400 or more, or an error code (a stream that failed late)
    streamed: int
    tokens_in: int
    tokens_out: int
    latency_avg_ms: float | None
    latency_p50_ms: int | None
    latency_p95_ms: int | None
