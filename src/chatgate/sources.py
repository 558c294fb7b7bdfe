"""The catalogue of sources, as data: one row per kind of backend.

A connection names a source; the row says which code speaks to it and what it can do.
More rows arrive with the provider adapters (see ``docs/connections.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Source:
    """What chatgate knows about one kind of backend."""

    id: str
    display_name: str
    kind: Literal["chat", "text", "embedded"]
    adapter: str
    default_base_url: str | None = None
    auth: Literal["bearer", "x-api-key", "none"] = "bearer"
    models: Literal["list", "fixed", "manual"] = "list"


SOURCES: dict[str, Source] = {
    source.id: source
    for source in (
        Source(
            id="local",
            display_name="Embedded model (llama.cpp in process)",
            kind="embedded",
            adapter="local",
            auth="none",
            models="fixed",
        ),
    )
}


def get_source(source_id: str) -> Source | None:
    """The catalogue row for *source_id*, if there is one."""
    return SOURCES.get(source_id)
