"""The uvicorn configuration ``chatgate serve`` runs with, from ``[server]``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatgate.config_sections import ServerSettings
from chatgate.server.serving import uvicorn_config


async def _app(scope: object, receive: object, send: object) -> None:
    """Never called: the configuration is only built."""


@pytest.mark.parametrize(
    ("fields", "graceful", "concurrency"),
    [
        ({}, 30, 1025),
        ({"shutdown_timeout": 0, "max_connections": 10}, 0, 11),
        ({"shutdown_timeout": 120}, 120, 1025),
    ],
)
def test_the_shutdown_timeout_and_connection_cap_reach_uvicorn(
    fields: dict[str, int], graceful: int, concurrency: int
) -> None:
    config = uvicorn_config(_app, ServerSettings(**fields))  # type: ignore[arg-type]
    assert config.timeout_graceful_shutdown == graceful
    assert config.limit_concurrency == concurrency


@pytest.mark.parametrize("value", [-1, 1.5, 86401])
def test_a_shutdown_timeout_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="shutdown_timeout"):
        ServerSettings(shutdown_timeout=value)  # type: ignore[arg-type]
