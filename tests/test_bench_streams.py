"""The open-streams harness (`bench.streams`): the stamp arithmetic, and the mock and
client together in one loop, a few streams for a fraction of a second."""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import pytest
from bench import streams
from bench.report_scale import scale_goals, scale_section
from bench.scale import stream_capacity, stream_rows


def test_stamps_are_read_across_split_reads() -> None:
    whole = streams.event(100.0) + streams.event(100.5)
    cut = whole.rfind(b"@100.5") + 6  # inside the second stamp
    found, tail = streams.added_ms(101.0, whole[:cut])
    assert found == [1000.0] and tail == b"@100.5"
    found, tail = streams.added_ms(101.0, tail + whole[cut:])
    assert found == [500.0] and b"@" not in tail
    found, tail = streams.added_ms(101.0, b'"content":"@100.25')
    assert found == [] and tail == b"@100.25"
    found, _ = streams.added_ms(101.0, tail + b'0@"}')
    assert found == [750.0]


def test_a_chunk_is_http_chunked() -> None:
    assert streams.chunked(b"hello") == b"5\r\nhello\r\n"


def test_the_mock_streams_every_chunk_to_every_client() -> None:
    async def run() -> streams.Tally:
        server = streams.MockServer(chunks=5, interval=0.02)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            lambda: streams._MockStream(server), "127.0.0.1", 0, reuse_address=True
        )
        port = listener.sockets[0].getsockname()[1]
        ticker = asyncio.create_task(server.tick())
        try:
            return await streams.hold(port, "/v1/chat/completions", "m", None, 8, 10)
        finally:
            ticker.cancel()
            listener.close()

    tally = asyncio.run(run())
    figures = streams.summary(tally, 8, 5)
    assert figures["errors"] == 0 and figures["completed"] == 8
    assert figures["chunks"] == figures["expected_chunks"] == 40
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] < 1000


def test_a_short_stream_is_an_error() -> None:
    tally = streams.Tally(chunks=3, done=1)
    tally.latencies.extend([1.0, 2.0, 3.0])
    assert streams.summary(tally, 1, 5)["errors"] == 1


def test_the_report_rows_and_goals() -> None:
    row = {"p50_ms": 1.0, "p99_ms": 4.0, "chunks": 10, "expected_chunks": 10}
    scale = {
        "command": "make bench QUICK=1",
        "open_streams": [
            {
                "streams": 10,
                "wanted": 10,
                "note": "",
                "seconds": 1,
                "rss_idle_mb": 60.0,
                "rss_peak_mb": 80.0,
                "direct": row,
                "chatgate": row,
                "added_p50_ms": 0.0,
                "added_p99_ms": 0.0,
                "errors": 0,
                "floor": {
                    "added_p50_ms": 0.5,
                    "added_p99_ms": 2.5,
                    "cpu_us_per_chunk": 49.0,
                    "rss_peak_mb": 60.0,
                    "errors": 0,
                },
            }
        ],
        "features": {"plain": {"skipped": "x"}},
        "workers": {"1": {"rps_c64": 100.0, "p50_ms": 1.0, "errors": 0}},
        "server": {
            "uvicorn (httptools)": {
                "added_p50_ms": 0.2,
                "rps_c64": 100.0,
                "errors": 0,
                "x_litellm_c64": 10.0,
            },
            "minimal proxy (uvicorn + pyreqwest, not a gateway)": {
                "added_p50_ms": 0.1,
                "rps_c64": 300.0,
                "errors": 0,
                "x_litellm_c64": 30.0,
            },
        },
    }
    goals = {g["goal"]: g["holds"] for g in scale_goals({"scale": scale})}
    assert goals["memory with 10 open streams (PSS)"] is True
    # The goals stay chatgate's: the minimal proxy's 30x is beside them, not in them.
    assert goals["the server: c64 vs LiteLLM"] is False
    text = "\n".join(scale_section({"scale": scale}))
    assert "### Open streams" in text and "skipped: x" in text
    assert "| 10 | 50 | 0.00 / 0.00 | 0.50 / 2.50 | 0.0 | 49.0 | 0 |" in text
    assert "| minimal proxy (uvicorn + pyreqwest, not a gateway) | 0.100 | 300 | 30.0× |" in text


def test_stream_rows_read_counts_and_intervals() -> None:
    assert stream_rows("1000,10000@1000") == [(1000, 0.05), (10000, 1.0)]
    assert stream_rows("300") == [(300, 0.05)]


def test_past_one_process_open_files_the_streams_take_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 20_000))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert stream_capacity(1000) == (1000, 1, "")
    count, workers, note = stream_capacity(10_000)
    assert (count, workers) == (10_000, 2) and "9744 streams" in note
    count, workers, note = stream_capacity(30_000)
    assert (count, workers) == (19_488, 2) and "19488 in all" in note


def test_the_latency_goal_is_the_50_ms_row_and_memory_the_largest() -> None:
    def row(streams: int, interval: float, rss: float, p99: float) -> dict[str, Any]:
        figures = {"p50_ms": 1.0, "p99_ms": 1.0, "chunks": 1, "expected_chunks": 1}
        return {
            "streams": streams,
            "interval_ms": interval,
            "rss_peak_mb": rss,
            "added_p99_ms": p99,
            "errors": 0,
            "direct": figures,
            "chatgate": figures,
        }

    rows = [row(1000, 50.0, 200.0, 9.0), row(10_000, 1000.0, 1100.0, 2.0)]
    rows[1]["pss_peak_mb"] = 900.0  # forked workers: PSS, not their RSS summed
    goals = {g["goal"]: g for g in scale_goals({"scale": {"open_streams": rows}})}
    assert goals["added per-chunk p99, 1000 streams"]["measured"] == 9.0
    assert goals["memory with 10000 open streams (PSS)"]["holds"] is True
    assert goals["stream errors, every row"]["holds"] is True


def test_the_features_rows_show_cpu_per_request_beside_plain() -> None:
    def variant(rps: float, cpu: float | None, **extra: float) -> dict[str, object]:
        figures: dict[str, object] = {"added_p50_ms": 0.5, "rps_c64": rps, "errors": 0}
        figures["rps_c64_turns"] = [rps * 0.9, rps, rps * 1.1]
        figures["cpu_us_per_request"] = cpu
        return {**figures, **extra}

    features = {
        "plain": variant(1000.0, 400.0),
        "usage log": variant(
            800.0, 440.0, vs_plain_p50_ms=0.02, vs_plain_rps=0.8, vs_plain_cpu=1.1
        ),
        "metrics": variant(900.0, None, vs_plain_p50_ms=0.0, vs_plain_rps=0.9),
    }
    lines = scale_section({"scale": {"command": "x", "features": features}})
    row = next(line for line in lines if line.startswith("| usage log |"))
    assert row.split(" | ")[5:8] == ["0.80×", "440", "1.10×"]
    unmeasured = next(line for line in lines if line.startswith("| metrics |"))
    assert unmeasured.split(" | ")[6:8] == ["-", "-"]
    goals = {g["goal"]: g for g in scale_goals({"scale": {"features": features}})}
    assert goals["features on: c64 throughput vs plain (worst)"]["measured"] == 0.8
