"""Connections added, replaced and dropped while the gateway runs: the routes change at
once and whole, and a request already planned finishes where it was planned."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import ConflictError, ModelNotFoundError, NotFoundError
from chatgate.gateway import Gateway
from chatgate.server.dispatch import live_secrets
from tests.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]


def _conn(fake: FakeOpenAI, name: str, **fields: object) -> Connection:
    return Connection.model_validate(
        {
            "name": name,
            "source": "custom",
            "base_url": fake.url + "/v1",
            "models": ["m", "slow-m"],
            **fields,
        }
    )


async def test_an_added_connection_serves_at_once_and_a_dropped_one_is_a_404(
    fake: FakeOpenAI,
) -> None:
    async with Gateway(Settings(embedded=False, connections=[_conn(fake, "file")])) as gateway:
        with pytest.raises(ModelNotFoundError):
            gateway.prepare(model="live/m", messages=HI)
        gateway.put_connection(_conn(fake, "live", deployments={"eu": fake.url + "/v1"}))
        answer = await gateway.chat(model="live/m", messages=HI, max_tokens=3)
        assert answer.model == "live/m"
        assert (await gateway.chat(model="live@eu/m", messages=HI, max_tokens=3)).choices
        assert [c.name for c in gateway.settings.connections] == ["file", "live"]
        gateway.drop_connection("live")
        for model in ("live/m", "live@eu/m"):
            with pytest.raises(ModelNotFoundError):
                gateway.prepare(model=model, messages=HI)
        with pytest.raises(NotFoundError):
            gateway.drop_connection("live")


async def test_a_request_in_flight_finishes_on_the_route_it_planned(fake: FakeOpenAI) -> None:
    async with Gateway(Settings(embedded=False)) as gateway:
        gateway.put_connection(_conn(fake, "live", headers={"x-version": "old"}))
        # The fake answers "slow-*" models after two seconds.
        plan = gateway.prepare(model="live/slow-m", messages=HI, max_tokens=3)
        running = asyncio.ensure_future(gateway.run(plan))
        await asyncio.sleep(0.2)
        gateway.put_connection(_conn(fake, "live", headers={"x-version": "new"}))
        await gateway.chat(model="live/m", messages=HI, max_tokens=3)
        assert (await running).model == "live/slow-m"
        versions = [r.headers.get("x-version") for r in fake.seen]
        assert versions == ["old", "new"]  # the slow one was sent first, on the old route


def test_the_config_files_connections_are_read_only(fake: FakeOpenAI) -> None:
    gateway = Gateway(Settings(embedded=False, connections=[_conn(fake, "file")]))
    with pytest.raises(ConflictError) as caught:
        gateway.put_connection(_conn(fake, "file"))
    assert caught.value.status == 409 and caught.value.param == "name"
    with pytest.raises(ConflictError):
        gateway.drop_connection("file")
    with pytest.raises(ConflictError):
        gateway.put_connection(Connection(name="mine", source="local"))


def test_a_new_connections_key_is_redacted_at_once(fake: FakeOpenAI) -> None:
    gateway = Gateway(Settings(embedded=False))
    assert "sk-live-key-000111222" not in live_secrets(gateway)
    gateway.put_connection(_conn(fake, "live", api_key="sk-live-key-000111222"))
    # Within the second the configured secrets are cached for: a change reads them again.
    assert "sk-live-key-000111222" in live_secrets(gateway)
