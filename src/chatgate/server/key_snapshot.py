"""The gateway keys of the store, held in memory for the edge (docs/keys.md).

The edge authenticates on the event loop, on every request: it must not wait on the
database. `KeySnapshot` is the key table as last read, swapped whole (one assignment,
so a request sees the old table or the new one); `KeyRefresher` reads it again on the
store's thread every `REFRESH_SECONDS`, and at once after this process changed it, so a
key revoked on another instance is refused here within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from chatgate.errors import AuthenticationError, ChatgateError
from chatgate.plan import Caller
from chatgate.server.managed import ManagedConnections
from chatgate.store.gateway_keys import GatewayKey, digest, prefix_of

log = logging.getLogger("chatgate.server")
# Half the promised second: a revocation is seen after at most one period plus a read.
REFRESH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Entry:
    """One key as the edge needs it: its hash, its caller, and whether it still holds."""

    digest: bytes
    caller: Caller
    expires_at: float | None  # seconds since the epoch
    revoked_at: datetime | None


class KeySnapshot:
    """The store's gateway keys by prefix id, as last read."""

    def __init__(self) -> None:
        self.pepper: bytes | None = None
        self.entries: dict[str, Entry] = {}
        self.loaded_at = 0.0  # time.monotonic() of the last good read

    @property
    def any(self) -> bool:
        """Whether the store holds any gateway key (revoked ones count: once keys exist,
        every request needs one)."""
        return bool(self.entries)

    def replace(self, pepper: bytes | None, keys: list[GatewayKey]) -> None:
        """Hold *keys* from now on."""
        entries = {}
        for key in keys:
            caller = Caller(
                key.label,
                admin=key.role == "admin",
                models=key.models,
                connections=key.connections,
                rpm=key.rpm,
                tpm=key.tpm,
                budget_tokens=key.budget_tokens,
            )
            expires = key.expires_at.timestamp() if key.expires_at is not None else None
            entries[key.prefix] = Entry(key.digest, caller, expires, key.revoked_at)
        self.pepper, self.entries = pepper, entries
        self.loaded_at = time.monotonic()

    def find(self, presented: str) -> Caller | None:
        """The caller of a stored key, None if *presented* is none of them; a 401 that
        says so for a revoked or expired one."""
        prefix = prefix_of(presented)
        entry = self.entries.get(prefix) if prefix is not None else None
        if entry is None or self.pepper is None:
            return None
        if not hmac.compare_digest(digest(self.pepper, presented), entry.digest):
            return None
        label = entry.caller.id
        if entry.revoked_at is not None:
            raise AuthenticationError(
                f"the gateway key '{label}' was revoked at {entry.revoked_at.isoformat()}",
                code="revoked_api_key",
            )
        if entry.expires_at is not None and entry.expires_at <= time.time():
            when = datetime.fromtimestamp(entry.expires_at, UTC).isoformat()
            raise AuthenticationError(
                f"the gateway key '{label}' expired at {when}", code="expired_api_key"
            )
        return entry.caller


class KeyRefresher:
    """Keeps a `KeySnapshot` in step with the store."""

    def __init__(self, managed: ManagedConnections, snapshot: KeySnapshot) -> None:
        self.managed = managed
        self.snapshot = snapshot
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def refresh(self) -> None:
        """Read the key table now (on the store's thread)."""
        store = self.managed.store
        keys = await self.managed.call(store.list_gateway_keys)
        pepper = await self.managed.call(lambda: store.pepper) if keys else None
        self.snapshot.replace(pepper, keys)

    async def start(self) -> None:
        """Read the table once (before the first request is served), then keep reading."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:  # the loop must outlive any failure of one read
                # The last table read stands: keys keep working while the store is away.
                if not self._failing:
                    why = exc.message if isinstance(exc, ChatgateError) else type(exc).__name__
                    log.warning("gateway keys not refreshed (the last read stands): %s", why)
                self._failing = True
            else:
                self._failing = False

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
