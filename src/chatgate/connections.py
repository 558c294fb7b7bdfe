"""How a connection is shown to a person: its settings, never its secrets."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chatgate.errors import mask_secret
from chatgate.sources import get_source
from chatgate.urls import mask_userinfo

if TYPE_CHECKING:
    from chatgate.backends.base import Backend


def describe_connection(backend: Backend) -> dict[str, Any]:
    """A connection's configuration for ``GET /api/connections``; every secret masked."""
    conn = backend.connection
    source = get_source(conn.source)
    key = conn.key(os.environ)
    adapter = getattr(backend, "adapter", None)
    base_url = getattr(adapter, "base_url", None)
    return {
        "name": conn.name,
        "source": conn.source,
        "source_name": source.display_name if source else conn.source,
        "base_url": mask_userinfo(base_url) if isinstance(base_url, str) else None,
        "api_key": mask_secret(key) if key else None,
        "api_key_env": conn.api_key_env,
        "proxy_password": mask_secret(conn.proxy_password) if conn.proxy_password else None,
        "header_names": sorted(conn.headers),
        "extra_body": sorted(conn.extra_body),
        "exclude_params": list(conn.exclude_params),
        "models": backend.models(),
        "bypass_status_check": conn.bypass_status_check,
        "post_processing": conn.post_processing or (source.post_processing if source else None),
        "post_processing_forced": bool(source and source.post_processing_forced),
        "drop_params": conn.drop_params,
    }
