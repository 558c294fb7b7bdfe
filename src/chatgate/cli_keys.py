"""The ``keys`` command: gateway keys in a terminal, on the store itself (the same
``store_url`` the server uses), so it works with the server running or not. A running
server sees a change within a second (docs/keys.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chatgate.config import Settings
from chatgate.server.admin_keys import parse_expiry, shown
from chatgate.store import Store


def add_parser(commands: Any) -> None:
    """Add ``keys create|list|revoke`` to the command line's subcommands."""
    keys = commands.add_parser("keys", help="create, list and revoke gateway keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key and print it (shown only once)")
    create.add_argument("--label", required=True, help="the key's name (unique)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: no limit)")
    create.add_argument("--budget", type=int, help="tokens per calendar month, UTC")
    create.add_argument("--models", help="allowed model ids, comma-separated (default: all)")
    create.add_argument("--connections", help="allowed connections, comma-separated")
    create.add_argument("--expires", help="expiry time, ISO 8601 (UTC unless it says)")
    create.add_argument("--admin", action="store_true", help="may use the admin API")
    listing = actions.add_parser("list", help="every key, masked")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="revoke a key (refused from then on)")
    revoke.add_argument("label")
    for parser in (keys, create, listing, revoke):
        parser.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``keys`` action against the store *settings* name."""
    names = [c.name for c in settings.connections]
    with Store(settings.store_url, reserved_names=names) as store:
        if args.action == "create":
            key, secret = store.create_gateway_key(
                label=args.label,
                role="admin" if args.admin else "client",
                connections=_names(args.connections),
                models=_names(args.models),
                rpm=args.rpm,
                tpm=args.tpm,
                budget_tokens=args.budget,
                expires_at=parse_expiry(args.expires),
            )
            print(secret)  # stdout carries the key alone, for scripts
            print(
                f"chatgate: made the {key.role} key '{key.label}' ({key.masked}); it is "
                "not shown again",
                file=sys.stderr,
            )
            return 0
        if args.action == "revoke":
            key = store.revoke_gateway_key(args.label)
            print(f"revoked '{key.label}' ({key.masked}) at {key.revoked_at}")
            return 0
        rows = [shown(k) for k in store.list_gateway_keys()]
    if args.json:
        for row in rows:
            row.pop("usage")
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        limits = " ".join(
            f"{name}={row[name]}" for name in ("rpm", "tpm", "budget_tokens") if row[name]
        )
        models = ",".join(row["models"]) or "*"
        print(
            f"{row['label']:<20} {row['role']:<6} {row['masked']:<14} {state:<7} "
            f"models={models} {limits}".rstrip()
        )
    return 0
