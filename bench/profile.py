"""Where chatgate spends its time under load: py-spy, summarised by our own frames."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import Target, wrk


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_under_load(
    pid: int, target: Target, connections: int, seconds: float
) -> dict[str, Any]:
    """Sample *pid* while wrk loads it; the busiest frames, inclusive, in percent."""
    binary = _py_spy()
    if binary is None:
        return {"skipped": "py-spy is not installed"}
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "profile.txt"
        spy = subprocess.Popen(
            [
                binary,
                "record",
                "-p",
                str(pid),
                "-o",
                str(raw),
                "-f",
                "raw",
                "-d",
                str(int(seconds) + 1),
                "-r",
                "250",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        wrk(target, connections, seconds)
        spy.wait(timeout=60)
        if not raw.exists():
            return {"skipped": "py-spy could not sample (ptrace not permitted?)"}
        return summarise(raw.read_text())


def summarise(text: str, top: int = 14) -> dict[str, Any]:
    """Inclusive share of samples per function, for frames of the event-loop thread."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not any("Runner.run" in f for f in frames):
            continue  # other threads (the engine, idle helpers)
        n = int(count)
        total += n
        seen: set[str] = set()
        for frame in frames:
            name, _, where = frame.partition(" (")
            module = where.split(":")[0].rsplit("/", 2)
            key = f"{name} [{'/'.join(module[-2:])}]"
            if key not in seen:
                inclusive[key] += n
                seen.add(key)
    rows = [
        (k, round(100 * v / total, 1))
        for k, v in inclusive.most_common(60)
        if "runners.py" not in k
        and "server.py" not in k
        and "cli.py" not in k
        and "main.py" not in k
        and "_compat.py" not in k
        and "<module>" not in k
    ]
    return {"samples": total, "top": rows[:top]}
