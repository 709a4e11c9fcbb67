"""The state store: one suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from stores import fresh_store

from monitor.errors import StoreError
from monitor.store import Ingest, PollRecord, SqlStore, StoredEntry, alert_id, open_store
from monitor.store.sql import SCHEMA_VERSION
from monitor.types import Alert, AlertStatus, Entry, Receipt

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    with fresh_store(request.param, tmp_path) as s:
        yield s


def entry(feed: str, key: str, title: str = "Title", url: str | None = None) -> Entry:
    link = url or f"https://{feed}.example/{key}"
    return Entry(feed=feed, key=key, guid=key, link=link, canonical_url=link, title=title,
                 summary="Summary of " + title, published=NOW - timedelta(minutes=5))


def alert(e: Entry, story: str, watchlist: str = "wl", dest: str = "slack",
          at: datetime = NOW) -> Alert:
    return Alert(id=alert_id(watchlist, dest, story), watchlist=watchlist, destination=dest,
                 story_id=story, entry=e, terms=("Ukraine",), created_at=at)


def poll(feed: str = "f", at: datetime = NOW, etag: str | None = '"v1"') -> PollRecord:
    return PollRecord(feed=feed, at=at, etag=etag, last_modified="Wed, 25 Nov 2026 11:00:00 GMT")


def test_poll_state_roundtrip(store: SqlStore) -> None:
    assert store.feed_state("f") is None
    store.record_poll(poll())
    st = store.feed_state("f")
    assert st is not None and st.etag == '"v1"' and st.first_polled_at == NOW
    store.record_poll(PollRecord(feed="f", at=NOW + timedelta(minutes=1), error="HTTP 500"))
    st = store.feed_state("f")
    assert st is not None and st.failures == 1 and st.last_error == "HTTP 500"
    assert st.etag == '"v1"' and st.first_polled_at == NOW  # kept across a failure
    store.record_poll(poll(at=NOW + timedelta(minutes=2), etag='"v2"'))
    st = store.feed_state("f")
    assert st is not None and st.failures == 0 and st.last_error is None and st.etag == '"v2"'


def test_ingest_queues_once_per_watchlist_story(store: SqlStore) -> None:
    e1, e2 = entry("f", "a", "Troops"), entry("g", "b", "Troops elsewhere")
    q1 = store.ingest(poll(), [StoredEntry(entry=e1, story_id="s1", seen_at=NOW)],
                      [alert(e1, "s1"), alert(e1, "s1", dest="mail")])
    assert [a.destination for a in q1] == ["slack", "mail"]
    assert q1[0].seq < q1[1].seq
    # The same story from another feed: no new alerts for the same watchlist...
    q2 = store.ingest(poll("g"), [StoredEntry(entry=e2, story_id="s1", seen_at=NOW)],
                      [alert(e2, "s1")])
    assert q2 == []
    # ...but another watchlist still gets its own.
    q3 = store.ingest(poll("g"), [], [alert(e2, "s1", watchlist="other")])
    assert len(q3) == 1
    assert store.known("f", ["a", "zzz"]) == {"a": ("s1", "Troops")}
    assert store.story_by_url([e1.canonical_url]) == {e1.canonical_url: "s1"}
    story = store.story("s1")
    assert story is not None and [s.feed for s in story.sources] == ["f", "g"]


def test_feed_states_of_names_over_several_queries(store: SqlStore) -> None:
    """The states of the feeds named (poll_all reads them a page at a time): those
    with a row, whatever their number (a query per 500), unknown names left out."""
    names = [f"feed{i:04d}" for i in range(1203)]
    store.sync_feeds([(n, f"https://{n}.example/") for n in names])
    store.record_poll(replace(poll("feed0700"), parsed=True, body_hash="h", seen=b"memo",
                             seen_since=NOW))
    asked = names[::2] + ["nope"]
    got = store.feed_states(asked, memos=False)
    assert sorted(got) == names[::2]
    assert got["feed0700"].etag == '"v1"' and got["feed0700"].seen == b""
    assert store.feed_states(["feed0700"])["feed0700"].seen == b"memo"
    assert store.feed_states([]) == {}


def test_a_batch_of_ingests_is_written_as_each_would_be(store: SqlStore) -> None:
    e1, e2, e3 = entry("f", "a", "Troops"), entry("g", "b", "Troops too"), entry("h", "c")
    out = store.ingest_all([
        Ingest(poll(), [StoredEntry(entry=e1, story_id="s1", seen_at=NOW)], [alert(e1, "s1")]),
        # The same story later in the batch: no second alert for the watchlist.
        Ingest(poll("g"), [StoredEntry(entry=e2, story_id="s1", seen_at=NOW)],
               [alert(e2, "s1")]),
        Ingest(poll("h"), [StoredEntry(entry=e3, story_id="s3", seen_at=NOW)],
               [alert(e3, "s3")]),
    ])
    assert [[a.story_id for a in q] for q in out] == [["s1"], [], ["s3"]]  # type: ignore[union-attr]
    assert {st.name for st in store.feed_states().values()} == {"f", "g", "h"}
    assert store.known("g", ["b"]) == {"b": ("s1", "Troops too")}
    assert len(store.list_alerts()) == 2


def test_a_refused_record_fails_its_own_poll_in_a_batch(store: SqlStore) -> None:
    good, bad = entry("f", "a"), entry("g", "b", "NUL \0 inside")
    out = store.ingest_all([
        Ingest(poll(), [StoredEntry(entry=good, story_id="s1", seen_at=NOW)], [alert(good, "s1")]),
        Ingest(poll("g"), [StoredEntry(entry=bad, story_id="s2", seen_at=NOW)]),
    ])
    assert isinstance(out[1], StoreError) and "NUL" in str(out[1])
    assert [a.story_id for a in out[0]] == ["s1"]  # type: ignore[union-attr]
    assert store.known("f", ["a"]) == {"a": ("s1", "Title")}
    assert store.feed_state("g") is None  # nothing of the refused poll is kept
    assert [a.story_id for a in store.list_alerts()] == ["s1"]


def test_outbox_lifecycle(store: SqlStore) -> None:
    e = entry("f", "a")
    [a] = store.ingest(poll(), [StoredEntry(entry=e, story_id="s1", seen_at=NOW)],
                       [alert(e, "s1")])
    assert [x.id for x in store.due_alerts(NOW)] == [a.id]
    store.mark_attempt(a.id)
    store.mark_retry(a.id, NOW + timedelta(seconds=30), "HTTP 503")
    assert store.due_alerts(NOW) == []
    [again] = store.due_alerts(NOW + timedelta(seconds=31))
    assert again.attempts == 1 and again.last_error == "HTTP 503"
    assert again.entry == e
    store.mark_sent(a.id, NOW, Receipt(remote_id="1.0001", remote_channel="C1"))
    sent = store.alert(a.id)
    assert sent is not None and sent.status is AlertStatus.SENT and sent.remote_id == "1.0001"
    assert store.pending("slack") == []


def test_failed_alerts_can_be_requeued(store: SqlStore) -> None:
    e = entry("f", "a")
    [a] = store.ingest(poll(), [StoredEntry(entry=e, story_id="s1", seen_at=NOW)],
                       [alert(e, "s1")])
    store.mark_failed(a.id, "invalid_auth")
    assert [x.id for x in store.list_alerts(AlertStatus.FAILED)] == [a.id]
    assert store.requeue(None, NOW) == 1
    [back] = store.pending("slack")
    assert back.status is AlertStatus.QUEUED and back.attempts == 0


def test_new_member_flags_sent_alert_for_update(store: SqlStore) -> None:
    e1, e2 = entry("f", "a"), entry("g", "b", "Other outlet's headline")
    [a] = store.ingest(poll(), [StoredEntry(entry=e1, story_id="s1", seen_at=NOW)],
                       [alert(e1, "s1")])
    store.mark_sent(a.id, NOW, Receipt(remote_id="1.1", remote_channel="C1"))
    store.ingest(poll("g"), [StoredEntry(entry=e2, story_id="s1", seen_at=NOW)], [])
    assert [x.id for x in store.updates_due_for("slack")] == [a.id]
    store.clear_update(a.id)
    assert store.updates_due_for("slack") == []


def test_prune_deletes_rows_and_keeps_identity(store: SqlStore) -> None:
    e = entry("f", "a", "Old story")
    old = NOW - timedelta(days=40)
    store.ingest(poll(at=old), [StoredEntry(entry=e, story_id="s1", seen_at=old)],
                 [alert(e, "s1", at=old)])
    [a] = store.pending("slack")
    store.mark_sent(a.id, old, Receipt(remote_id="1.1"))
    assert store.prune(NOW - timedelta(days=30), NOW) == 1
    assert store.known("f", ["a"]) == {"a": ("", "")}  # seen: never new again
    assert store.entries_since(NOW - timedelta(days=50)) == []
    assert store.list_alerts() == [] and store.story("s1") is None
    assert store._q("SELECT COUNT(*) FROM watchlist_stories")[0][0] == 0
    # Still in its feed: the key lives on; gone from it for a whole window: forgotten.
    store.ingest(poll(at=NOW + timedelta(days=20)), [], [], present=["a"])
    store.prune(NOW + timedelta(days=10), NOW + timedelta(days=40))
    assert store.known("f", ["a"]) == {"a": ("", "")}
    store.prune(NOW + timedelta(days=40), NOW + timedelta(days=70))
    assert store.known("f", ["a"]) == {}


def test_a_key_outlives_retention_while_its_feed_is_unchanged(store: SqlStore) -> None:
    """An unchanged body is not parsed, so nothing refreshed its keys: its entry went
    after one retention window, its key after the next, and when the feed changed
    its undated items alerted again. A key goes once a whole parse did not find it."""
    def parsed(at: datetime, present: list[str] | None = None,
               entries: list[StoredEntry] | None = None) -> None:
        store.ingest(PollRecord(feed="f", at=at, status=200, parsed=True, seen_since=at),
                     entries or [], [], present=present or [])

    start = NOW - timedelta(days=100)
    e = entry("f", "undated", "An undated item")
    parsed(start, entries=[StoredEntry(entry=e, story_id="s1", seen_at=start)])
    window = timedelta(days=30)
    for day in (31, 62, 93):  # the feed answers 304 all along: no parse
        store.prune(start + timedelta(days=day) - window, start + timedelta(days=day))
        assert store.known("f", ["undated"]) == {"undated": ("", "")}, day
    later = start + timedelta(days=94)
    parsed(later)  # the body changed, parsed whole: the item is not in it any more
    store.prune(later + timedelta(days=1), later + timedelta(days=1))
    assert store.known("f", ["undated"]) == {}


def test_prune_keeps_what_unsent_alerts_need(store: SqlStore) -> None:
    e = entry("f", "a", "Old but queued")
    old = NOW - timedelta(days=40)
    store.ingest(poll(at=old), [StoredEntry(entry=e, story_id="s1", seen_at=old)],
                 [alert(e, "s1", at=old)])
    assert store.prune(NOW - timedelta(days=30), NOW) == 0
    assert [a.entry.title for a in store.pending("slack")] == ["Old but queued"]


def test_a_version_2_database_upgrades(tmp_path: Path) -> None:
    """Schema 3 (seen_keys) over a database made by schema 2."""
    import sqlite3

    from monitor.store.sql import MIGRATIONS, _schema

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    for stmt in _schema("INTEGER PRIMARY KEY AUTOINCREMENT") + list(MIGRATIONS[2]):
        conn.execute(stmt)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema', '2')")
    conn.execute("INSERT INTO entries (feed, key, guid, link, canonical_url, title, summary, "
                 "published, seen_at, story_id) VALUES ('f', 'a', 'a', 'l', 'l', 't', 's', NULL, "
                 "'2026-01-01T00:00:00.000000Z', 's1')")
    conn.commit()
    conn.close()
    s = open_store(f"sqlite:///{path}")
    try:
        assert s.get_meta("schema") == str(SCHEMA_VERSION)  # through 3 (seen_keys), 4 ...
        assert s.known("f", ["a"]) == {"a": ("s1", "t")}
        assert s.prune(NOW, NOW) == 1 and s.known("f", ["a"]) == {"a": ("", "")}
    finally:
        s.close()


@pytest.mark.parametrize(("version", "undo"), [
    # step 5 before it made feeds_lease (commit c7179bd)
    pytest.param(5, ["DROP INDEX feeds_lease"], id="schema-5-without-feeds-lease"),
    # step 6 before it added the parse memo (commit 8df6740)
    pytest.param(6, ["ALTER TABLE feeds DROP COLUMN seen",
                     "ALTER TABLE feeds DROP COLUMN seen_since"], id="schema-6-without-memo"),
])
def test_databases_made_by_earlier_editions_of_a_step_upgrade(
        tmp_path: Path, version: int, undo: list[str]) -> None:
    """A step edited after a commit had shipped it left that commit's databases
    unable to upgrade (no such index: feeds_lease; no such column: seen)."""
    import sqlite3

    from monitor.store.sql import MIGRATIONS, _schema

    path = tmp_path / f"v{version}.db"
    conn = sqlite3.connect(path)
    for stmt in _schema("INTEGER PRIMARY KEY AUTOINCREMENT"):
        conn.execute(stmt)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema', '1')")
    conn.commit()
    conn.close()
    s = open_store(f"sqlite:///{path}", upgrade=False)
    try:
        s.upgrade(version)
    finally:
        s.close()
    conn = sqlite3.connect(path)
    for stmt in undo:
        conn.execute(stmt)
    conn.execute("INSERT INTO feeds (name) VALUES ('f')")
    conn.commit()
    conn.close()
    assert version < max(MIGRATIONS)
    s = open_store(f"sqlite:///{path}")
    try:
        assert s.get_meta("schema") == str(SCHEMA_VERSION)
        s.record_poll(poll(at=NOW))
        assert s.feed_state("f") is not None
    finally:
        s.close()


def test_a_store_that_fails_is_named_by_its_path(tmp_path: Path) -> None:
    """'select failed: database disk image is malformed' did not say which file; a
    schema version that is not a number was a ValueError traceback."""
    import sqlite3

    path = tmp_path / "state" / "monitor.db"
    s = open_store(f"sqlite:///{path}")
    s.close()

    def schema(value: str) -> None:
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (value,))
        conn.commit()
        conn.close()

    schema("ten")
    with pytest.raises(StoreError, match=f"^{path}: its schema version is 'ten', not a number"):
        open_store(f"sqlite:///{path}")
    schema("99")
    with pytest.raises(StoreError, match=f"^{path} was written by a newer news-monitor"):
        open_store(f"sqlite:///{path}")
    s = open_store(f"sqlite:///{path}", upgrade=False)
    try:
        with pytest.raises(StoreError, match="^select failed: no such table: absent") as info:
            s._q("SELECT * FROM absent")
        assert info.value.where == str(path)  # said by the command it ends, not in a feed's error
    finally:
        s.close()


def test_entries_since_for_backtests(store: SqlStore) -> None:
    for i in range(3):
        e = entry("f", f"k{i}", f"Story {i}")
        store.ingest(poll(), [StoredEntry(entry=e, story_id=f"s{i}",
                                          seen_at=NOW - timedelta(days=i))], [])
    got = store.entries_since(NOW - timedelta(days=1, hours=1))
    assert [g.entry.title for g in got] == ["Story 1", "Story 0"]


def test_sqlite_file_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s/monitor.db"
    s = open_store(url)
    e = entry("f", "a")
    s.ingest(poll(), [StoredEntry(entry=e, story_id="s1", seen_at=NOW)], [alert(e, "s1")])
    s.close()
    s = open_store(url)
    assert len(s.pending("slack")) == 1
    mode = s._q("PRAGMA journal_mode")[0][0]
    s.close()
    assert mode == "wal"


def _write_pages(s: SqlStore, polls: int, start: int = 0) -> None:
    """Entries enough to write a few hundred WAL pages: their summaries ~4 KB each."""
    for p in range(start, start + polls):
        s.ingest(poll(f"f{p}"), [StoredEntry(entry=replace(
            entry(f"f{p}", f"k{i}"), summary=f"{p} {i} " + "text " * 800), story_id=f"s{p}-{i}",
            seen_at=NOW, watched=False) for i in range(20)], [])


def _pages_in_db_file(path: Path) -> int:
    """The main database file's size in pages: what checkpoints have copied into it
    (a commit in WAL mode writes to the -wal file only)."""
    return path.stat().st_size // 4096


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]


def test_sqlite_background_checkpoints_copy_the_wal_instead_of_the_commits(
        tmp_path: Path) -> None:
    """With background checkpoints, a thread copies the WAL into the database file
    once enough pages wait, and the commits (whose copy every store call would
    wait for) no longer do it at their threshold."""
    from monitor.store.sqlite import BACKSTOP_PAGES, SQLiteStore

    # The control: commits checkpoint at their threshold, here past 100 pages.
    plain = SQLiteStore(str(tmp_path / "plain.db"))
    plain._execute("PRAGMA wal_autocheckpoint=100")
    _write_pages(plain, 10)
    assert _pages_in_db_file(tmp_path / "plain.db") > 100  # copied by a commit
    plain.close()

    path = tmp_path / "bg.db"
    s = SQLiteStore(str(path))
    s.background_checkpoints(pages=100, look=0.01)
    try:
        assert len(_checkpoint_threads()) == 1
        assert s._q("PRAGMA wal_autocheckpoint")[0][0] == BACKSTOP_PAGES
        before = _pages_in_db_file(path)
        _write_pages(s, 10)
        deadline = time.monotonic() + 10
        while _pages_in_db_file(path) <= before + 100:
            assert time.monotonic() < deadline, "no background checkpoint copied the WAL"
            time.sleep(0.01)
        # The WAL goes on as the log of what comes next: nothing lost or doubled.
        _write_pages(s, 5, start=10)
        assert len(s.entries_since(NOW - timedelta(hours=1))) == 15 * 20
    finally:
        s.close()
    assert not _checkpoint_threads()  # stopped by the close, before the last copy
    assert not (tmp_path / "bg.db-wal").exists()
    again = SQLiteStore(str(path))
    assert len(again.entries_since(NOW - timedelta(hours=1))) == 15 * 20
    again.close()


@pytest.mark.parametrize(("last", "waiting", "seen", "tried", "due"), [
    (5_000, 5_000, 4_000, -1, False),  # being written, under the threshold
    (12_000, 10_000, 11_000, 2_000, True),  # the threshold reached
    (5_000, 5_000, 5_000, -1, True),  # nothing written since the last look: copy the rest
    (5_000, 0, 5_000, -1, False),  # all copied already
    (0, 0, 0, -1, False),  # no WAL (or its header caught mid-update)
    (12_000, 10_000, 12_000, 12_000, False),  # tried at this very length: a reader holds it
    (12_500, 10_500, 12_000, 12_000, True),  # written on since: try again
])
def test_when_the_background_checkpointer_copies(last: int, waiting: int, seen: int,
                                                  tried: int, due: bool) -> None:
    from monitor.store.sqlite import checkpoint_due

    assert checkpoint_due(last, waiting, seen=seen, tried=tried, pages=10_000) is due


def test_background_checkpoints_copy_what_waits_once_writes_stop_and_lift_the_commits(
        tmp_path: Path) -> None:
    """Under the page threshold the checkpointer copies what waits once nothing is
    written for a look, so the WAL can start over; commits checkpoint only past
    the backstop. An in-memory store has no WAL and gets no thread."""
    from monitor.store.sqlite import SQLiteStore

    mem = SQLiteStore(":memory:")
    mem.background_checkpoints(pages=1, look=0.01)
    assert not _checkpoint_threads()
    mem.close()

    path = tmp_path / "bg.db"
    s = SQLiteStore(str(path))
    s._execute("PRAGMA wal_autocheckpoint=100")  # lifted to the backstop next
    s.background_checkpoints(pages=100_000, look=0.01)
    try:
        checkpoints = s._checkpoints
        assert checkpoints is not None
        before = _pages_in_db_file(path)
        _write_pages(s, 10)  # ~800 pages: under both thresholds
        deadline = time.monotonic() + 10
        # The copy's end (after its fsync): the WAL's frames, all copied.
        while True:
            last, waiting = checkpoints.waiting()
            if last > 100 and waiting == 0:
                break
            assert time.monotonic() < deadline, "what waited was not copied"
            time.sleep(0.01)
        assert _pages_in_db_file(path) > before + 100
    finally:
        s.close()


_HOLDS = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
    except OSError:
        print("held")
    else:
        print("free")
"""


def test_the_checkpointer_keeps_sqlites_locks_on_the_wal_index(tmp_path: Path) -> None:
    """Each connection holds a read lock on the -shm's byte 128 (SQLite's unix VFS,
    "DMS"); another process that finds it free takes itself for the first and
    rebuilds the wal-index under the running service, which then dies of SIGBUS.
    Closing any handle to a file drops the process's POSIX locks on it: the
    checkpointer's looks at the -shm must not."""
    import subprocess
    import sys

    from monitor.store.sqlite import SQLiteStore

    path = tmp_path / "locks.db"
    s = SQLiteStore(str(path))
    s.background_checkpoints(pages=100_000, look=0.01)
    try:
        checkpoints = s._checkpoints
        assert checkpoints is not None
        _write_pages(s, 2)
        for _ in range(3):
            checkpoints.waiting()  # as its thread does every look
        time.sleep(0.05)
        probe = subprocess.run([sys.executable, "-c", _HOLDS, f"{path}-shm"],
                               capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == "held", probe
    finally:
        s.close()


def test_a_failing_background_checkpoint_is_logged_once_per_streak(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from monitor.store.sqlite import SQLiteStore

    s = SQLiteStore(str(tmp_path / "bg.db"))
    s.background_checkpoints(pages=100_000, look=60)
    checkpoints = s._checkpoints
    assert checkpoints is not None
    try:
        good = checkpoints._conn
        checkpoints._conn = sqlite3.connect(":memory:")
        checkpoints._conn.close()  # every checkpoint on it fails
        with caplog.at_level(logging.WARNING, logger="monitor.store.sqlite"):
            checkpoints.checkpoint()
            checkpoints.checkpoint()
            checkpoints._conn = good
            checkpoints.checkpoint()  # the streak ends
            checkpoints._conn = sqlite3.connect(":memory:")
            checkpoints._conn.close()
            checkpoints.checkpoint()
        failed = [r for r in caplog.records if "store.checkpoint_failed" in r.getMessage()]
        assert len(failed) == 2 and str(tmp_path / "bg.db") in failed[0].getMessage()
    finally:
        checkpoints._conn = good
        s.close()


def test_prune_works_in_batches(store: SqlStore) -> None:
    old = NOW - timedelta(days=40)
    store.ingest(poll(at=old), [StoredEntry(entry=entry("f", f"k{i}"), story_id=f"s{i}",
                                            seen_at=old) for i in range(25)], [])
    assert store.prune(NOW - timedelta(days=30), NOW, batch=10) == 25
    assert len(store.known("f", [f"k{i}" for i in range(25)])) == 25
    assert store.entries_since(old - timedelta(days=1)) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_schema_3_database_upgrades_to_feed_health(backend: str, tmp_path: Path) -> None:
    """A database written by the previous version (schema 3) gains the due time and
    health columns (migration 4), keeping what it knew."""
    from stores import state_url

    with state_url(backend, tmp_path) as url:
        old = open_store(url, upgrade=False)
        assert old.upgrade(3) == [2, 3]  # as schema 3 made it
        old._x("INSERT INTO feeds (name, etag, last_polled_at, failures) "
               "VALUES ('old', '\"e1\"', '2026-11-25T11:00:00.000000Z', 2)")
        old.close()
        store = open_store(url)
        try:
            assert store.get_meta("schema") == str(SCHEMA_VERSION)
            st = store.feed_state("old")
            assert st is not None and st.etag == '"e1"' and st.failures == 2
            assert st.next_poll_at is None and st.body_hash is None and not st.ops_alerted
            assert [st.name for st in store.due_feeds(NOW)] == ["old"]
            store.record_poll(PollRecord(feed="old", at=NOW, etag='"e2"', status=200,
                                         next_poll_at=NOW + timedelta(minutes=5),
                                         response_ms=40.0, parsed=True, body_hash="h",
                                         per_day=12.0, hint=timedelta(hours=1)))
            st = store.feed_state("old")
            assert st is not None and st.failures == 0 and st.response_ms == 40.0
            assert st.hint == timedelta(hours=1) and st.per_day == 12.0
            assert store.due_feeds(NOW) == []
            assert [st.name for st in store.due_feeds(NOW + timedelta(minutes=5))] == ["old"]
        finally:
            store.close()


def test_feed_health_is_recorded(store: SqlStore) -> None:
    store.sync_feeds([("a", "https://a.example/f"), ("b", "https://b.example/f")])
    assert sorted(st.name for st in store.due_feeds(NOW)) == ["a", "b"]
    store.record_poll(PollRecord(feed="a", at=NOW, error="HTTP 410 Gone", status=410,
                                 gone_url="https://a.example/f", response_ms=10.0))
    store.record_poll(PollRecord(feed="b", at=NOW, status=200, response_ms=100.0,
                                 next_poll_at=NOW + timedelta(minutes=5), parsed=True,
                                 body_hash="x"))
    store.record_poll(PollRecord(feed="b", at=NOW + timedelta(minutes=5), status=304,
                                 response_ms=50.0, next_poll_at=NOW + timedelta(minutes=10)))
    b = store.feed_state("b")
    assert b is not None and b.body_hash == "x" and b.status == 304
    assert b.response_ms == pytest.approx(90.0)  # 0.8 * 100 + 0.2 * 50
    assert [st.name for st in store.due_feeds(NOW + timedelta(days=1))] == ["b"]  # a is gone
    store.sync_feeds([("a", "https://a.example/moved")])  # a new URL revives it
    assert "a" in [st.name for st in store.due_feeds(NOW)]


def test_a_feed_whose_url_changed_is_due_at_once_as_a_new_one(store: SqlStore) -> None:
    """A user fixing a broken URL does not wait out the old one's backoff, and the
    new URL is not sent the old one's validators."""
    store.sync_feeds([("a", "https://a.example/f"), ("b", "https://b.example/f")])
    for name in "ab":
        store.record_poll(PollRecord(feed=name, at=NOW, status=200, etag='"e1"',
                                     last_modified="Mon, 01 Jan 2024 00:00:00 GMT",
                                     next_poll_at=NOW + timedelta(hours=1), parsed=True,
                                     body_hash="x", seen=b"memo", seen_since=NOW))
    store.record_poll(PollRecord(feed="a", at=NOW + timedelta(minutes=1), error="HTTP 500",
                                 status=500, next_poll_at=NOW + timedelta(hours=6)))
    store.sync_feeds([("a", "https://a.example/fixed"), ("b", "https://b.example/f")])
    assert [st.name for st in store.due_feeds(NOW + timedelta(minutes=2))] == ["a"]
    a, b = store.feed_state("a"), store.feed_state("b")
    assert a is not None and b is not None
    assert (a.etag, a.last_modified, a.body_hash, a.seen_since) == (None, None, None, None)
    assert store.memos(["a"]) == {} and b.body_hash == "x" and b.etag == '"e1"'
    assert a.failures == 1  # its health is the feed's: failing until a poll succeeds
    store.sync_feeds([("a", "https://a.example/fixed")])  # the same URL again: nothing
    assert store.due_feeds(NOW + timedelta(minutes=2))[0].name == "a"


def test_a_feed_no_longer_configured_is_neither_due_nor_claimed(store: SqlStore) -> None:
    """Removed by a reload, a feed's row would head every claim (the most overdue),
    be leased and renewed for ever by an instance that polls only configured
    feeds, and count as due on the status page."""
    store.sync_feeds([(n, f"https://{n}.example/f") for n in ("a", "b", "c")])
    store.sync_feeds([("a", "https://a.example/f"), ("c", "https://c.example/f")])
    assert store.count_due(NOW) == 2
    claimed = store.claim_feeds(NOW, "me", timedelta(minutes=1))
    assert sorted(st.name for st in claimed) == ["a", "c"]
    store.sync_feeds([(n, f"https://{n}.example/f") for n in ("a", "b", "c")])
    assert store.feed_state("b") is not None  # back: a new feed, due now
    assert sorted(st.name for st in store.due_feeds(NOW)) == ["a", "b", "c"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_schema_8_memos_in_base64_come_through_as_bytes(backend: str, tmp_path: Path) -> None:
    """Migration 9: a feed's parse memo, stored as base64 text by schema 8, is read
    back byte for byte after the upgrade; new memos are stored as bytes."""
    import base64

    from stores import state_url

    memo = bytes(range(256)) * 3
    with state_url(backend, tmp_path) as url:
        old = open_store(url, upgrade=False)
        old.upgrade(8)
        old._x("INSERT INTO feeds (name, failures, seen, seen_since, first_polled_at) "
               "VALUES ('a', 0, ?, '2026-11-25T11:00:00.000000Z', "
               "'2026-11-25T11:00:00.000000Z'), ('b', 0, NULL, NULL, NULL)",
               (base64.b64encode(memo).decode("ascii"),))
        old.close()
        store = open_store(url)
        try:
            assert store.get_meta("schema") == str(SCHEMA_VERSION)
            a, b = store.feed_state("a"), store.feed_state("b")
            assert a is not None and a.seen == memo and a.seen_since is not None
            assert b is not None and b.seen == b""
            # Read without memos, then only those asked for.
            assert store.feed_states(memos=False)["a"] == replace(a, seen=b"")
            assert store.memos(["a", "b", "nope"]) == {"a": memo}
            store.record_poll(PollRecord(feed="b", at=NOW, status=200, parsed=True,
                                         body_hash="h", seen=b"\x00\xffnew", seen_since=NOW))
            b = store.feed_state("b")
            assert b is not None and b.seen == b"\x00\xffnew"
        finally:
            store.close()
