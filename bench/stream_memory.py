"""What one open stream costs an HTTP client alone, in RSS: the upstream half of what
chatgate holds per stream.

    python -m bench.stream_memory [--streams 1000] [CLIENT ...]   # pyreqwest, aiohttp

Each client, in a fresh process of its own, opens *streams* streaming requests to
`bench.streams`' mock (one chunk a second), reads each one's first chunk, waits three
seconds with all of them open, and reports the growth of its RSS over the streams.
pyreqwest is configured as chatgate's transport configures it for streams (no
read-ahead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bench.load import tree_memory_mb
from bench.peers import free_port
from bench.streams import Mock, raise_fd_limit

CLIENTS = ("pyreqwest", "aiohttp")
BODY = b'{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"Hi"}]}'


async def _pyreqwest(url: str) -> Callable[[list[int]], Coroutine[Any, Any, None]]:
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().build()

    async def one(ready: list[int]) -> None:
        builder = client.post(url).body_bytes(BODY).header("content-type", "application/json")
        async with builder.streamed_read_buffer_limit(0).build_streamed() as response:
            await response.body_reader.read_chunk()
            ready.append(1)
            while await response.body_reader.read_chunk() is not None:
                pass

    return one


async def _aiohttp(url: str) -> Callable[[list[int]], Coroutine[Any, Any, None]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one(ready: list[int]) -> None:
        headers = {"content-type": "application/json"}
        async with session.post(url, data=BODY, headers=headers) as response:
            await response.content.readany()
            ready.append(1)
            async for _ in response.content.iter_any():
                pass

    return one


async def _hold(client: str, url: str, streams: int, settle: float) -> dict[str, Any]:
    one = await (_pyreqwest if client == "pyreqwest" else _aiohttp)(url)
    ready: list[int] = []
    before = tree_memory_mb(os.getpid())[0]
    tasks = [asyncio.create_task(one(ready)) for _ in range(streams)]
    for _ in range(600):
        if len(ready) >= streams or any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.1)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    if len(ready) < streams:
        first = failed[0].exception() if failed else "timed out"
        raise RuntimeError(f"{client}: {len(ready)} of {streams} streams opened ({first})")
    await asyncio.sleep(settle)
    after = tree_memory_mb(os.getpid())[0]
    return {
        "client": client,
        "streams": streams,
        "rss_before_mb": round(before, 1),
        "rss_open_mb": round(after, 1),
        "kb_per_stream": round((after - before) * 1024 / streams, 1),
    }


def child(client: str, url: str, streams: int, settle: float = 3.0) -> None:
    """Hold the streams with *client* in this process and print its figures (JSON)."""
    import uvloop

    raise_fd_limit(streams + 100)
    # Not `uvloop.run`: closing its loop cancels every stream still open and waits for
    # them, and cancelling some 4,000 pyreqwest streams at once did not always finish.
    loop = uvloop.new_event_loop()
    try:
        print(json.dumps(loop.run_until_complete(_hold(client, url, streams, settle))))
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # the streams are still open: no orderly close to wait for


def measure(clients: list[str], streams: int, settle: float = 3.0) -> list[dict[str, Any]]:
    """Each client's figures, one fresh process each, against one mock; RSS is read
    *settle* seconds after the last stream opened."""
    raise_fd_limit(2 * streams + 100)
    mock = Mock(free_port(), 600, 1.0)
    try:
        url = f"{mock.url}/v1/chat/completions"
        out = []
        for client in clients:
            argv = [sys.executable, "-m", "bench.stream_memory", "child", client, url]
            argv += [str(streams), str(settle)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{client}: {done.stderr.strip()[-500:]}")
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
        return out
    finally:
        mock.stop()


def main(argv: list[str] | None = None) -> None:
    """Print each client's RSS per open stream."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream_memory")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("clients", nargs="*", help=f"any of {', '.join(CLIENTS)} (all)")
    args = parser.parse_args(argv)
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    for row in measure(args.clients or list(CLIENTS), args.streams):
        print(
            f"{row['client']}: {row['streams']} streams, RSS {row['rss_before_mb']} → "
            f"{row['rss_open_mb']} MB, {row['kb_per_stream']} KB a stream"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
