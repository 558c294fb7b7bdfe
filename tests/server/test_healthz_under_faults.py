"""`/healthz` keeps answering within 100 ms while the upstream fails in every way (issue 13).

chatgate runs as its own process (`chatgate serve`), as it does in use, with one
connection to the raw misbehaving upstream of the fault matrix
(tests/fakes/raw_upstream.py, on a loop of its own thread in this process) and one to a
port where nothing listens. For every case of `tests/test_fault_matrix.py`, whole and
streamed, batches of `FAULTY` faulty requests run at once while a poller, a process of
its own, asks ``GET /healthz`` every 10 ms; every answer must be a 200, and the slowest
must come within `HEALTHZ_BOUND` (a case over it is measured once more, and that second
run must be within it). Separate processes measure chatgate's event loop, not this test
process's: the upstream writing four 10 MB answers and the clients reading them would
otherwise hold the same interpreter lock as the server and the poller.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import httpx
import pytest

from tests.fakes.raw_upstream import RawUpstream, raw_upstream_thread, unused_url
from tests.test_fault_matrix import DEADLINE, MATRIX, TIMEOUT, Case

HEALTHZ_BOUND = 0.100  # the bound on one /healthz answer, in seconds
POLL_EVERY = 0.010  # how often the poller asks
FAULTY = 4  # faulty requests in flight at once
MIN_BUSY = 0.3  # batches repeat for at least this long, so each case gets ~25 polls
BOUND = 4.0  # one batch of faulty requests ends within this, as in the matrix
HI = [{"role": "user", "content": "Hi"}]


# The poller: one process, one keep-alive connection, a line per answer on stdout.
POLL_SCRIPT = """
import http.client, sys, time
host, port, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=10)
while True:
    start = time.perf_counter()
    conn.request("GET", "/healthz")
    answer = conn.getresponse()
    answer.read()
    took = time.perf_counter() - start
    print(answer.status, took, flush=True)
    time.sleep(max(0.0, every - took))
"""


@dataclass
class Poller:
    """A process asking for ``/healthz`` every `POLL_EVERY` s until stopped."""

    url: str
    times: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _child: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def __enter__(self) -> Poller:
        host, port = self.url.removeprefix("http://").split(":")
        command = [sys.executable, "-c", POLL_SCRIPT, host, port, str(POLL_EVERY)]
        self._child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, name="healthz-poller", daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._child is not None and self._reader is not None
        self._child.kill()
        self._child.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._child.stdout is not None:
            self._child.stdout.close()

    def wait_for(self, polls: int) -> None:
        """Return once *polls* answers have come (the poller is warm)."""
        deadline = time.monotonic() + 10
        while len(self.times) < polls:
            assert time.monotonic() < deadline, "the poller got no answer"
            time.sleep(POLL_EVERY)

    def _read(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        for line in self._child.stdout:
            parts = line.split()
            if len(parts) != 2:
                continue  # the last line, cut short when the poller is killed
            self.statuses.append(int(parts[0]))
            self.times.append(float(parts[1]))


LOAD_NICENESS = 10  # the load generator's threads yield the CPU to the server under test


@contextmanager
def yielding_cpu() -> Iterator[None]:
    """This thread at `LOAD_NICENESS` meanwhile. The faulty clients and the upstream
    stand for other machines; on two shared cores they would otherwise take the CPU
    the server and the poller need, and the bound would measure the harness."""
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, max(before, LOAD_NICENESS))
    try:
        yield
    finally:
        with suppress(PermissionError):  # lowering it again takes privilege
            os.setpriority(os.PRIO_PROCESS, tid, before)


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    """The misbehaving upstream, with the matrix's knobs; its thread yields the CPU."""
    with raw_upstream_thread(LOAD_NICENESS, drip_interval=0.05, cut_after=2) as server:
        yield server


@pytest.fixture(scope="module")
def server(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """chatgate, a process of its own, with "up" to the raw upstream and "down" to where
    nothing listens; its URL."""
    config = tmp_path_factory.mktemp("healthz") / "chatgate.toml"
    tables = "".join(
        f'[[connections]]\nname = "{name}"\nsource = "custom"\nbase_url = "{url}"\n'
        f"timeout = {TIMEOUT}\nstream_deadline = {DEADLINE}\n"
        for name, url in (("up", raw.url), ("down", unused_url()))
    )
    config.write_text("embedded = false\n" + tables)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "chatgate", "--config", str(config), "serve"]
    child = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None and time.monotonic() < deadline, "chatgate did not start"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


async def faulty(client: httpx.AsyncClient, model: str, stream: bool) -> tuple[int, str]:
    """One faulty request: its status, and the start and end of what it says."""
    body = {"model": model, "messages": HI, "stream": stream}
    async with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        head = tail = b""
        async for piece in answer.aiter_bytes():
            # Only the start and the end are kept: a 10 MB answer is read, not held.
            head, tail = head or piece[:4096], piece[-4096:]
        return answer.status_code, (head + tail).decode("utf-8", "replace")


def check(case: Case, stream: bool, status: int, text: str) -> bool:
    """The faulty request got what the matrix says, True; or, False, the 504 of a
    bound that the machine's load let pass first (see `measure`)."""
    expected = MATRIX[case][stream]
    if status == 504 and "timeout_error" in text and expected.status != 504:
        # The raw upstream and the client share this process, the burner and the
        # server 2 cores: under a loaded CI run one answer can outlast the 0.5 s
        # timeout or the 1 s deadline (measured: 1.6 s for four 10 MB streams at
        # once). Either bound ends it, as it must.
        return False
    if expected.error is None or status == expected.status:
        assert status == expected.status, text
    else:
        # After the first chunk a stream error comes as an SSE error event in a 200.
        assert stream and status == 200 and "event: error" in text, (status, text)
    if expected.code is not None:
        assert expected.code in text, text
    return True


CASES = list(MATRIX)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", CASES)
async def test_healthz_answers_within_bound_during_fault(
    raw: RawUpstream, server: str, case: Case, stream: bool
) -> None:
    raw.mode = "ok" if case == "refused" else case
    first = slowest = await measure(server, case, stream)
    if first > HEALTHZ_BOUND:
        # One more run before failing: a poll held up once by the noisy 2-core machine
        # (other test runs, the GC) does not come back, a blocked event loop does. The
        # bound applies, unchanged, to the slowest poll of that second run.
        slowest = await measure(server, case, stream)
    again = f", again {slowest * 1000:.1f} ms" if first > HEALTHZ_BOUND else ""
    print(f"{case}/{'stream' if stream else 'whole'}: slowest {first * 1000:.1f} ms{again}")
    assert slowest <= HEALTHZ_BOUND, f"slowest /healthz took {slowest * 1000:.1f} ms"


async def measure(server: str, case: Case, stream: bool) -> float:
    """Batches of *case* for `MIN_BUSY` s while polling: the slowest /healthz, in s."""
    model = "down/m" if case == "refused" else "up/m"
    batches = exercised = 0
    with Poller(server) as poller, yielding_cpu():
        poller.wait_for(3)
        first = len(poller.times)
        async with httpx.AsyncClient(base_url=server, timeout=BOUND * 2) as client:
            began = time.monotonic()
            while batches == 0 or time.monotonic() - began < MIN_BUSY:
                async with asyncio.timeout(BOUND):
                    answers = await asyncio.gather(
                        *(faulty(client, model, stream) for _ in range(FAULTY))
                    )
                exercised += sum(check(case, stream, *answer) for answer in answers)
                batches += 1
    # The fault itself, not only the bounds, answered at least one request.
    assert exercised, f"every request of {batches} batches ran into a bound instead of {case}"
    during = poller.times[first:]
    assert set(poller.statuses) == {200}, poller.statuses
    assert len(during) >= 10, f"only {len(during)} polls during {batches} batches"
    # The polls before `first` warmed the poller up (its connection, the first
    # route lookup); every poll during the faults counts, the slowest included.
    return max(during)
