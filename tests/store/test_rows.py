"""A usage row checks itself where it is made, on the request path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chatgate.store import StoreInvalid, UsageRow
from tests.store.test_usage import row


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"time": datetime(2025, 1, 1)}, "time"),
        ({"time": "2025-01-01T00:00:00Z"}, "time"),
        ({"connection": ""}, "connection"),
        ({"model": None}, "model"),
        ({"door": 3}, "door"),
        ({"tokens_in": -1}, "tokens_in"),
        ({"tokens_out": 1.5}, "tokens_out"),
        ({"latency_ms": True}, "latency_ms"),
        ({"status": 1000}, "status"),
        ({"status": "200"}, "status"),
    ],
)
def test_a_bad_row_names_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(StoreInvalid) as caught:
        row(**changes)
    assert (caught.value.status, caught.value.field) == (400, field)


def test_a_good_row_keeps_its_values() -> None:
    made = UsageRow(datetime(2025, 1, 1, tzinfo=UTC), "oa", "m", "sgp", None, 0, 0, 0, 0)
    assert (made.error_code, made.streamed, made.caller) == (None, False, None)
