"""Where the store lives, its files, and one short transaction per call.

``store_url``:

- None: the SQLite file ``chatgate.db`` in the user's data directory
  (`platformdirs.user_data_dir("chatgate")`, or the directory given);
- ``sqlite:///path/to/file.db`` (``sqlite:////abs/path`` for an absolute path);
- ``postgresql://user:password@host/db`` (also ``postgres://``), driven by psycopg 3.

SQLite runs in WAL mode with a busy timeout, so several processes may share a file:
readers never wait, and a writer waits up to `BUSY_TIMEOUT` for another writer. Write
transactions start with ``BEGIN IMMEDIATE``: a deferred one that reads first could find
the file changed under it when it comes to write, and fail at once rather than wait.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)

from chatgate.errors import ConfigError
from chatgate.store.errors import StoreConflict, StoreError, StoreUnavailable

log = logging.getLogger("chatgate.store")

DATABASE_FILE = "chatgate.db"
BUSY_TIMEOUT = 10.0  # seconds a SQLite writer waits for another
CONNECT_TIMEOUT = 10  # seconds to reach PostgreSQL
_WRITE = "chatgate_write"  # the execution option that makes a SQLite BEGIN IMMEDIATE


@dataclass(frozen=True, slots=True)
class Location:
    """Where a store is: its SQLAlchemy URL, and the directory its key file goes in."""

    url: URL
    directory: Path
    sqlite_path: Path | None = None

    @property
    def shown(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)


def default_directory() -> Path:
    """The user's data directory for chatgate."""
    return Path(platformdirs.user_data_dir("chatgate", appauthor=False))


def locate(store_url: str | None, directory: str | os.PathLike[str] | None = None) -> Location:
    """The location *store_url* names; *directory* replaces the user's data directory."""
    base = Path(directory) if directory is not None else default_directory()
    if store_url is None or not store_url.strip():
        path = base / DATABASE_FILE
        return Location(URL.create("sqlite+pysqlite", database=str(path)), base, path)
    try:
        url = make_url(store_url.strip())
    except ArgumentError:
        raise ConfigError("store_url: not a URL (sqlite:///path or postgresql://...)") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(f"store_url: SQLite goes through Python's sqlite3, not {driver}")
        if not url.database or url.database == ":memory:" or url.query:
            raise ConfigError("store_url: a SQLite store is a file: sqlite:///path/to/chatgate.db")
        path = Path(url.database).expanduser().absolute()
        return Location(URL.create("sqlite+pysqlite", database=str(path)), path.parent, path)
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(f"store_url: PostgreSQL goes through psycopg 3, not {driver}")
        return Location(url.set(drivername="postgresql+psycopg"), base)
    raise ConfigError(
        f"store_url: {backend!r} is not a store database (sqlite:///path or postgresql://...)"
    )


def ensure_private_directory(path: Path) -> None:
    """Make *path* (mode 0700) unless it exists; its parents get the usual mode."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def ensure_private_file(path: Path) -> None:
    """Create *path* empty with mode 0600, or take group and other access off it."""
    try:
        # O_EXCL: created here with 0600 from the start, never readable in between.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        tighten(path)
    else:
        os.close(descriptor)


def tighten(path: Path) -> None:
    """Take group and other access off *path*, if it has any."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning("store: %s was readable by others; now mode %o", path, mode & 0o700)


class Database:
    """An engine, and the two kinds of transaction every store call runs in one of."""

    def __init__(self, location: Location) -> None:
        self.location = location
        if location.sqlite_path is not None:
            try:
                ensure_private_directory(location.sqlite_path.parent)
                ensure_private_file(location.sqlite_path)
            except OSError as exc:
                raise StoreUnavailable(
                    f"store {location.sqlite_path}: cannot create it ({exc.strerror})"
                ) from None
            self.engine = _sqlite_engine(location.url)
        else:
            self.engine = _postgres_engine(location.url)

    @property
    def is_postgres(self) -> bool:
        """Whether this is a PostgreSQL store (else SQLite)."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (SQLite: deferred; it never waits for a writer)."""
        with self._failures(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``, waiting for other writers)."""
        with self._failures(), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            # Callers check first and name the field; this is the race they lost.
            raise StoreConflict("the change conflicts with one made at the same time") from None
        except DBAPIError as exc:
            # The first line only: PostgreSQL's DETAIL line quotes the row's values.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            unreachable = isinstance(exc, OperationalError | InterfaceError)
            failure = StoreUnavailable if unreachable else StoreError
            raise failure(f"store {self.location.shown}: {reason}") from None


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": BUSY_TIMEOUT})
    event.listen(engine, "connect", _sqlite_connected)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connected(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling skips BEGIN before DDL and SELECT; turned
    # off, _sqlite_begin issues every BEGIN (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    # WAL is a property of the file, set once. SQLite answers "database is locked" at
    # once, without the busy timeout, when processes opening a new file race to set it,
    # so the switch is retried here for as long as the timeout would have waited.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode (the file stays in {mode} mode)")
        return


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_engine(url: URL) -> Engine:
    try:
        return create_engine(
            url,
            hide_parameters=True,
            # A server restarted under a long-running gateway leaves dead pooled
            # connections; one is found by the ping, not by a failed call.
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
    except ModuleNotFoundError:
        raise ConfigError(
            "store_url: a PostgreSQL store needs psycopg: pip install 'chatgate[postgres]'"
        ) from None
