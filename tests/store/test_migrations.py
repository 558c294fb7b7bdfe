"""The versioned schema: made once, by one of the processes that open it at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect

from chatgate.store import Store, StoreUnavailable
from chatgate.store.database import Database, locate
from chatgate.store.migrations import LATEST, MIGRATIONS, migrate, version
from chatgate.store.tables import usage
from tests.store.conftest import RAW_KEY, StoreSite


def test_a_new_store_is_stamped_with_every_version(fresh_site: StoreSite) -> None:
    store = fresh_site.open()
    assert store.applied_migrations == tuple(m.version for m in MIGRATIONS)
    rows = fresh_site.sql("SELECT version, description FROM schema_version ORDER BY version")
    assert rows == [(m.version, m.description) for m in MIGRATIONS]
    assert fresh_site.open().applied_migrations == ()
    assert len(fresh_site.sql("SELECT version FROM schema_version")) == len(MIGRATIONS)


def test_migrate_is_idempotent(fresh_site: StoreSite) -> None:
    database = Database(locate(fresh_site.url, fresh_site.directory))
    try:
        assert version(database) == 0
        assert migrate(database) == tuple(m.version for m in MIGRATIONS)
        assert migrate(database) == ()
        assert version(database) == LATEST
    finally:
        database.close()


def test_a_store_newer_than_this_chatgate_is_refused(fresh_site: StoreSite) -> None:
    fresh_site.open().close()
    fresh_site.sql(
        "INSERT INTO schema_version (version, description, applied) VALUES (:v, 'future', 0)",
        v=LATEST + 1,
    )
    with pytest.raises(StoreUnavailable, match="upgrade chatgate") as caught:
        fresh_site.open()
    assert caught.value.status == 503


def test_stores_opened_at_once_migrate_once(fresh_site: StoreSite) -> None:
    barrier = threading.Barrier(4)
    opened: list[Store] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            opened.append(fresh_site.open())
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    every = tuple(m.version for m in MIGRATIONS)
    assert sorted(s.applied_migrations for s in opened) == [(), (), (), every]
    # One master key file, which all of them use.
    assert len({s.key_id for s in opened}) == 1
    first, second = opened[:2]
    first.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    assert second.secret("oa") == RAW_KEY


def test_two_stores_share_one_database(site: StoreSite) -> None:
    first, second = site.open(), site.open()
    first.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    second.update_connection("oa", {"models": ["gpt-4o"]})
    assert first.get_connection("oa").revision == 2
    second.add_key("oa", "spare", "sk-spare-key-0000111122")
    first.activate_key("oa", "spare")
    assert second.secret("oa") == "sk-spare-key-0000111122"


def _usage_indexes(site: StoreSite) -> set[str]:
    store = site.open()
    with store._db.read() as conn:
        return {str(i["name"]) for i in inspect(conn).get_indexes(usage.name)}


def test_a_version_2_store_gains_the_caller_index(fresh_site: StoreSite) -> None:
    made = _usage_indexes(fresh_site)
    assert "usage_log_caller_at" in made
    fresh_site.sql("DROP INDEX usage_log_caller_at")
    fresh_site.sql("DELETE FROM schema_version WHERE version > 2")
    store = fresh_site.open()
    assert store.applied_migrations == (3,)
    assert version(store._db) == LATEST
    assert _usage_indexes(fresh_site) == made  # migrated, it matches a new store


def test_a_budget_seed_reads_the_caller_index(tmp_path: Path) -> None:
    site = StoreSite("sqlite", None, tmp_path)
    site.open().close()
    # `caller_tokens`'s filter, as SQLite plans it.
    plan = site.sql(
        "EXPLAIN QUERY PLAN SELECT sum(tokens_in + tokens_out) FROM usage_log "
        "WHERE caller = :c AND at >= :a AND at < :b",
        c="k",
        a=0,
        b=1,
    )
    assert any("usage_log_caller_at" in str(row) for row in plan), plan
