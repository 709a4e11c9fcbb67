"""Poll workers: how many, how the limits are shared out, and the pool itself: real
worker processes polling a real feed server, one of them killed mid-poll."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from feeds import RSS
from servers import FeedServer

from monitor.poller import Fetched, Job
from monitor.schedule import Polled
from monitor.service import SEEN_FOR, memo_for
from monitor.types import FeedState
from monitor.workers import (
    FIRST_POLLS_FOR_A_WORKER,
    POOL_FROM_FEEDS,
    WorkerPool,
    WorkerSettings,
    poll_workers,
    shares,
)

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(("setting", "feeds", "unpolled", "want"), [
    pytest.param(None, 1, 0, 0, id="few-feeds-poll-on-the-loop"),
    pytest.param(None, POOL_FROM_FEEDS - 1, 0, 0, id="just-below-the-pool"),
    pytest.param(None, POOL_FROM_FEEDS, 0, 2, id="many-feeds-a-worker-per-core"),
    pytest.param(None, 500, FIRST_POLLS_FOR_A_WORKER, 1, id="many-first-polls-one-worker"),
    pytest.param(None, 500, FIRST_POLLS_FOR_A_WORKER - 1, 0, id="few-first-polls"),
    pytest.param(0, 50_000, 50_000, 0, id="zero-is-always-the-loop"),
    pytest.param(3, 1, 0, 3, id="configured-is-taken"),
    pytest.param(8, 1, 0, 4, id="never-more-than-the-fetch-slots"),
])
def test_poll_workers(setting: int | None, feeds: int, unpolled: int, want: int) -> None:
    assert poll_workers(setting, feeds=feeds, unpolled=unpolled, cores=2,
                        concurrency=4) == want


@pytest.mark.parametrize(("n", "concurrency", "per_host", "want"), [
    pytest.param(2, 100, 100, (50, 50, False), id="split-by-feed"),
    pytest.param(2, 100, 5, (50, 2, False), id="per-host-rounded-down"),
    pytest.param(2, 100, 1, (50, 1, True), id="one-per-host-goes-by-host"),
    pytest.param(4, 50, 3, (12, 3, True), id="fewer-than-workers-goes-by-host"),
    pytest.param(3, 2, 4, (1, 1, False), id="at-least-one-slot"),
])
def test_shares_never_exceed_the_limits(n: int, concurrency: int, per_host: int,
                                        want: tuple[int, int, bool]) -> None:
    got = shares(n, concurrency, per_host)
    assert got == want
    each, host, by_host = got
    assert host * (1 if by_host else n) <= per_host


def state(**kw: object) -> FeedState:
    base: dict[str, object] = {"name": "a", "first_polled_at": T0, "seen_since": T0,
                               "body_hash": "h1", "seen": b"memo"}
    return FeedState(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("st", "now", "held", "want"), [
    pytest.param(None, T0, None, b"", id="never-polled"),
    pytest.param(state(first_polled_at=None), T0, None, b"", id="no-first-poll"),
    pytest.param(state(), T0 + SEEN_FOR, "h1", b"", id="memo-too-old"),
    pytest.param(state(), T0 + timedelta(minutes=1), "h1", None, id="poller-holds-it"),
    pytest.param(state(), T0 + timedelta(minutes=1), "h0", b"memo", id="poller-holds-another"),
    pytest.param(state(), T0 + timedelta(minutes=1), None, b"memo", id="poller-holds-none"),
])
def test_memo_for(st: FeedState | None, now: datetime, held: str | None,
                  want: bytes | None) -> None:
    assert memo_for(st, now, held) == want


SETTINGS = WorkerSettings(timeout=30, max_bytes=10**6, concurrency=10, per_host=10,
                          user_agent="test", max_entries=3, log_level=logging.DEBUG)


class Collect:
    def __init__(self) -> None:
        self.got: list[Fetched] = []
        self.more = asyncio.Event()

    def __call__(self, batch: Sequence[Fetched]) -> None:
        self.got.extend(batch)
        self.more.set()

    async def until(self, n: int) -> list[Fetched]:
        async with asyncio.timeout(60):
            while len(self.got) < n:
                self.more.clear()
                await self.more.wait()
        return self.got


def feed(n: int) -> bytes:
    rss = RSS()
    for i in range(n):
        rss.add(f"Harbour story {i}", f"https://wire.example/{i}", published=T0)
    return rss.render()


async def test_a_worker_polls_parses_and_keeps_the_memo(feed_server: FeedServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    feed_server.set("/a.xml", feed(5), etag=False, last_modified=False)
    results = Collect()
    pool = WorkerPool(1, SETTINGS, by_host=False, on_results=results)
    await pool.start()
    try:
        with caplog.at_level(logging.DEBUG):
            pool.submit([Job("a", feed_server.url("/a.xml"), T0, 1)])
            [first] = await results.until(1)
        assert first.polled is Polled.CHANGED and first.parsed is not None
        assert len(first.parsed.entries) == 3  # max_entries
        # The worker's own log record, logged here.
        assert any(r.getMessage().startswith("feed.capped feed=a") and r.name == "monitor.parse"
                   for r in caplog.records)
        # The same body again: unchanged, nothing parsed.
        pool.submit([Job("a", feed_server.url("/a.xml"), T0, 2, body_hash=first.digest)])
        second = (await results.until(2))[1]
        assert second.polled is Polled.UNCHANGED and second.token == 2
        # One item more, parsed with the worker's own memo (seen=None): only it is made.
        feed_server.set("/a.xml", feed(6), etag=False, last_modified=False)
        pool.submit([Job("a", feed_server.url("/a.xml"), T0, 3, body_hash=first.digest,
                         seen=None)])
        third = (await results.until(3))[2]
        assert third.polled is Polled.CHANGED and third.parsed is not None
        assert not third.full and third.parsed.unchanged == 2
    finally:
        await pool.aclose()


async def test_a_killed_worker_fails_what_it_held_and_is_started_again(
        feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    feed_server.hang("/slow.xml")
    feed_server.set("/ok.xml", feed(1))
    results = Collect()
    pool = WorkerPool(1, SETTINGS, by_host=False, on_results=results)
    await pool.start()
    try:
        pool.submit([Job("slow", feed_server.url("/slow.xml"), T0, 1)])
        async with asyncio.timeout(30):
            while not feed_server.requests_for("/slow.xml"):  # noqa: ASYNC110 (another thread's server)
                await asyncio.sleep(0.02)
        [pid] = pool.pids()
        os.kill(pid, signal.SIGKILL)
        [failed] = await results.until(1)
        assert failed.polled is Polled.FAILED and failed.token == 1
        assert failed.error == f"poll worker stopped (exit code {-signal.SIGKILL})"
        assert any("worker.exited" in r.getMessage() for r in caplog.records)
        pool.submit([Job("ok", feed_server.url("/ok.xml"), T0, 2)])
        second = (await results.until(2))[1]
        assert second.polled is Polled.CHANGED and pool.pids() != [pid]
    finally:
        await pool.aclose()


async def test_a_stopped_worker_is_killed_and_what_it_held_is_polled_again(
        feed_server: FeedServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stops answering (SIGSTOP here; a deadlock would do) is not
    noticed by its exit: past twice the fetch timeout and the grace, it is
    killed, its polls fail (to be polled again) and a new worker takes over."""
    monkeypatch.setattr(WorkerPool, "STALL_GRACE", 1.0)
    feed_server.set("/a.xml", feed(1))
    results = Collect()
    pool = WorkerPool(1, replace(SETTINGS, timeout=0.5), by_host=False, on_results=results)
    await pool.start()
    try:
        [pid] = pool.pids()
        os.kill(pid, signal.SIGSTOP)
        pool.submit([Job("a", feed_server.url("/a.xml"), T0, 1)])
        [failed] = await results.until(1)
        assert failed.polled is Polled.FAILED and failed.token == 1
        assert any(r.getMessage().startswith(f"worker.stalled worker=0 pid={pid} held=1")
                   for r in caplog.records)
        pool.submit([Job("a", feed_server.url("/a.xml"), T0, 2)])
        second = (await results.until(2))[1]
        assert second.polled is Polled.CHANGED and pool.pids() != [pid]
    finally:
        await pool.aclose()


async def test_a_host_goes_to_one_worker_when_its_limit_cannot_be_split(
        feed_server: FeedServer) -> None:
    for i in range(6):
        feed_server.set(f"/{i}.xml", feed(1))
    results = Collect()
    pool = WorkerPool(2, SETTINGS, by_host=True, on_results=results)
    await pool.start()
    try:
        pool.submit([Job(f"f{i}", feed_server.url(f"/{i}.xml"), T0, i + 1) for i in range(6)])
        got = await results.until(6)
        assert sorted(r.token for r in got) == [1, 2, 3, 4, 5, 6]
        # Every feed of the one host went to the same worker.
        assert len({id(pool._route(Job(f"f{i}", feed_server.url(f"/{i}.xml"), T0)))
                    for i in range(6)}) == 1
    finally:
        await pool.aclose()


def test_an_entry_crosses_the_pipe_whole() -> None:
    """Entry pickles its fields as a tuple (for speed): every field, in order, and a
    field added to the class must be added to the tuple too."""
    import dataclasses
    import pickle

    from monitor.types import _ENTRY_FIELDS, Entry

    assert tuple(f.name for f in dataclasses.fields(Entry)) == _ENTRY_FIELDS
    e = Entry(feed="f", key="k", guid=None, link="https://x.example/1",
              canonical_url="https://x.example/1", title="T", summary="S", published=T0)
    back = pickle.loads(pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == e and hash(back) == hash(e)
    assert all(getattr(back, f) == getattr(e, f) for f in _ENTRY_FIELDS)
