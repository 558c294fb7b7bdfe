"""Times are stored as UTC milliseconds and come back as aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.store import Store
from chatgate.store.tables import EPOCH, UtcMillis, from_millis, to_millis


@given(st.integers(min_value=-(10**13), max_value=10**14))
def test_milliseconds_round_trip(millis: int) -> None:
    assert to_millis(from_millis(millis)) == millis


def test_any_timezone_is_the_same_instant() -> None:
    moment = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    assert from_millis(to_millis(moment)) == moment.replace(microsecond=123000)
    assert to_millis(EPOCH) == 0


def test_a_naive_time_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcMillis().process_bind_param(datetime(2025, 1, 1), None)  # type: ignore[arg-type]


def test_stored_times_come_back_in_utc(store: Store) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stored = store.add_connection({"name": "oa", "source": "openai"})
    assert stored.created.tzinfo is UTC
    assert before <= stored.created <= datetime.now(UTC)
