"""The ``[resilience]`` table: today's timings by default, and a bad value stops
chatgate with one line that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate import resilience
from chatgate.config import ResilienceSettings, Settings, load_settings
from chatgate.errors import ConfigError
from chatgate.exchange.errors import UpstreamAnsweredError
from chatgate.resilience import wait_before
from chatgate.resilience_run import Resilience


def load(tmp_path: Path, table: str) -> Settings:
    """The settings of a file with *table*'s lines under ``[resilience]``."""
    path = tmp_path / "chatgate.toml"
    path.write_text(f"embedded = false\n\n[resilience]\n{table}\n", encoding="utf-8")
    return load_settings(path, env={})


def test_the_defaults_are_todays_constants() -> None:
    timings = Settings().resilience
    assert timings == ResilienceSettings(
        backoff_base=resilience.BACKOFF_BASE,
        backoff_cap=resilience.BACKOFF_CAP,
        eject_after=resilience.EJECT_AFTER,
        eject_base=resilience.EJECT_BASE,
        eject_cap=resilience.EJECT_CAP,
    )
    assert (timings.backoff_base, timings.backoff_cap) == (0.25, 8.0)
    assert (timings.eject_after, timings.eject_base, timings.eject_cap) == (5, 30.0, 300.0)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("", ResilienceSettings()),
        ("backoff_base = 1\nbackoff_cap = 1", ResilienceSettings(backoff_base=1, backoff_cap=1)),
        ("backoff_base = 0.05", ResilienceSettings(backoff_base=0.05)),
        ("eject_after = 1", ResilienceSettings(eject_after=1)),
        ("eject_base = 300", ResilienceSettings(eject_base=300)),
        ("eject_base = 2\neject_cap = 2.5", ResilienceSettings(eject_base=2, eject_cap=2.5)),
    ],
)
def test_good_tables(tmp_path: Path, table: str, expected: ResilienceSettings) -> None:
    assert load(tmp_path, table).resilience == expected


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("backoff_base = 0", "resilience.backoff_base: Input should be greater than 0"),
        ("backoff_base = -1", "resilience.backoff_base: Input should be greater than 0"),
        ("backoff_cap = 0.0", "resilience.backoff_cap: Input should be greater than 0"),
        ("eject_base = -30", "resilience.eject_base: Input should be greater than 0"),
        ("eject_cap = 0", "resilience.eject_cap: Input should be greater than 0"),
        ("eject_cap = inf", "resilience.eject_cap: Input should be a finite number"),
        ("backoff_base = nan", "resilience.backoff_base: Input should be a finite number"),
        ("eject_after = 0", "resilience.eject_after: Input should be greater than or equal to 1"),
        ("eject_after = -2", "resilience.eject_after: Input should be greater than or equal to 1"),
        ("eject_after = 1.5", "resilience.eject_after: Input should be a valid integer"),
        ("eject_after = true", "resilience.eject_after: Input should be a valid integer"),
        ('backoff_base = "1"', "resilience.backoff_base: Input should be a valid number"),
        ("backoff_cap = 0.1", "backoff_cap (0.1 s) is less than backoff_base (0.25 s)"),
        ("backoff_base = 10", "backoff_cap (8 s) is less than backoff_base (10 s)"),
        ("eject_cap = 10", "eject_cap (10 s) is less than eject_base (30 s)"),
        ("eject_base = 301", "eject_cap (300 s) is less than eject_base (301 s)"),
        ("eject_afterr = 1", "resilience.eject_afterr: Extra inputs are not permitted"),
    ],
)
def test_bad_tables_are_refused_by_name(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, table)
    assert str(caught.value).startswith("config: resilience")
    assert message in str(caught.value)


def test_the_runner_takes_the_tables_timings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "backoff_base = 0.5\nbackoff_cap = 2\neject_after = 1\neject_base = 7\neject_cap = 9",
    )
    runner = Resilience(settings)
    assert (runner.backoff_base, runner.backoff_cap) == (0.5, 2.0)
    ejector = runner.ejector
    assert (ejector.after, ejector.base, ejector.cap) == (1, 7.0, 9.0)
    # backoff_cap bounds every backoff, however many retries came before.
    failed = UpstreamAnsweredError("500")
    waits = [wait_before(failed, n, base=0.5, cap=30.0, ceiling=2.0) for n in range(12)]
    assert max(waits) <= 2.0 and min(waits) >= 0.25
