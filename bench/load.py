"""Load and timing clients: wrk for throughput, small stdlib clients for latency.

wrk (C, from Debian) does the concurrent load so the client is never the limit. The
one-at-a-time and streaming timings use ``http.client`` over a kept-alive connection:
its own cost is the same for every target, so differences between targets are the
gateways' costs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.contention import _cpu_seconds as cpu_seconds

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True, slots=True)
class Target:
    """Something to send chat requests to: a URL and the model id it expects."""

    name: str
    url: str  # the full chat-completions URL
    model: str
    stream_url: str
    stream_model: str
    key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Content type, and the gateway key when the target has one."""
        out = {"Content-Type": "application/json"}
        if self.key:
            out["Authorization"] = f"Bearer {self.key}"
        return out

    def body(self, *, stream: bool = False) -> bytes:
        """The request every target gets: the same small chat request."""
        return json.dumps(
            {
                "model": self.stream_model if stream else self.model,
                "messages": [{"role": "user", "content": "Say something short."}],
                "max_tokens": 16,
                "stream": stream,
            }
        ).encode()


def wrk(target: Target, connections: int, seconds: float) -> dict[str, float]:
    """Throughput and latency at *connections* concurrent connections."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        auth = f'wrk.headers["Authorization"] = "Bearer {target.key}"' if target.key else ""
        script.write(WRK_SCRIPT.format(body=target.body().decode(), auth=auth))
    try:
        out = subprocess.run(
            [
                binary,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                target.url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    seconds_run = raw["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds_run,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["socket_errors"] + raw["non2xx"],
    }


class KeepAlive:
    """One kept-alive HTTP/1.1 connection to a target."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.headers = headers or {"Content-Type": "application/json"}
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def post(self, body: bytes, path: str | None = None) -> tuple[int, float, float]:
        """POST; return (status, seconds to first body byte, seconds to the last)."""
        started = time.perf_counter()
        self.conn.request("POST", path or self.path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        first = response.read1(65536)
        first_at = time.perf_counter()
        while response.read1(65536):
            pass
        response.read()  # marks the response finished, so the connection can be reused
        done_at = time.perf_counter()
        if not first:
            first_at = done_at
        return response.status, first_at - started, done_at - started

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    """The *q*-th percentile (0–100), by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def sequential(targets: list[Target], rounds: int) -> dict[str, dict[str, float]]:
    """One request at a time, the targets taking turns each round (so drift hits all)."""
    clients = {t.name: KeepAlive(t.url, t.headers) for t in targets}
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for t in targets:  # warm the connections and any lazy path
            for _ in range(20):
                clients[t.name].post(t.body())
        for _ in range(rounds):
            for t in targets:
                status, _, total = clients[t.name].post(t.body())
                if status != 200:
                    raise RuntimeError(f"{t.name} answered {status}")
                times[t.name].append(total * 1000)
    finally:
        for client in clients.values():
            client.close()
    return {
        name: {
            "p50_ms": percentile(v, 50),
            "p99_ms": percentile(v, 99),
            "mean_ms": statistics.fmean(v),
        }
        for name, v in times.items()
    }


def streaming(targets: list[Target], rounds: int) -> dict[str, dict[str, float]]:
    """Time to first and last byte of the 100-chunk stream, targets taking turns."""
    clients = {t.name: KeepAlive(t.stream_url, t.headers) for t in targets}
    first: dict[str, list[float]] = {t.name: [] for t in targets}
    last: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for t in targets:
            for _ in range(5):
                clients[t.name].post(t.body(stream=True))
        for _ in range(rounds):
            for t in targets:
                status, ttfb, ttlb = clients[t.name].post(t.body(stream=True))
                if status != 200:
                    raise RuntimeError(f"{t.name} stream answered {status}")
                first[t.name].append(ttfb * 1000)
                last[t.name].append(ttlb * 1000)
    finally:
        for client in clients.values():
            client.close()
    return {
        t.name: {
            "ttfb_ms": statistics.median(first[t.name]),
            "ttlb_ms": statistics.median(last[t.name]),
        }
        for t in targets
    }


def wait_ready(target: Target, timeout: float) -> float:
    """Seconds until *target* first answers a chat request with 200."""
    started = time.perf_counter()
    body = target.body()
    while time.perf_counter() - started < timeout:
        try:
            client = KeepAlive(target.url, target.headers)
            status, _, _ = client.post(body)
            client.close()
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{target.name} did not answer within {timeout} s")


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """Resident and peak-resident memory (MB) of a process and its descendants."""
    rss = peak = 0.0
    for proc in _tree(pid):
        try:
            fields = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{proc}/status").read_text().splitlines()
                if ":" in line
            )
        except OSError:
            continue
        rss += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
        peak += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
    return rss, peak


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """SIGSTOP the process trees of *pids* for a while, so an idle peer's background
    work does not take CPU from the one being measured (2 cores are few)."""
    stopped = [p for pid in pids for p in _tree(pid)]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


def tree_pss_mb(pid: int) -> float:
    """Proportional set size (MB) of a process and its descendants: each shared page
    counted once over the processes sharing it, so forked workers are not counted for
    their parent's pages again (as summing their RSS does)."""
    total = 0.0
    for proc in _tree(pid):
        try:
            text = Path(f"/proc/{proc}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) / 1024
                break
    return total


class PeakPss:
    """The highest `tree_pss_mb` of *pid* seen, sampled on a thread every *every* s."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_mb(self.pid))
            self._stop.wait(self.every)


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and its live descendants so far."""
    return sum(cpu_seconds(proc) for proc in _tree(pid))


def _tree(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found
