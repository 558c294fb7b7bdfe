"""Typed reads of a decoded upstream answer: a value of the wrong type at any level is
a 502 naming the connection (`lie`), never a Python error from deep inside a parser."""

from __future__ import annotations

import math
from typing import Any, TypeVar, cast

from chatgate.config import Connection
from chatgate.errors import UpstreamError

K = TypeVar("K")
_KIND_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    bool: "true or false",
}


def lie(connection: Connection, what: str) -> UpstreamError:
    """The upstream answered something that is not its protocol."""
    return UpstreamError(f"connection '{connection.name}': {what}", code="bad_upstream_response")


class Fields:
    """Typed reads of a decoded upstream answer: a value of the wrong type at any level is
    a `lie` naming the connection, never a Python error from deep inside a parser."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # Each read tries ``type(value) is kind`` first: the answer of an honest upstream
    # takes that one comparison per field (this is the hot path of every answer), and
    # only another type goes on to `_is` (a subclass; JSON's true and false).

    def of(self, value: Any, kind: type[K], what: str) -> K:
        """*value* as a *kind*; anything else is a lie about *what*."""
        if type(value) is kind or _is(value, kind):
            return cast(K, value)
        raise self._wrong(value, kind, what)

    def field(self, data: dict[str, Any], key: str, kind: type[K]) -> K | None:
        """``data[key]`` as a *kind*; None when it is missing or null."""
        value = data.get(key)
        if value is None or type(value) is kind or _is(value, kind):
            return value
        raise self._wrong(value, kind, f"'{key}'")  # the message is made only on failure

    def need(self, data: dict[str, Any], key: str, kind: type[K]) -> K:
        """``data[key]`` as a *kind*, which must be there."""
        value = data.get(key)
        if type(value) is kind or _is(value, kind):
            return cast(K, value)
        raise self._wrong(value, kind, f"'{key}'")

    def items(self, data: dict[str, Any], key: str, kind: type[K]) -> list[K]:
        """``data[key]`` as a list of *kind*; empty when it is missing or null."""
        values = self.field(data, key, list) or []
        for value in values:
            if type(value) is not kind and not _is(value, kind):
                raise self._wrong(value, kind, f"an entry of '{key}'")
        return values

    def number(self, data: dict[str, Any], key: str) -> float | None:
        """``data[key]`` as a finite number; None when it is missing or null."""
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise lie(self.connection, f"'{key}' is {_json_kind(value)} where a number belongs")

    def count(self, data: dict[str, Any], key: str, default: int = 0) -> int:
        """``data[key]`` as a whole number (a token count, an index); *default* when it
        is missing or null. Some providers write counts as floats: ``5.0`` is 5."""
        value = data.get(key)
        if type(value) is int:  # the usual case, without the float round trip
            return value
        number = self.number(data, key)
        if number is None:
            return default
        if not number.is_integer():
            raise lie(self.connection, f"'{key}' is {number}, not a whole number")
        return int(number)

    def _wrong(self, value: Any, kind: type, what: str) -> UpstreamError:
        wanted = _KIND_NAMES.get(kind, kind.__name__)
        return lie(self.connection, f"{what} is {_json_kind(value)} where {wanted} belongs")


def _is(value: Any, kind: type) -> bool:
    # JSON's true and false are not integers, though Python's bool is an int.
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return _KIND_NAMES.get(type(value), f"a {type(value).__name__}")
