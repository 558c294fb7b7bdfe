"""The usage log: batches in, totals per group out, the same on both databases."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatgate.store import GROUP_NAMES, Store, StoreInvalid, UsageGroup, UsageRow

NOON = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def row(**changes: Any) -> UsageRow:
    """A usage row: a successful request at noon unless *changes* say otherwise."""
    fields: dict[str, Any] = {
        "time": NOON,
        "connection": "oa",
        "model": "gpt-4o",
        "door": "openai",
        "caller": "team",
        "tokens_in": 10,
        "tokens_out": 20,
        "latency_ms": 100,
        "status": 200,
    }
    return UsageRow(**(fields | changes))


def test_a_batch_is_recorded_and_totalled(store: Store) -> None:
    latencies = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert store.record_usage([row(latency_ms=ms) for ms in latencies]) == 10
    assert store.record_usage([]) == 0
    (total,) = store.usage()
    assert total == UsageGroup(
        key={},
        requests=10,
        errors=0,
        streamed=0,
        tokens_in=100,
        tokens_out=200,
        latency_avg_ms=55.0,
        latency_p50_ms=50,
        latency_p95_ms=100,
    )


@pytest.mark.parametrize(
    ("latencies", "p50", "p95"),
    [([7], 7, 7), ([5, 1], 1, 5), ([3, 1, 2], 2, 3), (list(range(1, 21)), 10, 19)],
)
def test_percentiles_are_nearest_rank(
    store: Store, latencies: list[int], p50: int, p95: int
) -> None:
    store.record_usage([row(latency_ms=ms) for ms in latencies])
    (total,) = store.usage()
    assert (total.latency_p50_ms, total.latency_p95_ms) == (p50, p95)


def test_nothing_recorded_is_one_empty_total_and_no_groups(store: Store) -> None:
    (total,) = store.usage()
    assert (total.requests, total.tokens_in, total.latency_avg_ms, total.latency_p50_ms) == (
        0,
        0,
        None,
        None,
    )
    assert store.usage(group_by="model") == []


def test_errors_are_failed_statuses_and_late_failures(store: Store) -> None:
    store.record_usage(
        [
            row(status=200),
            row(status=429, error_code="rate_limit_exceeded"),
            row(status=502),
            row(status=200, error_code="upstream_error", streamed=True),
            row(status=200, streamed=True),
        ]
    )
    (total,) = store.usage()
    assert (total.requests, total.errors, total.streamed) == (5, 3, 2)


def test_group_by_each_column(store: Store) -> None:
    store.record_usage(
        [
            row(),
            row(connection="ab", model="claude", door="anthropic", caller=None),
            row(time=NOON + timedelta(hours=13), tokens_in=1),
        ]
    )
    by = {name: store.usage(group_by=name) for name in GROUP_NAMES}
    assert [(g.key["connection"], g.requests) for g in by["connection"]] == [("ab", 1), ("oa", 2)]
    assert [(g.key["model"], g.requests) for g in by["model"]] == [("claude", 1), ("gpt-4o", 2)]
    assert [g.key["door"] for g in by["door"]] == ["anthropic", "openai"]
    assert [(g.key["caller"], g.requests) for g in by["caller"]] == [("team", 2), (None, 1)]
    assert [(g.key["day"], g.tokens_in) for g in by["day"]] == [
        (datetime(2025, 6, 1, tzinfo=UTC), 20),
        (datetime(2025, 6, 2, tzinfo=UTC), 1),
    ]
    assert [g.key["hour"] for g in by["hour"]] == [NOON, NOON + timedelta(hours=13)]


def test_group_by_two_columns(store: Store) -> None:
    store.record_usage([row(), row(), row(model="gpt-4o-mini"), row(connection="ab")])
    groups = store.usage(group_by="connection,model")
    assert [(g.key, g.requests) for g in groups] == [
        ({"connection": "ab", "model": "gpt-4o"}, 1),
        ({"connection": "oa", "model": "gpt-4o"}, 2),
        ({"connection": "oa", "model": "gpt-4o-mini"}, 1),
    ]
    assert store.usage(group_by=["connection", "model"]) == groups
    assert store.usage(group_by=" connection , model ") == groups


def test_filters_by_connection_and_time(store: Store) -> None:
    store.record_usage(
        [row(time=NOON + timedelta(minutes=m)) for m in range(5)] + [row(connection="ab")]
    )
    assert store.usage(connection="ab")[0].requests == 1
    assert store.usage(connection="nobody")[0].requests == 0
    window = store.usage(since=NOON + timedelta(minutes=1), until=NOON + timedelta(minutes=3))
    assert window[0].requests == 2  # since is in, until is out
    assert store.usage(since=NOON + timedelta(minutes=4))[0].requests == 1
    assert store.usage(until=NOON)[0].requests == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "model,model"}, "group_by"),
        ({"since": datetime(2025, 1, 1)}, "since"),
        ({"until": datetime(2025, 1, 1)}, "until"),
        ({"since": NOON, "until": NOON}, "until"),
    ],
)
def test_invalid_queries_name_the_field(store: Store, query: dict[str, Any], field: str) -> None:
    with pytest.raises(StoreInvalid) as caught:
        store.usage(**query)
    assert (caught.value.status, caught.value.field) == (400, field)


def test_only_usage_rows_are_recorded(store: Store) -> None:
    with pytest.raises(StoreInvalid) as caught:
        store.record_usage([row(), {"model": "x"}])  # type: ignore[list-item]
    assert caught.value.field == "rows.1"
    assert store.usage()[0].requests == 0  # nothing of the batch was written


def test_prune_deletes_the_old_rows(store: Store) -> None:
    store.record_usage([row(time=NOON - timedelta(days=d)) for d in range(5)])
    assert store.prune_usage(NOON - timedelta(days=2)) == 2
    assert store.usage()[0].requests == 3


def test_rows_outlive_their_connection(store: Store) -> None:
    store.add_connection({"name": "oa", "source": "openai"})
    store.record_usage([row()])
    store.delete_connection("oa")
    assert store.usage(connection="oa")[0].requests == 1


rows_strategy = st.lists(
    st.builds(
        row,
        time=st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ),
        model=st.sampled_from(["a", "b", "c"]),
        door=st.sampled_from(["openai", "sgp"]),
        caller=st.sampled_from([None, "x", "y"]),
        tokens_in=st.integers(0, 10_000),
        tokens_out=st.integers(0, 10_000),
        latency_ms=st.integers(0, 60_000),
        status=st.sampled_from([200, 400, 500]),
        streamed=st.booleans(),
    ),
    max_size=30,
)
group_by_strategy = st.sampled_from(
    [list(c) for n in (1, 2) for c in itertools.combinations(GROUP_NAMES, n)]
)


@settings(
    max_examples=25,
    deadline=None,
    # One store for every example: each writes under a connection name of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=rows_strategy, group_by=group_by_strategy)
def test_the_groups_add_up_to_the_total(
    store: Store, rows: list[UsageRow], group_by: list[str]
) -> None:
    name = uuid.uuid4().hex
    store.record_usage([UsageRow(**{**_fields(r), "connection": name}) for r in rows])
    (total,) = store.usage(connection=name)
    groups = store.usage(connection=name, group_by=group_by)
    assert total.requests == len(rows)
    for measure in ("requests", "errors", "streamed", "tokens_in", "tokens_out"):
        assert sum(getattr(g, measure) for g in groups) == getattr(total, measure), measure
    assert [_rounded(g) for g in groups] == [_rounded(g) for g in _reference(rows, name, group_by)]


def _reference(rows: list[UsageRow], name: str, group_by: list[str]) -> list[UsageGroup]:
    """The groups, computed in Python as the SQL is meant to."""
    buckets: dict[tuple[Any, ...], list[UsageRow]] = {}
    for usage_row in rows:
        key = tuple(_value(usage_row, column, name) for column in group_by)
        buckets.setdefault(key, []).append(usage_row)
    out = []
    for key, members in buckets.items():
        latencies = sorted(r.latency_ms for r in members)
        size = len(latencies)
        out.append(
            UsageGroup(
                key=dict(zip(group_by, key, strict=True)),
                requests=size,
                errors=sum(r.status >= 400 or r.error_code is not None for r in members),
                streamed=sum(r.streamed for r in members),
                tokens_in=sum(r.tokens_in for r in members),
                tokens_out=sum(r.tokens_out for r in members),
                latency_avg_ms=sum(latencies) / size,
                latency_p50_ms=latencies[(size + 1) // 2 - 1],
                latency_p95_ms=latencies[(size * 95 + 99) // 100 - 1],
            )
        )
    return sorted(out, key=lambda g: tuple((v is None, v or "") for v in g.key.values()))


def _rounded(group: UsageGroup) -> UsageGroup:
    # PostgreSQL averages in decimal, then hands a float over: the last bits may differ.
    average = group.latency_avg_ms
    return replace(group, latency_avg_ms=None if average is None else round(average, 6))


def _value(usage_row: UsageRow, column: str, name: str) -> Any:
    if column == "connection":
        return name
    if column in ("day", "hour"):
        unit = timedelta(days=1) if column == "day" else timedelta(hours=1)
        start = datetime(1970, 1, 1, tzinfo=UTC)
        return start + (usage_row.time.replace(microsecond=0) - start) // unit * unit
    return getattr(usage_row, column)


def _fields(usage_row: UsageRow) -> dict[str, Any]:
    return {name: getattr(usage_row, name) for name in UsageRow.__dataclass_fields__}


def test_long_names_are_kept_whole(store: Store) -> None:
    long = "x" * 5000
    store.record_usage([row(connection=long, model=long, door=long, caller=long, error_code=long)])
    (group,) = store.usage(group_by="connection,model,caller")
    assert group.key == {"connection": long, "model": long, "caller": long}
