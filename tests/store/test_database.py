"""Where a store lives, how its files are kept, and how its transactions behave."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatgate.errors import ConfigError
from chatgate.store import Store, StoreUnavailable, UsageRow
from chatgate.store.database import default_directory, locate
from tests.store.conftest import RAW_KEY, StoreSite


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("url", "driver", "database"),
    [
        (None, "sqlite+pysqlite", "/data/chatgate.db"),
        ("", "sqlite+pysqlite", "/data/chatgate.db"),
        ("sqlite:////var/lib/cg/store.db", "sqlite+pysqlite", "/var/lib/cg/store.db"),
        ("sqlite+pysqlite:////x/y.db", "sqlite+pysqlite", "/x/y.db"),
        ("postgresql://u:pw@db.example:5433/cg", "postgresql+psycopg", "cg"),
        ("postgres://u:pw@db.example/cg", "postgresql+psycopg", "cg"),
        ("postgresql+psycopg://u@db.example/cg", "postgresql+psycopg", "cg"),
    ],
)
def test_store_urls(url: str | None, driver: str, database: str) -> None:
    location = locate(url, "/data")
    assert (location.url.drivername, location.url.database) == (driver, database)
    if driver.startswith("sqlite"):
        assert location.sqlite_path == Path(database)
        assert location.directory == Path(database).parent
    else:
        assert location.sqlite_path is None and location.directory == Path("/data")


def test_a_relative_sqlite_path_is_taken_from_the_working_directory() -> None:
    location = locate("sqlite:///relative/store.db")
    assert location.sqlite_path == Path.cwd() / "relative" / "store.db"


def test_the_default_is_the_user_data_directory() -> None:
    assert locate(None).directory == default_directory()
    assert default_directory().name == "chatgate"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://u:pw@h/db", "'mysql' is not a store database"),
        ("postgresql+psycopg2://u:pw@h/db", "psycopg 3"),
        ("sqlite://", "a SQLite store is a file"),
        ("sqlite:///:memory:", "a SQLite store is a file"),
        ("sqlite+aiosqlite:///x.db", "Python's sqlite3"),
        ("not a url", "not a URL"),
    ],
)
def test_other_urls_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="store_url") as caught:
        locate(url)
    assert says in str(caught.value) and "pw" not in str(caught.value)


def test_a_password_in_the_url_is_never_shown() -> None:
    location = locate("postgresql://chatgate:hunter2hunter2@db.example/cg")
    assert "hunter2" not in location.shown and "***" in location.shown


def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "data"
    with Store(directory=directory, env={}) as store:
        store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
        assert _mode(directory) == 0o700
        for path in directory.iterdir():  # the database, its WAL and shared memory, the key
            assert _mode(path) == 0o600, path.name
        assert {p.name for p in directory.iterdir()} >= {"chatgate.db", "chatgate.key"}


def test_a_database_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    Store(f"sqlite:///{path}", env={}).close()
    assert _mode(path) == 0o600
    assert (tmp_path / "chatgate.key").exists()  # next to the database


def test_a_directory_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    Store(directory=tmp_path, env={}).close()
    assert _mode(tmp_path) == 0o755


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    Store(directory=tmp_path, env={}).close()
    with closing(sqlite3.connect(tmp_path / "chatgate.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unreachable_postgresql_is_unavailable_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://chatgate:hunter2hunter2@127.0.0.1:1/cg"
    with pytest.raises(StoreUnavailable) as caught:
        Store(url, directory=tmp_path, env={})
    assert caught.value.status == 503
    assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_writers_in_many_threads_and_two_stores_all_land(site: StoreSite) -> None:
    stores = [site.open(), site.open()]
    failures: list[BaseException] = []

    def write(index: int) -> None:
        store = stores[index % 2]
        try:
            for batch in range(5):
                at = datetime.now(UTC)
                rows = [UsageRow(at, f"c{index}", "m", "openai", None, 1, 1, 1, 200)] * 10
                store.record_usage(rows)
                store.add_connection({"name": f"c{index}-{batch}", "source": "openai"})
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert stores[0].usage()[0].requests == 6 * 5 * 10
    assert len(stores[1].list_connections()) == 30


def test_a_database_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreUnavailable, match="cannot create it") as caught:
        Store(directory=tmp_path / "a-file" / "data", env={})
    assert caught.value.status == 503
