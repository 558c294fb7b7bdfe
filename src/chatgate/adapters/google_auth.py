"""Access tokens for Vertex AI from a service account, without I/O.

Google's OAuth flow for a service account (RFC 7523): sign a JWT with the account's
private key (RS256, with ``cryptography``), post it as a form to the ``token_uri`` of
the key file, and get an access token good for about an hour. This module only builds
that request (`ServiceAccountToken.request`) and reads its answer
(`ServiceAccountToken.accept`); the backend sends it through the exchange, under the
connection's timeouts and with its secrets masked. The token is kept until
`REFRESH_MARGIN` seconds before it expires.

The private key never leaves this module: no error or log quotes the key file, and the
request carries only the signature the key made.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from chatgate.errors import AuthenticationError, ConfigError
from chatgate.upstream import UpstreamRequest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
REFRESH_MARGIN = 60.0
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# How long a signed assertion is good for: Google accepts at most an hour.
ASSERTION_LIFETIME = 3600
_NEEDED = ("client_email", "private_key", "token_uri")


def load_service_account(text: str, connection: str) -> dict[str, Any]:
    """Parse a service-account key file's text; ConfigError naming the connection unless it
    has client_email, private_key and token_uri."""
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        info = None
    if not isinstance(info, dict) or any(
        not isinstance(info.get(k), str) or not info[k] for k in _NEEDED
    ):
        # Nothing of the text is quoted: it may hold the key.
        raise ConfigError(
            f"connection '{connection}': the service account is not a Google key file "
            f"(it needs {', '.join(_NEEDED)})"
        )
    return info


class ServiceAccountToken:
    """A cached OAuth access token for one service account."""

    def __init__(self, info: dict[str, Any], connection: str) -> None:
        self.connection = connection
        self.email: str = info["client_email"]
        self.token_uri: str = info["token_uri"]
        self.key_id: str | None = info.get("private_key_id") or None
        self.token: str | None = None
        self.expires = 0.0
        self._key = _private_key(info["private_key"], connection)

    def __repr__(self) -> str:
        return f"ServiceAccountToken({self.email!r}, connection={self.connection!r})"

    def request(self, now: float) -> UpstreamRequest | None:
        """None while the cached token is good until now + REFRESH_MARGIN; else the token
        exchange: POST token_uri, form body grant_type=urn:ietf:params:oauth:grant-type:
        jwt-bearer&assertion=<RS256-signed JWT with iss=client_email, scope, aud=token_uri,
        iat, exp=iat+3600>."""
        if self.token is not None and now + REFRESH_MARGIN < self.expires:
            return None
        form = urlencode({"grant_type": GRANT_TYPE, "assertion": self.assertion(now)})
        return UpstreamRequest(
            "POST",
            self.token_uri,
            {"content-type": "application/x-www-form-urlencoded"},
            content=form.encode(),
        )

    def assertion(self, now: float) -> str:
        """The signed JWT that asks for a token (RFC 7523, section 2.1)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        issued = int(now)
        header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
        if self.key_id:
            header["kid"] = self.key_id
        claims = {
            "iss": self.email,
            "scope": " ".join(SCOPES),
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        signed = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
        signature = self._key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"

    def accept(self, data: Any, now: float) -> None:
        """Take the token answer {"access_token", "expires_in"}; AuthenticationError (code
        upstream_unauthorized) naming the connection if malformed."""
        token = data.get("access_token") if isinstance(data, dict) else None
        lifetime = data.get("expires_in") if isinstance(data, dict) else None
        if (
            not isinstance(token, str)
            or not token
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
            or not 0 < lifetime < math.inf
        ):
            # The answer is not quoted: a token in a malformed answer is still a token.
            raise AuthenticationError(
                f"connection '{self.connection}': the service account token exchange at "
                f"{self.token_uri} answered without an access_token and a positive expires_in",
                code="upstream_unauthorized",
            )
        self.token, self.expires = token, now + float(lifetime)


def _private_key(pem: str, connection: str) -> RSAPrivateKey:
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise ConfigError(
            "Vertex AI with a service account needs cryptography: pip install 'chatgate[vertex]'"
        ) from None
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, RSAPrivateKey):
        # The library's reason is left out: it may quote a piece of the key.
        raise ConfigError(
            f"connection '{connection}': the service account's private_key is not an "
            "unencrypted RSA key in PEM"
        )
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
