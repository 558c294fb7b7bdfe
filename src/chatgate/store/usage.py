"""The usage log: one row per request, written in batches, summed in groups.

The grouping is plain SQL that SQLite and PostgreSQL read alike: times are integer
milliseconds, so a day is ``at // 86_400_000 * 86_400_000`` (UTC) with no date
function, and the median and 95th percentile are nearest-rank values picked with
``row_number()`` over each group (window functions, in SQLite since 3.25), where
PostgreSQL's ``percentile_cont`` has no SQLite twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
)

from chatgate.store.errors import StoreInvalid
from chatgate.store.rows import GROUP_NAMES, GroupName, GroupValue, UsageGroup, UsageRow
from chatgate.store.tables import from_millis, usage

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_BUCKETS = {"day": DAY_MS, "hour": HOUR_MS}


def checked(rows: Sequence[UsageRow]) -> list[UsageRow]:
    """*rows* as a list, each a `UsageRow` (a `StoreInvalid` naming the first that is not)."""
    batch = list(rows)
    for index, row in enumerate(batch):
        if not isinstance(row, UsageRow):
            raise StoreInvalid(f"rows.{index}: a UsageRow", field=f"rows.{index}")
    return batch


def record(conn: Connection, rows: Sequence[UsageRow]) -> int:
    """Insert *rows* in one statement (executemany); how many."""
    batch = checked(rows)
    if not batch:
        return 0
    conn.execute(
        insert(usage),
        [
            {
                "at": row.time,
                "connection": row.connection,
                "model": row.model,
                "door": row.door,
                "caller": row.caller,
                "tokens_in": row.tokens_in,
                "tokens_out": row.tokens_out,
                "latency_ms": row.latency_ms,
                "status": row.status,
                "error_code": row.error_code,
                "streamed": row.streamed,
            }
            for row in batch
        ],
    )
    return len(batch)


def parse_group_by(group_by: str | Sequence[str] | None) -> tuple[GroupName, ...]:
    """The grouped columns ``"connection,model"`` (or a list of names) asks for."""
    if group_by is None:
        return ()
    names = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    names = [name.strip() for name in names if isinstance(name, str) and name.strip()]
    out: list[GroupName] = []
    for name in names:
        if name not in GROUP_NAMES:
            raise StoreInvalid(
                f"group_by: {name!r} is not one of {', '.join(GROUP_NAMES)}", field="group_by"
            )
        if name in out:
            raise StoreInvalid(f"group_by: {name!r} is named twice", field="group_by")
        out.append(name)
    return tuple(out)


def summed(
    conn: Connection,
    *,
    connection: str | None,
    since: datetime | None,
    until: datetime | None,
    group_by: str | Sequence[str] | None,
) -> list[UsageGroup]:
    """Totals per group of the rows in [since, until) (of one connection, if named);
    without grouping, one total (of nothing, if no row matches)."""
    names = parse_group_by(group_by)
    _check_time(since, "since")
    _check_time(until, "until")
    if since is not None and until is not None and until <= since:
        raise StoreInvalid("until: later than since", field="until")
    filters: list[ColumnElement[bool]] = []
    if connection is not None:
        filters.append(usage.c.connection == connection)
    if since is not None:
        filters.append(usage.c.at >= since)
    if until is not None:
        filters.append(usage.c.at < until)

    grouped = [_grouped(name).label(name) for name in names]
    window = [_grouped(name) for name in names] or None
    latency = usage.c.latency_ms
    failed = or_(usage.c.status >= 400, usage.c.error_code.is_not(None))
    ranked = (
        select(
            *grouped,
            usage.c.tokens_in,
            usage.c.tokens_out,
            latency,
            case((failed, 1), else_=0).label("failed"),
            case((usage.c.streamed, 1), else_=0).label("streamed"),
            func.row_number().over(partition_by=window, order_by=latency).label("rank"),
            func.count().over(partition_by=window).label("size"),
        )
        .where(*filters)
        .subquery("ranked")
    )
    keys = [ranked.c[name] for name in names]
    rank, size = ranked.c["rank"], ranked.c["size"]
    query = select(
        *keys,
        func.count().label("requests"),
        func.coalesce(func.sum(ranked.c.failed), 0).label("errors"),
        func.coalesce(func.sum(ranked.c.streamed), 0).label("streamed"),
        func.coalesce(func.sum(ranked.c.tokens_in), 0).label("tokens_in"),
        func.coalesce(func.sum(ranked.c.tokens_out), 0).label("tokens_out"),
        func.avg(ranked.c.latency_ms).label("latency_avg"),
        # Nearest rank: the p-th percentile of n values is the ceil(p * n)-th smallest.
        func.max(case((rank == (size + 1) // 2, ranked.c.latency_ms))).label("p50"),
        func.max(case((rank == (size * 95 + 99) // 100, ranked.c.latency_ms))).label("p95"),
    ).group_by(*keys)
    groups = [_group(names, row._mapping) for row in conn.execute(query)]
    # Sorted here: the two databases put NULL (a request with no caller) at opposite ends.
    return sorted(groups, key=lambda g: tuple(_sort_key(g.key[name]) for name in names))


def caller_tokens(conn: Connection, caller: str, since: datetime, until: datetime) -> int:
    """The tokens (in and out) of *caller*'s rows in [since, until)."""
    _check_time(since, "since")
    _check_time(until, "until")
    query = select(func.coalesce(func.sum(usage.c.tokens_in + usage.c.tokens_out), 0)).where(
        usage.c.caller == caller, usage.c.at >= since, usage.c.at < until
    )
    return int(conn.execute(query).scalar_one())


def prune(conn: Connection, before: datetime) -> int:
    """Delete the rows older than *before*; how many."""
    _check_time(before, "before")
    return conn.execute(delete(usage).where(usage.c.at < before)).rowcount


def _grouped(name: GroupName) -> ColumnElement[Any]:
    if name in _BUCKETS:
        # The raw milliseconds, not the datetime UtcMillis would make of them.
        millis = type_coerce(usage.c.at, BigInteger)
        return (millis // _BUCKETS[name]) * _BUCKETS[name]
    return cast(ColumnElement[Any], usage.c[name])


def _group(names: tuple[GroupName, ...], row: Any) -> UsageGroup:
    key: dict[str, GroupValue] = {}
    for name in names:
        value = row[name]
        key[name] = from_millis(int(value)) if name in _BUCKETS and value is not None else value
    requests = int(row["requests"])
    average = row["latency_avg"]
    return UsageGroup(
        key=key,
        requests=requests,
        errors=int(row["errors"]),
        streamed=int(row["streamed"]),
        tokens_in=int(row["tokens_in"]),
        tokens_out=int(row["tokens_out"]),
        latency_avg_ms=None if average is None else float(average),
        latency_p50_ms=None if row["p50"] is None else int(row["p50"]),
        latency_p95_ms=None if row["p95"] is None else int(row["p95"]),
    )


def _sort_key(value: GroupValue) -> tuple[bool, Any]:
    return (value is None, "" if value is None else value)


def _check_time(value: datetime | None, field: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise StoreInvalid(f"{field}: a time with its timezone (2025-01-31T00:00:00Z)", field=field)
