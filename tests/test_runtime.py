"""The polling runtime: due times in the store, one tick, unchanged bodies skipped,
backoff, Retry-After, 410 Gone and the dead-feed ops alert. In-process Service
against the local feed and Slack servers, with a controllable clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer
from test_delivery import Clock

from monitor import config as cfg
from monitor.service import Service, _Pending, renewing
from monitor.store import Ingest, PollRecord
from monitor.store.sql import Hold
from monitor.types import Feed

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def write_config(tmp: Path, server: FeedServer, paths: list[str], extra: str = "") -> Path:
    feeds = ", ".join(f"{{name: {p.strip('/').split('.')[0]}, url: '{server.url(p)}'}}"
                      for p in paths)
    (tmp / "watchlists").mkdir(exist_ok=True)
    (tmp / "monitor.yaml").write_text(
        "state: sqlite:///state/monitor.db\n"
        "poll: {interval: 5m, min_interval: 1m, max_interval: 6h, parse_workers: 1}\n"
        f"feeds: [{feeds}]\n{extra}")
    return tmp / "monitor.yaml"


def story_feed(n: int = 3) -> RSS:
    rss = RSS()
    for i in range(n):
        rss.add(f"Story number {i} about harbours", f"https://wire.example/{i}",
                published=T0 - timedelta(hours=i))
    return rss


async def test_unchanged_body_is_not_parsed_again(tmp_path: Path, feed_server: FeedServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    feed_server.set("/a.xml", story_feed().render(), etag=False, last_modified=False)
    clock = Clock(T0)
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/a.xml"])),
                       now=clock) as s:
        await s.poll_all()
        first = s.store.feed_state("a")
        assert first is not None and first.body_hash and first.last_success_at == T0
        clock.advance(minutes=6)
        with caplog.at_level(logging.DEBUG, logger="monitor.service"):
            await s.poll_all()
        events = [r.getMessage().split()[0] for r in caplog.records]
        assert "feed.unchanged" in events and "feed.polled" not in events
        again = s.store.feed_state("a")
        assert again is not None and again.body_hash == first.body_hash
        assert again.last_success_at == T0 + timedelta(minutes=6)
        assert again.next_poll_at is not None and again.next_poll_at > clock.t
        # A changed body is parsed and ingested.
        rss = story_feed(4)
        feed_server.set("/a.xml", rss.render(), etag=False, last_modified=False)
        clock.advance(minutes=6)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="monitor.service"):
            await s.poll_all()
        assert any("feed.polled" in r.getMessage() and "new=1" in r.getMessage()
                   for r in caplog.records)


def _polled(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [r.getMessage() for r in caplog.records if "feed.polled" in r.getMessage()]
    return line


async def test_unchanged_items_of_a_changed_body_are_not_made_again(
        tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    rss = story_feed(3)
    feed_server.set("/a.xml", rss.render(), etag=False, last_modified=False)
    clock = Clock(T0)
    config = cfg.load(write_config(tmp_path, feed_server, ["/a.xml"]))

    async def poll_changed(minutes: int) -> str:
        feed_server.set("/a.xml", rss.render(), etag=False, last_modified=False)
        clock.advance(minutes=minutes)
        caplog.clear()
        async with Service(config, now=clock) as s:
            with caplog.at_level(logging.INFO, logger="monitor.service"):
                await s.poll_all()
        return _polled(caplog)

    async with Service(config, now=clock) as s:
        await s.poll_all()
    # One item more and one headline edited: only those two are made and looked up,
    # by a service started afresh (the memo is stored with the feed).
    rss.add("Fresh story about ferries", "https://wire.example/new", published=T0)
    [old] = [it for it in rss.items if it.link == "https://wire.example/2"]
    old.title = "Story number 2 about harbours, corrected"
    assert (await poll_changed(6)).endswith("entries=4 new=1 matches=0 queued=0 unchanged=2")
    async with Service(config, now=clock) as s:
        [edited] = [se for se in s.store.entries_since(T0 - timedelta(days=1))
                    if se.entry.link == "https://wire.example/2"]
    assert edited.entry.title == "Story number 2 about harbours, corrected"
    # SEEN_FOR after the last full parse, the next one is a full parse again.
    rss.add("Another one about ports", "https://wire.example/more", published=T0)
    assert (await poll_changed(55)).endswith("entries=5 new=1 matches=0 queued=0")


async def test_tick_takes_only_due_feeds(tmp_path: Path, feed_server: FeedServer) -> None:
    for p in ("/a.xml", "/b.xml"):
        feed_server.set(p, story_feed().render())
    clock = Clock(T0)
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/a.xml", "/b.xml"])),
                       now=clock) as s:
        assert await s.poll_due() == 2  # never polled: both due
        await _settle(s)
        assert await s.poll_due() == 0  # both polled just now
        # Three items an hour apart: about 24 a day, so polled less often than every
        # 5m (twice per expected item would be every 30m; at most fourfold: 20m).
        clock.advance(minutes=15)
        assert await s.poll_due() == 0
        clock.advance(minutes=6)
        assert await s.poll_due() == 2
        await _settle(s)
        assert len(feed_server.requests_for("/a.xml")) == 2


async def _settle(s: Service) -> None:
    import asyncio

    while s._inflight:
        await asyncio.wait(set(s._inflight))


async def test_failures_back_off_and_retry_after_is_honoured(
        tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.fail("/a.xml", 500)
    feed_server.fail("/b.xml", 429, retry_after=7200)
    clock = Clock(T0)
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/a.xml", "/b.xml"])),
                       now=clock) as s:
        gaps = []
        for _ in range(4):
            await s.poll_all()
            st = s.store.feed_state("a")
            assert st is not None and st.next_poll_at is not None
            gaps.append(st.next_poll_at - clock.t)
            clock.t = st.next_poll_at
        # 5m, 10m, 20m, 40m, each less up to a quarter of jitter.
        for gap, full in zip(gaps, (5, 10, 20, 40), strict=True):
            assert timedelta(minutes=full * 0.75) <= gap <= timedelta(minutes=full)
        st = s.store.feed_state("a")
        assert st is not None and st.failures == 4 and st.status == 500
        assert st.failing_since == T0 and st.last_error and "500" in st.last_error
        b = s.store.feed_state("b")
        assert b is not None and b.status == 429 and b.next_poll_at is not None
        assert b.next_poll_at - b.last_polled_at >= timedelta(hours=2)  # type: ignore[operator]


async def test_gone_disables_the_feed_with_one_log_line(
        tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    feed_server.fail("/a.xml", 410)
    clock = Clock(T0)
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/a.xml"])),
                       now=clock) as s:
        with caplog.at_level(logging.WARNING, logger="monitor.service"):
            await s.poll_all()
            clock.advance(days=2)
            await s.poll_all()
            assert await s.poll_due() == 0
    gone = [r for r in caplog.records if "feed.gone" in r.getMessage()]
    assert len(gone) == 1 and "410" in gone[0].getMessage()
    assert len(feed_server.requests_for("/a.xml")) == 1
    # A new URL in the config brings the feed back.
    feed_server.set("/a2.xml", story_feed().render())
    (tmp_path / "monitor.yaml").write_text((tmp_path / "monitor.yaml").read_text().replace(
        "/a.xml", "/a2.xml"))
    async with Service(cfg.load(tmp_path / "monitor.yaml"), now=clock) as s:
        assert await s.poll_due() == 1
        await _settle(s)
    assert len(feed_server.requests_for("/a2.xml")) == 1


async def test_poll_all_reads_the_states_in_pages_and_polls_each_feed_once(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """poll_all starts on a first page of states (the poller's window, here 2) while
    it reads the rest (pages of 3): every feed is polled once a round, whatever
    page it is on, and a feed disabled by 410 on a later page is left out."""
    import monitor.service

    monkeypatch.setattr(monitor.service, "POLL_ALL_PAGE", 3)
    paths = [f"/f{i}.xml" for i in range(10)]
    for p in paths:
        feed_server.set(p, story_feed().render())
    feed_server.fail("/f7.xml", 410)
    path = write_config(tmp_path, feed_server, paths)
    path.write_text(path.read_text().replace("parse_workers: 1}",
                                             "parse_workers: 1, concurrency: 1}"))
    clock = Clock(T0)
    async with Service(cfg.load(path), now=clock) as s:
        assert s._window == 2
        await s.poll_all()
        assert s.tally.polled == 10 and not s._polling and not s._waiting
        clock.advance(minutes=6)
        await s.poll_all()
        assert s.tally.polled == 19
        states = s.store.feed_states()
    assert [len(feed_server.requests_for(p)) for p in paths] == [2] * 7 + [1] + [2] * 2
    assert all(states[f"f{i}"].last_polled_at == T0 + timedelta(minutes=6)
               for i in range(10) if i != 7)


async def test_a_bug_in_one_polls_ingest_is_recorded_as_that_feeds_failure(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll a bug ends (injected here into one feed's ingest) is that feed's failure,
    recorded and backed off like any other: not a poll left unrecorded, due again
    at once, uncounted."""
    for p in ("/a.xml", "/b.xml"):
        feed_server.set(p, story_feed().render())
    path = write_config(tmp_path, feed_server, ["/a.xml", "/b.xml"])
    assign = Service._assign

    def buggy(self: Service, feed: Feed, *args: Any) -> _Pending:
        if feed.name == "b":
            raise RuntimeError("injected")
        return assign(self, feed, *args)

    monkeypatch.setattr(Service, "_assign", buggy)
    async with Service(cfg.load(path), now=Clock(T0)) as s:
        await s.poll_all()
        assert s.tally.polled == 2 and s.tally.failed_feeds == ["b"]
        states = s.store.feed_states()
    b = states["b"]
    assert b.failures == 1 and b.last_error == "internal error: RuntimeError"
    assert b.next_poll_at is not None and b.next_poll_at > T0
    assert states["a"].failures == 0 and states["a"].last_error is None


async def test_a_tick_with_the_store_away_is_one_warning(
        tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    """The heartbeat reads the store for the status line: with the database away, it
    says so in a line, not in a traceback a second."""
    feed_server.set("/a.xml", story_feed().render())
    path = write_config(tmp_path, feed_server, ["/a.xml"])
    async with Service(cfg.load(path), now=Clock(T0)) as s:
        await s._owned(int)  # after the index's fill from the store, on its thread
        with s.store._lock:
            s.store._conn.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            await s._tick()
            assert s.last_tick is not None  # the heartbeat itself waits for no store
            assert s._status_task is not None
            await s._status_task  # the status line's refresh, on its own
        ticked = list(caplog.records)
    assert [r.getMessage().split(" error=")[0] for r in ticked] == ["status.unavailable"]
    assert not any(r.exc_info for r in ticked)


async def test_dead_feed_alert_once_and_on_recovery(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    feed_server.fail("/a.xml", 503)
    extra = ("destinations:\n"
             f"  ops-room: {{type: slack, channel: '#alerts', token: xoxb-test-token, "
             f"base_url: '{slack_server.base_url}'}}\n"
             "ops: [ops-room]\n")
    path = write_config(tmp_path, feed_server, ["/a.xml"], extra)
    path.write_text(path.read_text().replace("parse_workers: 1}", "parse_workers: 1, "
                                             "alert_after: 1h}"))
    clock = Clock(T0)
    async with Service(cfg.load(path), now=clock) as s:
        for _ in range(3):  # T0, +40m, +80m: over an hour of failing at the third
            await s.poll_all()
            clock.advance(minutes=40)
        await s.poll_all()  # still failing: no second alert
        texts = [str(m.text) for m in slack_server.messages]
        assert len(texts) == 1 and "failing for 1h20m" in texts[0], texts
        feed_server.set("/a.xml", story_feed().render())
        clock.advance(minutes=40)
        await s.poll_all()
        texts = [str(m.text) for m in slack_server.messages]
        assert len(texts) == 2 and "working again" in texts[1], texts
        st = s.store.feed_state("a")
        assert st is not None and not st.ops_alerted and st.failures == 0


def _ops_config(tmp: Path, server: FeedServer, slack: SlackServer, name: str,
                channels: list[str]) -> Path:
    dests = "".join(f"  ops-{c}: {{type: slack, channel: '#{c}', token: xoxb-test-token, "
                    f"base_url: '{slack.base_url}'}}\n" for c in channels)
    (tmp / "watchlists").mkdir(exist_ok=True)
    (tmp / "monitor.yaml").write_text(
        "state: sqlite:///state/monitor.db\n"
        "poll: {interval: 5m, min_interval: 1m, max_interval: 6h, alert_after: 1h}\n"
        f"feeds:\n  - name: '{name}'\n    url: '{server.url('/a.xml')}'\n"
        f"destinations:\n{dests}ops: [{', '.join(f'ops-{c}' for c in channels)}]\n")
    return tmp / "monitor.yaml"


async def test_an_ops_notice_reaches_each_destination_once_and_is_escaped(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """One destination down does not make the others hear the same notice again at
    every poll; it hears the notice as first made once it is back. What the
    notice quotes (the feed's name here) cannot ping a channel."""
    feed_server.fail("/a.xml", 503)
    name = "Wire <!channel>"
    path = _ops_config(tmp_path, feed_server, slack_server, name, ["alerts", "later"])

    def texts(channel: str) -> list[str]:
        return [str(m.text) for m in slack_server.messages if m.channel == channel]

    clock = Clock(T0)
    async with Service(cfg.load(path), now=clock) as s:
        for _ in range(4):  # T0, +40m, +80m (failing 1h20m: told), +120m
            await s.poll_all()
            clock.advance(minutes=40)
        alerts = texts("C123ALERTS")
        assert len(alerts) == 1 and "failing for 1h20m" in alerts[0], alerts
        assert "&lt;!channel&gt;" in alerts[0] and "<!channel>" not in alerts[0]
        slack_server.channels["later"] = "C123LATER"  # the second destination is back
        await s.poll_all()
        assert texts("C123LATER") == alerts and len(texts("C123ALERTS")) == 1
        clock.advance(minutes=40)
        await s.poll_all()  # still failing, told everywhere: nothing more
        feed_server.set("/a.xml", story_feed().render())
        clock.advance(minutes=40)
        await s.poll_all()
    for channel in ("C123ALERTS", "C123LATER"):
        got = texts(channel)
        assert len(got) == 2 and "is working again after 4h of failures" in got[1], got


async def test_a_gone_feed_is_an_ops_notice_at_once(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """A 410 disables the feed: no later poll finds it failing for alert_after, so
    ops hear of it at once, and once."""
    feed_server.fail("/a.xml", 410)
    path = _ops_config(tmp_path, feed_server, slack_server, "Wire", ["alerts"])
    async with Service(cfg.load(path), now=Clock(T0)) as s:
        await s.poll_all()
        await s.poll_all()
    texts = [str(m.text) for m in slack_server.messages]
    assert len(texts) == 1 and "Wire is gone (HTTP 410)" in texts[0], texts


@pytest.mark.parametrize(("last", "now", "expected"), [
    pytest.param(None, T0, True, id="never-renewed"),
    pytest.param(T0, T0, False, id="just-renewed"),
    pytest.param(T0, T0 + timedelta(seconds=14), False, id="within-a-quarter-lease"),
    pytest.param(T0, T0 + timedelta(seconds=15), True, id="a-quarter-lease-on"),
    pytest.param(T0, T0 + timedelta(hours=1), True, id="long-after"),
])
def test_claims_are_renewed_every_quarter_lease(last: datetime | None, now: datetime,
                                                 expected: bool) -> None:
    assert renewing(last, now, timedelta(seconds=60)) is expected


async def test_ingests_queued_together_run_in_the_order_their_news_happened(
        tmp_path: Path, feed_server: FeedServer) -> None:
    import threading

    feed_server.set("/a.xml", story_feed().render())
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/a.xml"])),
                       now=Clock(T0)) as s:
        gate = threading.Event()
        busy = asyncio.ensure_future(s._owned(gate.wait, 10))  # the ingest thread is busy
        holds = 0
        real = s.store.assigning

        @contextlib.contextmanager
        def counted(after: int = -1) -> Iterator[Hold]:
            nonlocal holds
            holds += 1
            with real(after) as hold:
                yield hold

        s.store.assigning = counted  # type: ignore[method-assign]
        ran: list[str] = []

        def ingest(name: str, result: int = 0) -> _Pending:
            ran.append(name)
            return _Pending(Ingest(PollRecord(feed="a", at=T0), []), lambda queued: result)

        later = asyncio.ensure_future(s._in_time_order(T0 + timedelta(hours=1), ingest, "B"))
        sooner = asyncio.ensure_future(s._in_time_order(T0, ingest, "A"))
        await asyncio.sleep(0.05)  # both queued behind the busy one
        gate.set()
        await asyncio.gather(busy, later, sooner)
        assert ran == ["A", "B"]
        assert holds == 1  # one hold of the assignment lock for both
        with pytest.raises(ZeroDivisionError):  # a failing ingest fails its own poll only
            await s._in_time_order(T0, lambda: 1 // 0)
        assert await s._in_time_order(T0, ingest, "C", 7) == 7


async def test_max_per_hour_counts_the_alerts_of_its_own_batch(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """A batch's records are written together at its end, but the count that
    max_per_hour is checked against still sees the batch's own alerts."""
    import threading

    a, b = story_feed(1), story_feed(1)
    feed_server.set("/a.xml", a.render())
    feed_server.set("/b.xml", b.render())
    path = write_config(tmp_path, feed_server, ["/a.xml", "/b.xml"], (
        f"destinations:\n  desk: {{type: slack, channel: '#d', token: xoxb-test-token, "
        f"base_url: '{slack_server.base_url}'}}\nwatchlists: watchlists/\n"))
    (tmp_path / "watchlists" / "capped.yaml").write_text(
        "name: capped\nany: [Kherson, Odesa]\nnotify: [desk]\nmax_per_hour: 1\n")
    clock = Clock(T0)
    async with Service(cfg.load(path), now=clock) as s:
        await s.poll_all()  # what counts as new from now on
        clock.advance(minutes=6)
        a.add("Strike on Kherson port", "https://a.example/kherson", published=clock())
        b.add("Odesa grain terminal reopens", "https://b.example/odesa", published=clock())
        feed_server.set("/a.xml", a.render())
        feed_server.set("/b.xml", b.render())
        gate = threading.Event()
        busy = asyncio.ensure_future(s._owned(gate.wait, 10))  # the ingest thread is busy
        polls = asyncio.ensure_future(s.poll_all())
        for _ in range(200):  # both polls queued behind the busy one: one batch
            if len(s._ingest_queue) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(s._ingest_queue) == 2
        gate.set()
        await asyncio.gather(busy, polls)
        alerts = s.store.list_alerts()
    assert sorted((a.hold_reason or "") for a in alerts) == ["", "max_per_hour"]


async def test_a_link_stored_between_the_reads_and_the_hold_joins_its_story(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """The store reads of an ingest run before the assignment lock is taken. An entry
    with the same link stored meanwhile (by another instance) is in the story the
    ingest joins, as if the reads had been made under the lock."""
    from monitor.store import Found, Lookup, PollRecord, StoredEntry
    from monitor.types import Entry
    from monitor.urls import canonical_url

    link = "https://wire.example/dam-bursts"
    rss = RSS()
    rss.add("Dam bursts after the storm", link, published=T0 - timedelta(minutes=5))
    feed_server.set("/b.xml", rss.render())
    async with Service(cfg.load(write_config(tmp_path, feed_server, ["/b.xml"])),
                       now=Clock(T0)) as s:
        real = s.store.look_up
        url = canonical_url(link)

        def then_another_instance_stores(lookups: list[Lookup]) -> list[Found]:
            found = real(lookups)
            s.store.look_up = real  # type: ignore[method-assign]
            other = Entry(feed="elsewhere", key="x1", guid=None, link=link, canonical_url=url,
                          title="Storm breaks a dam", summary="", published=T0)
            s.store.ingest(PollRecord(feed="elsewhere", at=T0),
                           [StoredEntry(entry=other, story_id="s-elsewhere", seen_at=T0)], [])
            return found

        s.store.look_up = then_another_instance_stores  # type: ignore[method-assign]
        await s.poll_all()
        [(story, _)] = s.store.known("b", [url]).values()
        assert story == "s-elsewhere"
