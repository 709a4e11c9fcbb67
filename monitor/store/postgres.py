"""PostgreSQL backend: for several instances sharing the work.

Needs the ``postgres`` extra (psycopg 3). The schema and queries are the same
as SQLite's; only placeholders and autoincrement keys differ.
"""

from __future__ import annotations

from typing import Any

from monitor.errors import StoreError
from monitor.store.sql import SqlStore


class PostgresStore(SqlStore):
    dialect = "postgres"
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("PostgreSQL needs psycopg: pip install 'news-monitor[postgres]'") \
                from exc
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        try:
            conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        super().__init__(conn)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin(self) -> None:
        self._conn.execute("BEGIN")

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._conn.execute(self._sql(sql), params)
