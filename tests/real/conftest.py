"""Real OpenAI-compatible servers on loopback, and chatgate in front of them.

``llama_cpp_server`` runs llama-cpp-python's own server (``python -m llama_cpp.server``)
from ``.venv-llamacpp`` (``make .venv-llamacpp/.installed``; ``make test`` builds it)
with the SmolLM2 GGUF the embedded engine uses, once per session. ``gateway_for`` puts
a chatgate server in front of any base URL with any source, so the same server serves
the ``custom`` tests (``/v1/chat/completions``) and can serve ``generic`` ones
(``/v1/completions``) later.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatgate.config import Connection, Settings
from chatgate.engine.model_file import default_model_path
from tests.conftest import GATEWAY_KEY, LiveServer, start_server

ROOT = Path(__file__).resolve().parents[2]
LLAMA_CPP_PYTHON = ROOT / ".venv-llamacpp" / "bin" / "python"
LLAMA_CPP_INSTALLED = ROOT / ".venv-llamacpp" / ".installed"
STARTUP_S = 120.0  # loading a 135M model takes a few seconds; a loaded machine more
N_CTX = 2048
MODEL = "real/smollm2"  # the model id through the gateway: connection "real"
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}},
    "required": ["a"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class RealServer:
    """A server running in a child process: its base URL (without ``/v1``) and log."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self, lines: int = 30) -> str:
        """The end of its log, for a failure message."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(server: RealServer, path: str, timeout: float = STARTUP_S) -> None:
    """Until *path* answers 200; a process that dies or never answers fails the run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer {path} within {timeout:.0f} s:\n{server.tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """llama_cpp.server with SmolLM2-135M, 2048 tokens of context, seed 1."""
    if not LLAMA_CPP_INSTALLED.exists():
        pytest.skip("llama-cpp-python is not built: run `make .venv-llamacpp/.installed`")
    port = free_port()
    log = tmp_path_factory.mktemp("llama_cpp_server") / "server.log"
    command = [
        str(LLAMA_CPP_PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--seed",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = RealServer(f"http://127.0.0.1:{port}", log, process)
    try:
        wait_ready(server, "/v1/models")
        yield server
    finally:
        stop(process)


@contextmanager
def gateway_for(source: str, base_url: str, **fields: Any) -> Iterator[LiveServer]:
    """A chatgate server (loopback, a gateway key) whose one connection, ``real``, is
    *source* at *base_url*; the embedded engine off."""
    connection = Connection(name="real", source=source, base_url=base_url, **fields)
    settings = Settings(embedded=False, connections=[connection])
    settings.server.api_keys = [GATEWAY_KEY]
    info, server, thread = start_server(settings)
    try:
        yield info
    finally:
        server.should_exit = True
        thread.join(timeout=10)
