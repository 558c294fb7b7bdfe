"""A real ``redis-server`` for tests: started on a free port in a temporary directory,
stopped when the tests end; the tests skip with a message where it is not installed.

Use the `redis_url` fixture (import it into the test module, or a conftest), or
`running_redis` directly. ``CHATGATE_TEST_REDIS_URL`` (``.ci/redis``) names one that is
already running instead; each test should use keys of its own there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

VARIABLE = "CHATGATE_TEST_REDIS_URL"
MISSING = (
    "redis-server is not installed, so the Redis tests are skipped: "
    "apt-get install redis-server (or set CHATGATE_TEST_REDIS_URL=$(.ci/redis))"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running_redis(directory: Path) -> Iterator[str]:
    """A ``redis-server`` of its own in *directory*, its URL while it runs."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(MISSING)
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis for this test session (skips where there is none)."""
    given = os.environ.get(VARIABLE)
    if given:
        yield given
        return
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url
