"""Bounds on the work one request can make, enforced before any backend sees it."""

from __future__ import annotations

import pytest

from chatgate import Gateway
from chatgate.config import Connection, Settings
from chatgate.errors import InvalidRequestError


def gateway(max_messages: int) -> Gateway:
    remote = Connection(name="remote", source="custom", base_url="http://127.0.0.1:9/v1")
    return Gateway(Settings(connections=[remote], embedded=False, max_messages=max_messages))


@pytest.mark.parametrize(("count", "limit", "refused"), [(5, 5, False), (6, 5, True)])
def test_max_messages(count: int, limit: int, refused: bool) -> None:
    messages = [{"role": "user", "content": str(i)} for i in range(count)]
    gw = gateway(limit)
    if not refused:
        assert len(gw.prepare(model="remote/m", messages=messages).request.messages) == count
        return
    with pytest.raises(InvalidRequestError) as caught:
        gw.prepare(model="remote/m", messages=messages)
    assert caught.value.param == "messages"
    assert caught.value.code == "too_many_messages"
    assert "max_messages" in caught.value.message


def test_default_limit_is_five_thousand() -> None:
    assert Settings().max_messages == 5000
