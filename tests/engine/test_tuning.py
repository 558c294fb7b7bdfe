"""The batch threads follow the machine's load."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.adapters import local
from chatgate.config import Connection, Settings
from chatgate.engine.tuning import (
    SUSTAINED,
    BatchThreadTuner,
    CpuTimes,
    batch_threads_for,
    others_cores,
    read_times,
)
from tests.conftest import MODEL, LiveServer, start_server


@pytest.mark.parametrize(
    ("others", "cores", "threads"),
    [(0.0, 2, 2), (0.39, 2, 2), (0.4, 2, 1), (1.0, 2, 1), (1.9, 2, 1), (0.0, 8, 8),
     (1.0, 8, 7), (1.5, 8, 6), (3.0, 4, 1), (0.0, 1, 1)],
)  # fmt: skip
def test_batch_threads_for(others: float, cores: int, threads: int) -> None:
    assert batch_threads_for(others, cores) == threads


def test_others_leave_out_the_worker() -> None:
    before = CpuTimes(busy=100, total=1000, process=40)
    # 1,000 ticks of 2 cores went by; 600 busy, 500 of them the worker's own.
    after = CpuTimes(busy=700, total=2000, process=540)
    assert others_cores(before, after, 2) == pytest.approx(0.2)
    assert others_cores(after, after, 2) == 0.0


def test_a_change_needs_a_sustained_load() -> None:
    tuner = BatchThreadTuner(cores=2)
    busy, total, own = 0, 0, 0
    seen: list[int | None] = [tuner.observe(CpuTimes(busy, total, own))]
    for step in range(SUSTAINED + 2):
        other = 50 if step != 1 else 0  # one quiet sample breaks the run
        busy, total, own = busy + other + 10, total + 100, own + 10
        seen.append(tuner.observe(CpuTimes(busy, total, own)))
    # others use 1 core (50 of 100 ticks on 2 cores) except in one sample
    assert seen == [None, None, None, None, None, 1]


def test_read_times_from_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4\n")
    (tmp_path / "42").mkdir()
    fields = " ".join(["S", *["0"] * 10, "30", "12", *["0"] * 30])
    (tmp_path / "42" / "stat").write_text(f"42 (odd name) ) {fields}\n")
    times = read_times(42, tmp_path)
    assert times == CpuTimes(busy=160, total=980, process=42)
    assert read_times(7, tmp_path) is None
    assert read_times(None, tmp_path) == CpuTimes(busy=160, total=980, process=0)


def test_this_machine_can_be_read() -> None:
    times = read_times(None)
    assert times is not None and times.total > 0


@pytest.fixture()
def tuned(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setattr(local, "WATCH_EVERY", 0.3)
    settings = Settings(
        connections=[Connection(name="local", source="local", engine_watchdog=0)],
        embedded=False,
        default_model=MODEL,
    )
    info, server, thread = start_server(settings)
    yield info
    server.should_exit = True
    thread.join(timeout=10)


def status(c: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = c.get("/healthz").json()["connections"]["local"]
    return found


def wait_for_batch_threads(c: httpx.Client, wanted: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        now = status(c)
        if now["threads_batch"] == wanted and now["worker"] == "ready":
            return
        time.sleep(0.2)
    raise AssertionError(f"threads_batch is not {wanted} after {limit} s: {status(c)}")


@pytest.mark.model
def test_batch_threads_follow_a_cpu_burner(tuned: LiveServer) -> None:
    cores = BatchThreadTuner().cores
    if cores < 2:
        pytest.skip("one core: there is nothing to tune")
    with tuned.client() as c:
        wait_for_batch_threads(c, cores, 20)  # a quiet machine: every core
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)
        ]
        try:
            wait_for_batch_threads(c, 1, 30)
            assert status(c)["retunes"] >= 1
            assert status(c)["restarts"] == 0  # a retune is not a crash
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 3}  # fmt: skip
            assert c.post("/v1/chat/completions", json=body).status_code == 200
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        wait_for_batch_threads(c, cores, 30)
