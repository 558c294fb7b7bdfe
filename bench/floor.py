"""The floor under a gateway on chatgate's stack: the least a proxy can do on it.

    python -m bench.floor --port N --routes '{"mock": "http://127.0.0.1:M/v1"}'

An ASGI app of a few lines on the same server (uvicorn with httptools and uvloop, as
``chatgate serve`` runs) and the same upstream client (pyreqwest): it reads the body,
parses it, picks the upstream by the model's ``connection/`` prefix and strips it,
sends the request, and answers with the upstream's answer parsed and encoded again
(a stream's bytes relayed as they come, unparsed). No keys, no validation, no
translation, no usage log, no error handling worth the name: it is not a gateway,
only a measure of what the server and the client cost by themselves, so that
``docs/performance.md`` can tell the stack's share of a goal from chatgate's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Any

import orjson

from bench.load import Target
from bench.peers import Process, chatgate_target, free_port

NAME = "minimal proxy"

JSON_HEAD = [(b"content-type", b"application/json")]
SSE_HEAD = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
UPSTREAM_HEADERS = {"content-type": "application/json"}


def make_app(routes: dict[str, str]) -> Any:
    """The proxy: *routes* maps a model's ``connection/`` prefix to a base URL."""
    from pyreqwest.client import ClientBuilder

    client: list[Any] = []  # built on the first request, inside the server's loop

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if client:
                await client[0].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if not client:
            client.append(ClientBuilder().build())
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        prefix, _, request["model"] = request["model"].partition("/")
        url = routes[prefix] + scope["path"].removeprefix("/v1")
        builder = client[0].post(url).headers(UPSTREAM_HEADERS).body_bytes(orjson.dumps(request))
        if not request.get("stream"):
            response = await builder.build().send()
            answer = orjson.dumps(orjson.loads(bytes(await response.bytes())))
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEAD})
            await send({"type": "http.response.body", "body": answer})
            return
        async with builder.streamed_read_buffer_limit(0).build_streamed() as response:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEAD})
            reader = response.body_reader
            while (chunk := await reader.read_chunk()) is not None:
                await send({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def target(port: int, name: str = NAME) -> Target:
    """The floor on *port*, asked for the bench connections' models, with no key."""
    return replace(chatgate_target(port), name=name, key=None)


def start(routes: dict[str, str], port: int) -> Process:
    """The floor proxy as a child process on *port*, ready to answer."""
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port)]
    argv += ["--routes", json.dumps(routes)]
    return Process(NAME, argv, dict(os.environ), target(port))


def routes_for(mock_url: str, **more: str) -> dict[str, str]:
    """The floor's routes to the nginx mock, named as chatgate's bench connections are."""
    return {"mock": f"{mock_url}/v1", "mockstream": f"{mock_url}/stream/v1", **more}


def main(argv: list[str] | None = None) -> None:
    """Serve the floor proxy until killed."""
    parser = argparse.ArgumentParser(prog="bench.floor")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--routes", required=True, help="JSON: connection name -> base URL")
    args = parser.parse_args(argv)
    import uvicorn

    from bench.streams import raise_fd_limit

    raise_fd_limit(65536)
    uvicorn.run(
        make_app(json.loads(args.routes)),
        host="127.0.0.1",
        port=args.port or free_port(),
        loop="uvloop",
        http="httptools",
        backlog=16384,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
