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
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.store.sql import SqlStore

logger = logging.getLogger(__name__)

#: WAL pages (4 KiB) not yet copied into the database past which a checkpoint
#: runs (in a commit, or on the background thread): ten times SQLite's default,
#: since a first poll of many feeds writes tens of MB, and each checkpoint pays
#: two fsyncs.
CHECKPOINT_PAGES = 10_000
#: Seconds between the background checkpointer's looks at the WAL's length.
CHECKPOINT_LOOK = 0.25
#: WAL pages past which a commit checkpoints after all, with background
#: checkpoints on. A WAL starts over only once a checkpoint has copied all of it
#: and a writer begins anew; under constant writes a background checkpoint never
#: catches the last commit, and this bounds the file (about 400 MB) instead.
BACKSTOP_PAGES = 100_000
#: The wal-index bytes read: both copies of its header (48 bytes each), then the
#: checkpoint information's first field, nBackfill.
_SHM_READ = 100


def _connect(path: str) -> sqlite3.Connection:
    """A connection as the store's and the checkpointer's are made: autocommit,
    shared between threads under the caller's lock, waiting up to 30 s for
    another's write lock, and synchronous=NORMAL (WAL: commits do not fsync;
    checkpoints do)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


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
            conn = _connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self.path = path
        self.where = path
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
        self._checkpoints = _Checkpointer(self.path, pages, look)  # first: it may fail
        with self._lock:
            self._conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")

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
        return StoreError(f"{what} failed: {exc}", transient=busy, where=self.where)

    def _tables(self) -> set[str]:
        return {r[0] for r in self._q("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _close(self) -> None:
        checkpoints, self._checkpoints = self._checkpoints, None
        if checkpoints is not None:
            checkpoints.stop()  # first: the close checkpoints what is left
        with self._lock:
            self._conn.close()
        if checkpoints is not None:
            checkpoints.release()  # last: see _Checkpointer


def checkpoint_due(last: int, waiting: int, *, seen: int, tried: int, pages: int) -> bool:
    """Whether the background checkpointer copies now (pure): ``waiting`` frames
    of the WAL's ``last`` are not yet copied; ``seen`` was ``last`` at the look
    before, ``tried`` at the last checkpoint. It copies once ``pages`` wait,
    and whatever waits once nothing was written since the last look: then the
    next writer starts the WAL over, instead of growing it to the backstop,
    whose copy would run in a commit. Never twice at one ``last``: a reader
    held pages back, and copying again would only pay the fsyncs again."""
    return waiting > 0 and last != tried and (waiting >= pages or last == seen)


class _Checkpointer:
    """A thread with its own connection that runs a PASSIVE checkpoint once
    ``pages`` are in the WAL and not yet copied: it copies what no reader
    still needs and never blocks a writer, which goes on appending meanwhile.

    How many wait it reads off the wal-index (the ``-shm`` file every
    connection maps; https://sqlite.org/walformat.html): the last valid frame
    (``mxFrame``, in the header, which is written twice) less the frames
    copied (``nBackfill``), both in native byte order.

    It reads through one handle, opened once and closed only after the store's
    connections (:meth:`release`): closing any handle to a file drops every
    POSIX lock the process holds on it, SQLite's included. Without its locks
    on the ``-shm``, the next process to open the database (``news-monitor
    feeds``, say) takes itself for the first, rebuilds the wal-index under the
    running service, and the service dies of SIGBUS at its next write."""

    def __init__(self, path: str, pages: int, look: float) -> None:
        try:
            self._conn = _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path} to checkpoint it: {exc}") from exc
        self._path = path
        self._shm = path + "-shm"
        self._fd: int | None = None  # the -shm's handle, once it exists
        self._pages = pages
        self._look = look
        self._tried = -1  # mxFrame at the last checkpoint
        self._seen = -1  # mxFrame at the last look
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._look):
                last, waiting = self.waiting()
                due = checkpoint_due(last, waiting, seen=self._seen, tried=self._tried,
                                     pages=self._pages)
                self._seen = last
                if due:
                    self._tried = last
                    self.checkpoint()
        finally:
            self._conn.close()

    def waiting(self) -> tuple[int, int]:
        """The WAL's last valid frame and the frames not yet copied; (0, 0) when the
        wal-index cannot be read, or is caught mid-update (its two headers differ)."""
        try:
            if self._fd is None:
                self._fd = os.open(self._shm, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            head = os.pread(self._fd, _SHM_READ, 0)
        except OSError:
            return 0, 0
        if len(head) < _SHM_READ or head[:48] != head[48:96]:
            return 0, 0
        last = int.from_bytes(head[16:20], sys.byteorder)
        copied = int.from_bytes(head[96:100], sys.byteorder)
        return last, max(0, last - copied)

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint. A failure (the disk full, say) is logged once
        until one succeeds; meanwhile the commits' backstop still checkpoints."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            if not self._failing:
                logger.warning("store.checkpoint_failed path=%s error=%s", self._path, exc)
            self._failing = True
        else:
            self._failing = False

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def release(self) -> None:
        """Close the -shm handle: only once no connection of this process to the
        database is left, whose locks its closing would drop."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
