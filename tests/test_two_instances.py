"""Two ``chatgate serve`` processes sharing one PostgreSQL store and one Redis, as a
deployment behind a load balancer runs them: one RPM limit enforced across both, exact
to the request; the usage of both in one ``/api/usage`` query; and a key revoked on one
refused by the other within a second.

Skips with a message where PostgreSQL (``CHATGATE_TEST_POSTGRES_URL``) or
``redis-server`` is absent.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import GATEWAY_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.redis_server import redis_url  # noqa: F401  (the fixture)
from tests.store.conftest import PostgresServer, postgres_url

CHAT = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ADMIN = {"Authorization": f"Bearer {GATEWAY_KEY}"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A schema of its own on the test PostgreSQL, as a store URL."""
    server = PostgresServer(postgres_url())
    try:
        yield server.schema()[1]
    finally:
        server.close()


def _start(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "chatgate", "--config", str(config), "serve"]
    child = subprocess.Popen([*command, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    return child, f"http://127.0.0.1:{port}"


def _wait(child: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert child.poll() is None and time.monotonic() < deadline, "chatgate did not start"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def instances(
    postgres: str,
    redis_url: str,  # noqa: F811
    fake_openai: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """Two chatgate processes on one store and one Redis, with the same master key."""
    directory = tmp_path_factory.mktemp("two")
    config = directory / "chatgate.toml"
    config.write_text(
        "embedded = false\n"
        f'[server]\napi_keys = ["{GATEWAY_KEY}"]\n'
        f'[[connections]]\nname = "up"\nsource = "custom"\nbase_url = "{fake_openai.url}/v1"\n'
    )
    master = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {
        **os.environ,
        "CHATGATE_STORE_URL": postgres,
        "CHATGATE_REDIS_URL": redis_url,
        "CHATGATE_SECRET_KEY": master,
        "HOME": str(directory),  # no user data directory of the machine's
    }
    started = [_start(config, env) for _ in range(2)]
    try:
        for child, url in started:
            _wait(child, url)
        yield started[0][1], started[1][1]
    finally:
        for child, _ in started:
            child.terminate()
        for child, _ in started:
            child.wait(timeout=30)


def _create(url: str, **fields: object) -> str:
    answer = httpx.post(url + "/api/keys", json=fields, headers=ADMIN, timeout=10)
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def _chat(url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(
        url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=30
    ).status_code


def _until_accepted(url: str, key: str) -> None:
    """Wait for *url* to know a key made on the other instance (at most a second)."""
    deadline = time.monotonic() + 1.5
    while _accepts(url, key) is False:
        assert time.monotonic() < deadline, "the other instance did not see the new key"
        time.sleep(0.05)


def _accepts(url: str, key: str) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(url + "/v1/models", headers=headers, timeout=10).status_code == 200


def test_one_rpm_limit_across_both_exact_to_the_request(instances: tuple[str, str]) -> None:
    first, second = instances
    key = _create(first, label="shared-rpm", rpm=5)
    _until_accepted(second, key)
    # Alternating, one at a time: the 6th and later are refused, whichever instance.
    statuses = [_chat(instances[i % 2], key) for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3


def test_concurrent_requests_on_both_admit_exactly_the_limit(instances: tuple[str, str]) -> None:
    first, second = instances
    key = _create(second, label="burst-rpm", rpm=6)
    _until_accepted(first, key)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: _chat(instances[i % 2], key), range(16)))
    assert statuses.count(200) == 6
    assert statuses.count(429) == 10


def test_usage_from_both_in_one_query(instances: tuple[str, str]) -> None:
    first, second = instances
    key = _create(first, label="usage-both")
    _until_accepted(second, key)
    assert [_chat(url, key) for url in (first, second, second)] == [200] * 3
    # The second instance writes its rows within its batch delay; one query on the
    # first instance sees them all.
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(
            first + "/api/usage", params={"group_by": "caller"}, headers=ADMIN, timeout=10
        )
        assert answer.status_code == 200
        found = {g["caller"]: g["requests"] for g in answer.json()["groups"]}
        if found.get("usage-both") == 3:
            break
        assert time.monotonic() < deadline, f"usage rows missing: {found}"
        time.sleep(0.1)


def test_a_key_revoked_on_one_is_refused_by_the_other_within_a_second(
    instances: tuple[str, str],
) -> None:
    first, second = instances
    key = _create(first, label="revoked-soon")
    _until_accepted(second, key)
    assert _chat(second, key) == 200
    answer = httpx.delete(first + "/api/keys/revoked-soon", headers=ADMIN, timeout=10)
    assert answer.status_code == 200
    revoked = time.monotonic()
    assert not _accepts(first, key)  # at once on the instance that revoked it
    while _accepts(second, key):
        assert time.monotonic() - revoked < 1.0, "still accepted a second after revocation"
        time.sleep(0.02)
    took = time.monotonic() - revoked
    refused = httpx.post(
        second + "/v1/chat/completions", json=CHAT, headers={"x-api-key": key}, timeout=10
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "revoked_api_key"
    assert took < 1.0
