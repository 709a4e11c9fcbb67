"""Fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from servers import FeedServer

from monitor.errors import FetchError
from monitor.fetch import Fetcher, parse_max_age, parse_retry_after
from monitor.types import Feed, FeedState

RSS = "<rss version='2.0'><channel><title>t</title><item><title>A</title></item></channel></rss>"


def feed(server: FeedServer, path: str = "/f.xml") -> Feed:
    return Feed(name="F", url=server.url(path), interval=timedelta(minutes=5))


async def test_conditional_get_gives_not_modified(feed_server: FeedServer) -> None:
    feed_server.set("/f.xml", RSS)
    async with Fetcher(timeout=5) as f:
        first = await f.fetch(feed(feed_server))
        assert first.body is not None and b"<rss" in first.body and first.etag
        state = FeedState(name="F", etag=first.etag, last_modified=first.last_modified)
        second = await f.fetch(feed(feed_server), state)
    assert second.not_modified
    last = feed_server.requests_for("/f.xml")[-1]
    assert last.headers.get("If-None-Match") == first.etag
    assert "gzip" in last.headers.get("Accept-Encoding", "")


@pytest.mark.parametrize(("status", "needle"), [(500, "HTTP 500"), (404, "HTTP 404")])
async def test_http_errors(feed_server: FeedServer, status: int, needle: str) -> None:
    feed_server.fail("/f.xml", status)
    async with Fetcher(timeout=5) as f:
        with pytest.raises(FetchError, match=needle) as e:
            await f.fetch(feed(feed_server))
    assert e.value.status == status


async def test_retry_after_is_read(feed_server: FeedServer) -> None:
    feed_server.fail("/f.xml", 429, retry_after=120)
    async with Fetcher(timeout=5) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(feed(feed_server))
    assert e.value.retry_after == 120


async def test_size_cap(feed_server: FeedServer) -> None:
    feed_server.set("/big.xml", "<rss>" + "x" * 200_000 + "</rss>")
    async with Fetcher(timeout=5, max_bytes=100_000) as f:
        with pytest.raises(FetchError, match="max_bytes"):
            await f.fetch(feed(feed_server, "/big.xml"))


async def test_timeout(feed_server: FeedServer) -> None:
    feed_server.hang("/slow.xml")
    async with Fetcher(timeout=0.5) as f:
        with pytest.raises(FetchError, match="timed out"):
            await f.fetch(feed(feed_server, "/slow.xml"))


async def test_connection_refused() -> None:
    from servers import free_port

    dead = Feed(name="Dead", url=f"http://127.0.0.1:{free_port()}/x", interval=timedelta(1))
    async with Fetcher(timeout=5) as f:
        with pytest.raises(FetchError, match="cannot connect"):
            await f.fetch(dead)


def test_header_parsers() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("Wed, 25 Nov 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("soon", now) is None
    assert parse_max_age("public, max-age=600") == 600
    assert parse_max_age("no-cache") is None
    # Digits as str.isdigit and \\d know them, which float and int refuse or misread.
    assert parse_retry_after("\u00b2", now) is None
    assert parse_retry_after("\u0663", now) is None
    assert parse_retry_after("9" * 400, now) == float("inf")  # next_poll caps it
    assert parse_max_age("max-age=\u0663\u0660") is None


async def test_a_slow_host_holds_its_own_slots_not_the_global_ones(
        feed_server: FeedServer) -> None:
    """Per-host slot first, then the global one: with two global slots and one per
    host, a host whose first feed hangs keeps its second feed waiting on the host's
    slot, and another host's feed still gets the second global slot."""
    feed_server.hang("/a1.xml")
    feed_server.set("/a2.xml", RSS)
    feed_server.set("/b.xml", RSS)
    other = feed_server.url("/b.xml").replace("127.0.0.1", "localhost")  # another host name
    async with Fetcher(timeout=30, concurrency=2, per_host=1) as f:
        a1 = asyncio.create_task(f.fetch(feed(feed_server, "/a1.xml")))
        for _ in range(2000):  # until a1 holds its host's slot and a global one
            if feed_server.requests_for("/a1.xml"):
                break
            await asyncio.sleep(0.01)
        a2 = asyncio.create_task(f.fetch(feed(feed_server, "/a2.xml")))
        await asyncio.sleep(0)  # a2 queues on its host's slot
        b = await asyncio.wait_for(
            f.fetch(Feed(name="B", url=other, interval=timedelta(minutes=5))), timeout=20)
        assert b.body is not None and b"<rss" in b.body
        assert not a2.done() and feed_server.requests_for("/a2.xml") == []
        a1.cancel()
        assert (await a2).body is not None  # a1's host slot came free
    with contextlib.suppress(asyncio.CancelledError):
        await a1
