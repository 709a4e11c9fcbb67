"""The state store: feeds' poll state, seen entries, story clusters and the alert outbox.

One interface, :class:`~monitor.store.sql.SqlStore`, two backends: SQLite in WAL
mode (the embedded default) and PostgreSQL (for several instances sharing the
work). The SQL is written once, in the dialect both speak (``ON CONFLICT``,
``RETURNING``); the backends differ in connecting, placeholders, autoincrement
keys and locking (PostgreSQL: a connection pool, row and advisory locks).

``open_store("sqlite:///path/to/monitor.db")`` or
``open_store("postgresql://user@host/db")``.
"""

from __future__ import annotations

from monitor import redact
from monitor.errors import StoreError
from monitor.store.sql import Found, Ingest, Lookup, PollRecord, SqlStore, StoredEntry, alert_id

__all__ = ["Found", "Ingest", "Lookup", "PollRecord", "SqlStore", "StoredEntry", "alert_id",
           "open_store"]


def open_store(url: str, *, upgrade: bool = True) -> SqlStore:
    """The store at ``url``, its schema brought up to date unless ``upgrade`` is False
    (``news-monitor db status`` looks without changing anything)."""
    if url.startswith("sqlite:///"):
        from monitor.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), upgrade=upgrade)
    if url.startswith(("postgresql://", "postgres://")):
        from monitor.store.postgres import PostgresStore

        return PostgresStore(url, upgrade=upgrade)
    raise StoreError(f"unknown state URL {redact.url(url)!r}: use sqlite:///PATH or "
                     "postgresql://...")
