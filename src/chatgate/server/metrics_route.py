"""``GET /metrics``: the Prometheus text format, and the observers that feed it.

`route` is called once by `chatgate.server.app.create_app`: it installs the metrics
observer (unless ``[server] metrics = false``) and the trace observer (when traces are
asked for, `chatgate.tracing`) on the gateway, and answers the route. The route is
behind the gateway key like every route but ``/healthz``: a Prometheus job sends it
with ``authorization: {credentials: ...}`` (docs/metrics.md).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate import metrics, tracing
from chatgate.errors import NotFoundError
from chatgate.gateway import Gateway


def route(gateway: Gateway) -> Route:
    """The ``/metrics`` route for *gateway*, its observers installed."""
    server = gateway.settings.server
    watched = metrics.install(gateway) if server.metrics else None
    tracing.install(gateway, server.otel, os.environ)

    async def scrape(request: Request) -> Response:
        if watched is None:
            raise NotFoundError("metrics are off: [server] metrics = false")
        return Response(watched.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])
