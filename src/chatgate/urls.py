"""Forgiving base URLs: what people paste is not always what the API wants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from chatgate.errors import ConfigError

ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")
# A scheme, then the authority up to its last "@": the userinfo. Greedy on purpose, as
# urlsplit is, so a raw "@" inside a password cannot leave the rest of it showing.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


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
            f"connection '{connection}': base_url {mask_userinfo(raw)!r} is not an http(s) "
            "URL (for example http://127.0.0.1:1234/v1)"
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
                f"use {mask_userinfo(url)!r} (chatgate adds the endpoint path itself)"
            )
            break
    return BaseURL(url, note)


def with_v1(url: str) -> str | None:
    """*url* with ``/v1`` appended, or None when it already ends in a version."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    if last.startswith("v") and last[1:2].isdigit():
        return None
    return url.rstrip("/") + "/v1"


def mask_userinfo(text: str) -> str:
    """*text* with the password in every URL's userinfo shown as ``***``."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        # A user name alone is usually a token itself (https://TOKEN@host): hide it all.
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _USERINFO.sub(hide, text)
