"""The store's connections, served live: what the admin API changes, the gateway's
routes follow at once.

The store is synchronous (`chatgate.store.Store`); every call here goes through one
worker thread of its own, so the event loop never waits on the database, and calls
are made one at a time, in order. After each change the connection is read back from
the store and handed to the gateway whole (`Gateway.put_connection`), with its active
key and its other labelled keys in plaintext (they live in the backends, as config
keys do, and redaction knows them from there and from the configured secrets).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from chatgate.gateway import Gateway
from chatgate.limits import seed_from
from chatgate.store import KeyUnreadable, Store, StoreError
from chatgate.usage_log import UsageLog

T = TypeVar("T")
log = logging.getLogger("chatgate.server")


class ManagedConnections:
    """The store, its usage log, and the store's connections in the gateway."""

    def __init__(self, gateway: Gateway, store: Store) -> None:
        self.gateway = gateway
        self.store = store
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chatgate-store")
        self.usage = UsageLog(store.record_usage, secrets=gateway.resolver.secrets)
        gateway.observers.append(self.usage)
        seed_from(gateway.observers, self.spent)  # budgets survive a restart (docs/keys.md)

    @classmethod
    def open(cls, gateway: Gateway) -> ManagedConnections:
        """The store the settings name, opened (and migrated), with the usage log on."""
        settings = gateway.settings
        store = Store(settings.store_url, reserved_names=gateway.configured)
        return cls(gateway, store)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))

    async def load(self) -> None:
        """Serve every connection the store holds (at start-up)."""
        for stored in await self.call(self.store.list_connections):
            try:
                await self.refresh(stored.name)
            except StoreError as exc:
                log.error("store connection '%s' not served: %s", stored.name, exc.message)

    async def refresh(self, name: str) -> None:
        """Serve the store's connection *name* as it is now."""
        conn, keys, problem = await self.call(self._read, name)
        self.gateway.put_connection(conn, keys=keys, unavailable=problem)

    def _read(self, name: str) -> tuple[Any, dict[str, str], str | None]:
        """The connection with its active key, its readable labelled keys, and why it
        cannot serve (its active key is unreadable), on the store's thread."""
        store = self.store
        conn = store.gateway_connection(name)
        keys: dict[str, str] = {}
        active: str | None = None
        problem: str | None = None
        for info in store.list_keys(name):
            if not info.readable:
                if info.active:
                    problem = info.problem or "its key cannot be decrypted; enter it again"
                continue
            try:
                secret = store.secret(name, info.label)
            except KeyUnreadable as exc:
                problem = exc.message if info.active else problem
                continue
            keys[info.label] = secret
            if info.active:
                active = secret
        return conn.model_copy(update={"api_key": active}), keys, problem

    async def spent(self, caller: str, since: datetime, until: datetime) -> int:
        """The tokens the usage log holds of *caller* in [since, until), read on the
        store's thread."""
        return await self.call(self.store.spent, caller, since, until)

    def forget(self, name: str) -> None:
        """Stop serving the store's connection *name*."""
        if name in self.gateway.backends:
            self.gateway.drop_connection(name)

    def close(self) -> None:
        """Write the queued usage rows, then close the store."""
        seed_from(self.gateway.observers, None)
        self.usage.close()
        if self.usage in self.gateway.observers:
            self.gateway.observers.remove(self.usage)
        self._thread.shutdown(wait=True)
        self.store.close()
