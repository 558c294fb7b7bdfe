"""The one home of the llama-cpp-python build: the Makefile's target, which bench uses
too. What bench reports as the build must be what the Makefile builds, and portable."""

from __future__ import annotations

import re

from bench import engine

from tests.real.conftest import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()


def _make_variable(name: str) -> str:
    found = re.search(rf"^{name}\s*:=\s*(.+)$", MAKEFILE, re.MULTILINE)
    assert found, f"the Makefile sets no {name}"
    return found.group(1).strip()


def test_the_makefile_builds_what_bench_reports() -> None:
    assert _make_variable("LLAMACPP_VERSION") == engine.LLAMA_CPP_PYTHON_VERSION
    assert _make_variable("LLAMACPP_CMAKE_ARGS") == engine.LLAMA_CPP_PYTHON_BUILD["CMAKE_ARGS"]
    assert _make_variable("LLAMACPP_VENV") == engine.LLAMA_CPP_PYTHON_VENV.name
    cache = _make_variable("LLAMACPP_PIP_CACHE")
    assert engine.LLAMA_CPP_PYTHON_BUILD["PIP_CACHE_DIR"] == str(ROOT / cache)
    assert "CMAKE_BUILD_PARALLEL_LEVEL=2" in MAKEFILE


def test_the_build_is_portable() -> None:
    flags = _make_variable("LLAMACPP_CMAKE_ARGS")
    assert "-DGGML_NATIVE=OFF" in flags
    assert "native" not in flags.replace("-DGGML_NATIVE=OFF", "")
    assert re.search(r"^pytest:.*\$\(LLAMACPP_VENV\)/\.installed", MAKEFILE, re.MULTILINE)
