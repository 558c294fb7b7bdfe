"""Slow clients against the real ``chatgate serve`` (issue 13): deadlines and the cap.

The server runs as a subprocess, exactly as deployed, with short deadlines so that the
whole module takes seconds.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatgate.server.serving import TIMEOUT_RESPONSE

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 40
# A deadline fires on the server's loop; a busy 2-core machine may run it late.
MARGIN = 1.5
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str = "/healthz") -> tuple[int, float]:
    """Status and seconds of one GET on a new connection (status 0: no answer)."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return 0, time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, time.perf_counter() - started


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A ``chatgate serve`` subprocess with short deadlines and a small cap."""
    config = tmp_path_factory.mktemp("slow") / "chatgate.toml"
    config.write_text(
        "embedded = false\n"
        "[server]\n"
        f"header_timeout = {HEADER_TIMEOUT}\n"
        f"body_timeout = {BODY_TIMEOUT}\n"
        f"max_connections = {MAX_CONNECTIONS}\n"
    )
    number = _free_port()
    binary = Path(sys.executable).with_name("chatgate")
    process = subprocess.Popen(
        [str(binary), "--config", str(config), "serve", "--port", str(number)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while _get(number)[0] != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("chatgate serve did not come up")
            time.sleep(0.05)
        yield number
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _open(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def _closed_within(sock: socket.socket, limit: float, drip: bytes = b"") -> tuple[float, bytes]:
    """Seconds until the server ends the connection, and what it said before; fails
    the test past *limit*. Sends *drip* every 0.25 s meanwhile."""
    started = time.monotonic()
    said = b""
    sock.settimeout(0.25)
    with sock:
        while time.monotonic() - started < limit:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                chunk = None
            except OSError:
                return time.monotonic() - started, said
            elapsed = time.monotonic() - started  # after the wait, not before it
            if chunk == b"":
                return elapsed, said
            if chunk:
                said += chunk
            elif drip:
                try:
                    sock.sendall(drip)
                except OSError:
                    return elapsed, said
    pytest.fail(f"the connection was still open after {limit} s")


def test_dripping_head_is_closed_with_408(port: int) -> None:
    elapsed, said = _closed_within(_open(port, HEAD), HEADER_TIMEOUT + MARGIN, drip=b"X")
    assert elapsed >= HEADER_TIMEOUT * 0.9  # the deadline, not an early accident
    assert said == TIMEOUT_RESPONSE


def test_silent_socket_is_closed(port: int) -> None:
    elapsed, said = _closed_within(_open(port), HEADER_TIMEOUT + MARGIN)
    assert elapsed >= HEADER_TIMEOUT * 0.9
    assert said == TIMEOUT_RESPONSE


def test_slow_body_is_closed(port: int) -> None:
    head = HEAD + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    elapsed, said = _closed_within(_open(port, head), BODY_TIMEOUT + MARGIN, drip=b" ")
    assert elapsed >= BODY_TIMEOUT * 0.9, said


def test_kept_alive_connection_dripping_its_second_head_is_closed(port: int) -> None:
    sock = _open(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    _, said = _closed_within(sock, HEADER_TIMEOUT + MARGIN, drip=b"X")
    # The first answer's body may arrive after the recv above read its head.
    assert said.endswith(TIMEOUT_RESPONSE), said


def test_healthz_answers_quickly_beside_slow_sockets(port: int) -> None:
    body = HEAD + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    crowd = [_open(port, (b"", HEAD, body)[i % 3]) for i in range(MAX_CONNECTIONS - 10)]
    try:
        timings = []
        for _ in range(10):
            status, seconds = _get(port)
            assert status == 200
            timings.append(seconds)
        assert max(timings) < 0.1, timings
    finally:
        for sock in crowd:
            sock.close()


def test_past_the_cap_requests_get_503_and_the_server_recovers(port: int) -> None:
    crowd = [_open(port) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        time.sleep(0.2)  # let the server accept them all
        assert _get(port)[0] == 503  # refused cleanly: an answer, and the connection closed
    finally:
        for sock in crowd:
            sock.close()
    deadline = time.monotonic() + HEADER_TIMEOUT + MARGIN
    while _get(port)[0] != 200:
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.05)


def test_cap_recovers_by_itself_when_slow_sockets_time_out(port: int) -> None:
    crowd = [_open(port) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        time.sleep(0.2)
        assert _get(port)[0] == 503
        # Nobody closes the crowd: the head deadline must, and the server serves again.
        deadline = time.monotonic() + HEADER_TIMEOUT + MARGIN
        while _get(port)[0] != 200:
            assert time.monotonic() < deadline, "the slow sockets kept the cap full"
            time.sleep(0.05)
    finally:
        for sock in crowd:
            sock.close()
