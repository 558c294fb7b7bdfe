"""The driver-level usage insert writes exactly what the general SQLAlchemy path does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection

from chatgate.store import StoreInvalid, UsageRow, usage, usage_insert
from chatgate.store.tables import to_millis
from tests.store.conftest import StoreSite

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC)
ROWS = [
    UsageRow(MOMENT, "oa", "gpt-4o", "openai", "team", 10, 20, 30, 200),
    UsageRow(
        MOMENT + timedelta(seconds=1),
        "cl",
        "c-4",
        "anthropic",
        None,
        0,
        0,
        5,
        502,
        error_code="bad_upstream_response",
        streamed=True,
    ),
]
SELECT = (
    'SELECT at, "connection", model, door, caller, tokens_in, tokens_out, latency_ms,'
    " status, error_code, streamed FROM usage_log ORDER BY id"
)


def _write(
    site: StoreSite, record: Callable[[Connection, Sequence[UsageRow]], int]
) -> list[tuple[object, ...]]:
    store = site.open()
    with store._db.write() as conn:
        assert record(conn, ROWS) == len(ROWS)
    written = site.sql(SELECT)
    site.sql("DELETE FROM usage_log")
    return written


def test_both_paths_write_the_same_rows(site: StoreSite) -> None:
    general = _write(site, usage.record)
    fast = _write(site, usage_insert.record)
    assert fast == general
    assert fast[0][0] == to_millis(MOMENT)
    assert [bool(row[-1]) for row in fast] == [False, True]


def test_a_driver_without_positional_parameters_takes_the_general_path(
    site: StoreSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_insert, "_PLACEHOLDERS", {})  # as if every style were named
    store = site.open()
    with store._db.write() as conn:
        assert usage_insert.record(conn, ROWS) == 2
    assert len(site.sql(SELECT)) == 2


def test_anything_but_rows_is_refused(site: StoreSite) -> None:
    store = site.open()
    with pytest.raises(StoreInvalid, match=r"rows\.1"), store._db.write() as conn:
        usage_insert.record(conn, [ROWS[0], "a row"])  # type: ignore[list-item]
    assert store.record_usage([]) == 0


def test_a_batch_longer_than_one_statement_is_written_whole(site: StoreSite) -> None:
    store = site.open()
    count = 2 * usage_insert.ROWS_PER_STATEMENT + 1
    rows = [replace(ROWS[0], latency_ms=ms) for ms in range(count)]
    assert store.record_usage(rows) == count
    assert site.sql("SELECT count(*), sum(latency_ms) FROM usage_log") == [
        (count, count * (count - 1) // 2)
    ]
