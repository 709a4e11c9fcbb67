"""SQLite backend: one file, WAL mode, the embedded default.

One connection, used by one thread at a time under a lock; ``BEGIN IMMEDIATE``
takes the file's write lock at the start of a transaction, which is also what
keeps two processes from migrating at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.store.sql import SqlStore


class SQLiteStore(SqlStore):
    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"

    def __init__(self, path: str, *, upgrade: bool = True) -> None:
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create state directory for {path}: {exc}") from exc
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Pages (4 KiB) written to the WAL between checkpoints, each of which fsyncs:
            # ten times SQLite's default, since a first poll of many feeds writes tens of MB.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        super().__init__(upgrade=upgrade)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def _run(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
        return conn.execute(sql, params)

    def _begin_sql(self) -> str:
        return "BEGIN IMMEDIATE"

    def _execute_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._bound() as conn:
            try:
                conn.executemany(sql, rows)
            except Exception as exc:
                raise self._error(exc, "executemany") from exc

    def _error(self, exc: BaseException, what: str) -> StoreError:
        # "database is locked": another process held the write lock past busy_timeout.
        busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        return StoreError(f"{what} failed: {exc}", transient=busy)

    def _tables(self) -> set[str]:
        return {r[0] for r in self._q("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _close(self) -> None:
        with self._lock:
            self._conn.close()
