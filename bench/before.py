"""The same gateway at another commit, measured in the same run: before and after a
change, side by side, under the same machine noise.

``BENCH_BEFORE=<git rev> make bench`` exports that commit's ``src/`` to a temporary
folder and serves it with this interpreter (its ``PYTHONPATH`` ahead of the installed
package), with the bench connections of `bench.peers.start_chatgate`. Its added latency
and its throughput at 64 connections are taken the way chatgate's are, taking turns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.load import Target, sequential, wrk
from bench.peers import ROOT, Process, chatgate_target, free_port, start_chatgate


def export(rev: str) -> tuple[Path, str]:
    """*rev*'s ``src/`` in a temporary folder, and the commit it names."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    where = Path(tempfile.mkdtemp(prefix=f"bench-before-{commit}-"))
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where / "src", commit


def start(mock_url: str, rev: str) -> tuple[Process, Target]:
    """chatgate at *rev*, serving the bench connections, and how to reach it."""
    src, commit = export(rev)
    port = free_port()
    name = f"chatgate@{commit}"
    process = start_chatgate(
        mock_url,
        port,
        command=[sys.executable, "-m", "chatgate"],
        env={**os.environ, "PYTHONPATH": str(src)},
        name=name,
    )
    return process, replace(chatgate_target(port), name=name)


# Turns of each: the range of four shows this noisy machine's run-to-run spread, which
# two did not (a c64 range of 2652–3106 beside 3261–3326 one run, overlapping the next).
TURNS = 4


def measure(
    direct: Target, now: Target, before: Target, rounds: int, seconds: float
) -> dict[str, Any]:
    """Added latency (p50, p99) and c64 throughput of *now* and *before*, in turns."""
    out: dict[str, Any] = {}
    for _ in range(TURNS):  # turns each, so a drift in the machine hits both
        for target in (now, before):
            pair = sequential([direct, target], rounds)
            row = out.setdefault(target.name, {"p50_ms": [], "p99_ms": [], "c64_rps": []})
            for q in ("p50_ms", "p99_ms"):
                row[q].append(pair[target.name][q] - pair["direct"][q])
            row["c64_rps"].append(wrk(target, 64, seconds)["rps"])
    return out
