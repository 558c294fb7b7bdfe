"""The deployment example (``deploy/``, docs/deployment.md) as it is written: nginx with
``deploy/nginx/chatgate.conf`` in front of two ``chatgate serve`` processes sharing one
store. Skipped with a message where nginx is not installed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, build_app, serve

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECRET = "ZGVwbG95bWVudC10ZXN0LW1hc3Rlci1rZXktMzJieXQ"
CHAT = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX), reason="nginx is not installed (apt-get install nginx-light)"
)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, child: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child is None or child.poll() is None, f"{url} exited"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeOpenAI]]:
    tmp = tmp_path_factory.mktemp("deploy")
    fake = FakeOpenAI()
    upstream = serve(build_app(fake))
    fake.url = next(upstream)
    config = tmp / "chatgate.toml"
    config.write_text(
        f'embedded = false\nstore_url = "sqlite:///{tmp}/store.db"\n'
        f'[[connections]]\nname = "up"\nsource = "custom"\nbase_url = "{fake.url}/v1"\n'
        'models = ["m"]\n'
    )
    ports = [_port(), _port()]
    env = {**os.environ, "CHATGATE_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "chatgate", "--config", str(config), "serve"]
    children = [
        subprocess.Popen([*command, "--port", str(p)], env=env, stderr=subprocess.DEVNULL)
        for p in ports
    ]
    nginx_port = _port()
    site = (ROOT / "deploy" / "nginx" / "chatgate.conf").read_text()
    site = site.replace("127.0.0.1:8787", f"127.0.0.1:{ports[0]}")
    site = site.replace("127.0.0.1:8788", f"127.0.0.1:{ports[1]}")
    site = re.sub(r"listen 8080;", f"listen 127.0.0.1:{nginx_port};", site)
    (tmp / "nginx.conf").write_text(
        f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n"
        f" proxy_temp_path {tmp}/proxy;\n{site}\n}}\n"
    )
    check = subprocess.run([NGINX, "-t", "-c", str(tmp / "nginx.conf")], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    proxy = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        for port, child in zip(ports, children, strict=True):
            _wait(f"http://127.0.0.1:{port}", child)
        _wait(f"http://127.0.0.1:{nginx_port}")
        yield f"http://127.0.0.1:{nginx_port}", fake
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.wait(timeout=10)
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        upstream.close()  # type: ignore[attr-defined]


def test_requests_and_streams_pass_through_nginx_to_both_instances(
    deployment: tuple[str, FakeOpenAI],
) -> None:
    url, _fake = deployment
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/v1/chat/completions", json=CHAT) for _ in range(20)]
        assert all(a.status_code == 200 for a in answers)
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        # One store: the usage of both instances in one query (each writes its rows
        # within 0.2 s of their request).
        deadline = time.monotonic() + 5
        while True:
            total = client.get("/api/usage").json()["total"]["requests"]
            if total >= 21 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert total >= 21
