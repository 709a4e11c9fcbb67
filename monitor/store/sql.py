"""The store's schema and queries, shared by the SQLite and PostgreSQL backends.

Tables::

    feeds              one row per feed: HTTP validators, when it is due, its health
                       (last attempt/success/error, failures, status, rate, response time),
                       its last parse's memo of the items it made (ParsedFeed.seen)
    entries            every entry of the last `retention` (feed, key) with its content,
                       for backtests, the story it belongs to and whether a watchlist
                       matched it
    seen_keys          what is left of an entry after `retention`: a hash of (feed, key),
                       kept while the item is still in its feed, so it never alerts again
    stories            story clusters (#4): one row per news event
    watchlist_stories  (watchlist, story) pairs already alerted: the dedupe guarantee
    alerts             the outbox: one row per (watchlist, destination, story), in the
                       order stories were found (seq); the delivery worker drains it
    leases             named claims with an owner and an expiry: an outbox lane
                       (``lane:<destination>``) or a cluster-wide job (``job:prune``)

Several instances may share one store (PostgreSQL): a due feed is claimed with
a lease (``feeds.lease_owner``/``lease_until``, released when its poll is
recorded), each outbox lane and each cluster-wide job by a row in ``leases``.
A dead instance's claims expire and are taken over.

The schema is versioned (``meta.schema``): :data:`MIGRATIONS` holds the
numbered steps, applied on open (or by ``news-monitor db upgrade``) under a
lock, so two instances starting together never both run them.

The outbox is transactional: recording a feed's new entries and queuing the
alerts they caused happen in one transaction (:meth:`SqlStore.ingest`), so a
crash either loses the poll (it is redone, nothing was recorded) or keeps
both. An alert is marked sent only after the destination took it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from monitor import redact
from monitor.dedupe import Join
from monitor.errors import StoreError
from monitor.types import Alert, AlertStatus, Entry, FeedState, Receipt, Source, Story

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 10


# A feed's place in the due order: never polled ('') first, then by due time. One
# expression, so that the claim walks the feeds_due index in order and stops at
# its LIMIT instead of sorting the table.
_DUE = "COALESCE(next_poll_at, '')"


def _add_maybe_sent(store: SqlStore) -> None:
    """``alerts.maybe_sent`` went into the version-1 table without a step of its own:
    a database made before that has no such column, one made after has it."""
    if "maybe_sent" not in store._columns("alerts"):
        store._x("ALTER TABLE alerts ADD COLUMN maybe_sent INTEGER NOT NULL DEFAULT 0")


def _room_to_update_in_place(store: SqlStore) -> None:
    """PostgreSQL updates a row in place (HOT) only if its page has room and no
    indexed column changed: leave half of each feeds page free. SQLite rewrites
    rows in place anyway."""
    if store.dialect == "postgres":
        store._x("ALTER TABLE feeds SET (fillfactor = 50)")


def _memo_as_bytes(store: SqlStore) -> None:
    """Each feed's parse memo as bytes (``memo``) instead of base64 text (``seen``):
    every claim reads the memos of the feeds it takes, and decoding them was a
    third of the store's work in a 10,000-feed cycle.

    A database made while step 6 was shorter (schema 6 of commit 8df6740) has
    neither ``seen`` nor ``seen_since``: the one is not converted, the other is
    added here."""
    columns = store._columns("feeds")
    if "seen_since" not in columns:
        store._x("ALTER TABLE feeds ADD COLUMN seen_since TEXT")
    store._x(f"ALTER TABLE feeds ADD COLUMN memo {store.blob}")
    if "seen" not in columns:
        return
    if store.dialect == "postgres":
        store._x("UPDATE feeds SET memo = decode(seen, 'base64') WHERE seen IS NOT NULL")
    else:
        rows = store._q("SELECT name, seen FROM feeds WHERE seen IS NOT NULL")
        store._xmany("UPDATE feeds SET memo = ? WHERE name = ?",
                     [(base64.b64decode(seen), name) for name, seen in rows])
    store._x("ALTER TABLE feeds DROP COLUMN seen")


#: A step is SQL, or a function for what SQL alone cannot say on both backends.
Step = str | Callable[["SqlStore"], None]

#: Numbered schema steps after version 1 (which _schema creates): step N takes
#: a database from version N - 1 to N, on both backends.
MIGRATIONS: dict[int, tuple[Step, ...]] = {
    # 2: why each entry is in its story (stories --explain, weak joins posted as
    # "possibly the same story"), and how many of a story's members an alert
    # has announced in its thread.
    2: (
        "ALTER TABLE entries ADD COLUMN join_how TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE entries ADD COLUMN join_score DOUBLE PRECISION NOT NULL DEFAULT 0",
        "ALTER TABLE entries ADD COLUMN join_bar DOUBLE PRECISION NOT NULL DEFAULT 0",
        "ALTER TABLE entries ADD COLUMN join_evidence TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE entries ADD COLUMN join_weak INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE alerts ADD COLUMN announced INTEGER NOT NULL DEFAULT 0",
    ),
    # 3: retention deletes rows; an entry's identity outlives it as a compact key
    # (refreshed while the item stays in its feed).
    3: (
        """CREATE TABLE seen_keys (
            feed TEXT NOT NULL, key_hash TEXT NOT NULL, last_seen TEXT NOT NULL,
            PRIMARY KEY (feed, key_hash))""",
        "CREATE INDEX seen_keys_last_seen ON seen_keys (last_seen)",
        "CREATE INDEX alerts_created ON alerts (created_at)",
        "CREATE INDEX watchlist_stories_matched ON watchlist_stories (matched_at)",
    ),
    # 4: each feed's due time (one scheduler tick takes the due rows, #13), its
    # health for `news-monitor feeds`, the hash of its last body (an unchanged
    # body is not parsed) and its 410 / ops-alert state.
    4: (
        "ALTER TABLE feeds ADD COLUMN next_poll_at TEXT",
        "ALTER TABLE feeds ADD COLUMN last_success_at TEXT",
        "ALTER TABLE feeds ADD COLUMN failing_since TEXT",
        "ALTER TABLE feeds ADD COLUMN status INTEGER",
        "ALTER TABLE feeds ADD COLUMN per_day DOUBLE PRECISION",
        "ALTER TABLE feeds ADD COLUMN response_ms DOUBLE PRECISION",
        "ALTER TABLE feeds ADD COLUMN body_hash TEXT",
        "ALTER TABLE feeds ADD COLUMN hint_s DOUBLE PRECISION",
        "ALTER TABLE feeds ADD COLUMN gone_url TEXT",
        "ALTER TABLE feeds ADD COLUMN ops_alerted INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX feeds_due ON feeds (next_poll_at)",
    ),
    # 5: several instances on one store (#15): who holds a due feed and until when,
    # who polled it last, and named leases for outbox lanes and cluster-wide jobs.
    5: (
        _add_maybe_sent,
        "ALTER TABLE feeds ADD COLUMN lease_owner TEXT",
        "ALTER TABLE feeds ADD COLUMN lease_until TEXT",
        "ALTER TABLE feeds ADD COLUMN polled_by TEXT",
        "CREATE INDEX feeds_lease ON feeds (lease_owner)",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TEXT NOT NULL)""",
    ),
    # 6: whether a watchlist matched an entry when it was stored, so that start-up
    # rebuilds the story index from the watched stories' entries only (#13). Rows
    # from before count as watched: they are matched again, as they always were.
    # And each feed's last parse memo (ParsedFeed.seen, base64) with when the last
    # full parse was: items it recognises are not made into entries again.
    6: (
        "ALTER TABLE entries ADD COLUMN watched INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE feeds ADD COLUMN seen TEXT",
        "ALTER TABLE feeds ADD COLUMN seen_since TEXT",
        "CREATE INDEX entries_watched ON entries (seen_at, story_id) WHERE watched = 1",
    ),
    # 7: a feed row is written twice a poll (its claim, its record). The claim walks
    # the due order by index and stops at its LIMIT, and no index covers the
    # lease, so a claim can update its row in place.
    7: (  # IF EXISTS: step 5 made no feeds_lease before commit 6e7b618
        "DROP INDEX IF EXISTS feeds_lease",
        "DROP INDEX IF EXISTS feeds_due",
        f"CREATE INDEX feeds_due ON feeds (({_DUE}))",
        _room_to_update_in_place,
    ),
    # 8: a link's story is the smallest story id among the entries carrying it.
    # An index on both answers that with its first row for the link; on the link
    # alone, a planner without statistics walked the story index instead, and
    # read most of the table for each link.
    8: (
        "CREATE INDEX entries_url_story ON entries (canonical_url, story_id)",
        "DROP INDEX entries_url",
    ),
    # 9: the parse memo as bytes, not base64 text.
    9: (_memo_as_bytes,),
    # 10: the URL each feed was last synced with: a changed URL is polled at once,
    # without the old one's validators, body hash and memo (or its backoff).
    10: ("ALTER TABLE feeds ADD COLUMN url TEXT",),
}


def verb(sql: str) -> str:
    """What a failed statement was doing, for its error: ``insert``, ``select``..."""
    return sql.split(None, 1)[0].lower()


def key_hash(key: str) -> str:
    """The compact form of an entry key that outlives the entry (128 bits)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ts(dt: datetime | None) -> str | None:
    """A UTC datetime as a fixed-width, sortable string (``isoformat`` pads the year
    to four digits, which strftime's ``%Y`` does not: :func:`dt` and string order
    need it)."""
    if dt is None:
        return None
    u = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    return u.isoformat(timespec="microseconds")[:-6] + "Z"


def dt(s: str | None) -> datetime | None:
    """The inverse of :func:`ts`; also reads the unpadded years older versions wrote."""
    if s is None:
        return None
    if s[4:5] != "-":
        year, sep, rest = s.partition("-")
        if sep and len(year) < 4 and year.isdigit():
            s = f"{int(year):04d}-{rest}"
    return datetime.fromisoformat(s)  # ten times faster than strptime


def writable(*values: str | None) -> None:
    """Refuse text the store could not hold or give back unchanged.

    PostgreSQL rejects NUL, and a lone surrogate cannot be encoded as UTF-8
    by either backend; the parser removes both, so reaching this is a bug
    upstream, reported as one feed's StoreError rather than a crashed poll.
    The values are checked together: this runs for every entry stored.
    """
    text = "".join([v for v in values if v])
    if "\0" in text:
        raise StoreError("refused a value with a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise StoreError("refused a value that is not valid Unicode (a lone "
                             "surrogate)") from None


def alert_id(watchlist: str, destination: str, story_id: str) -> str:
    """Deterministic: one alert per (watchlist, destination, story), ever."""
    digest = hashlib.sha256(f"{watchlist}\0{destination}\0{story_id}".encode()).hexdigest()
    return digest[:20]


def _schema(serial: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS feeds (
            name TEXT PRIMARY KEY,
            etag TEXT, last_modified TEXT,
            first_polled_at TEXT, last_polled_at TEXT,
            last_error TEXT, failures INTEGER NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS entries (
            id {serial},
            feed TEXT NOT NULL, key TEXT NOT NULL, guid TEXT,
            link TEXT NOT NULL, canonical_url TEXT NOT NULL,
            title TEXT NOT NULL, summary TEXT NOT NULL,
            published TEXT, seen_at TEXT NOT NULL, story_id TEXT NOT NULL,
            UNIQUE (feed, key))""",
        "CREATE INDEX IF NOT EXISTS entries_url ON entries (canonical_url)",
        "CREATE INDEX IF NOT EXISTS entries_seen ON entries (seen_at)",
        "CREATE INDEX IF NOT EXISTS entries_story ON entries (story_id)",
        """CREATE TABLE IF NOT EXISTS stories (
            id TEXT PRIMARY KEY, title TEXT NOT NULL,
            first_seen TEXT NOT NULL, last_seen TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS stories_last_seen ON stories (last_seen)",
        """CREATE TABLE IF NOT EXISTS watchlist_stories (
            watchlist TEXT NOT NULL, story_id TEXT NOT NULL, matched_at TEXT NOT NULL,
            PRIMARY KEY (watchlist, story_id))""",
        f"""CREATE TABLE IF NOT EXISTS alerts (
            seq {serial},
            id TEXT NOT NULL UNIQUE,
            watchlist TEXT NOT NULL, destination TEXT NOT NULL, story_id TEXT NOT NULL,
            entry_feed TEXT NOT NULL, entry_key TEXT NOT NULL,
            terms TEXT NOT NULL,
            status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT, last_error TEXT,
            created_at TEXT NOT NULL, sent_at TEXT,
            remote_id TEXT, remote_channel TEXT,
            update_due INTEGER NOT NULL DEFAULT 0,
            hold_until TEXT, hold_reason TEXT)""",
        "CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, next_attempt_at)",
        "CREATE INDEX IF NOT EXISTS alerts_story ON alerts (story_id)",
    ]


@dataclass(frozen=True, slots=True)
class Lookup:
    """What :meth:`SqlStore.look_up` is asked about one poll: which of ``keys`` the
    feed has seen, and the stories of ``urls``."""

    feed: str
    keys: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Found:
    """:meth:`SqlStore.look_up`'s answer for one poll: as :meth:`SqlStore.known`
    and :meth:`SqlStore.story_by_url` would say."""

    known: dict[str, tuple[str, str]]
    by_url: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollRecord:
    """The outcome of one poll of one feed, to be remembered.

    ``parsed``: the body was parsed, so ``body_hash``, ``per_day`` and ``hint``
    replace what was stored (otherwise the stored ones stand). ``gone_url``:
    that URL answered 410 and the feed is disabled. Recording a poll releases
    the feed's lease.
    """

    feed: str
    at: datetime
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    status: int | None = None
    next_poll_at: datetime | None = None
    response_ms: float | None = None
    parsed: bool = False
    body_hash: str | None = None
    per_day: float | None = None
    hint: timedelta | None = None
    gone_url: str | None = None
    by: str | None = None  # the instance that polled
    seen: bytes = b""  # with parsed: the parse's memo (ParsedFeed.seen)...
    seen_since: datetime | None = None  # ...and when the last full parse was


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    entry: Entry
    story_id: str
    seen_at: datetime
    join: Join | None = None  # why it is in its story; None: it opened the story
    watched: bool = True  # a watchlist matched it when it was stored


@dataclass(frozen=True, slots=True)
class Ingest:
    """One poll's records, as :meth:`SqlStore.ingest` takes them (for
    :meth:`SqlStore.ingest_all`)."""

    poll: PollRecord
    entries: Sequence[StoredEntry]
    alerts: Sequence[Alert] = ()
    retitled: Sequence[Entry] = ()
    present: Sequence[str] = ()


_FEED_COLS = ("name, etag, last_modified, first_polled_at, last_polled_at, last_error, failures, "
              "last_success_at, failing_since, status, next_poll_at, per_day, response_ms, "
              "body_hash, hint_s, gone_url, ops_alerted, polled_by, memo, seen_since")
# The same without the parse memo (FeedState.seen empty): a poll needs a feed's memo
# only where its poller does not hold it already (SqlStore.memos).
_POLL_COLS = _FEED_COLS.replace(", memo,", ", NULL,")
# Mean response time, weighted to the last ten polls or so.
_EWMA = ("CASE WHEN excluded.response_ms IS NULL THEN feeds.response_ms "
         "WHEN feeds.response_ms IS NULL THEN excluded.response_ms "
         "ELSE 0.8 * feeds.response_ms + 0.2 * excluded.response_ms END")

# A recorded poll ends the claim on its feed and says who made it.
_RELEASE = ("lease_owner = NULL, lease_until = NULL, polled_by = excluded.polled_by, ")


def _feed_state(r: Sequence[Any]) -> FeedState:
    return FeedState(name=r[0], etag=r[1], last_modified=r[2], first_polled_at=dt(r[3]),
                     last_polled_at=dt(r[4]), last_error=r[5], failures=r[6],
                     last_success_at=dt(r[7]), failing_since=dt(r[8]), status=r[9],
                     next_poll_at=dt(r[10]), per_day=r[11], response_ms=r[12], body_hash=r[13],
                     hint=timedelta(seconds=r[14]) if r[14] is not None else None,
                     gone_url=r[15], ops_alerted=bool(r[16]), polled_by=r[17],
                     seen=bytes(r[18]) if r[18] else b"", seen_since=dt(r[19]))


_ALERT_COLS = (
    "a.seq, a.id, a.watchlist, a.destination, a.story_id, a.terms, a.status, a.attempts, "
    "a.next_attempt_at, a.last_error, a.created_at, a.sent_at, a.remote_id, a.remote_channel, "
    "a.hold_until, a.hold_reason, a.maybe_sent, "
    "e.feed, e.key, e.guid, e.link, e.canonical_url, e.title, e.summary, e.published"
)
#: Feed names per statement when renewing claims (far below either backend's
#: limit on parameters).
_RENEW_CHUNK = 500

_ENTRY_COLS = ("feed, key, guid, link, canonical_url, title, summary, published, seen_at, "
               "story_id, join_how, join_score, join_bar, join_evidence, join_weak, watched")


def _poll_row(poll: PollRecord) -> tuple[str, tuple[Any, ...]]:
    """The statement that records one poll in its feed's row, and its parameters:
    polls of one kind share the SQL, so a group commit sends them as one batch."""
    writable(poll.feed, poll.etag, poll.last_modified, poll.error)
    hint = poll.hint.total_seconds() if poll.hint is not None else None
    at = ts(poll.at)
    if poll.error is None:
        content = ("body_hash = excluded.body_hash, per_day = excluded.per_day, "
                   "hint_s = excluded.hint_s, memo = excluded.memo, "
                   "seen_since = excluded.seen_since, " if poll.parsed else "")
        return (
            "INSERT INTO feeds (name, etag, last_modified, first_polled_at, last_polled_at, "
            "last_success_at, failures, status, next_poll_at, response_ms, body_hash, "
            "per_day, hint_s, polled_by, memo, seen_since) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (name) DO UPDATE SET {_RELEASE}"
            "etag = excluded.etag, last_modified = excluded.last_modified, "
            "first_polled_at = COALESCE(feeds.first_polled_at, excluded.first_polled_at), "
            "last_polled_at = excluded.last_polled_at, last_error = NULL, failures = 0, "
            "last_success_at = excluded.last_success_at, failing_since = NULL, "
            f"status = excluded.status, next_poll_at = excluded.next_poll_at, {content}"
            f"response_ms = {_EWMA}",
            (poll.feed, poll.etag, poll.last_modified, at, at, at,
             poll.status, ts(poll.next_poll_at), poll.response_ms, poll.body_hash,
             poll.per_day, hint, poll.by,
             poll.seen or None,
             ts(poll.seen_since)))
    return (
        "INSERT INTO feeds (name, last_polled_at, last_error, failures, failing_since, "
        "status, next_poll_at, response_ms, gone_url, polled_by) "
        "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (name) DO UPDATE SET {_RELEASE}"
        "last_polled_at = excluded.last_polled_at, last_error = excluded.last_error, "
        "failures = feeds.failures + 1, "
        "failing_since = COALESCE(feeds.failing_since, excluded.failing_since), "
        "status = excluded.status, next_poll_at = excluded.next_poll_at, "
        f"gone_url = excluded.gone_url, response_ms = {_EWMA}",
        (poll.feed, at, poll.error, at, poll.status,
         ts(poll.next_poll_at), poll.response_ms, poll.gone_url, poll.by))


_PAGE = 1000  # rows per query of entries_after


def _after(after: int) -> tuple[str, tuple[Any, ...]]:
    """The query of SqlStore.entries_after: the last row (``after=-1``) or the next
    page. In pages: with a LIMIT, PostgreSQL's generic plan for a prepared
    statement is an index range scan. Without one it plans for a third of the
    table (it cannot see that ``after`` is near the end) and sorts the lot on
    each call."""
    if after < 0:
        return "SELECT MAX(id) FROM entries", ()
    return (f"SELECT id, {_ENTRY_COLS} FROM entries WHERE id > ? ORDER BY id LIMIT {_PAGE}",
            (after,))


@dataclass(slots=True)
class Hold:
    """A hold of the assignment lock (SqlStore.assigning): on taking it, the entries
    stored after the row asked for and the last row; on release, ``last`` is
    the last row then."""

    last: int
    fresh: list[StoredEntry]


def _stored(row: Sequence[Any], seen: datetime | None = None) -> StoredEntry:
    how = row[10] or ""
    join = None
    if how:
        join = Join(story_id=row[9], how=how, score=float(row[11]), bar=float(row[12]),
                    evidence=tuple((row[13] or "").split()), weak=bool(row[14]))
    return StoredEntry(entry=_entry(row), seen_at=dt(row[8]) or seen or datetime.min,
                       story_id=row[9], join=join, watched=bool(row[15]))


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(feed=row[0], key=row[1], guid=row[2], link=row[3], canonical_url=row[4],
                 title=row[5], summary=row[6], published=dt(row[7]))


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(
        seq=row[0], id=row[1], watchlist=row[2], destination=row[3], story_id=row[4],
        terms=tuple(json.loads(row[5])), status=AlertStatus(row[6]), attempts=row[7],
        next_attempt_at=dt(row[8]), last_error=row[9], created_at=dt(row[10]) or datetime.min,
        sent_at=dt(row[11]), remote_id=row[12], remote_channel=row[13],
        hold_until=dt(row[14]), hold_reason=row[15], maybe_sent=bool(row[16]),
        entry=_entry(row[17:25]),
    )


class SqlStore:
    """The store. Methods are synchronous and each is one short transaction.

    Safe to call from several threads (the service's store thread, the ingest
    thread, the delivery worker): each transaction holds one connection,
    SQLite's single connection under a lock or one from PostgreSQL's pool.
    A public method that fails transiently (connection lost, server restarting,
    lock conflict) is tried again for up to ``retry_for`` seconds, whole: each is
    one transaction, or several that may be redone (prune).
    """

    dialect: ClassVar[str]
    serial: ClassVar[str]
    blob: ClassVar[str]  # the type of a column of bytes
    #: Appended to the SELECT that picks rows to claim: PostgreSQL's row locks let
    #: instances claim side by side; SQLite's one writer serialises claims anyway.
    skip_locked: ClassVar[str] = ""
    #: After ``WITH name AS``: run the CTE once (PostgreSQL may otherwise fold it into
    #: the query). SQLite runs an uncorrelated one once anyway, and before 3.35
    #: does not know the word.
    materialized: ClassVar[str] = ""
    #: Seconds a transient failure is retried before the caller sees it.
    retry_for: float = 5.0
    #: Which database this is, for messages: its path, or its URL without secrets.
    where: str = "the store"

    def __init__(self, *, upgrade: bool = True) -> None:
        self._local = threading.local()
        if upgrade:
            self.upgrade()

    # -- backend hooks ---------------------------------------------------------------

    def _connection(self) -> AbstractContextManager[Any]:
        """One connection for the caller's transaction or statement, driver errors
        already mapped (:meth:`_error`)."""
        raise NotImplementedError

    def _run(self, conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        """Execute one statement with ``?`` parameters; return the cursor."""
        raise NotImplementedError

    def _begin_sql(self) -> str:
        raise NotImplementedError

    def _error(self, exc: BaseException, what: str) -> StoreError:
        """The one place a driver's exception becomes ours (transient or not)."""
        raise NotImplementedError

    def _lock_schema(self) -> None:
        """Within the migration transaction: keep other instances out until it ends."""

    def _close(self) -> None:
        raise NotImplementedError

    def _pipelined(self, conn: Any) -> AbstractContextManager[None]:
        """Around a transaction: a backend that can send its statements without
        waiting for each answer (until one is read) does so here."""
        return nullcontext()

    def _lax_commit(self) -> None:
        """In the transaction just begun: let its commit return before the disk has
        it. For the records a poll can make again (a poll, its entries): a
        database crash loses at most the last moment's, and the feed is read
        again. Anything sent on was made durable first, because the outbox's
        attempt mark (mark_attempt) commits durably before a send, and a durable
        commit writes out every commit before it. SQLite's WAL with
        synchronous=NORMAL is lax this way already."""

    def _execute_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One statement for many rows; a backend with a batch call overrides this."""
        for params in rows:
            self._execute(sql, params)

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _bound(self) -> Iterator[Any]:
        """The calling thread's connection: the transaction's if one is open."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[None]:
        """One transaction on the calling thread's connection. ``durable=False``: the
        commit need not wait for the disk (:meth:`_lax_commit`)."""
        if getattr(self._local, "tx", False):  # part of the caller's transaction
            yield
            return
        with self._bound() as conn, self._pipelined(conn):
            self._execute(self._begin_sql())
            if not durable:
                self._lax_commit()
            self._local.tx = True
            try:
                yield
            except BaseException:
                try:
                    self._execute("ROLLBACK")
                except StoreError:
                    pass  # the connection is gone: the original error says more
                raise
            finally:
                self._local.tx = False
            self._execute("COMMIT")

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._bound() as conn:
            try:
                return self._run(conn, sql, params)
            except StoreError:
                raise
            except Exception as exc:
                raise self._error(exc, verb(sql)) from exc

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._bound():
            cur = self._execute(sql, params)
            try:
                return list(cur.fetchall())
            except Exception as exc:
                raise self._error(exc, "fetch") from exc

    def _q_many(self, queries: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        """Several queries' rows; PostgreSQL sends them all before reading an answer."""
        with self._bound():
            return [self._q(sql, params) for sql, params in queries]

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Execute; the number of rows it changed."""
        return int(self._execute(sql, params).rowcount or 0)

    def _send(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Execute, where nothing waits for the answer: in a pipelined transaction
        (:meth:`_pipelined`) it costs no round trip of its own."""
        self._execute(sql, params)

    def _xmany(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self._execute_many(sql, rows)

    def _columns(self, table: str) -> set[str]:
        """The columns ``table`` has (read from an empty result's description)."""
        cur = self._execute(f"SELECT * FROM {table} WHERE 1 = 0")
        cur.fetchall()
        return {str(d[0]) for d in cur.description}

    def schema_version(self) -> int:
        """The schema version of the database (0: empty)."""
        with self._bound():
            if "meta" not in self._tables():
                return 0
            rows = self._q("SELECT value FROM meta WHERE key = 'schema'")
        if not rows:
            return 1
        value = str(rows[0][0])
        if not value.isdigit():  # a hand edit, or not our meta table
            raise StoreError(f"{self.where}: its schema version is {value[:40]!r}, not a number")
        return int(value)

    def _tables(self) -> set[str]:
        raise NotImplementedError

    def upgrade(self, to: int = SCHEMA_VERSION) -> list[int]:
        """Apply the steps that take the database to version ``to``, in one
        transaction under the schema lock; returns the steps applied."""
        if to > SCHEMA_VERSION:
            raise StoreError(f"no schema {to}: this news-monitor knows up to {SCHEMA_VERSION}")
        with self._tx():
            self._lock_schema()
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.where} was written by a newer news-monitor "
                                 f"(schema {version} > {SCHEMA_VERSION})")
            if version == 0:
                for stmt in _schema(self.serial):
                    self._x(stmt)
            if version <= 1:
                self._put_meta("schema", "1")
                version = 1
            done = []
            for step in range(version + 1, to + 1):
                for act in MIGRATIONS[step]:
                    if isinstance(act, str):
                        self._x(act)
                    else:
                        act(self)
                self._put_meta("schema", str(step))
                done.append(step)
        if done:
            logger.info("store.upgraded schema=%d steps=%s", to, ",".join(map(str, done)))
        return done

    def close(self) -> None:
        self._close()

    def background_checkpoints(self) -> None:
        """For a long-lived process: a backend whose commits copy their log into the
        database (SQLite's checkpoints) does it on a thread of its own from now
        on; others have nothing to move."""

    #: What ``news-monitor db migrate`` copies, parents first; leases are left
    #: behind (they belong to the instances of the old store).
    COPIED = ("meta", "feeds", "entries", "seen_keys", "stories", "watchlist_stories", "alerts")

    def copy_from(self, src: SqlStore, batch: int = 200) -> dict[str, int]:
        """Copy every row of ``src`` into this empty store (both at the current
        schema), keys and alert order included, in one transaction; returns the
        rows copied per table."""
        if src.schema_version() != SCHEMA_VERSION or self.schema_version() != SCHEMA_VERSION:
            raise StoreError(f"both stores must be at schema {SCHEMA_VERSION}: "
                             "run `news-monitor db upgrade` on the source first")
        copied: dict[str, int] = {}
        with self._tx():
            for table in self.COPIED:
                if self._q(f"SELECT 1 FROM {table} WHERE key <> 'schema' "
                           "LIMIT 1" if table == "meta" else f"SELECT 1 FROM {table} LIMIT 1"):
                    raise StoreError(f"the destination is not empty ({table} has rows): "
                                     "db migrate copies into a new store only")
            for table in self.COPIED:
                cols = sorted(src._columns(table) & self._columns(table))
                where = " WHERE key <> 'schema'" if table == "meta" else ""
                rows = src._q(f"SELECT {', '.join(cols)} FROM {table}{where}")
                marks = "(" + ", ".join("?" * len(cols)) + ")"
                for i in range(0, len(rows), batch):
                    chunk = rows[i:i + batch]
                    self._x(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                            + ", ".join([marks] * len(chunk)),
                            tuple(v for r in chunk for v in r))
                copied[table] = len(rows)
            self._serials_follow()
        return copied

    def _serials_follow(self) -> None:
        """After rows were inserted with their keys: new keys continue after them."""

    # -- feeds ------------------------------------------------------------------------

    def feed_state(self, name: str) -> FeedState | None:
        rows = self._q(f"SELECT {_FEED_COLS} FROM feeds WHERE name = ?", (name,))
        return _feed_state(rows[0]) if rows else None

    def feed_states(self, names: Sequence[str] | None = None, *,
                    memos: bool = True) -> dict[str, FeedState]:
        """Every feed's state (or those of ``names`` that have a row), for the health
        table; ``memos=False`` leaves out the parse memos (``seen``), for
        :meth:`memos` to read where they are needed."""
        cols = _FEED_COLS if memos else _POLL_COLS
        if names is None:
            return {r[0]: _feed_state(r) for r in self._q(f"SELECT {cols} FROM feeds")}
        return {r[0]: _feed_state(r) for r in self._by_name(f"SELECT {cols} FROM feeds", names)}

    def memos(self, names: Sequence[str]) -> dict[str, bytes]:
        """The parse memos (``FeedState.seen``) of these feeds, where they have one."""
        return {name: bytes(memo) for name, memo in self._by_name(
            "SELECT name, memo FROM feeds", names, "AND memo IS NOT NULL")}

    def _by_name(self, select: str, names: Sequence[str], also: str = "") -> Iterator[Any]:
        """The rows of ``select`` (from feeds) for ``names``, a query per 500 of them:
        few enough for any backend's limit on parameters."""
        for i in range(0, len(names), 500):
            chunk = tuple(names[i:i + 500])
            marks = ", ".join("?" * len(chunk))
            yield from self._q(f"{select} WHERE name IN ({marks}) {also}", chunk)

    def sync_feeds(self, feeds: Iterable[tuple[str, str]]) -> None:
        """Make the feed rows the configured (name, url) pairs, at start-up and reload,
        in one transaction. A new feed is due now. A feed whose URL changed (a
        user fixing a broken one, say) is due now, and what the old URL answered
        (validators, body hash, parse memo) is forgotten. It is not a first poll:
        items it already stored keep their keys and alert no more, and the rest
        alert (what it published while broken is news, and a hidden story costs
        more than a duplicate). One disabled by 410 comes back. The row of a
        feed no longer configured goes: left, it would be claimed and counted
        as due for ever, polled by no one."""
        pairs = list(feeds)
        configured = {name for name, _ in pairs}
        with self._tx():
            gone = [(name,) for (name,) in self._q("SELECT name FROM feeds")
                    if name not in configured]
            self._xmany("DELETE FROM feeds WHERE name = ?", gone)
            self._xmany("INSERT INTO feeds (name, failures, url) VALUES (?, 0, ?) "
                        "ON CONFLICT (name) DO NOTHING", pairs)
            self._xmany("UPDATE feeds SET url = ?, gone_url = NULL, next_poll_at = NULL, "
                        "etag = NULL, last_modified = NULL, body_hash = NULL, memo = NULL, "
                        "seen_since = NULL WHERE name = ? AND (url <> ? OR (gone_url IS NOT "
                        "NULL AND gone_url <> ?))", [(u, n, u, u) for n, u in pairs])
            self._xmany("UPDATE feeds SET url = ? WHERE name = ? AND url IS NULL",
                        [(u, n) for n, u in pairs])

    def due_feeds(self, now: datetime, limit: int = 10_000) -> list[FeedState]:
        """The state of each feed due by ``now`` (never polled first, then the most
        overdue): what the tick polls, read in one query."""
        rows = self._q(f"SELECT {_FEED_COLS} FROM feeds WHERE gone_url IS NULL AND "
                       f"{_DUE} <= ? ORDER BY {_DUE} LIMIT ?",
                       (ts(now), int(limit)))
        return [_feed_state(r) for r in rows]

    def claim_feeds(self, now: datetime, owner: str, lease: timedelta,
                    limit: int = 10_000, *, memos: bool = True) -> list[FeedState]:
        """Claim the feeds due by ``now`` that no other instance holds, until
        ``now + lease``; returns their state, in :meth:`due_feeds`' order
        (``memos=False``: without their parse memos, as :meth:`feed_states`).

        Instances claim side by side (``FOR UPDATE SKIP LOCKED`` on PostgreSQL):
        each due feed goes to one of them. A claim ends when the poll is recorded
        or when the lease runs out (the instance died), whichever comes first.

        ``picked`` is the first ``limit`` free feeds in due order, and the update
        keeps those due: the same feeds as picking due ones, but no plan hangs
        on how many the statistics think are due (a whole cycle can come due at
        once). It walks ``feeds_due`` and stops after ``limit``; materialised, it
        runs once, so a plan cannot repeat it per row and claim past ``limit``;
        and it carries each feed's due time, so the update finds rows by name.
        """
        rows = self._q(
            f"WITH picked AS{self.materialized} (SELECT name, {_DUE} AS due FROM feeds "
            f"WHERE gone_url IS NULL AND (lease_until IS NULL OR lease_until <= ?) "
            f"ORDER BY {_DUE} LIMIT ?{self.skip_locked}) "
            "UPDATE feeds SET lease_owner = ?, lease_until = ? "
            "WHERE name IN (SELECT name FROM picked WHERE due <= ?) "
            f"RETURNING {_FEED_COLS if memos else _POLL_COLS}",
            (ts(now), int(limit), owner, ts(now + lease), ts(now)))
        states = [_feed_state(r) for r in rows]
        states.sort(key=lambda st: (st.next_poll_at is not None,
                                    st.next_poll_at or datetime.min.replace(tzinfo=UTC)))
        return states

    def renew_feeds(self, owner: str, until: datetime, names: Iterable[str]) -> int:
        """Extend ``owner``'s claims on ``names`` (the polls it has under way) to
        ``until``; returns how many. Only those: a claim whose poll ended without
        being recorded (the store away just then) must run out and be claimed
        again, not be renewed for as long as the instance lives."""
        wanted = sorted(set(names))
        renewed = 0
        with self._tx():
            for i in range(0, len(wanted), _RENEW_CHUNK):
                chunk = wanted[i:i + _RENEW_CHUNK]
                renewed += self._x(
                    "UPDATE feeds SET lease_until = ? WHERE lease_owner = ? AND name IN "
                    f"({', '.join('?' * len(chunk))})", (ts(until), owner, *chunk))
        return renewed

    def claim(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take (or renew) the lease ``name`` until ``until`` unless another owner
        holds it unexpired; returns whether ``owner`` holds it now. Outbox lanes
        (``lane:<destination>``) and cluster-wide jobs (``job:prune``) use it."""
        rows = self._q(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at "
            "WHERE leases.owner = excluded.owner OR leases.expires_at <= ? RETURNING owner",
            (name, owner, ts(until), ts(now)))
        return bool(rows)

    def release(self, owner: str) -> None:
        """Give up every claim ``owner`` holds (it is stopping): others take over now."""
        with self._tx():
            self._x("DELETE FROM leases WHERE owner = ?", (owner,))
            self._x("UPDATE feeds SET lease_owner = NULL, lease_until = NULL "
                    "WHERE lease_owner = ?", (owner,))

    def owners(self) -> set[str]:
        """Every instance holding a claim (a feed or a named lease)."""
        return {o for (o,) in self._q("SELECT owner FROM leases UNION SELECT lease_owner "
                                      "FROM feeds WHERE lease_owner IS NOT NULL")}

    def leases(self) -> dict[str, tuple[str, datetime]]:
        """Every named lease: name -> (owner, expires at)."""
        return {n: (o, dt(e) or datetime.min) for n, o, e in
                self._q("SELECT name, owner, expires_at FROM leases")}

    @contextmanager
    def assigning(self, after: int = -1) -> Iterator[Hold]:
        """Story assignment, one instance at a time cluster-wide (see PostgresStore);
        within one process the ingest thread already serialises it. The hold
        starts with :meth:`entries_after` ``after`` and ends with the last row
        (:class:`Hold`)."""
        hold = Hold(*self.entries_after(after))
        yield hold
        hold.last = self.entries_after(-1)[0]

    def entries_after(self, after: int) -> tuple[int, list[StoredEntry]]:
        """Entries stored after row ``after`` (by any instance): (the last row, them).
        ``after=-1``: only the last row, no entries."""
        return self._entries_after(after, self._q(*_after(after)))

    def _entries_after(self, after: int, rows: list[Any]) -> tuple[int, list[StoredEntry]]:
        """:meth:`entries_after`, given the rows of its first query (``_after``)."""
        if after < 0:
            return int(rows[0][0] or 0), []
        out: list[StoredEntry] = []
        while True:
            out.extend(_stored(r[1:]) for r in rows)
            if rows:
                after = int(rows[-1][0])
            if len(rows) < _PAGE:
                return after, out
            rows = self._q(*_after(after))

    def count_due(self, now: datetime) -> int:
        """How many feeds are due by ``now`` (for the status line)."""
        rows = self._q("SELECT COUNT(*) FROM feeds WHERE gone_url IS NULL AND "
                       f"{_DUE} <= ?", (ts(now),))
        return int(rows[0][0])

    def count_unpolled(self) -> int:
        """How many feeds were never polled: a first poll parses every item."""
        rows = self._q("SELECT COUNT(*) FROM feeds WHERE gone_url IS NULL AND "
                       "first_polled_at IS NULL")
        return int(rows[0][0])

    def make_due(self, names: Sequence[str]) -> None:
        """Poll these feeds at the next look (their config changed)."""
        with self._tx():
            for name in names:
                self._x("UPDATE feeds SET next_poll_at = NULL WHERE name = ?", (name,))

    def set_ops_alerted(self, name: str, alerted: bool) -> None:
        with self._tx():
            self._x("UPDATE feeds SET ops_alerted = ? WHERE name = ?", (int(alerted), name))

    def _record_polls(self, polls: Iterable[PollRecord]) -> None:
        """In the caller's transaction. Runs of one statement go as one batch (in
        order: a feed polled twice in a batch keeps its last record)."""
        for sql, run in itertools.groupby(map(_poll_row, polls), key=lambda r: r[0]):
            self._xmany(sql, [params for _, params in run])

    def record_poll(self, poll: PollRecord) -> None:
        with self._tx(durable=False):
            self._record_polls([poll])

    def record_polls(self, polls: Sequence[PollRecord]) -> None:
        """Several polls' records in one transaction (the service's group commit)."""
        with self._tx(durable=False):
            self._record_polls(polls)

    # -- entries -----------------------------------------------------------------------

    def known(self, feed: str, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """For the keys already seen in ``feed``: key -> (story_id, stored title).
        A key whose entry retention deleted maps to ("", "")."""
        return self.look_up([Lookup(feed, tuple(keys))])[0].known

    def story_by_url(self, urls: Iterable[str]) -> dict[str, str]:
        """canonical_url -> story_id for links already seen in any feed (of several
        stories, the smallest id)."""
        return self.look_up([Lookup("", (), tuple(urls))])[0].by_url

    def look_up(self, lookups: Sequence[Lookup]) -> list[Found]:
        """:meth:`known` and :meth:`story_by_url` for several polls, in one go: one
        query per poll (entries, compact keys and links together), all of them
        sent before the first answer is read (one round trip on PostgreSQL).
        The ingest thread makes a batch's reads this way."""
        queries: list[tuple[str, tuple[Any, ...]]] = []
        owner: list[tuple[int, dict[str, str]]] = []  # per query: its lookup, its hashes
        for n, lk in enumerate(lookups):
            keys, urls = list(lk.keys), [u for u in dict.fromkeys(lk.urls) if u]
            for i in range(0, max(len(keys), len(urls)), 250):
                chunk, links = keys[i:i + 250], urls[i:i + 250]
                hashes = {key_hash(k): k for k in chunk}
                parts: list[str] = []
                params: list[Any] = []
                if chunk:
                    marks = ", ".join("?" * len(chunk))
                    parts += [f"SELECT 0, key, story_id, title FROM entries WHERE feed = ? "
                              f"AND key IN ({marks})",
                              f"SELECT 1, key_hash, NULL, NULL FROM seen_keys WHERE feed = ? "
                              f"AND key_hash IN ({marks})"]
                    params += [lk.feed, *chunk, lk.feed, *hashes]
                if links:
                    # Link by link: each is an index lookup whatever the planner
                    # thinks of the table. As one IN list, a table without
                    # statistics looks to hold thousands of rows per list, and the
                    # planner scans all of it instead.
                    values = ", ".join(["(?)"] * len(links))
                    parts.append("SELECT 2, u.column1, (SELECT MIN(e.story_id) FROM entries e "
                                 "WHERE e.canonical_url = u.column1), NULL "
                                 f"FROM (VALUES {values}) AS u")
                    params += links
                queries.append((" UNION ALL ".join(parts), tuple(params)))
                owner.append((n, hashes))
        found = [Found({}, {}) for _ in lookups]
        compact: list[list[str]] = [[] for _ in lookups]
        for (n, hashes), rows in zip(owner, self._q_many(queries), strict=True):
            for kind, name, story, title in rows:
                if kind == 0:
                    found[n].known[name] = (story, title)
                elif kind == 1:  # a compact key: the entry itself is gone
                    compact[n].append(hashes[name])
                elif story is not None:  # None: no entry has the link
                    found[n].by_url[name] = story
        for f, keys in zip(found, compact, strict=True):
            for key in keys:
                f.known.setdefault(key, ("", ""))
        return found

    def _touch_seen(self, feed: str, keys: Sequence[str], at: datetime) -> None:
        """Keys still in their feed: their compact identity lives on (in the caller's tx)."""
        hashes = [key_hash(k) for k in keys]
        for i in range(0, len(hashes), 500):
            chunk = hashes[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            self._send("UPDATE seen_keys SET last_seen = ? WHERE feed = ? AND key_hash "
                       f"IN ({marks})", (ts(at), feed, *chunk))

    def ingest(
        self,
        poll: PollRecord,
        entries: Sequence[StoredEntry],
        alerts: Sequence[Alert],
        retitled: Sequence[Entry] = (),
        present: Sequence[str] = (),
    ) -> list[Alert]:
        """Record a poll, its new entries and the alerts they cause, in one transaction.

        ``present`` are the keys of the poll's entries that were known: those whose
        entry retention deleted keep their compact key fresh.

        An alert is queued only if its (watchlist, story) pair was not alerted
        before; the alerts actually queued are returned. New members of a story
        whose alerts were already sent flag those alerts for an update
        (Slack chat.update, "also reported by").
        """
        with self._tx(durable=False):
            return self._ingest([Ingest(poll, entries, alerts, retitled, present)])[0]

    def ingest_all(self, ingests: Sequence[Ingest]) -> list[list[Alert] | StoreError]:
        """Several polls' :meth:`ingest`, in one transaction: one commit, and on
        PostgreSQL one round trip (with one more for each alert), where the
        ingest thread holds the assignment lock and every round trip is one
        that other instances wait for. Per poll: the alerts queued, or why its
        records were refused. A refusal rolls the lot back, and each is then
        written on its own, so only that poll fails; a transient error (the
        database away) is retried whole, as every call is."""
        if not ingests:
            return []
        try:
            with self._tx(durable=False):
                return list(self._ingest(ingests))
        except StoreError as exc:
            if exc.transient or len(ingests) == 1:
                raise
        out: list[list[Alert] | StoreError] = []
        for i in ingests:
            try:
                out.append(self.ingest(i.poll, i.entries, i.alerts, i.retitled, i.present))
            except StoreError as exc:
                out.append(exc)
        return out

    def _ingest(self, ingests: Sequence[Ingest]) -> list[list[Alert]]:
        """:meth:`ingest` for each of ``ingests``, in the caller's transaction. Each
        statement's rows, from all of them, go as one batch, in order: the same
        result as one poll after another (no poll's rows touch another's: each
        is its own feed's, and an alert queued here is not yet one to update),
        with one batch per statement rather than one per poll and statement."""
        self._record_polls(i.poll for i in ingests)
        rows, stories, updates = [], [], []
        seen_ts: dict[datetime, str | None] = {}  # a poll's entries share one seen_at
        for i in ingests:
            if i.present:
                self._touch_seen(i.poll.feed, i.present, i.poll.at)
            for se in i.entries:
                e = se.entry
                writable(e.feed, e.key, e.guid, e.link, e.canonical_url, e.title, e.summary)
                j = se.join if se.join is not None and se.join.story_id is not None else None
                seen = seen_ts.get(se.seen_at)
                if seen is None:
                    seen = seen_ts[se.seen_at] = ts(se.seen_at)
                rows.append((e.feed, e.key, e.guid, e.link, e.canonical_url, e.title, e.summary,
                             ts(e.published), seen, se.story_id,
                             j.how if j else "", j.score if j else 0.0, j.bar if j else 0.0,
                             " ".join(j.evidence) if j else "", int(j.weak) if j else 0,
                             int(se.watched)))
                stories.append((se.story_id, e.title, seen, seen))
                updates.append((se.story_id, AlertStatus.SENT.value, e.feed))
        self._xmany(
            f"INSERT INTO entries ({_ENTRY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?) ON CONFLICT (feed, key) DO NOTHING", rows)
        self._xmany(
            "INSERT INTO stories (id, title, first_seen, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen", stories)
        self._xmany("UPDATE alerts SET update_due = 1 WHERE story_id = ? AND status = ? "
                    "AND remote_id IS NOT NULL AND entry_feed <> ?", updates)
        for i in ingests:
            for e in i.retitled:
                self._send("UPDATE entries SET title = ?, summary = ? WHERE feed = ? AND key = ?",
                           (e.title, e.summary, e.feed, e.key))
        return [self._queue_alerts(i.alerts) for i in ingests]

    def _queue_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Queue each alert whose (watchlist, story) pair was not alerted before (in the
        caller's transaction); returns those queued, with their seq."""
        queued: list[Alert] = []
        claimed: dict[tuple[str, str], bool] = {}
        for a in alerts:
            pair = (a.watchlist, a.story_id)
            if pair not in claimed:
                claimed[pair] = self._x(
                    "INSERT INTO watchlist_stories (watchlist, story_id, matched_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (watchlist, story_id) DO NOTHING",
                    (a.watchlist, a.story_id, ts(a.created_at))) == 1
            if not claimed[pair]:
                continue
            rows = self._execute(
                "INSERT INTO alerts (id, watchlist, destination, story_id, entry_feed, "
                "entry_key, terms, status, attempts, next_attempt_at, created_at, hold_until, "
                "hold_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING RETURNING seq",
                (a.id, a.watchlist, a.destination, a.story_id, a.entry.feed, a.entry.key,
                 json.dumps(list(a.terms)), a.status.value, ts(a.next_attempt_at),
                 ts(a.created_at), ts(a.hold_until), a.hold_reason)).fetchall()
            if rows:
                queued.append(replace(a, seq=rows[0][0]))
        return queued

    def entries_since(self, since: datetime, until: datetime | None = None) -> list[StoredEntry]:
        rows = self._q(f"SELECT {_ENTRY_COLS} FROM entries WHERE seen_at >= ? AND seen_at < ? "
                       "ORDER BY seen_at, id",
                       (ts(since), ts(until or datetime.max.replace(tzinfo=UTC))))
        return [_stored(r, since) for r in rows]

    def watched_since(self, since: datetime) -> list[StoredEntry]:
        """The entries seen since ``since`` of the stories with a member a watchlist
        matched when it was stored, in the order seen: what the story index holds
        (it holds watched stories only), read without the rest of the window."""
        rows = self._q(f"SELECT {_ENTRY_COLS} FROM entries WHERE seen_at >= ? AND story_id IN "
                       "(SELECT story_id FROM entries WHERE seen_at >= ? AND watched = 1) "
                       "ORDER BY seen_at, id", (ts(since), ts(since)))
        return [_stored(r, since) for r in rows]

    def members(self, story_id: str) -> list[StoredEntry]:
        """A story's entries in the order they were seen, with why each joined."""
        rows = self._q(f"SELECT {_ENTRY_COLS} FROM entries WHERE story_id = ? ORDER BY seen_at, id",
                       (story_id,))
        return [_stored(r) for r in rows]

    def find_entry(self, ref: str) -> StoredEntry | None:
        """The entry a user names by its link, canonical link, key or GUID (newest first)."""
        rows = self._q(f"SELECT {_ENTRY_COLS} FROM entries WHERE link = ? OR canonical_url = ? "
                       "OR key = ? OR guid = ? ORDER BY seen_at DESC, id DESC LIMIT 1",
                       (ref, ref, ref, ref))
        return _stored(rows[0]) if rows else None

    def split(self, se: StoredEntry, story_id: str, alerts: Sequence[Alert]) -> list[Alert]:
        """Make ``se`` the only member of a new story ``story_id`` and queue ``alerts``
        for it (deduplicated as at ingest); a running service picks the change up
        from the ``split`` meta counter. Returns the alerts queued."""
        e = se.entry
        with self._tx():
            self._x("UPDATE entries SET story_id = ?, join_how = 'split', join_score = 0, "
                    "join_bar = 0, join_evidence = '', join_weak = 0 WHERE feed = ? AND key = ?",
                    (story_id, e.feed, e.key))
            self._x(
                "INSERT INTO stories (id, title, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                (story_id, e.title, ts(se.seen_at), ts(se.seen_at)))
            queued = self._queue_alerts(alerts)
            rows = self._execute("SELECT value FROM meta WHERE key = 'split'").fetchall()
            n = int(rows[0][0]) + 1 if rows else 1
            self._put_meta("split", str(n))
            self._put_meta(f"split:{n}", json.dumps([e.feed, e.key, story_id]))
        return queued

    def splits_since(self, after: int) -> tuple[int, list[tuple[str, str, str]]]:
        """Splits made after number ``after``: (latest number, [(feed, key, story id)])."""
        latest = int(self.get_meta("split") or 0)
        out = []
        for n in range(after + 1, latest + 1):
            got = self.get_meta(f"split:{n}")
            if got:
                feed, key, story = json.loads(got)
                out.append((str(feed), str(key), str(story)))
        return latest, out

    def prune(self, before: datetime, now: datetime | None = None, batch: int = 1000) -> int:
        """Delete what fell out of the retention window (seen before ``before``);
        returns the number of entries deleted.

        Rows go: entries (unless an unsent alert still needs them), stories,
        sent, folded and failed alerts, (watchlist, story) pairs of stories that
        are gone, and ``split:N`` notes about entries that are gone. What stays
        of an entry is its compact key (:func:`key_hash`), stamped ``now``: a
        poll that still finds the item refreshes it, and a key its feed has not
        carried for a whole retention window (parsed whole since without it)
        goes too. So the database stops
        growing at a steady feed set, and an old item still in its feed never
        alerts again.
        """
        cut, stamp = ts(before), ts(now or before)
        unsent = (AlertStatus.QUEUED.value, AlertStatus.HELD.value)
        with self._tx():
            self._x("DELETE FROM alerts WHERE created_at < ? AND status NOT IN (?, ?)",
                    (cut, *unsent))
        deleted = 0
        while True:  # in batches: each transaction short, the lock free in between
            with self._tx():
                doomed = self._q(
                    "SELECT feed, key FROM entries WHERE seen_at < ? AND NOT EXISTS (SELECT 1 "
                    "FROM alerts a WHERE a.entry_feed = entries.feed AND a.entry_key = "
                    f"entries.key) LIMIT {int(batch)}", (cut,))
                for feed, key in doomed:
                    self._x("INSERT INTO seen_keys (feed, key_hash, last_seen) VALUES (?, ?, ?) "
                            "ON CONFLICT (feed, key_hash) DO UPDATE SET "
                            "last_seen = excluded.last_seen", (feed, key_hash(key), stamp))
                    self._x("DELETE FROM entries WHERE feed = ? AND key = ?", (feed, key))
            deleted += len(doomed)
            if len(doomed) < batch:
                break
        with self._tx():
            # A key goes once its feed was parsed whole without it (each key of a full
            # parse is stamped with it, as seen_since), or its feed is gone. A feed
            # whose body has not changed since is not parsed, and stamps nothing: its
            # keys stay, or its undated items would alert again once it changes.
            self._x("DELETE FROM seen_keys WHERE last_seen < ? AND last_seen < COALESCE("
                    "(SELECT f.seen_since FROM feeds f WHERE f.name = seen_keys.feed), ?)",
                    (cut, cut))
            self._x("DELETE FROM stories WHERE last_seen < ? AND NOT EXISTS (SELECT 1 FROM "
                    "entries e WHERE e.story_id = stories.id)", (cut,))
            self._x("DELETE FROM watchlist_stories WHERE matched_at < ? AND NOT EXISTS "
                    "(SELECT 1 FROM stories s WHERE s.id = watchlist_stories.story_id)", (cut,))
            for key, value in self._q("SELECT key, value FROM meta WHERE key LIKE ?",
                                      ("split:%",)):
                feed, entry_key, _ = json.loads(value)
                if not self._q("SELECT 1 FROM entries WHERE feed = ? AND key = ?",
                               (feed, entry_key)):
                    self._x("DELETE FROM meta WHERE key = ?", (key,))
        return deleted

    def delete_meta(self, key: str) -> None:
        with self._tx():
            self._x("DELETE FROM meta WHERE key = ?", (key,))

    # -- stories -----------------------------------------------------------------------

    def story(self, story_id: str) -> Story | None:
        rows = self._q("SELECT id, title, first_seen FROM stories WHERE id = ?", (story_id,))
        if not rows:
            return None
        sources = tuple(
            Source(feed=r[0], title=r[1], link=r[2], seen_at=dt(r[3]) or datetime.min,
                   weak=bool(r[4]))
            for r in self._q("SELECT feed, title, link, seen_at, join_weak FROM entries "
                             "WHERE story_id = ? ORDER BY seen_at, id", (story_id,)))
        return Story(id=rows[0][0], title=rows[0][1], first_seen=dt(rows[0][2]) or datetime.min,
                     sources=sources)

    def stories_since(self, since: datetime) -> list[Story]:
        rows = self._q("SELECT id FROM stories WHERE last_seen >= ? ORDER BY first_seen DESC",
                       (ts(since),))
        return [s for (sid,) in rows if (s := self.story(sid)) is not None]

    # -- the outbox ----------------------------------------------------------------------

    def _alerts(self, where: str, params: tuple[Any, ...], tail: str = "") -> list[Alert]:
        rows = self._q(f"SELECT {_ALERT_COLS} FROM alerts a JOIN entries e "
                       f"ON e.feed = a.entry_feed AND e.key = a.entry_key WHERE {where} "
                       f"ORDER BY a.seq {tail}", params)
        return [_alert(r) for r in rows]

    def alert(self, alert_id: str) -> Alert | None:
        found = self._alerts("a.id = ?", (alert_id,))
        return found[0] if found else None

    def due_alerts(self, now: datetime, limit: int = 100) -> list[Alert]:
        """Queued alerts whose time has come, in the order their stories were found."""
        return self._alerts(
            "a.status = ? AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= ?)",
            (AlertStatus.QUEUED.value, ts(now)), f"LIMIT {int(limit)}")

    def lane_heads(self, destination: str) -> list[Alert]:
        """The first queued alert of each watchlist for one destination, in seq order:
        the candidates a fair lane chooses between."""
        return self._alerts(
            "a.seq IN (SELECT MIN(seq) FROM alerts WHERE status = ? AND destination = ? "
            "GROUP BY watchlist)", (AlertStatus.QUEUED.value, destination))

    def pending(self, destination: str, limit: int | None = None) -> list[Alert]:
        """Queued alerts of one destination, due or not, in order (the first ``limit``)."""
        return self._alerts("a.status = ? AND a.destination = ?",
                            (AlertStatus.QUEUED.value, destination),
                            "" if limit is None else f"LIMIT {int(limit)}")

    def list_alerts(self, status: AlertStatus | None = None, limit: int = 100) -> list[Alert]:
        if status is None:
            return self._alerts("1 = 1", (), f"DESC LIMIT {int(limit)}")
        return self._alerts("a.status = ?", (status.value,), f"DESC LIMIT {int(limit)}")

    def mark_attempt(self, alert_id: str) -> None:
        """Record that a send is about to start. Committed before the send, so after a
        crash ``maybe_sent`` says the alert may have reached the destination."""
        with self._tx():
            self._x("UPDATE alerts SET attempts = attempts + 1, maybe_sent = 1 WHERE id = ?",
                    (alert_id,))

    def mark_sent(self, alert_id: str, now: datetime, receipt: Receipt) -> None:
        with self._tx():
            self._x("UPDATE alerts SET status = ?, sent_at = ?, remote_id = ?, remote_channel = ?, "
                    "last_error = NULL, next_attempt_at = NULL, maybe_sent = 0 WHERE id = ?",
                    (AlertStatus.SENT.value, ts(now), receipt.remote_id, receipt.remote_channel,
                     alert_id))

    def mark_retry(self, alert_id: str, at: datetime, error: str,
                   maybe_sent: bool = False) -> None:
        """Try again at ``at``. ``maybe_sent``: the failed try may still have landed."""
        with self._tx():
            self._x("UPDATE alerts SET next_attempt_at = ?, last_error = ?, maybe_sent = ? "
                    "WHERE id = ?", (ts(at), error, int(maybe_sent), alert_id))

    def mark_failed(self, alert_id: str, error: str) -> None:
        with self._tx():
            self._x("UPDATE alerts SET status = ?, last_error = ?, next_attempt_at = NULL "
                    "WHERE id = ?", (AlertStatus.FAILED.value, error, alert_id))

    def mark_status(self, alert_ids: Sequence[str], status: AlertStatus,
                    now: datetime | None = None) -> None:
        with self._tx():
            for aid in alert_ids:
                self._x("UPDATE alerts SET status = ?, sent_at = COALESCE(?, sent_at) "
                        "WHERE id = ?", (status.value, ts(now), aid))

    def requeue(self, alert_ids: Sequence[str] | None, now: datetime) -> int:
        """Put failed alerts back in the queue (all of them when ``alert_ids`` is None)."""
        with self._tx():
            if alert_ids is None:
                return self._x("UPDATE alerts SET status = ?, next_attempt_at = ?, attempts = 0 "
                               "WHERE status = ?", (AlertStatus.QUEUED.value, ts(now),
                                                    AlertStatus.FAILED.value))
            n = 0
            for aid in alert_ids:
                n += self._x("UPDATE alerts SET status = ?, next_attempt_at = ?, attempts = 0 "
                             "WHERE id = ? AND status = ?",
                             (AlertStatus.QUEUED.value, ts(now), aid, AlertStatus.FAILED.value))
            return n

    def updates_due(self, limit: int = 100) -> list[Alert]:
        """Sent alerts whose story gained sources since (for Slack chat.update)."""
        return self._alerts("a.update_due = 1 AND a.status = ?", (AlertStatus.SENT.value,),
                            f"LIMIT {int(limit)}")

    def updates_due_for(self, destination: str, limit: int = 20) -> list[Alert]:
        return self._alerts("a.update_due = 1 AND a.status = ? AND a.destination = ?",
                            (AlertStatus.SENT.value, destination), f"LIMIT {int(limit)}")

    def announced(self, alert_id: str) -> int:
        """How many of the alert's story members its thread has announced."""
        rows = self._q("SELECT announced FROM alerts WHERE id = ?", (alert_id,))
        return int(rows[0][0]) if rows else 0

    def set_announced(self, alert_id: str, n: int) -> None:
        with self._tx():
            self._x("UPDATE alerts SET announced = ? WHERE id = ?", (n, alert_id))

    def clear_update(self, alert_id: str) -> None:
        with self._tx():
            self._x("UPDATE alerts SET update_due = 0 WHERE id = ?", (alert_id,))

    # -- held alerts (digests, quiet hours) ------------------------------------------------

    def held_due(self, destination: str, now: datetime) -> list[Alert]:
        """Held alerts of a destination whose hold is over, in order."""
        return self._alerts("a.status = ? AND a.destination = ? AND a.hold_until <= ?",
                            (AlertStatus.HELD.value, destination, ts(now)))

    def next_hold(self, destination: str) -> datetime | None:
        rows = self._q("SELECT MIN(hold_until) FROM alerts WHERE status = ? AND destination = ?",
                       (AlertStatus.HELD.value, destination))
        return dt(rows[0][0]) if rows and rows[0][0] else None

    def immediate_since(self, watchlist: str, since: datetime) -> dict[str, int]:
        """Per destination, alerts of ``watchlist`` created since ``since`` that were not
        held back: what counts against ``max_per_hour``."""
        rows = self._q("SELECT destination, COUNT(*) FROM alerts WHERE watchlist = ? "
                       "AND created_at >= ? AND hold_reason IS NULL GROUP BY destination",
                       (watchlist, ts(since)))
        return {d: int(n) for d, n in rows}

    def queue(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Queue ``alerts`` deduplicated as at ingest (``news-monitor replay``); returns
        those queued."""
        with self._tx():
            return self._queue_alerts(alerts)

    def alert_counts(self) -> dict[tuple[str, AlertStatus], int]:
        """Alerts per (destination, status): the outbox at a glance, for status and metrics."""
        rows = self._q("SELECT destination, status, COUNT(*) FROM alerts "
                       "GROUP BY destination, status")
        return {(d, AlertStatus(s)): int(n) for d, s, n in rows}

    def matches_per_day(self, since: datetime) -> dict[tuple[str, str], int]:
        """Stories matched per (watchlist, UTC day ``YYYY-MM-DD``) since ``since``."""
        rows = self._q("SELECT watchlist, substr(matched_at, 1, 10), COUNT(*) "
                       "FROM watchlist_stories WHERE matched_at >= ? GROUP BY 1, 2",
                       (ts(since),))
        return {(w, d): int(n) for w, d, n in rows}

    # -- key/value for scheduler bookkeeping --------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self._put_meta(key, value)

    def _put_meta(self, key: str, value: str) -> None:
        """set_meta within the caller's transaction."""
        self._x("INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


_F = TypeVar("_F", bound=Callable[..., Any])


def _retrying(fn: _F) -> _F:
    """``fn`` tried again while it fails transiently, for up to ``retry_for`` seconds,
    with doubling pauses: a database restart costs a few seconds' wait, not every
    call made meanwhile. Inside a transaction the outermost call retries, whole."""

    @functools.wraps(fn)
    def call(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "conn", None) is not None:
            return fn(self, *args, **kwargs)
        deadline = time.monotonic() + self.retry_for
        pause = 0.05
        while True:
            try:
                return fn(self, *args, **kwargs)
            except StoreError as exc:
                if not exc.transient or time.monotonic() + pause > deadline:
                    raise
                logger.warning("store.retry call=%s in=%.2fs error=%s", fn.__name__, pause,
                               redact.text(str(exc)))
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    return call  # type: ignore[return-value]


# Every public call is one unit that may be redone; close() and the context
# managers are not.
for _name, _fn in list(vars(SqlStore).items()):
    if not _name.startswith("_") and callable(_fn) and _name not in ("close", "assigning"):
        setattr(SqlStore, _name, _retrying(_fn))
