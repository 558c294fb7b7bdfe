"""The per-stream memory probe: each client holds real streams from the local mock."""

from __future__ import annotations

from bench.stream_memory import CLIENTS, measure


def test_each_client_holds_every_stream_and_reports_its_growth() -> None:
    rows = measure(list(CLIENTS), 20, settle=0.1)
    assert [row["client"] for row in rows] == list(CLIENTS)
    for row in rows:
        assert row["streams"] == 20
        assert row["rss_open_mb"] >= row["rss_before_mb"] > 10
        # RSS is shown to 0.1 MB: the growth per stream is within that of its figures.
        per_stream = (row["rss_open_mb"] - row["rss_before_mb"]) * 1024 / 20
        assert abs(row["kb_per_stream"] - per_stream) <= 0.1 * 1024 / 20 + 0.1
