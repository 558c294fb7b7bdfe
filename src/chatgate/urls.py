"""Forgiving base URLs: what people paste is not always what the API wants."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from chatgate.errors import ConfigError

ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")


@dataclass(frozen=True, slots=True)
class BaseURL:
    """A cleaned base URL, and what was changed to get it (for a warning)."""

    url: str
    note: str | None = None


def clean_base_url(raw: str, connection: str) -> BaseURL:
    """Check *raw* and strip a trailing slash or a pasted endpoint path.

    ``http://host:1234/v1/chat/completions`` becomes ``http://host:1234/v1``, with a
    note saying so. A base URL with or without ``/v1`` is kept as it is: the models
    probe tries ``/v1`` when the bare one answers 404 (`with_v1`).
    """
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"connection '{connection}': base_url {raw!r} is not an http(s) URL "
            "(for example http://127.0.0.1:1234/v1)"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"connection '{connection}': base_url must not carry a query or fragment "
            "(put keys in api_key, not in the URL)"
        )
    url = url.rstrip("/")
    note = None
    for suffix in ENDPOINT_SUFFIXES:
        if url.endswith(suffix):
            url = url[: -len(suffix)].rstrip("/")
            note = (
                f"connection '{connection}': removed {suffix!r} from base_url; "
                f"use {url!r} (chatgate adds the endpoint path itself)"
            )
            break
    return BaseURL(url, note)


def with_v1(url: str) -> str | None:
    """*url* with ``/v1`` appended, or None when it already ends in a version."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    if last.startswith("v") and last[1:2].isdigit():
        return None
    return url.rstrip("/") + "/v1"
