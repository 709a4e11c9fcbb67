"""Opening a fresh state store per test, on SQLite and on PostgreSQL.

PostgreSQL tests each get a schema of their own (dropped afterwards) in the
database named by ``$NEWS_MONITOR_TEST_PG`` (``make test`` sets it to the
machine's server); without that variable and outside CI they are skipped with
a reason, in CI (``CI=true``) a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from monitor.store import SqlStore, open_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pg_url() -> str | None:
    url = os.environ.get("NEWS_MONITOR_TEST_PG")
    if url:
        return url
    if os.environ.get("CI"):
        return DEFAULT_PG
    return None


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a brand-new schema."""
    import psycopg

    url = pg_url()
    if url is None:
        pytest.skip("set NEWS_MONITOR_TEST_PG (make test does) to run the PostgreSQL backend")
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def state_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/state/monitor.db"
    else:
        with pg_schema_url() as url:
            yield url


@contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[SqlStore]:
    with state_url(backend, tmp_path) as url:
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()
