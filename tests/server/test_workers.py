"""``chatgate serve --workers N``: N processes on one port, each its own gateway; refused
with the embedded engine; all gone after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import ConfigError
from chatgate.server.workers import check_workers
from tests.conftest import GATEWAY_KEY
from tests.fakes.openai_server import FakeOpenAI


def test_several_workers_are_refused_with_the_embedded_engine() -> None:
    settings = Settings(connections=[Connection(name="local", source="local")])
    with pytest.raises(ConfigError, match="load the model 2 times"):
        check_workers(settings, 2)
    check_workers(settings, 1)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_two_workers_answer_on_one_port_and_stop_together(fake: FakeOpenAI, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "chatgate.toml"
    config.write_text(f"""
embedded = false
store_url = "sqlite:///{tmp_path}/store.db"
[server]
api_keys = ["{GATEWAY_KEY}"]
[[connections]]
name = "fake"
source = "custom"
base_url = "{fake.url}/v1"
models = ["gpt-fake-1"]
""")
    argv = [sys.executable, "-m", "chatgate", "--config", str(config), "serve"]
    argv += ["--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {GATEWAY_KEY}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "did not start"
            time.sleep(0.1)
        assert len(_children(proc.pid)) == 2
        body = {"model": "fake/gpt-fake-1", "messages": [{"role": "user", "content": "Hi"}]}
        for _ in range(6):
            answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
