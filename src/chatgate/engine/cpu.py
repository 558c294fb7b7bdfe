"""What the engine's native code needs from the CPU, checked before it is loaded.

The engine is xllamacpp's prebuilt Linux wheel: llama.cpp compiled once for a fixed
x86-64 baseline (AVX, AVX2, FMA, F16C, BMI2; no AVX-512, no AMX), never for the build
host. On a CPU below that baseline the library would die of SIGILL at its first
matrix product; checking the flags first turns that into one clear sentence.
"""

from __future__ import annotations

import platform
from pathlib import Path

# The instruction sets the x86-64 wheel is compiled with (its get_system_info()).
X86_BASELINE = ("avx", "avx2", "fma", "f16c", "bmi2")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (empty where unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def missing_features(machine: str | None = None, cpuinfo: str | None = None) -> list[str]:
    """The baseline instruction sets this CPU lacks; empty when the engine can run."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return []  # the aarch64 wheel targets plain armv8-a, which every such CPU has
    flags = cpu_flags(cpuinfo)
    if not flags:
        return []  # no /proc/cpuinfo to read: let the library try
    return [name for name in X86_BASELINE if name not in flags]
