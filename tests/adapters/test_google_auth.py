"""The service-account token flow, pure (the JWT, the refresh margin, malformed answers)
and through the exchange against the fake Gemini OAuth endpoint, whose received
assertion is checked here against the account's public key."""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from chatgate.adapters.google_auth import (
    REFRESH_MARGIN,
    SCOPES,
    ServiceAccountToken,
    load_service_account,
)
from chatgate.errors import AuthenticationError, ConfigError
from chatgate.exchange import Timeouts, Transport
from tests.fakes import gemini_server
from tests.fakes.common import FakeState
from tests.fakes.openai_server import serve

NOW = 1_750_000_000.0
EMAIL = "chatgate@fake-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """A fresh RSA key, one per module (making one costs tens of milliseconds)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def account(key: rsa.RSAPrivateKey) -> ServiceAccountToken:
    """A token object for the key, made once (reading a key checks it: ~50 ms)."""
    return ServiceAccountToken(load_service_account(key_file(key), "vertex"), "vertex")


@pytest.fixture()
def token(account: ServiceAccountToken) -> ServiceAccountToken:
    """A fresh token object for the key: nothing cached."""
    return copy.copy(account)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """*key* as a key file holds it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def key_file(key: rsa.RSAPrivateKey, token_uri: str = "https://oauth2.example/token") -> str:
    """The text of a service-account key file."""
    return orjson.dumps(
        {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "key-1",
            "private_key": pem(key),
            "client_email": EMAIL,
            "token_uri": token_uri,
        }
    ).decode()


def unb64(part: str) -> bytes:
    """A base64url part of a JWT, padding restored."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified(assertion: str, key: rsa.RSAPrivateKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of *assertion*, once its RS256 signature is checked."""
    header, claims, signature = assertion.split(".")
    key.public_key().verify(
        unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return orjson.loads(unb64(header)), orjson.loads(unb64(claims))


def form(content: bytes | None) -> dict[str, str]:
    """A form body as a dict."""
    assert content is not None
    return {k: v[0] for k, v in parse_qs(content.decode(), strict_parsing=True).items()}


# --- the key file ----------------------------------------------------------------------


def test_a_key_file_is_parsed(key: rsa.RSAPrivateKey) -> None:
    info = load_service_account(key_file(key), "vertex")
    assert info["client_email"] == EMAIL


@pytest.mark.parametrize(
    "text",
    [
        "not json at all -----BEGIN PRIVATE KEY-----",
        "[1, 2]",
        '{"client_email": "a@b", "token_uri": "https://t"}',
        '{"client_email": "a@b", "private_key": "", "token_uri": "https://t"}',
        '{"client_email": 7, "private_key": "k", "token_uri": "https://t"}',
    ],
)
def test_a_file_that_is_no_key_file_names_the_connection_and_quotes_nothing(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_service_account(text, "vertex")
    assert caught.value.message == (
        "connection 'vertex': the service account is not a Google key file "
        "(it needs client_email, private_key, token_uri)"
    )


@pytest.mark.parametrize("kind", ["garbage", "ec"])
def test_a_private_key_that_is_not_rsa_is_refused_without_quoting_it(kind: str) -> None:
    private = (
        "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhr\n-----END PRIVATE KEY-----\n"
        if kind == "garbage"
        else pem(ec.generate_private_key(ec.SECP256R1()))
    )
    info = {"client_email": EMAIL, "private_key": private, "token_uri": "https://t"}
    with pytest.raises(ConfigError) as caught:
        ServiceAccountToken(info, "vertex")
    assert "connection 'vertex'" in caught.value.message
    assert "PRIVATE KEY" not in caught.value.message and "TUlJ" not in caught.value.message


# --- the request and the refresh margin -------------------------------------------------


def test_the_token_request_is_a_signed_jwt_bearer_form(
    key: rsa.RSAPrivateKey, token: ServiceAccountToken
) -> None:
    request = token.request(NOW + 0.7)
    assert request is not None
    assert (request.method, request.url) == ("POST", "https://oauth2.example/token")
    assert request.headers == {"content-type": "application/x-www-form-urlencoded"}
    assert request.body is None
    sent = form(request.content)
    assert sent["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims = verified(sent["assertion"], key)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    assert claims == {
        "iss": EMAIL,
        "scope": " ".join(SCOPES),
        "aud": "https://oauth2.example/token",
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }


def test_the_key_appears_nowhere(key: rsa.RSAPrivateKey) -> None:
    info = load_service_account(key_file(key), "vertex")
    token = ServiceAccountToken(info, "vertex")
    request = token.request(NOW)
    assert request is not None
    body = info["private_key"].splitlines()[1]  # a line of the key's base64
    shown = [
        repr(token),
        repr(request),
        str(request.preview([])),
        (request.content or b"").decode(),
    ]
    assert not any(body in text for text in shown)
    assert not any(body in repr(value) for value in vars_of(token))


def vars_of(token: ServiceAccountToken) -> list[Any]:
    """What a token object holds, but the key object itself."""
    return [v for k, v in token.__dict__.items() if k != "_key"]


def test_the_token_is_kept_until_the_refresh_margin(token: ServiceAccountToken) -> None:
    assert token.request(NOW) is not None  # nothing cached yet
    token.accept({"access_token": "ya29.a", "expires_in": 3600, "token_type": "Bearer"}, NOW)
    assert token.token == "ya29.a"
    expires = NOW + 3600
    assert token.request(NOW) is None
    assert token.request(expires - REFRESH_MARGIN - 0.5) is None
    assert token.request(expires - REFRESH_MARGIN) is not None  # due at the margin
    assert token.request(expires + 10) is not None
    token.accept({"access_token": "ya29.b", "expires_in": 120.5}, expires)
    assert token.token == "ya29.b"
    assert token.request(expires + 60.0) is None
    assert token.request(expires + 61.0) is not None


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        "ya29.token",
        {"expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": 5, "expires_in": 3600},
        {"access_token": "ya29.leaky"},
        {"access_token": "ya29.leaky", "expires_in": "3600"},
        {"access_token": "ya29.leaky", "expires_in": True},
        {"access_token": "ya29.leaky", "expires_in": 0},
        {"access_token": "ya29.leaky", "expires_in": float("inf")},
    ],
)
def test_a_malformed_answer_is_a_401_naming_the_connection(
    token: ServiceAccountToken, answer: Any
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        token.accept(answer, NOW)
    assert (caught.value.status, caught.value.code) == (401, "upstream_unauthorized")
    assert caught.value.message.startswith("connection 'vertex': the service account token")
    assert "ya29.leaky" not in caught.value.message
    assert token.token is None


# --- through the exchange ---------------------------------------------------------------


@pytest.fixture(scope="module")
def google() -> Iterator[FakeState]:
    """The fake Gemini API, whose ``POST /token`` plays Google's OAuth endpoint."""
    state = FakeState()
    for url in serve(gemini_server.build_app(state)):
        state.url = url
        yield state


@pytest.fixture()
async def transport() -> AsyncIterator[Transport]:
    """A transport of its own, closed after the test."""
    made = Transport()
    yield made
    await made.aclose()


async def test_the_exchange_gets_a_token_from_the_fake_endpoint(
    key: rsa.RSAPrivateKey, google: FakeState, transport: Transport
) -> None:
    info = load_service_account(key_file(key, google.url + "/token"), "vertex")
    token = ServiceAccountToken(info, "vertex")
    request = token.request(NOW)
    assert request is not None
    data = await transport.send_json(request, "vertex", Timeouts(read=5, total=10), [])
    token.accept(data, NOW)
    assert token.token == gemini_server.TOKEN
    assert token.request(NOW + 3000) is None
    # What the endpoint received is the form we built, with a signature the key made.
    seen = google.last("/token")
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    _, claims = verified(seen.body["assertion"], key)
    assert claims["aud"] == google.url + "/token" and claims["iss"] == EMAIL
