"""SQLite backend: one file, WAL mode, the embedded default.

One connection, used by one thread at a time under a lock; ``BEGIN IMMEDIATE``
takes the file's write lock at the start of a transaction, which is also what
keeps two processes from migrating at once.

A service's store copies its WAL into the database file on a thread and
connection of their own (:meth:`SQLiteStore.background_checkpoints`). Left to
the commits, that copy and its two fsyncs ran inside whichever commit crossed
the threshold, under the lock every store call takes: the ingest and the
loop's poll records waited on the disk, and the polls behind them on those.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.store.sql import SqlStore

logger = logging.getLogger(__name__)

#: WAL pages (4 KiB) not yet copied into the database past which a checkpoint
#: runs: ten times SQLite's default, since a first poll of many feeds writes
#: tens of MB, and each checkpoint pays two fsyncs.
CHECKPOINT_PAGES = 10_000
#: Seconds between the background checkpointer's looks at the WAL's size.
CHECKPOINT_LOOK = 0.25
#: WAL pages past which a commit checkpoints after all, with background
#: checkpoints on. A WAL starts over only once a checkpoint has copied all of it
#: and a writer begins anew; under constant writes a background checkpoint never
#: catches the last commit, and this bounds the file (about 400 MB) instead.
BACKSTOP_PAGES = 100_000


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
        self._checkpoints: _Checkpointer | None = None
        super().__init__(upgrade=upgrade)

    def background_checkpoints(self, pages: int = CHECKPOINT_PAGES,
                               look: float = CHECKPOINT_LOOK) -> None:
        """Copy the WAL into the database file on a thread and connection of their
        own once ``pages`` are waiting (looked at every ``look`` seconds),
        instead of in the commit that crosses ``wal_autocheckpoint``, whose copy
        and fsyncs every other store call would wait for; commits checkpoint
        only past :data:`BACKSTOP_PAGES`. For a long-lived process (the
        service); until :meth:`close`."""
        if self._checkpoints is not None or self.path == ":memory:":
            return
        with self._lock:
            # Cut back to what it holds whenever the WAL starts over, so that its
            # size is the pages written since: what the checkpointer looks at.
            self._conn.execute("PRAGMA journal_size_limit=0")
            self._conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self._checkpoints = _Checkpointer(self.path, pages, look, size)

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
        if self._checkpoints is not None:
            self._checkpoints.stop()  # first: the close checkpoints what is left
            self._checkpoints = None
        with self._lock:
            self._conn.close()


class _Checkpointer:
    """A thread with its own connection that runs a PASSIVE checkpoint once
    ``pages`` are in the WAL and not yet copied: it copies what no reader
    still needs and never blocks a writer, which goes on appending meanwhile.
    The WAL's size tells how many pages it holds (the frames of the WAL file
    format: a 32-byte header, then per page a 24-byte header and the page)."""

    def __init__(self, path: str, pages: int, look: float, page_size: int) -> None:
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                         timeout=30)
            self._conn.execute("PRAGMA synchronous=NORMAL")  # a checkpoint syncs under it
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path} to checkpoint it: {exc}") from exc
        self._path = path
        self._wal = path + "-wal"
        self._pages = pages
        self._look = look
        self._frame = 24 + page_size
        self._copied = 0  # frames of the WAL the last checkpoint had copied
        self._tried = -1  # frames in the WAL at the last checkpoint
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._look):
                frames = self._frames()
                # Fewer frames than were copied: the WAL started over since.
                waiting = frames - self._copied if frames >= self._copied else frames
                if waiting >= self._pages and frames != self._tried:
                    self._tried = frames  # a reader holding pages back: wait for more
                    self.checkpoint()
        finally:
            self._conn.close()

    def _frames(self) -> int:
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return 0
        return max(0, size - 32) // self._frame

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint. A failure (the disk full, say) is logged once
        until one succeeds; meanwhile the commits' backstop still checkpoints."""
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            if not self._failing:
                logger.warning("store.checkpoint_failed path=%s error=%s", self._path, exc)
            self._failing = True
        else:
            self._failing = False
            self._copied = max(0, int(row[2]))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
