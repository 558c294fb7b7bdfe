"""A busy neighbour for the engine measurements: one CPU burner process beside them.

The burner is ``python -c "while True: pass"``: one process that keeps one core busy,
as any other program on a shared machine would. It is started just before a
measurement and killed right after it, and it cannot outlive the bench: the kernel
kills it when the bench dies (``PR_SET_PDEATHSIG``) and when it has used its CPU
allowance (``RLIMIT_CPU``), whichever comes first.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BURNER = "while True: pass"
# CPU seconds the burner may use at most; a measurement under contention takes well
# under this, so the limit only matters if the bench is stuck or killed.
CPU_LIMIT_S = 1200
SETTLE_S = 0.2  # let the burner reach the scheduler before measuring


def describe() -> str:
    """The burner, as the report names it."""
    return f'one `python -c "{BURNER}"` process'


def _bounded(limit: int) -> Callable[[], None]:
    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the bench
        except (OSError, AttributeError):
            pass

    return setup


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of *pid* so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Burner:
    """What the burner did while it ran."""

    pid: int
    started: float = field(default_factory=time.perf_counter)
    summary: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def burner(limit: int = CPU_LIMIT_S) -> Iterator[Burner]:
    """Run one CPU burner for the duration of the block; always killed at its end.

    ``summary`` says afterwards how busy it was (cores, from its CPU time over the wall
    time) and whether it was still running when the block ended.
    """
    popen = subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_bounded(limit),
    )
    time.sleep(SETTLE_S)
    state = Burner(popen.pid)
    cpu_before = _cpu_seconds(popen.pid)
    try:
        yield state
    finally:
        wall = time.perf_counter() - state.started
        cpu = _cpu_seconds(popen.pid) - cpu_before
        alive = popen.poll() is None
        popen.kill()
        popen.wait()
        state.summary = {
            "seconds": round(wall, 2),
            "cores_used": round(cpu / wall, 2) if wall > 0 else 0.0,
            "alive_to_the_end": alive,
        }
