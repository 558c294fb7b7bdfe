"""The usage log across a shutdown and a crash, with chatgate as a process of its own:
a clean stop (SIGTERM) loses no row of an answered request; a SIGKILL during a burst
leaves a store that opens, passes its integrity check and keeps serving, and loses at
most the rows still queued (printed, for the record: ``pytest -s`` shows the count)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from chatgate.store import Store
from tests.fakes.openai_server import FakeOpenAI, build_app, serve

CHAT = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
SECRET = "Y2hhdGdhdGUtY3Jhc2gtdGVzdC1tYXN0ZXIta2V5ISE"  # base64 of 32 bytes


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    yield from serve(build_app(FakeOpenAI()))


class Chatgate:
    """``chatgate serve`` on a store, started and stopped (or killed) at will."""

    def __init__(self, tmp: Path, upstream: str) -> None:
        self.db = tmp / "store.db"
        self.config = tmp / "chatgate.toml"
        self.config.write_text(
            f'embedded = false\nstore_url = "sqlite:///{self.db}"\n'
            f'[[connections]]\nname = "up"\nsource = "custom"\nbase_url = "{upstream}/v1"\n'
            'models = ["m"]\n'
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "chatgate", "--config", str(self.config), "serve"]
        env = {**os.environ, "CHATGATE_SECRET_KEY": SECRET}
        self.child = subprocess.Popen(
            [*command, "--port", str(self.port)], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.child.poll() is None and time.monotonic() < deadline, "did not start"
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)

    def stop(self, sig: signal.Signals) -> None:
        assert self.child is not None
        self.child.send_signal(sig)
        self.child.wait(timeout=30)
        self.child = None

    def recorded(self) -> int:
        with Store(f"sqlite:///{self.db}", env={"CHATGATE_SECRET_KEY": SECRET}) as store:
            return store.usage()[0].requests


@pytest.fixture()
def chatgate(tmp_path: Path, upstream: str) -> Iterator[Chatgate]:
    running = Chatgate(tmp_path, upstream)
    running.start()
    yield running
    if running.child is not None:
        running.stop(signal.SIGKILL)


async def _burst(
    url: str, total: int, at_once: int, answered: list[int], enough: asyncio.Event | None = None
) -> None:
    limits = httpx.Limits(max_connections=at_once)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        gate = asyncio.Semaphore(at_once)

        async def one() -> None:
            async with gate:
                try:
                    if (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200:
                        answered.append(1)
                        if enough is not None and len(answered) >= 300:
                            enough.set()
                except httpx.HTTPError:
                    pass  # the server was killed under it

        await asyncio.gather(*(one() for _ in range(total)))


def test_a_clean_stop_loses_no_row(chatgate: Chatgate) -> None:
    answered: list[int] = []
    asyncio.run(_burst(chatgate.url, 200, 16, answered))
    chatgate.stop(signal.SIGTERM)
    assert len(answered) == 200
    assert chatgate.recorded() == 200


def test_a_sigkill_during_a_burst_leaves_a_consistent_store(chatgate: Chatgate) -> None:
    answered: list[int] = []

    async def burst_then_kill() -> None:
        enough = asyncio.Event()
        task = asyncio.ensure_future(_burst(chatgate.url, 2000, 32, answered, enough))
        await enough.wait()
        assert chatgate.child is not None
        chatgate.child.kill()  # SIGKILL: no shutdown, no flush
        await task

    asyncio.run(burst_then_kill())
    assert chatgate.child is not None
    chatgate.child.wait(timeout=30)
    chatgate.child = None
    with sqlite3.connect(chatgate.db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    recorded = chatgate.recorded()
    lost = max(0, len(answered) - recorded)
    print(f"\nSIGKILL during a burst: {len(answered)} answered, {recorded} rows, {lost} lost")
    # What can be lost is what was queued: rows wait at most 0.2 s for their batch.
    assert recorded > 0 and lost <= len(answered) // 2
    chatgate.start()  # the store opens again and serves
    again = httpx.post(chatgate.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert again.status_code == 200


def _send_chat(port: int, **fields: object) -> socket.socket:
    """A raw HTTP/1.1 chat request, sent; its socket."""
    body = orjson.dumps({**CHAT, **fields})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head.encode() + body)
    return sock


def _open_stream(port: int) -> socket.socket:
    """A streaming request to the fake's minute-long stream, its first event read."""
    sock = _send_chat(port, model="up/long-m", stream=True)
    seen = b""
    while b"data: " not in seen:
        seen += sock.recv(4096)
    assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    return sock


def _rest(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    return rest


def test_a_sigterm_with_streams_open_stops_within_the_shutdown_timeout(
    tmp_path: Path, upstream: str
) -> None:
    running = Chatgate(tmp_path, upstream)
    running.config.write_text(running.config.read_text() + "[server]\nshutdown_timeout = 1\n")
    running.start()
    assert running.child is not None
    child = running.child
    streams = [_open_stream(running.port) for _ in range(3)]
    # A whole answer that the fake gives after 2 s, past the second the stop allows.
    waiting = _send_chat(running.port, model="up/slow-m")
    try:
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=30)
        took = time.monotonic() - started
        running.child = None
        for sock in streams:  # each is cut: an error event, then a proper end
            rest = _rest(sock)
            assert b"[DONE]" not in rest
            assert b'"code":"server_shutting_down"' in rest, rest[-300:]
            assert rest.endswith(b"\r\n0\r\n\r\n"), rest[-100:]  # the chunked body's end
        # The whole answer is the door's 503, not uvicorn's plain-text 500.
        answer = _rest(waiting)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in head.lower(), head
        if b"transfer-encoding: chunked" in head.lower():
            size, _, body = body.partition(b"\r\n")
            body = body[: int(size, 16)]
        assert orjson.loads(body)["error"]["code"] == "server_shutting_down"
    finally:
        for sock in [*streams, waiting]:
            sock.close()
    # The fake's streams last a minute: the timeout, not their end, stopped the server.
    assert 1 <= took < 10, took
    assert code == -signal.SIGTERM  # a clean stop: uvicorn re-raises the signal it got
    # Each stream cut short still has its row, as a request the client did not see end.
    with sqlite3.connect(running.db) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM usage_log")]
    assert statuses == [499, 499, 499, 499]
