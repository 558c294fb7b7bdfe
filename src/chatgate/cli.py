"""The command line: ``chatgate serve | chat | models | connections | preview | keys``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatgate.cli_keys import add_parser as add_keys_parser
from chatgate.config import Settings, load_settings
from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway


def _progress(line: str) -> None:
    print(f"chatgate: {line}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgate", description="One front door for every chat model."
    )
    parser.add_argument("--config", help="TOML config file (default: $CHATGATE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8787)")
    serve.add_argument(
        "--workers", type=int, help="server processes on the port (remote connections only)"
    )
    serve.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    chat = commands.add_parser("chat", help="send one prompt and print the answer")
    chat.add_argument("prompt")
    chat.add_argument("-m", "--model", help="connection/model (default: the configured one)")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--no-stream", action="store_true", help="print the answer when done")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    models = commands.add_parser("models", help="list the model ids clients can use")
    models.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    conns = commands.add_parser("connections", help="inspect and check connections")
    conns.add_argument("action", choices=["list", "status", "models", "test"])
    conns.add_argument("name", nargs="?", help="the connection (all, for list and status)")
    conns.add_argument("-m", "--model", help="model for `test` (default: the first known)")
    conns.add_argument("--json", action="store_true", help="print the raw JSON answer")
    conns.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    preview = commands.add_parser(
        "preview", help="show the upstream request a chat request would produce (sends nothing)"
    )
    preview.add_argument(
        "request",
        nargs="?",
        default="-",
        help="a JSON chat request: a file, or - for standard input",
    )
    preview.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    add_keys_parser(commands)  # chatgate keys create|list|revoke (docs/keys.md)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "sub_config", None) or args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API until interrupted."""
    from chatgate.server.app import create_app
    from chatgate.server.auth import check_bind
    from chatgate.server.serving import run

    settings = _settings(args)
    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    check_bind(settings.server.host, settings.server.resolved_keys(os.environ))
    workers = args.workers or settings.server.workers

    def build() -> object:
        gateway = Gateway(settings)
        asyncio.run(gateway.start(_progress))
        app = create_app(gateway)
        # Everything alive now lives as long as the server: keep it out of the collector's
        # scans, and collect young objects less often (fewer pauses on the request path).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        return app

    where = f"http://{settings.server.host}:{settings.server.port}"
    if workers > 1:  # each worker builds its own gateway after the fork (server/workers.py)
        from chatgate.server.workers import serve_workers

        _progress(f"serving on {where} with {workers} workers")
        return serve_workers(settings, workers, build)
    app = build()
    _progress(f"serving on {where}")
    run(app, settings.server)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Send one prompt through the gateway, in process."""
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    fields: dict[str, Any] = {"messages": messages}
    for name in ("model", "max_tokens", "temperature", "seed"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    with Gateway(_settings(args)) as gateway:
        gateway.prepare(**fields)  # a wrong model or parameter fails before the model loads
        gateway.start_sync(_progress)
        if args.no_stream:
            print(gateway.chat_sync(**fields).text)
            return 0
        for chunk in gateway.stream_sync(**fields):
            for choice in chunk.choices:
                if choice.delta.content:
                    print(choice.delta.content, end="", flush=True)
        print()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print every model id, one per line."""
    with Gateway(_settings(args)) as gateway:
        for model in gateway.models():
            print(model.id)
    return 0


def cmd_connections(args: argparse.Namespace) -> int:
    """``chatgate connections list|status|models|test [NAME]``."""
    from chatgate.cli_connections import run_connections

    return asyncio.run(run_connections(Gateway(_settings(args)), args))


def cmd_preview(args: argparse.Namespace) -> int:
    """Print the upstream request for a chat request read from a file or stdin."""
    from chatgate.cli_connections import run_preview

    raw = sys.stdin.read() if args.request == "-" else Path(args.request).read_text()
    return asyncio.run(run_preview(Gateway(_settings(args)), raw))


def cmd_keys(args: argparse.Namespace) -> int:
    """``chatgate keys create|list|revoke``, on the store itself."""
    from chatgate.cli_keys import run_keys

    return run_keys(_settings(args), args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors are one readable line and a non-zero exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    handlers = {
        "serve": cmd_serve,
        "chat": cmd_chat,
        "models": cmd_models,
        "connections": cmd_connections,
        "preview": cmd_preview,
        "keys": cmd_keys,
    }
    try:
        return handlers[args.command](args)
    except ChatgateError as exc:
        print(f"chatgate: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
