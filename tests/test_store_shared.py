"""The store as several instances share it: migrations, leases, claims, placeholders.

Run against SQLite and PostgreSQL like tests/test_store.py; the concurrent
cases open separate stores (separate pools) on one PostgreSQL schema, as
separate instances would.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from stores import fresh_store, state_url

from monitor.store import Ingest, Lookup, PollRecord, SqlStore, StoredEntry, open_store
from monitor.store.postgres import numbered
from monitor.store.sql import SCHEMA_VERSION
from monitor.types import Entry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"
LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    with fresh_store(request.param, tmp_path) as s:
        yield s


@pytest.mark.parametrize(("sql", "expected"), [
    pytest.param("SELECT ?", "SELECT $1", id="one"),
    pytest.param("a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)", id="several"),
    pytest.param("x = '?' AND y = ?", "x = '?' AND y = $1", id="in-a-string"),
    pytest.param("x = 'it''s ?' AND y = ?", "x = 'it''s ?' AND y = $1", id="doubled-quote"),
    pytest.param('SELECT "a?b", ?', 'SELECT "a?b", $1', id="in-an-identifier"),
    pytest.param("LIKE 'a%' AND z = ?", "LIKE 'a%' AND z = $1", id="percent-untouched"),
])
def test_placeholders_are_numbered_outside_quotes(sql: str, expected: str) -> None:
    assert numbered(sql) == expected


def test_parameters_travel_apart_from_the_sql(store: SqlStore) -> None:
    """A literal ? or % in the SQL and quotes or %s in a value are no placeholders."""
    got = store._q("SELECT '?', ?, 'a%b', ?", ("it's %s", "100%"))
    assert [tuple(r) for r in got] == [("?", "it's %s", "a%b", "100%")]


def test_postgres_plans_lookups_without_parallel_workers(tmp_path: Path) -> None:
    """Set by the pool on the connections it opens, whatever the server's default
    (2 here): a misjudged lookup must not fork workers (postgres._serial_plans)."""
    with fresh_store("postgres", tmp_path) as s:
        assert s._q("SHOW max_parallel_workers_per_gather")[0][0] == "0"


def _grown_unanalyzed(s: SqlStore, rows: int) -> None:
    """``rows`` entries in 1,000 feeds, as a table grows between statistics runs
    (or on a server without autovacuum, forever)."""
    s._x("INSERT INTO entries (feed, key, link, canonical_url, title, summary, seen_at, "
         "story_id) SELECT 'f' || (g % 1000), 'k' || g, 'l', 'https://x/' || g, 't', 's', "
         "'2026', 's' || g FROM generate_series(1, ?) g", (rows,))


def _seq_scans(s: SqlStore) -> int:
    """Whole-table reads of ``entries`` so far: this connection's pending counts
    flushed first (they are otherwise sent at most once a second)."""
    s._q("SELECT pg_stat_force_next_flush()")
    return int(s._q("SELECT seq_scan FROM pg_stat_user_tables WHERE relid = "
                    "'entries'::regclass")[0][0])


def test_postgres_lookups_read_by_index_on_a_table_without_statistics(tmp_path: Path) -> None:
    """A poll's lookup reads a few rows by index however the table grew since it
    was last analyzed, even by a plan the connection kept from when it was
    empty (the server settles on one after five runs of a prepared statement):
    a whole-table read per poll (20-300 ms at 200,000 entries) under the
    assignment lock stalls every instance."""
    keys = tuple(f"k{i}" for i in range(50))
    urls = tuple(f"https://x/{i}" for i in range(50))
    with fresh_store("postgres", tmp_path) as s, s._bound():
        for _ in range(12):  # prepared, and planned, while the table is empty
            s.look_up([Lookup("f0", keys, urls)])
        _grown_unanalyzed(s, 20_000)
        before = _seq_scans(s)
        for n in range(10):
            [found] = s.look_up([Lookup(f"f{n}", keys, urls)])
            assert set(found.by_url) == set(urls[1:]) and set(found.known) <= set(keys)
        assert _seq_scans(s) == before
        assert s._q("SELECT SUM(generic_plans) FROM pg_prepared_statements")[0][0] > 0


@pytest.mark.parametrize("name", ["state-schema4.db", "state-schema4-no-maybe-sent.db"])
def test_a_schema_4_file_upgrades(name: str, tmp_path: Path) -> None:
    """Files made by the store of schema 4 (tests/data/PROVENANCE.md), one from before
    alerts.maybe_sent: status reads them unchanged, opening upgrades them, and the
    alert they hold can be attempted and sent."""
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    looking = open_store(f"sqlite:///{path}", upgrade=False)
    assert looking.schema_version() == 4
    looking.close()
    s = open_store(f"sqlite:///{path}")
    try:
        assert s.schema_version() == SCHEMA_VERSION
        [a] = s.pending("slack")
        assert a.watchlist == "ukraine" and a.entry.title == "Troops cross the border"
        assert not a.maybe_sent
        s.mark_attempt(a.id)
        assert s.alert(a.id).maybe_sent  # type: ignore[union-attr]
        assert s.known("bbc", ["k1"]) == {"k1": ("s1", "Troops cross the border")}
        states = s.feed_states()
        assert states["cnn"].failures == 1 and states["bbc"].polled_by is None
        # Never polled since the upgrade, cnn has no due time: first, then bbc.
        assert [st.name for st in s.claim_feeds(NOW + timedelta(hours=1), "a", LEASE)] == \
            ["cnn", "bbc"]
    finally:
        s.close()


def test_status_of_an_empty_database_changes_nothing(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/new.db", upgrade=False)
    try:
        assert s.schema_version() == 0
        assert s.schema_version() == 0
        assert s.upgrade() == list(range(2, SCHEMA_VERSION + 1))
        assert s.upgrade() == []
    finally:
        s.close()


def test_renewing_keeps_only_the_claims_of_polls_under_way(store: SqlStore) -> None:
    """A poll that ended unrecorded (the store away just then) left its claim; renewing
    every claim the instance held kept that feed from everyone, for as long as
    the instance lived. Only the polls under way are renewed: the rest run out."""
    names = [f"f{i}" for i in range(1203)]  # more than one statement's worth
    store.sync_feeds([(n, f"https://{n}.example/f") for n in names])
    assert len(store.claim_feeds(NOW, "one", LEASE)) == 1203
    later = NOW + LEASE - timedelta(seconds=1)
    under_way = [n for n in names if n != "f7"]
    assert store.renew_feeds("one", later + LEASE, under_way) == 1202
    assert store.renew_feeds("two", later + LEASE, under_way) == 0  # not its claims
    after = NOW + LEASE + timedelta(seconds=1)
    assert [st.name for st in store.claim_feeds(after, "two", LEASE)] == ["f7"]


def test_a_due_feed_goes_to_one_claimant_until_its_lease_ends(store: SqlStore) -> None:
    store.sync_feeds([("a", "https://a.example/f"), ("b", "https://b.example/f")])
    assert sorted(st.name for st in store.claim_feeds(NOW, "one", LEASE)) == ["a", "b"]
    assert store.claim_feeds(NOW, "two", LEASE) == []
    # "one" records a's poll: the claim ends, and a is not due before its next poll.
    store.record_poll(PollRecord(feed="a", at=NOW, status=200, by="one",
                                 next_poll_at=NOW + timedelta(minutes=5)))
    assert store.feed_state("a").polled_by == "one"  # type: ignore[union-attr]
    assert store.claim_feeds(NOW + timedelta(seconds=30), "two", LEASE) == []
    # "one" died holding b: after the lease, "two" takes b over.
    later = NOW + LEASE + timedelta(seconds=1)
    assert [st.name for st in store.claim_feeds(later, "two", LEASE)] == ["b"]
    store.record_poll(PollRecord(feed="b", at=later, error="HTTP 500", by="two",
                                 next_poll_at=later + timedelta(minutes=1)))
    assert store.feed_state("b").polled_by == "two"  # type: ignore[union-attr]


def test_a_claim_takes_the_most_overdue_free_feeds_up_to_its_limit(store: SqlStore) -> None:
    """Never polled first, then by due time; held and not-yet-due feeds are passed
    over and do not use up the limit."""
    store.sync_feeds([(n, f"https://{n}.example/f") for n in "abcdefg"])
    due = {"a": -1, "b": -30, "c": -10, "d": 10, "e": 20, "f": -20}  # minutes from NOW
    for name, minutes in due.items():
        store.record_poll(PollRecord(feed=name, at=NOW - timedelta(hours=1), status=200,
                                     next_poll_at=NOW + timedelta(minutes=minutes)))
    hour = timedelta(hours=1)
    assert [st.name for st in store.claim_feeds(NOW, "one", hour, limit=2)] == ["g", "b"]
    assert [st.name for st in store.claim_feeds(NOW, "two", hour, limit=2)] == ["f", "c"]
    assert [st.name for st in store.claim_feeds(NOW, "two", hour, limit=5)] == ["a"]
    assert store.claim_feeds(NOW, "three", hour) == []
    assert [st.name for st in store.claim_feeds(NOW + timedelta(minutes=15), "three", LEASE,
                                                limit=5)] == ["d"]


def test_a_claim_keeps_its_limit_when_statistics_say_nothing_is_due(tmp_path: Path) -> None:
    """Statistics from when every feed was due later (a cycle's polls recorded),
    then every feed due at once: a plan trusting them had run the claim's pick
    again for each due feed, and claimed hundreds past its limit."""
    with fresh_store("postgres", tmp_path) as s:
        names = [f"f{i:04d}" for i in range(2000)]
        s.sync_feeds((n, f"https://x.example/{n}") for n in names)
        s.record_polls([PollRecord(feed=n, at=NOW, status=200,
                                   next_poll_at=NOW + timedelta(hours=1)) for n in names])
        s._x("ANALYZE feeds")
        s._x("UPDATE feeds SET next_poll_at = NULL")
        got = [st.name for st in s.claim_feeds(NOW, "one", LEASE, limit=50)]
        assert len(got) == 50 and len(set(got)) == 50
        again = [st.name for st in s.claim_feeds(NOW, "two", LEASE, limit=50)]
        assert len(again) == 50 and not set(again) & set(got)


def test_release_hands_claims_over_at_once(store: SqlStore) -> None:
    store.sync_feeds([("a", "https://a.example/f")])
    assert store.claim_feeds(NOW, "one", LEASE) and store.claim("lane:slack", "one", NOW,
                                                                   NOW + LEASE)
    assert not store.claim("lane:slack", "two", NOW, NOW + LEASE)
    store.release("one")
    assert store.claim("lane:slack", "two", NOW, NOW + LEASE)
    assert [st.name for st in store.claim_feeds(NOW, "two", LEASE)] == ["a"]


def test_a_lease_is_renewed_by_its_owner_and_taken_when_it_lapses(store: SqlStore) -> None:
    assert store.claim("job:prune", "one", NOW, NOW + LEASE)
    assert store.claim("job:prune", "one", NOW + LEASE / 2, NOW + LEASE * 2)  # renewed
    assert not store.claim("job:prune", "two", NOW + LEASE, NOW + LEASE * 2)
    assert store.claim("job:prune", "two", NOW + LEASE * 2, NOW + LEASE * 3)
    assert not store.claim("job:prune", "one", NOW + LEASE * 2, NOW + LEASE * 3)
    assert store.leases()["job:prune"][0] == "two"


def test_entries_after_a_row_are_everyone_s(store: SqlStore) -> None:
    last, none = store.entries_after(-1)
    assert none == []
    e = Entry(feed="f", key="k", guid="k", link="https://f.example/k",
              canonical_url="https://f.example/k", title="T", summary="S", published=NOW)
    store.ingest(PollRecord(feed="f", at=NOW), [StoredEntry(entry=e, story_id="s", seen_at=NOW)],
                 [])
    newer, got = store.entries_after(last)
    assert newer > last and [(g.entry.key, g.story_id) for g in got] == [("k", "s")]
    assert store.entries_after(newer) == (newer, [])


def stored(key: str, story: str, watched: bool = True) -> StoredEntry:
    """A minimal entry of feed "f", seen at NOW, titled by its key."""
    return StoredEntry(entry=Entry(feed="f", key=key, guid=None, link="", canonical_url="",
                                   title=key, summary="", published=NOW),
                       story_id=story, seen_at=NOW, watched=watched)


def test_entries_after_comes_in_pages_and_misses_none(store: SqlStore) -> None:
    from monitor.store.sql import _PAGE

    last, _ = store.entries_after(-1)
    n = 2 * _PAGE + 7
    rows = [stored(f"k{i}", f"s{i}") for i in range(n)]
    store.ingest(PollRecord(feed="f", at=NOW), rows, [])
    newer, got = store.entries_after(last)
    assert [g.entry.key for g in got] == [f"k{i}" for i in range(n)]
    assert newer == store.entries_after(-1)[0]


def test_a_hold_starts_with_what_was_stored_and_ends_at_its_own_last_row(
        store: SqlStore) -> None:
    last, _ = store.entries_after(-1)
    store.ingest(PollRecord(feed="f", at=NOW), [stored("before", "s1")], [])
    with store.assigning(last) as hold:
        assert [se.entry.key for se in hold.fresh] == ["before"]
        start = hold.last
        store.ingest_all([Ingest(PollRecord(feed="f", at=NOW), [stored("within", "s2")])])
    assert hold.last == store.entries_after(-1)[0] > start
    assert store.entries_after(start)[1][0].entry.key == "within"


def test_an_instance_s_hold_waits_for_another_s_and_sees_its_entries(tmp_path: Path) -> None:
    """The assignment lock and the first read go out together (PostgresStore.assigning):
    the read must still see what the previous holder stored before releasing."""
    with state_url("postgres", tmp_path) as url:
        one, two = open_store(url), open_store(url)
        try:
            start, _ = one.entries_after(-1)
            seen: list[str] = []

            def second() -> None:
                with two.assigning(start) as hold:
                    seen.extend(se.entry.key for se in hold.fresh)

            with one.assigning(start):
                waiting = threading.Thread(target=second)
                waiting.start()
                waiting.join(0.5)
                assert waiting.is_alive()  # held by the first
                one.ingest_all([Ingest(PollRecord(feed="f", at=NOW), [stored("first", "s")])])
            waiting.join(10)
            assert not waiting.is_alive() and seen == ["first"]
            with two.assigning(-1) as hold:  # released: taken again at once
                assert hold.last == two.entries_after(-1)[0]
        finally:
            one.close()
            two.close()


def test_watched_since_reads_the_watched_stories_only(store: SqlStore) -> None:
    # s1: an outlet the watchlist missed, then a match; s2: nobody watches it.
    store.ingest(PollRecord(feed="f", at=NOW),
                 [stored("a", "s1", False), stored("b", "s2", False), stored("c", "s1", True)],
                 [])
    got = store.watched_since(NOW - timedelta(hours=1))
    assert [(g.entry.key, g.story_id, g.watched) for g in got] == [
        ("a", "s1", False), ("c", "s1", True)]
    assert store.watched_since(NOW + timedelta(seconds=1)) == []


def test_a_group_commit_records_every_poll_in_order(store: SqlStore) -> None:
    """One transaction of polls of each kind (sent as a batch per kind): each feed's
    row is what its polls say, the last poll of a feed polled twice standing."""
    later = NOW + timedelta(minutes=5)
    store.record_polls([
        PollRecord(feed="a", at=NOW, status=200, parsed=True, body_hash="h1", seen=b"\x01\x02",
                   seen_since=NOW, by="one"),
        PollRecord(feed="b", at=NOW, status=304, etag='"e"', by="one"),
        PollRecord(feed="c", at=NOW, status=503, error="HTTP 503", by="one"),
        PollRecord(feed="b", at=later, status=304, etag='"e2"', by="one"),
        PollRecord(feed="a", at=later, status=200, parsed=True, body_hash="h2", seen=b"\x03",
                   seen_since=NOW, by="one"),
        PollRecord(feed="c", at=later, status=503, error="HTTP 503 again", by="one"),
    ])
    a, b, c = (store.feed_state(n) for n in "abc")
    assert a is not None and (a.body_hash, a.seen, a.last_polled_at) == ("h2", b"\x03", later)
    assert b is not None and (b.etag, b.status, b.body_hash) == ('"e2"', 304, None)
    assert c is not None and (c.failures, c.last_error) == (2, "HTTP 503 again")


def test_a_transaction_the_database_refuses_leaves_nothing(store: SqlStore) -> None:
    """A statement refused inside a transaction (on PostgreSQL its answer is read only
    at the commit) undoes the statements sent before it, and the store goes on."""
    from monitor.errors import StoreError

    with pytest.raises(StoreError), store._tx():
        store._send("INSERT INTO meta (key, value) VALUES (?, ?)", ("first", "1"))
        store._send("INSERT INTO meta (key, value) VALUES (?, ?)", ("twice", "1"))
        store._send("INSERT INTO meta (key, value) VALUES (?, ?)", ("twice", "2"))
    assert store.get_meta("first") is None and store.get_meta("twice") is None
    store.set_meta("first", "after")
    assert store.get_meta("first") == "after"


def test_known_tells_entries_from_compact_keys_across_chunks(store: SqlStore) -> None:
    """More keys than one query takes, some stored entries, some only compact keys
    (their entries pruned), some never seen."""
    old = NOW - timedelta(days=40)
    store.ingest(PollRecord(feed="f", at=old),
                 [StoredEntry(entry=stored(f"p{i}", "sp").entry, story_id="sp", seen_at=old)
                  for i in range(300)], [])
    store.prune(NOW - timedelta(days=30), NOW)
    store.ingest(PollRecord(feed="f", at=NOW), [stored(f"e{i}", f"s{i}") for i in range(300)], [])
    keys = [k for i in range(300) for k in (f"p{i}", f"e{i}", f"n{i}")]
    got = store.known("f", keys)
    assert got == {**{f"p{i}": ("", "") for i in range(300)},
                   **{f"e{i}": (f"s{i}", f"e{i}") for i in range(300)}}
    assert store.known("g", keys) == {}


def test_look_up_answers_several_polls_at_once(store: SqlStore) -> None:
    """A batch's reads in one go: each poll's known keys and linked stories, as
    known() and story_by_url() say them, across chunks and with nothing to ask."""
    from monitor.store import Lookup

    def linked(key: str, story: str, url: str, feed: str = "f") -> StoredEntry:
        return StoredEntry(entry=Entry(feed=feed, key=key, guid=None, link=url,
                                       canonical_url=url, title=key, summary="",
                                       published=NOW), story_id=story, seen_at=NOW)

    store.ingest(PollRecord(feed="f", at=NOW),
                 [linked(f"k{i}", f"s{i}", f"https://a.example/{i}") for i in range(300)], [])
    store.ingest(PollRecord(feed="g", at=NOW),
                 [linked("x", "s-low", "https://a.example/7", feed="g")], [])  # a second story
    urls = tuple(f"https://a.example/{i}" for i in range(0, 600, 2))
    f, g, none, only_links = store.look_up([
        Lookup("f", tuple(f"k{i}" for i in range(0, 600, 3)), urls),
        Lookup("g", ("x", "k1")),
        Lookup("h"),
        Lookup("", (), ("https://a.example/7", "", "https://b.example/")),
    ])
    assert f.known == {f"k{i}": (f"s{i}", f"k{i}") for i in range(0, 300, 3)}
    assert f.by_url == {f"https://a.example/{i}": f"s{i}" for i in range(0, 300, 2)}
    assert f.known == store.known("f", [f"k{i}" for i in range(0, 600, 3)])
    assert g.known == {"x": ("s-low", "x")} and g.by_url == {}
    assert none.known == {} and none.by_url == {}
    assert only_links.known == {} and only_links.by_url == {"https://a.example/7": "s-low"}
    assert store.story_by_url(urls) == f.by_url


def test_entries_from_before_schema_6_count_as_watched(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    shutil.copy(DATA / "state-schema4.db", path)
    s = open_store(f"sqlite:///{path}")
    try:
        old = s.entries_since(datetime(1970, 1, 1, tzinfo=UTC))
        assert old and all(se.watched for se in old)
        assert len(s.watched_since(datetime(1970, 1, 1, tzinfo=UTC))) == len(old)
    finally:
        s.close()


def test_instances_claiming_together_split_the_due_feeds(tmp_path: Path) -> None:
    """Four stores (four pools) claim 400 due feeds at once: each feed exactly once."""
    with state_url("postgres", tmp_path) as url:
        first = open_store(url)
        first.sync_feeds([(f"f{i}", f"https://f{i}.example/") for i in range(400)])
        stores = [first, *(open_store(url) for _ in range(3))]
        got: dict[str, list[str]] = {}
        barrier = threading.Barrier(len(stores))

        def claim(i: int, s: SqlStore) -> None:
            barrier.wait()
            names: list[str] = []
            while batch := s.claim_feeds(NOW, f"i{i}", LEASE, limit=25):
                names += [st.name for st in batch]
            got[f"i{i}"] = names

        threads = [threading.Thread(target=claim, args=(i, s)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
    claimed = [n for names in got.values() for n in names]
    assert sorted(claimed) == sorted(f"f{i}" for i in range(400))  # each once
    assert sum(1 for names in got.values() if names) >= 2  # side by side, not in turn


def test_instances_starting_together_migrate_once(tmp_path: Path) -> None:
    with state_url("postgres", tmp_path) as url:
        results: list[object] = []
        barrier = threading.Barrier(4)

        def start() -> None:
            barrier.wait()
            try:
                s = open_store(url)
                results.append(s.schema_version())
                s.close()
            except Exception as exc:  # reported below: the test names it
                results.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [SCHEMA_VERSION] * 4


@pytest.mark.parametrize(("owners", "expected"), [
    pytest.param({"web-1:10", "web-1:11"}, ["web-1:11"], id="a-dead-pid-here"),
    pytest.param({"web-2:11"}, [], id="another-host-waits-for-its-lease"),
    pytest.param({"web-1"}, [], id="a-named-instance-is-not-a-pid"),
    pytest.param({"db:web-1:11"}, [], id="host-must-match-whole"),
])
def test_claims_of_a_crashed_instance_here_are_taken_back(owners: set[str],
                                                          expected: list[str]) -> None:
    from monitor.service import gone_here

    assert gone_here(owners, "web-1", alive=lambda pid: pid == 10) == expected
