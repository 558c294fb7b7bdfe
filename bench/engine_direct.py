"""An engine library called directly, in its own process: the peers of chatgate's engine.

Run by ``bench/engine.py`` as ``PYTHON bench/engine_direct.py LIBRARY SPEC`` with the
Python of whichever virtualenv holds LIBRARY, so it imports nothing from chatgate or
the rest of bench. SPEC is a JSON object: the model path, the messages, max_tokens,
the rounds of one-stream requests, and (xllamacpp) the context and parallel slots.

It loads the model, answers one warm-up request, prints a JSON line describing itself
(``{"ready": true, ...}``), then measures once for every line it reads on stdin (the
bench starts the CPU burner between two such lines) and prints each result as a JSON
line. It exits when stdin closes.

- ``xllamacpp``: ``Server(params).handle_chat_completions(body, callback)`` in this
  process, no HTTP: the body is the one chatgate's clients send (streamed, usage on),
  and 4 streams run at once from 4 threads into the server's 4 slots.
- ``llama_cpp_python``: ``Llama.create_chat_completion`` (one model, one sequence, so
  the 4 streams queue).
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Once = Callable[[], tuple[int, float]]
STREAMS = 4


def _xllamacpp(spec: dict[str, Any]) -> tuple[Once, bool, dict[str, Any]]:
    xllamacpp = importlib.import_module("xllamacpp")
    params = xllamacpp.CommonParams()
    params.model.path = spec["model"]
    params.n_ctx = spec["n_ctx"]
    params.n_parallel = spec["n_parallel"]
    server = xllamacpp.Server(params)  # resolves the default thread counts
    body = {
        "messages": spec["messages"],
        "max_tokens": spec["max_tokens"],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def once() -> tuple[int, float]:
        tokens = [0]

        def chunk(data: Any) -> bool:
            usage = data.get("usage") if isinstance(data, dict) else None
            if usage:
                tokens[0] = int(usage["completion_tokens"])
            return False  # keep going

        started = time.perf_counter()
        server.handle_chat_completions(body, chunk)
        return tokens[0], time.perf_counter() - started

    about = {
        "version": getattr(xllamacpp, "__version__", "-"),
        "n_ctx": params.n_ctx,
        "n_parallel": params.n_parallel,
        "threads": params.cpuparams.n_threads,
        "threads_batch": params.cpuparams_batch.n_threads,
        "system_info": str(xllamacpp.get_system_info()).strip(),
    }
    return once, True, about


def _llama_cpp_python(spec: dict[str, Any]) -> tuple[Once, bool, dict[str, Any]]:
    llama_cpp = importlib.import_module("llama_cpp")
    llm = llama_cpp.Llama(spec["model"], n_ctx=spec["n_ctx"], verbose=False)

    def once() -> tuple[int, float]:
        started = time.perf_counter()
        out = llm.create_chat_completion(
            spec["messages"], max_tokens=spec["max_tokens"], temperature=0
        )
        return int(out["usage"]["completion_tokens"]), time.perf_counter() - started

    info = llama_cpp.llama_print_system_info()
    about = {
        "version": llama_cpp.__version__,
        "n_ctx": spec["n_ctx"],
        "n_parallel": 1,
        "threads": llm.n_threads,
        "threads_batch": llm.n_threads_batch,
        "system_info": (info.decode() if isinstance(info, bytes) else str(info)).strip(),
    }
    return once, False, about


def measure(once: Once, concurrent: bool, rounds: int, streams: int = STREAMS) -> dict[str, Any]:
    """Best and median of *rounds* single streams; then *streams* at once (or queued)."""
    single = []
    for _ in range(rounds):
        tokens, seconds = once()
        single.append(tokens / seconds)
    started = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(streams) as pool:
            done = list(pool.map(lambda _: once(), range(streams)))
    else:
        done = [once() for _ in range(streams)]
    wall = time.perf_counter() - started
    return {
        "tokens_per_s_1": max(single),
        "tokens_per_s_1_median": statistics.median(single),
        "tokens_per_s_4": sum(t for t, _ in done) / wall,
        "tokens": done[0][0],
    }


def main(argv: list[str]) -> int:
    """Load, warm up, report; then one measurement per line on stdin."""
    library, spec = argv[1], json.loads(argv[2])
    load = {"xllamacpp": _xllamacpp, "llama_cpp_python": _llama_cpp_python}[library]
    started = time.perf_counter()
    once, concurrent, about = load(spec)
    once()  # warm-up: caches, first allocations
    if concurrent:  # and every slot's prompt cache, so no measurement pays for a cold one
        with ThreadPoolExecutor(STREAMS) as pool:
            list(pool.map(lambda _: once(), range(STREAMS)))
    about["load_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps({"ready": True, **about}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(measure(once, concurrent, spec["rounds"])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
