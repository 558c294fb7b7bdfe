"""How many threads the engine's batches get: as many as the cores nobody else wants.

Measured on 2 cores (docs/embedded-engine.md, "Threads"): a second thread for prompts
and for batches of several sequences makes four streams 1.7× faster on an idle
machine, and 2× *slower* beside one busy process, because the two threads wait for
each other at every step and one of them keeps losing its core. One thread per token
step is within 12% of the best either way. So the token steps keep one thread, and
the batch threads follow the machine: the cores minus those other processes keep
busy, measured from ``/proc/stat`` without the worker's own time.

Changing it means starting the worker again (llama.cpp fixes its threads when the
model loads), so a change waits until the engine is idle, and only follows a load
that has lasted `SUSTAINED` samples in a row.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

SUSTAINED = 3  # samples in a row that must agree before the threads change
BUSY_CORE = 0.4  # a core counts as taken when others use this much of it


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative CPU ticks: the whole machine's busy and total, and one process's."""

    busy: int
    total: int
    process: int


def read_times(pid: int | None, root: Path = Path("/proc")) -> CpuTimes | None:
    """The counters now (None where ``/proc`` cannot be read)."""
    try:
        fields = (root / "stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(x) for x in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        total = sum(ticks[:8])  # guest time is already inside user
        own = 0
        if pid is not None:
            # Fields after the command name (which may hold spaces): utime, stime at 14, 15.
            stat = (root / str(pid) / "stat").read_text()
            after = stat.rsplit(")", 1)[1].split()
            own = int(after[11]) + int(after[12])
    except (OSError, ValueError, IndexError):
        return None
    return CpuTimes(total - idle, total, own)


def others_cores(before: CpuTimes, after: CpuTimes, cores: int) -> float:
    """Cores' worth of CPU that processes other than the worker used in between."""
    elapsed = after.total - before.total
    if elapsed <= 0:
        return 0.0
    foreign = (after.busy - before.busy) - (after.process - before.process)
    return max(0.0, foreign / elapsed * cores)


def batch_threads_for(others: float, cores: int) -> int:
    """The batch threads for a machine where others keep *others* cores busy."""
    taken = 0 if others < BUSY_CORE else math.ceil(others - BUSY_CORE + 1e-9)
    return max(1, cores - taken)


class BatchThreadTuner:
    """Follows the machine's load; says when the worker should restart with new threads."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._wanted: deque[int] = deque(maxlen=SUSTAINED)
        self._last: CpuTimes | None = None

    def observe(self, now: CpuTimes | None) -> int | None:
        """Record one sample; the sustained target, once there are enough samples."""
        if now is None:
            return None
        before, self._last = self._last, now
        if before is None or now.process < before.process:  # a new worker: start over
            self._wanted.clear()
            return None
        self._wanted.append(batch_threads_for(others_cores(before, now, self.cores), self.cores))
        if len(self._wanted) == SUSTAINED and len(set(self._wanted)) == 1:
            return self._wanted[-1]
        return None

    def forget(self) -> None:
        """Start over (after a restart: the old samples describe another worker)."""
        self._wanted.clear()
        self._last = None
