"""SQLite backend: one file, WAL mode, the embedded default."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.store.sql import SqlStore


class SQLiteStore(SqlStore):
    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str) -> None:
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
        super().__init__(conn)

    def _sql(self, sql: str) -> str:
        return sql

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._conn.execute(sql, params)

    def _execute_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        self._conn.executemany(sql, rows)
