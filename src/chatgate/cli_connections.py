"""The ``connections`` and ``preview`` commands: the connection operations in a terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.redaction import redact
from chatgate.server.dispatch import live_secrets
from chatgate.urls import mask_userinfo

STATUS_MARKS = {"ok": "ok", "bypassed": "warning", "unchecked": "unchecked", "error": "FAILED"}


def _show(gateway: Gateway, text: str) -> None:
    # URL passwords may sit in a note or a URL of any answer, and an upstream's words
    # (an error, a test's reply) may quote a key: both masked on the way out.
    print(mask_userinfo(redact(text, live_secrets(gateway))))


def _print_json(gateway: Gateway, value: Any) -> None:
    _show(gateway, json.dumps(value, indent=2, ensure_ascii=False))


async def run_connections(gateway: Gateway, args: argparse.Namespace) -> int:
    """Run one connection operation; the exit code is 1 when a check failed."""
    async with gateway:
        if args.action == "list":
            rows = gateway.connections()
            if args.json:
                _print_json(gateway, rows)
            for row in [] if args.json else rows:
                key = row["api_key"] or "no key"
                base = row["base_url"] or "-"
                _show(gateway, f"{row['name']:<16} {row['source']:<12} {base:<40} {key}")
            return 0
        names = [args.name] if args.name else list(gateway.backends)
        if args.action != "status" and not args.name:
            raise InvalidRequestError(f"`connections {args.action}` needs a connection name")
        failed = False
        for name in names:
            backend = gateway.backend(name)
            if args.action == "status":
                result = await backend.check_status()
                failed |= result["status"] == "error"
                line = (
                    result.get("error")
                    or result.get("warning")
                    or result.get("message")
                    or (
                        f"{result.get('models', 0)} models, {result.get('latency_ms', 0)} ms"
                        if "latency_ms" in result
                        else "ready"
                    )
                )
                text = f"{name}: {STATUS_MARKS.get(result['status'], result['status'])} - {line}"
            elif args.action == "models":
                result = await backend.list_models(refresh=True)
                text = "\n".join(result["models"])
                if result.get("note"):
                    text += f"\nnote: {result['note']}"
            else:
                result = await gateway.send_test(name, args.model)
                text = (
                    f"{name} ({result['model']}): {result['reply']!r} in "
                    f"{result['latency_ms']} ms\n{result['billing_note']}"
                )
            if args.json:
                _print_json(gateway, result)
            else:
                _show(gateway, text)
        return 1 if failed else 0


async def run_preview(gateway: Gateway, raw: str) -> int:
    """Print what would be sent upstream for the chat request *raw*."""
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request must be a JSON object")
    async with gateway:
        _print_json(gateway, await gateway.preview(body))
    return 0
