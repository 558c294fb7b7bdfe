"""The CPU check that turns a SIGILL into a sentence."""

from __future__ import annotations

import pytest

from chatgate.engine.cpu import X86_BASELINE, cpu_flags, missing_features

EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx f16c fma avx2 bmi2 avx512f\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse2 sse4_2 avx\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n"


@pytest.mark.parametrize(
    ("machine", "cpuinfo", "missing"),
    [
        ("x86_64", EPYC, []),
        ("x86_64", OLD_XEON, ["avx2", "fma", "f16c", "bmi2"]),
        ("AMD64", OLD_XEON, ["avx2", "fma", "f16c", "bmi2"]),
        ("x86_64", "", []),  # nothing to read: the library is left to try
        ("aarch64", ARM, []),  # the arm wheel's baseline is plain armv8-a
    ],
    ids=["avx512-host", "avx-only", "windows-name", "unknown", "arm"],
)
def test_missing_features(machine: str, cpuinfo: str, missing: list[str]) -> None:
    assert missing_features(machine, cpuinfo) == missing


def test_flags_are_read_from_the_first_cpu() -> None:
    assert cpu_flags(EPYC) >= set(X86_BASELINE)
    assert cpu_flags(ARM) == {"fp", "asimd", "evtstrm"}


def test_this_machine_can_run_the_engine() -> None:
    # CI and every developer machine must be able to run the portable build.
    assert missing_features() == []
