"""PostgreSQL backend: for several instances sharing the work.

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool). The schema and
queries are SQLite's; here:

* Connections come from a pool. After a server restart a pooled connection is
  dead: the call using it fails transiently and is retried
  (SqlStore.retry_for) on another, and the pool replaces the dead one. The
  pool does not check each connection before handing it out: that is a round
  trip per query, half of what the ingest of a feed waited on.
* Parameters travel separately from the SQL (the extended protocol):
  :func:`numbered` turns our ``?`` placeholders into ``$1, $2...`` outside
  quoted text, and a raw cursor sends them as they are.
* A transaction is one pipeline (:meth:`PostgresStore._pipelined`): what it
  sends costs no wait until it reads an answer, and batches go out with
  executemany. The queries of one :meth:`SqlStore.look_up` go out in one
  pipeline too (:meth:`PostgresStore._q_many`). Poll records and ingests commit without
  waiting for the disk (SqlStore._lax_commit says why that loses nothing sent).
* Driver errors become StoreError in :meth:`PostgresStore._error` only.
* Advisory locks: one around migrations (within their transaction), one held
  by the instance assigning entries to stories (:meth:`PostgresStore.assigning`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from monitor import logs, redact
from monitor.errors import StoreError
from monitor.store.sql import Hold, SqlStore, _after, _retrying, verb

#: Advisory lock keys (any two bigints distinct from other applications' on the
#: same database): ASCII "nm" and a number.
SCHEMA_LOCK = 0x6E6D_0001
ASSIGN_LOCK = 0x6E6D_0002


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2...``; a ``?`` inside a quoted
    string or identifier stays (pure). Our SQL has no comments or dollar quotes."""
    out: list[str] = []
    n = 0
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""  # a doubled quote closes and reopens: the same result
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def _serial_plans(conn: Any) -> None:
    """Every query here reads or writes a few rows by index: parallel workers
    never pay for themselves. Without statistics (a new table; a server with
    autovacuum off) the planner can misjudge a lookup by orders of magnitude
    and fork workers for it, each costing far more than the lookup."""
    conn.execute("SET max_parallel_workers_per_gather = 0")


class PostgresStore(SqlStore):
    dialect = "postgres"
    serial = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    materialized = " MATERIALIZED"
    #: Connections: the service's store thread, its ingest thread (and the one
    #: holding the assignment lock), the delivery worker, the status page.
    pool_size = 8
    #: Seconds to wait for a connection before the call fails (transiently).
    connect_timeout = 2.0

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise StoreError("PostgreSQL needs psycopg and psycopg_pool: "
                             "pip install 'news-monitor[postgres]'") from exc
        self._psycopg = psycopg
        self.where = redact.url(url)
        secrets = redact.url_secrets(url)
        logs.hide(secrets)  # the pool logs its failed connects, and they can quote the URL
        try:  # one connect first: the pool's own timeout would hide why it failed
            psycopg.connect(url, autocommit=True, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {redact.url(url)}: "
                             f"{redact.text(str(exc), secrets=secrets)}") from None
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=1, max_size=self.pool_size, open=False, name="news-monitor",
            kwargs={"autocommit": True, "cursor_factory": psycopg.RawCursor},
            configure=_serial_plans)
        try:
            self._pool.open(wait=True, timeout=10.0)
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact.url(url)}: "
                             f"{redact.text(str(exc), secrets=secrets)}") from None
        super().__init__(upgrade=upgrade)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            conn = self._pool.getconn(timeout=self.connect_timeout)
        except self._psycopg.Error as exc:
            raise self._error(exc, "connect") from exc
        try:
            yield conn
        finally:
            self._pool.putconn(conn)  # a broken one is discarded and replaced

    def _run(self, conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        return conn.execute(numbered(sql), params)

    @contextmanager
    def _pipelined(self, conn: Any) -> Iterator[None]:
        """A transaction as one pipeline: statements go out without waiting for
        their answers, until the block reads one (a query's rows, a count), and
        the COMMIT's answer is the last. An ingest that waited on ten round
        trips, under the assignment lock, waits on one or two."""
        try:
            with conn.pipeline() as pipeline:
                self._local.pipeline = pipeline
                try:
                    yield
                finally:
                    self._local.pipeline = None
        except self._psycopg.Error as exc:  # an answer read at the end: COMMIT's, or an error
            if conn.info.transaction_status == self._psycopg.pq.TransactionStatus.INERROR:
                try:
                    conn.execute("ROLLBACK")
                except self._psycopg.Error:
                    pass  # the connection is gone: the pool drops it
            raise self._error(exc, "commit") from exc

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        cur = self._execute(sql, params)
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is not None:  # the count is in the answer: wait for it
            try:
                pipeline.sync()
            except self._psycopg.Error as exc:
                raise self._error(exc, verb(sql)) from exc
        return int(cur.rowcount or 0)

    def _q_many(self, queries: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        """All the queries sent in one pipeline, then all the answers read: one round
        trip for a batch's reads instead of one per query."""
        if len(queries) < 2:
            return super()._q_many(queries)
        with self._bound() as conn:
            try:
                with conn.pipeline():
                    curs = [self._run(conn, sql, params) for sql, params in queries]
                    return [list(cur.fetchall()) for cur in curs]
            except self._psycopg.Error as exc:
                raise self._error(exc, "select") from exc

    def _lax_commit(self) -> None:
        self._execute("SET LOCAL synchronous_commit = off")

    def _execute_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """psycopg sends an executemany as one pipeline: every row's statement in
        one go and one wait for the answers, not a round trip per row."""
        with self._bound() as conn:
            try:
                with conn.cursor() as cur:
                    cur.executemany(numbered(sql), rows)
            except Exception as exc:
                raise self._error(exc, verb(sql)) from exc

    def _begin_sql(self) -> str:
        return "BEGIN"

    def _error(self, exc: BaseException, what: str) -> StoreError:
        # OperationalError: the connection or server (lost, restarting, pool
        # timeout) and transaction rollbacks (serialization failure, deadlock).
        transient = isinstance(exc, self._psycopg.OperationalError)
        return StoreError(f"{what} failed: {redact.text(str(exc))}", transient=transient)

    def _tables(self) -> set[str]:
        return {r[0] for r in self._q("SELECT table_name FROM information_schema.tables "
                                      "WHERE table_schema = current_schema()")}

    def _lock_schema(self) -> None:
        self._x("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    @contextmanager
    def assigning(self, after: int = -1) -> Iterator[Hold]:
        """Hold the cluster's assignment lock on a connection of its own while the
        block runs, and make the block's store calls on this thread use it. Taking
        the lock and the first read of :meth:`entries_after` are one round trip,
        the last row and the release another: every round trip made in the hold
        is one the other instances wait for. The server drops the lock with the
        connection, so an instance that dies never keeps it."""
        conn, rows = self._lock_assigning(after)
        self._local.conn = conn
        released = False
        try:
            hold = Hold(*self._entries_after(after, rows))
            yield hold
            [(last, _)] = self._q("SELECT (SELECT MAX(id) FROM entries), "
                                  "pg_advisory_unlock(?)", (ASSIGN_LOCK,))
            hold.last, released = int(last or 0), True
        finally:
            self._local.conn = None
            try:
                if not released:
                    self._run(conn, "SELECT pg_advisory_unlock(?)", (ASSIGN_LOCK,)).fetchall()
            except self._psycopg.Error:
                pass  # the connection is gone, and the lock with it
            finally:
                self._pool.putconn(conn)

    @_retrying
    def _lock_assigning(self, after: int) -> tuple[Any, list[Any]]:
        """A pooled connection holding the assignment lock, kept out of the pool
        until :meth:`assigning` is done, and the rows of the first query of
        ``entries_after(after)``, sent with the lock in one pipeline: each
        statement sees what was committed before it began, so the read sees
        everything stored before the lock was ours. A dead connection (the
        server restarted) goes back, and the pool drops it; the call is retried
        on another, as every other call is (``_retrying``)."""
        try:
            conn = self._pool.getconn(timeout=self.connect_timeout)
        except self._psycopg.Error as exc:
            raise self._error(exc, "connect") from exc
        try:
            with conn.pipeline():
                self._run(conn, "SELECT pg_advisory_lock(?)", (ASSIGN_LOCK,))
                cur = self._run(conn, *_after(after))
            rows = list(cur.fetchall())
        except BaseException as exc:
            conn.close()  # whether or not the lock was taken: the server drops it
            self._pool.putconn(conn)
            if isinstance(exc, self._psycopg.Error):
                raise self._error(exc, "assignment lock") from exc
            raise
        return conn, rows

    def _serials_follow(self) -> None:
        for table, col in (("entries", "id"), ("alerts", "seq")):
            self._q(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                    f"COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)")

    def _close(self) -> None:
        self._pool.close()
