"""The Redis client comparison (`bench.redis_clients`) against a real redis-server: each
client runs the script, and the bare floor speaks RESP that Redis accepts."""

from __future__ import annotations

from bench import redis_clients

from tests.redis_server import redis_url  # noqa: F401  (the fixture)


def test_resp_frames_a_command() -> None:
    assert redis_clients.resp("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    framed = b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n"
    assert redis_clients.resp("EVALSHA", b"ab", 1) == framed


def test_every_installed_client_calls_the_script(redis_url: str) -> None:  # noqa: F811
    figures = redis_clients.measure(redis_url, 20)
    for name in ("redis-py", "bare asyncio (floor)"):
        assert figures[name]["cpu_us"] > 0 and figures[name]["wall_us"] > 0, name
    # coredis is not a dependency: measured where installed, named as skipped where not.
    coredis = figures["coredis"]
    assert "skipped" in coredis or coredis["cpu_us"] > 0
