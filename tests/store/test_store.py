"""The `Store` itself: one object, many threads, no secret in its face."""

from __future__ import annotations

import threading
from pathlib import Path

from chatgate.store import Store
from tests.store.conftest import OTHER_KEY, RAW_KEY, StoreSite
from tests.store.test_usage import row


def test_a_store_is_a_context_manager_and_shows_no_secret(tmp_path: Path) -> None:
    with Store(directory=tmp_path, env={}) as store:
        store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
        assert repr(store).startswith("Store('sqlite+pysqlite:///")
        assert store.key_id is not None and store.key_id in repr(store)
        assert RAW_KEY not in repr(store)
    # Closed: its pool is gone, and a new one opens the same data.
    with Store(directory=tmp_path, env={}) as again:
        assert again.secret("oa") == RAW_KEY


def test_every_secret_is_every_readable_key_and_sealed_field(connected: Store) -> None:
    connected.add_key("oa", "spare", OTHER_KEY)
    connected.add_connection({"name": "px", "source": "openai", "proxy_password": "proxy-pw-1"})
    assert sorted(connected.every_secret()) == sorted([RAW_KEY, OTHER_KEY, "proxy-pw-1"])


def test_one_store_serves_many_threads(site: StoreSite) -> None:
    store = site.open()
    store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for turn in range(10):
                assert store.secret("oa") == RAW_KEY
                store.record_usage([row(caller=f"t{index}")])
                label = f"k{index}-{turn}"
                store.add_key("oa", label, f"sk-thread-key-{index:04d}-{turn:04d}")
                store.list_keys("oa")
                store.delete_key("oa", label)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [(g.key["caller"], g.requests) for g in store.usage(group_by="caller")] == [
        (f"t{i}", 10) for i in range(8)
    ]
    assert [k.label for k in store.list_keys("oa")] == ["default"]
