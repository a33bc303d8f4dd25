"""The app's database access: short read transactions, and write transactions that take the lock up front.

Claiming a task reads the open slots and then writes an assignment; two labelers
doing that at once must not both see the same free slot. On SQLite the write
transaction therefore starts with ``BEGIN IMMEDIATE`` (the database write lock is
taken before the read), and the app's writers queue first on a mutex and a lock
file (``WriterLock``), so they never sleep in SQLite's busy handler. On PostgreSQL
a write transaction takes a transaction-scoped advisory lock per project, which
serialises claims across all workers while reads proceed freely.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from alignloop.store.db import commit_or_rollback, make_engine, resolve_url

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def _sqlite_engine(url: str, begin: str) -> Engine:
    """A SQLite engine whose transactions start with ``begin`` (the pysqlite driver's own BEGIN is turned off)."""
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    return None if database in (None, "", ":memory:") else Path(database)


class WriterLock:
    """Serialises the app's SQLite writers: a mutex between threads, then an ``flock`` between processes.

    SQLite's own busy handler retries a locked database after sleeping 1, 2, 5, 10, ... ms,
    which with several server workers turns a 1 ms transaction into tail latencies of tens
    of milliseconds. Waiting on a lock file instead wakes the next writer the moment the
    previous one commits. Writers outside the app (the CLI) still meet SQLite's own lock.
    """

    def __init__(self, database: Path | None) -> None:
        self._mutex = threading.Lock()
        self._path = None if database is None else database.with_name(database.name + ".writer-lock")
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self._mutex.acquire()
        if self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._mutex.release()
                raise
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()


class AppDatabase:
    """Read and write sessions on the project's store, for one app process."""

    def __init__(self, url: str, base_dir: str | Path | None, project_id: int) -> None:
        url = resolve_url(url, base_dir)
        self.project_id = project_id
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.read_engine = _sqlite_engine(url, "BEGIN")
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
        else:
            self.read_engine = self.write_engine = make_engine(url)
        self._reads = sessionmaker(self.read_engine, expire_on_commit=False)
        self._writes = sessionmaker(self.write_engine, expire_on_commit=False)
        self._write_mutex = WriterLock(_sqlite_path(url)) if self.is_sqlite else None
        self._writer: Connection | None = None  # SQLite: the one write connection, used under the mutex

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (a consistent snapshot; never blocks writers in WAL mode)."""
        with self._reads() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A serialised write transaction, committed (durably on disk) before the block's caller continues."""
        if self.is_sqlite:
            with self._write_mutex or nullcontext(), self._writes() as session, commit_or_rollback(session):
                yield session
        else:
            with self._writes() as session, commit_or_rollback(session):
                session.execute(_ADVISORY_LOCK, {"key": 7_340_000 + self.project_id})
                yield session

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """``write()`` on a bare Core connection: the per-task hot path, without ORM session bookkeeping.

        On SQLite the writers of a process take turns anyway, so they share one connection
        kept open for the life of the process (no pool checkout per transaction).
        """
        if self._write_mutex is None:
            with self.write_engine.connect() as conn, commit_or_rollback(conn):
                conn.execute(_ADVISORY_LOCK, {"key": 7_340_000 + self.project_id})
                yield conn
            return
        with self._write_mutex:
            if self._writer is None or self._writer.invalidated or self._writer.closed:
                self._writer = self.write_engine.connect()
            conn = self._writer
            try:
                yield conn
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:  # a broken connection: start a fresh one next time
                    conn.invalidate()
                raise

    @contextmanager
    def read_conn(self) -> Iterator[Connection]:
        """``read()`` on a bare Core connection."""
        with self.read_engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.read_engine.dispose()
        self.write_engine.dispose()
