"""Who may use this server: gateway keys, and the edge checks that keep web pages out.

A page in the user's browser can send requests to a gateway on loopback: a plain form
post or ``fetch`` (no preflight for ``text/plain``), or, after DNS rebinding, any
request under the page's own host name. `EdgeGuard` runs before routing on every
request, the fast chat path included, and refuses both (``docs/security.md``).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Scope

from chatgate.errors import (
    AuthenticationError,
    ChatgateError,
    ConfigError,
    InvalidRequestError,
    PermissionDeniedError,
    mask_secret,
)
from chatgate.plan import ANONYMOUS, Caller
from chatgate.server.key_snapshot import KeySnapshot

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Every POST route takes JSON: the doors' routes are named to `EdgeGuard`, and /api/ is
# matched as a prefix so new admin routes are too.
EMPTY_POSTS = frozenset({"/api/extra/abort"})  # POST routes that may come without a body
HOSTS_KEPT = 256  # Host values whose verdict is kept (a client sends one; an attacker many)
CORS_METHODS = b"GET, POST, OPTIONS"
CORS_HEADERS = b"authorization, content-type, x-api-key"
# A page may read the rate-limit headers of a gateway key's answers (docs/keys.md).
CORS_EXPOSED = (
    b"x-chatgate-dropped-params, retry-after, x-ratelimit-limit-requests, "
    b"x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
    b"x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens"
)
CORS_MAX_AGE = b"600"
# What a requested-headers list may hold to be echoed back (SDKs send many x-* names).
_HEADER_NAMES = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~, -]{1,2000}")

Headers = tuple[tuple[bytes, bytes], ...]


class UnsupportedMediaTypeError(InvalidRequestError):
    """A JSON route called with a body that does not say it is JSON."""

    status = 415
    default_code = "unsupported_media_type"


class Authenticator:
    """The one authentication step: a request's bearer token or ``x-api-key`` against
    the configured gateway keys, giving the caller's identity."""

    def __init__(
        self,
        keys: list[str],
        admin_keys: Iterable[str] = (),
        stored: KeySnapshot | None = None,
    ) -> None:
        admins = set(admin_keys)
        # Without admin keys, every key may administer: a one-person setup needs one.
        self._keys = [
            (k.encode(), Caller(mask_secret(k), admin=not admins or k in admins)) for k in keys
        ]
        self.required = bool(keys)
        # The store's gateway keys (docs/keys.md), refreshed by the app while it serves.
        self.stored = stored if stored is not None else KeySnapshot()

    def authenticate(self, scope: Scope, *, optional: bool = False) -> Caller | None:
        """The caller, `ANONYMOUS` when no keys are configured or stored; with keys, a
        401 for a missing, wrong, revoked or expired key (None for a missing one when
        *optional*)."""
        stored = self.stored
        if not self._keys and not stored.any:
            return ANONYMOUS
        presented = presented_key(scope)
        if presented is None:
            if optional:
                return None
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                code="missing_api_key",
            )
        if stored.any:
            caller = stored.find(presented)
            if caller is not None:
                return caller
        given = presented.encode()
        # Compare against every key, always, so timing does not reveal which was close.
        found: Caller | None = None
        for key, caller in self._keys:
            if hmac.compare_digest(given, key):
                found = caller
        if found is None:
            raise AuthenticationError("incorrect API key provided")
        return found


def require_admin(caller: Caller | None) -> None:
    """A 403 unless *caller* may use the admin API."""
    if caller is not None and not caller.admin:
        raise PermissionDeniedError(
            "this key may not use the admin API: use one of [server] admin_keys, or a "
            "gateway key with the admin role",
            code="admin_key_required",
        )


def presented_key(scope: Scope) -> str | None:
    """The key a request carries (``x-api-key``, else a bearer token), if any. An
    empty one is none: front ends send ``Authorization: Bearer `` when no key is set."""
    bearer: str | None = None
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            key: str = value.decode("latin-1").strip()
            if key:
                return key
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


@dataclass(frozen=True, slots=True)
class Admission:
    """The edge's decision: refuse with *error*, answer a CORS preflight, or go on;
    *headers* go on whatever answer is sent."""

    error: ChatgateError | None = None
    preflight: bool = False
    headers: Headers = ()


ADMITTED = Admission()


class EdgeGuard:
    """The Host, CORS and content-type checks, done on the raw ASGI scope."""

    def __init__(
        self,
        *,
        keyed: bool,
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
        json_posts: Iterable[str] = (),
    ) -> None:
        # With keys, a rebound page still cannot authenticate: any Host will do.
        self.check_hosts = not keyed
        self.hosts = frozenset(_allowed_host(h) for h in allowed_hosts)
        self._hosts_seen: dict[bytes, bool] = {}
        self.origins = frozenset(_allowed_origin(o) for o in cors_origins)
        self.json_posts = frozenset(json_posts)

    def admit(self, scope: Scope) -> Admission:
        """What to do with the HTTP request *scope* before it reaches a route."""
        hosts: list[bytes] = []
        types: list[bytes] = []
        origin = asked_method = asked_headers = None
        for name, value in scope["headers"]:
            if name == b"host":
                hosts.append(value)
            elif name == b"content-type":
                types.append(value)
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                asked_method = value
            elif name == b"access-control-request-headers":
                asked_headers = value
        if self.check_hosts and not self._host_allowed(hosts):
            shown = hosts[0].decode("latin-1")[:100] if hosts else ""
            return Admission(
                PermissionDeniedError(
                    f"the Host {shown!r} is not allowed: without gateway keys chatgate "
                    "answers only loopback names (127.0.0.1, localhost, [::1]) and [server] "
                    "allowed_hosts",
                    code="host_not_allowed",
                )
            )
        cors: Headers = ()
        trusted = False
        if origin is not None and self.origins:
            trusted = origin.decode("latin-1").lower() in self.origins
            if trusted:
                cors = (
                    (b"access-control-allow-origin", origin),
                    (b"access-control-expose-headers", CORS_EXPOSED),
                    (b"vary", b"Origin"),
                )
            else:
                cors = ((b"vary", b"Origin"),)
        method = scope["method"]
        if method == "OPTIONS" and asked_method is not None and trusted:
            echo = asked_headers is not None and _HEADER_NAMES.fullmatch(asked_headers)
            allowed = asked_headers if echo and asked_headers is not None else CORS_HEADERS
            return Admission(
                preflight=True,
                headers=(
                    *cors,
                    (b"access-control-allow-methods", CORS_METHODS),
                    (b"access-control-allow-headers", allowed),
                    (b"access-control-max-age", CORS_MAX_AGE),
                ),
            )
        path = scope["path"]
        json_route = path in self.json_posts or path.startswith("/api/")
        if method == "POST" and json_route and not _one_json_type(types):
            # SillyTavern posts KoboldCpp's abort with no body and no type; with no
            # body there is nothing a page could have put in it, and only this route
            # takes one that is empty (a bodiless "test" would still be a billed call).
            if path in EMPTY_POSTS and not types and _bodiless(scope):
                return Admission(headers=cors) if cors else ADMITTED
            shown = types[0].decode("latin-1")[:100] if types else "none"
            error = UnsupportedMediaTypeError(
                f"this route takes a JSON body: send 'Content-Type: application/json' "
                f"(got {shown!r})"
            )
            return Admission(error, headers=cors)
        return Admission(headers=cors) if cors else ADMITTED

    def _host_allowed(self, hosts: list[bytes]) -> bool:
        if len(hosts) != 1:
            return False
        # Clients send the same Host on every request: each value is judged once.
        known = self._hosts_seen.get(hosts[0])
        if known is None:
            known = self._judge_host(hosts[0])
            if len(self._hosts_seen) < HOSTS_KEPT:
                self._hosts_seen[hosts[0]] = known
        return known

    def _judge_host(self, host: bytes) -> bool:
        parsed = split_host(host.decode("latin-1"))
        if parsed is None:
            return False
        name = parsed[0]
        return name in LOOPBACK_HOSTS or (name, None) in self.hosts or parsed in self.hosts


def _bodiless(scope: Scope) -> bool:
    """Whether the request says it has no body (no length or a length of 0, and not
    chunked)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return False
        if name == b"transfer-encoding":
            return False
    return True


def _one_json_type(types: list[bytes]) -> bool:
    # Two Content-Type headers are ambiguous: each reader might believe a different one.
    if len(types) != 1:
        return False
    if types[0] == b"application/json":  # what nearly every client sends
        return True
    return is_json_media_type(types[0].decode("latin-1"))


def is_json_media_type(value: str) -> bool:
    """Whether a Content-Type is ``application/json`` or a ``+json`` type (with any
    parameters); none of them is one a browser sends without a CORS preflight."""
    essence = value.partition(";")[0].strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not (kind and slash and subtype):
        return False
    return essence == "application/json" or subtype.endswith("+json")


def split_host(value: str) -> tuple[str, str | None] | None:
    """A Host header as (lower-case name, port or None); None when malformed."""
    value = value.lower()
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return None
        name, rest = value[: close + 1], value[close + 1 :]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if not name or any(c in name for c in "/@ \t"):
        return None
    if not rest:
        return name, None
    port = rest[1:]
    if rest[0] == ":" and port.isascii() and port.isdigit():
        return name, port
    return None


def _allowed_host(entry: str) -> tuple[str, str | None]:
    entry = entry.strip()
    if entry.count(":") > 1 and not entry.startswith("["):
        entry = f"[{entry}]"  # a bare IPv6 address, as people write it
    parsed = split_host(entry)
    if parsed is None:
        raise ConfigError(
            f"[server] allowed_hosts: {entry!r} is not a host name with an optional "
            "port (for example 'gateway.lan' or 'gateway.lan:8787')"
        )
    return parsed


def _allowed_origin(entry: str) -> str:
    origin = entry.strip().rstrip("/").lower()
    parts = urlsplit(origin)
    extra = parts.path or parts.query or parts.fragment or "@" in origin
    if parts.scheme not in ("http", "https") or not parts.netloc or extra:
        raise ConfigError(
            f"[server] cors_origins: {entry!r} is not an origin (scheme and host, "
            "for example 'https://app.example.com')"
        )
    return origin


def is_loopback(host: str) -> bool:
    """Whether *host* only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: list[str]) -> None:
    """Refuse to listen beyond loopback without gateway keys."""
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without gateway keys: anyone who can reach it "
            "could use your connections. Set [server] api_keys (or CHATGATE_API_KEYS), "
            "or bind to 127.0.0.1"
        )
