"""The layers stay layers: pure adapters import nothing that does I/O, the exchange
imports no adapter, and no door reaches past the gateway into a backend."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "chatgate"

# package → modules it must never import (prefixes)
RULES = {
    "adapters": (
        "chatgate.exchange",
        "chatgate.backends",
        "chatgate.server",
        "chatgate.gateway",
        "chatgate.engine",
        "chatgate.secrets",
    ),
    "exchange": (
        "chatgate.adapters",
        "chatgate.backends",
        "chatgate.server",
        "chatgate.gateway",
        "chatgate.config",
    ),
    "server/doors": ("chatgate.backends", "chatgate.adapters", "chatgate.exchange"),
}


def imports(path: Path) -> set[str]:
    """Every module *path* imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", list(RULES))
def test_layer(package: str) -> None:
    files = sorted((SRC / package).glob("*.py"))
    assert files
    broken = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in imports(path)
        if name.startswith(RULES[package])
    }
    assert not broken, sorted(broken)


def test_adapters_do_no_io_of_their_own() -> None:
    # A file read, a socket or a thread in a protocol adapter is I/O outside the exchange.
    banned = {"socket", "threading", "pathlib", "httpx", "pyreqwest", "urllib.request"}
    for path in sorted((SRC / "adapters").glob("*.py")):
        assert not imports(path) & banned, path.name
        assert "open(" not in path.read_text(), path.name
