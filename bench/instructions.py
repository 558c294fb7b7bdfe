"""Instructions per proxied request: chatgate now against other commits, counted by
valgrind's callgrind, so the figure does not move with the machine's noise as
wall-clock timings do (±15% on a 2-core VM).

``python -m bench.instructions 5a13afb [REV ...]`` serves each commit's ``src/`` (and
this tree's) with ``chatgate serve`` under callgrind, in front of the nginx mock, sends
20 warm-up requests and then 0 or 400 more, one at a time on one kept-alive connection,
and prints (instructions of the long run − the short one) / 400: every thread of the
process, startup excluded. Needs valgrind (Debian's package) and nginx.

``python -m bench.instructions --features`` counts this tree's requests with each of
`FEATURES` instead: the config key, a stored key, and stored keys with limits, the usage
log on in all. Under callgrind a request takes some 50 times longer, so the stored keys'
refresh (every 0.5 s of wall time) would be counted once every few requests: the child
(``python -m bench.instructions child``) reads the table once an hour instead, and its
cost is reported apart, as CPU time per refresh.
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
from bench.peers import GATEWAY_KEY, ROOT, free_port

REQUESTS = 400
WARM_UP = 20
BODY = json.dumps(
    {
        "model": "mock/mock-model",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 16,
    }
).encode()


# The request's gateway key: the config key, or one made through POST /api/keys.
FEATURES: dict[str, dict[str, object] | None] = {
    "config key": None,
    "stored key": {"label": "bench-key"},
    "limits in-process (rpm)": {"label": "bench-rpm", "rpm": 10**9},
    "limits in-process (rpm, tpm, budget)": {
        "label": "bench-all",
        "rpm": 10**9,
        "tpm": 2 * 10**9,
        "budget_tokens": 10**15,
    },
}
CHILD = [sys.executable, "-m", "bench.instructions", "child"]


def _config(mock_url: str, *, keyed: bool = False) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-instructions-")) / "chatgate.toml"
    keys = f'store_url = "sqlite:///{path.parent}/store.db"\n' if keyed else ""
    server = f'[server]\napi_keys = ["{GATEWAY_KEY}"]\n' if keyed else ""
    path.write_text(
        f"embedded = false\n{keys}{server}"
        '[[connections]]\nname = "mock"\nsource = "custom"\n'
        f'base_url = "{mock_url}/v1"\nmodels = ["mock-model"]\n'
    )
    return path


def _stored_key(port: int, fields: dict[str, object]) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "Content-Type": "application/json"}
    conn.request("POST", "/api/keys", json.dumps(fields), headers)
    answer = conn.getresponse()
    body = json.loads(answer.read())
    conn.close()
    if answer.status not in (200, 201) or not isinstance(body.get("key"), str):
        raise RuntimeError(f"POST /api/keys answered {answer.status}: {body}")
    return str(body["key"])


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


def counted(src: Path, config: Path, requests: int, key: dict[str, object] | None = None) -> int:
    """Instructions callgrind counted for a `chatgate serve` of *src* that answered
    the warm-up and *requests* more (with *key* made first, and sent: the bench child)."""
    port = free_port()
    keyed = "api_keys" in config.read_text()  # `_config(keyed=True)`: the bench child
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        *(CHILD if keyed else [sys.executable, "-m", "chatgate"]),
        "--config",
        str(config),
        "serve",
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONMALLOC": "malloc"}
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    _wait(port)
    headers = {"Content-Type": "application/json"}
    if keyed:
        # A label of its own each run: both runs of a figure share one store.
        fields = {**key, "label": f"{key['label']}-{requests}"} if key is not None else None
        given = _stored_key(port, fields) if fields is not None else GATEWAY_KEY
        headers["Authorization"] = f"Bearer {given}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(WARM_UP + requests):
        conn.request("POST", "/v1/chat/completions", BODY, headers)
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


def per_request(src: Path, config: Path, key: dict[str, object] | None = None) -> float:
    """Instructions per request of *src*, startup and warm-up subtracted."""
    return (counted(src, config, REQUESTS, key) - counted(src, config, 0, key)) / REQUESTS


def features() -> None:
    """Print this tree's instructions per request with each of `FEATURES`."""
    mock = NginxMock(free_port())
    mock.start()
    try:
        base = None
        for name, key in FEATURES.items():
            figure = per_request(ROOT / "src", _config(mock.url, keyed=True), key) / 1000
            base = figure if base is None else base
            print(f"{name}: {figure:.1f}k instructions/request ({figure - base:+.1f}k)", flush=True)
        cost = refresh_cost()
        print(f"one refresh of the stored keys: {cost:.0f} µs of CPU, twice a second")
    finally:
        mock.stop()


def refresh_cost(times: int = 400) -> float:
    """CPU µs of one read of a three-key table into a `KeySnapshot` (what the stored
    keys' refresh does twice a second), timed in this process."""
    from chatgate.server.key_snapshot import KeySnapshot
    from chatgate.store import Store

    directory = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    with Store(f"sqlite:///{directory}/store.db", env={}) as store:
        for label in ("a", "b", "c"):
            store.create_gateway_key(label=label)
        snapshot = KeySnapshot()
        started = time.process_time()
        for _ in range(times):
            snapshot.replace(store.pepper, store.list_gateway_keys())
        return (time.process_time() - started) / times * 1e6


def child(argv: list[str]) -> int:
    """``chatgate`` with the stored keys read once an hour (see the module's note)."""
    from chatgate.server import key_snapshot

    key_snapshot.REFRESH_SECONDS = 3600.0
    from chatgate.cli import main as cli

    return cli(argv)


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
    if sys.argv[1:2] == ["child"]:
        sys.exit(child(sys.argv[2:]))
    if sys.argv[1:2] == ["--features"]:
        features()
    else:
        main(sys.argv[1:])
