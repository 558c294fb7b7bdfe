"""What a person does with a provider connection besides chatting (list its models,
check its status), and the ``/v1`` that a base URL pasted without a version lacks: a
404 there is asked again once at ``base_url + /v1``, and when the server answers, the
connection uses that URL from then on, with a warning that names the fix."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chatgate.adapters.registry import make_adapter
from chatgate.adapters.wire import WireAdapter
from chatgate.config import Connection
from chatgate.errors import ChatgateError, NotFoundError
from chatgate.exchange.transport import Transport
from chatgate.secrets import LiveSecrets, SecretResolver
from chatgate.sources import Source
from chatgate.urls import mask_userinfo, with_v1

log = logging.getLogger("chatgate.connections")

MODELS_TTL = 60.0  # seconds an upstream model list is trusted
STATUS_TIMEOUT = 15.0
T = TypeVar("T")


class ConnectionOperations:
    """Mixed into `chatgate.backends.remote.RemoteBackend`: the operations on the
    connection itself."""

    connection: Connection
    source: Source
    transport: Transport
    resolver: SecretResolver
    placeholder: str
    adapter: WireAdapter
    secrets: LiveSecrets
    _models: list[str]
    _models_at: float

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The upstream list (cached for a minute) merged with the manual ids."""
        note = None
        fetched: list[str] = []
        if self.source.models == "list":
            if refresh or time.monotonic() - self._models_at > MODELS_TTL:
                # A failure is remembered for the TTL too, so a dead upstream does not
                # stall every /v1/models call with a fresh probe.
                self._models_at = time.monotonic()
                self._models, note = await self._fetch_models()
            fetched = self._models
        return {
            "connection": self.connection.name,
            "models": merge(self.connection.models, self.source.fixed_models, fetched),
            "upstream": fetched,
            "manual": list(self.connection.models),
            "note": note,
        }

    async def _fetch_models(self) -> tuple[list[str], str | None]:
        name, secrets = self.connection.name, self.secrets
        try:
            data = await self.transport.send_json(
                self.adapter.models_request(), name, STATUS_TIMEOUT, secrets
            )
            return self.adapter.parse_models(data), None
        except NotFoundError:
            retry = with_v1(self.adapter.base_url) if self.connection.base_url else None
            if retry is None:
                raise
            data = await self.transport.send_json(
                self.adapter.models_request(retry), name, STATUS_TIMEOUT, secrets
            )
            note = self._moved_to(self._adapter_at(retry), "/models")
            return self.adapter.parse_models(data), note

    async def check_status(self) -> dict[str, Any]:
        """A free probe (the models call); with ``bypass_status_check`` a failure warns."""
        out: dict[str, Any] = {"connection": self.connection.name, "source": self.source.id}
        if self.source.status == "none":
            return {
                **out,
                "status": "unchecked",
                "message": f"{self.source.display_name} has no free status call; "
                "send a test message to check the key (it is billed)",
            }
        started = time.perf_counter()
        try:
            report = await self.list_models(refresh=True)
        except ChatgateError as exc:
            failed = {"error": exc.message, "http_status": exc.status}
            if self.connection.bypass_status_check:
                return {**out, "status": "bypassed", "warning": exc.message, **failed}
            return {**out, "status": "error", **failed}
        return {
            **out,
            "status": "ok",
            "models": len(report["upstream"]),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "note": report["note"],
        }

    async def _at_v1(self, exc: NotFoundError, send: Callable[[WireAdapter], Awaitable[T]]) -> T:
        """*send* again at ``base_url + /v1`` after a 404 at a configured base URL without
        a version, as the models probe does: if the server answers there, the adapter is
        rebuilt for that URL and a warning names the fix; a second 404 says so."""
        retry = with_v1(self.adapter.base_url) if self.connection.base_url else None
        if retry is None:
            raise exc
        moved = self._adapter_at(retry)
        try:
            answer = await send(moved)
        except NotFoundError:
            raise type(exc)(
                f"{exc.message} (base_url {mask_userinfo(self.adapter.base_url)!r} has no "
                f"version path and {mask_userinfo(retry)!r} answered 404 too: check "
                "base_url; OpenAI-compatible servers usually serve under /v1, so try "
                "adding /v1 or the server's own API path)",
                param=exc.param,
                code=exc.code,
            ) from None
        except ChatgateError:
            self._moved_to(moved, "/chat/completions")  # it is there: this is another error
            raise
        self._moved_to(moved, "/chat/completions")
        return answer

    def _adapter_at(self, base_url: str) -> WireAdapter:
        """A new adapter for this connection at *base_url*."""
        moved = self.connection.model_copy(update={"base_url": base_url})
        return make_adapter(moved, self.source, self.resolver.credentials(moved), self.placeholder)

    def _moved_to(self, adapter: WireAdapter, endpoint: str) -> str:
        """Use *adapter* from now on (rebuilt whole, not patched); the warning."""
        note = (
            f"connection '{self.connection.name}': {self.adapter.base_url}{endpoint} answered "
            f"404 but {adapter.base_url}{endpoint} works; using base_url = "
            f'"{adapter.base_url}" (put it in the config)'
        )
        if adapter.base_url != self.adapter.base_url:
            log.warning("%s", mask_userinfo(note))
            self.adapter = adapter
        return note


def merge(*lists: Any) -> list[str]:
    """The items of *lists*, in order, each once."""
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)
