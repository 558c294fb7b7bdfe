"""Fixtures: every store test runs on SQLite, and on PostgreSQL when
``CHATGATE_TEST_POSTGRES_URL`` is set (``export CHATGATE_TEST_POSTGRES_URL=$(.ci/postgres)``).

On PostgreSQL a store lives in a schema (``search_path`` in the URL). Most tests share
one, emptied before each; `fresh_site` makes a new one, for the tests of making it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from chatgate.store import Store
from chatgate.store.tables import metadata

POSTGRES_VARIABLE = "CHATGATE_TEST_POSTGRES_URL"
RAW_KEY = "sk-proj-RAWKEY0123456789abcdefWXYZ"
OTHER_KEY = "sk-ant-OTHERKEY9876543210zyxwvuQRST"


@dataclass
class StoreSite:
    """Where a test's store lives: a URL (None: SQLite in `directory`) and a directory."""

    backend: str
    url: str | None
    directory: Path
    opened: list[Store] = field(default_factory=list)
    engine: Engine | None = None

    def open(self, **kwargs: Any) -> Store:
        """A `Store` on this site, closed when the test ends."""
        kwargs.setdefault("env", {})
        store = Store(self.url, directory=self.directory, **kwargs)
        self.opened.append(store)
        return store

    @property
    def database_file(self) -> Path:
        """The SQLite file (SQLite sites only)."""
        assert self.backend == "sqlite"
        return self.directory / "chatgate.db"

    @property
    def key_file(self) -> Path:
        """Where the master key file is made."""
        return self.directory / "chatgate.key"

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run raw SQL against the store's database, outside the store."""
        if self.engine is None:
            url = self.url or f"sqlite:///{self.database_file}"
            self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def close(self) -> None:
        """Close every store opened here, and the raw SQL engine."""
        for store in self.opened:
            store.close()
        if self.engine is not None:
            self.engine.dispose()


def postgres_url() -> str:
    """The test server's URL, or a skip that says how to get one."""
    url = os.environ.get(POSTGRES_VARIABLE)
    if not url:
        pytest.skip(
            f"{POSTGRES_VARIABLE} is unset, so the PostgreSQL case is skipped: "
            f"export {POSTGRES_VARIABLE}=$(.ci/postgres) to run it"
        )
    return url


class PostgresServer:
    """The test server: one engine to make, empty and drop schemas with."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        self.made: list[str] = []

    def schema(self) -> tuple[str, str]:
        """A new, empty schema, and a URL whose search_path is it."""
        name = f"store_test_{secrets.token_hex(6)}"
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
        self.made.append(name)
        url = make_url(self.url).update_query_dict({"options": f"-csearch_path={name}"})
        return name, url.render_as_string(hide_password=False)

    def empty(self, schema: str) -> None:
        """Delete every row of the store's tables in *schema* but its schema version."""
        names = [t.name for t in metadata.sorted_tables if t.name != "schema_version"]
        with self.engine.begin() as conn:
            listed = ", ".join(f"{schema}.{name}" for name in names)
            conn.execute(text(f"TRUNCATE {listed} RESTART IDENTITY CASCADE"))

    def close(self) -> None:
        """Drop every schema made, and close the engine."""
        with self.engine.begin() as conn:
            for name in self.made:
                conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of the tests (skipped when none is configured)."""
    server = PostgresServer(postgres_url())
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_shared(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """One migrated schema that most tests share, emptied before each: creating the
    tables takes PostgreSQL far longer than the tests that use them."""
    name, url = postgres_server.schema()
    Store(url, directory=tmp_path_factory.mktemp("postgres-shared"), env={}).close()
    return name, url


def _site(request: pytest.FixtureRequest, tmp_path: Path, *, fresh: bool) -> Iterator[StoreSite]:
    directory = tmp_path / "data"
    if request.param == "sqlite":
        found = StoreSite("sqlite", None, directory)
    elif fresh:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        found = StoreSite("postgresql", server.schema()[1], directory)
    else:
        server = request.getfixturevalue("postgres_server")
        schema, url = request.getfixturevalue("postgres_shared")
        server.empty(schema)
        found = StoreSite("postgresql", url, directory)
    yield found
    found.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSite]:
    """A place for a store with no rows, on each backend (its schema may be made)."""
    yield from _site(request, tmp_path, fresh=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSite]:
    """A place where no store has been yet, not even its tables, on each backend."""
    yield from _site(request, tmp_path, fresh=True)


@pytest.fixture
def store(site: StoreSite) -> Store:
    """A fresh store, on each backend."""
    return site.open()


@pytest.fixture
def connected(store: Store) -> Store:
    """A store holding one connection, ``oa``, with the key `RAW_KEY`."""
    store.add_connection({"name": "oa", "source": "openai", "api_key": RAW_KEY})
    return store
