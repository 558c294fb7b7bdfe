"""Instructions per proxied request: chatgate now against other commits, counted by
valgrind's callgrind, so the figure does not move with the machine's noise as
wall-clock timings do (±15% on a 2-core VM).

``python -m bench.instructions 5a13afb [REV ...]`` serves each commit's ``src/`` (and
this tree's) with ``chatgate serve`` under callgrind, in front of the nginx mock, sends
20 warm-up requests and then 0 or 400 more, one at a time on one kept-alive connection,
and prints (instructions of the long run − the short one) / 400: every thread of the
process, startup excluded. Needs valgrind (Debian's package) and nginx.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.before import export
from bench.mock import NginxMock
from bench.peers import ROOT, free_port

REQUESTS = 400
WARM_UP = 20
BODY = json.dumps(
    {
        "model": "mock/mock-model",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 16,
    }
).encode()


def _config(mock_url: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-instructions-")) / "chatgate.toml"
    path.write_text(
        'embedded = false\n[[connections]]\nname = "mock"\nsource = "custom"\n'
        f'base_url = "{mock_url}/v1"\nmodels = ["mock-model"]\n'
    )
    return path


def _wait(port: int) -> None:
    deadline = time.monotonic() + 300  # callgrind makes start-up some 50 times slower
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("chatgate did not start under callgrind")


def counted(src: Path, config: Path, requests: int) -> int:
    """Instructions callgrind counted for a `chatgate serve` of *src* that answered
    the warm-up and *requests* more."""
    port = free_port()
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "chatgate",
        "--config",
        str(config),
        "serve",
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONMALLOC": "malloc"}
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait(port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(WARM_UP + requests):
        conn.request("POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"chatgate answered {answer.status}")
    conn.close()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=600)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise RuntimeError(f"no callgrind total in:\n{err[-2000:]}")
    return int(found.group(1))


def per_request(src: Path, config: Path) -> float:
    """Instructions per request of *src*, startup and warm-up subtracted."""
    return (counted(src, config, REQUESTS) - counted(src, config, 0)) / REQUESTS


def main(revisions: list[str]) -> None:
    """Print the figure of this tree and of each of *revisions*."""
    mock = NginxMock(free_port())
    mock.start()
    try:
        config = _config(mock.url)
        trees = [("this tree", ROOT / "src")]
        for rev in revisions:
            src, commit = export(rev)
            trees.append((commit, src))
        for name, src in trees:
            figure = per_request(src, config) / 1000
            print(f"{name}: {figure:.1f}k instructions/request", flush=True)
    finally:
        mock.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
