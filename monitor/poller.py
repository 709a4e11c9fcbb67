"""Polling one feed: the conditional GET, the unchanged-body check and the parse.

::

    Job ──> poll_one ──> Fetched
            fetch (conditional GET)           monitor.fetch
            a 304, or the same body: done     (body hash)
            parse, with the feed's memo       monitor.parse

A :class:`Job` carries what the store knows of a feed (its validators, the hash
of the last body parsed, the memo of that parse); a :class:`Fetched` carries
back what came of the poll, for the service to schedule, record and ingest.
:func:`poll_one` needs nothing else, so it runs wherever the service puts it:
:class:`LocalPoller` runs it on the service's own loop, parsing on a thread
(a few hundred feeds), :class:`monitor.workers.WorkerPool` in worker
processes, each with its own loop, connections and interpreter lock.

The memo (``ParsedFeed.seen``) lets a parse skip the items the last one made.
It is kept where the parsing happens (:class:`Memos`), so the service sends a
feed's stored memo only when the poller may not hold it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import NamedTuple, Protocol

from monitor.errors import FetchError, ParseError
from monitor.fetch import Fetcher
from monitor.parse import ParsedFeed, parse_document
from monitor.schedule import Polled, publish_rate
from monitor.urls import canonical_url

logger = logging.getLogger(__name__)


def body_hash(body: bytes) -> str:
    """What an unchanged body is recognised by (most servers send no validators,
    or a new ETag for the same bytes)."""
    # SHA-256 cut to 128 bits: on CPUs with SHA instructions (most servers) it beats
    # BLAKE2 on bodies of tens of KB.
    return hashlib.sha256(body).hexdigest()[:32]


class Job(NamedTuple):
    """One feed to poll, with what the store knows of it."""

    feed: str
    url: str
    now: datetime  # the poll's moment (the service's clock): parse drops dates after it
    token: int = 0  # the service's name for this poll: its Fetched carries it back
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None  # of the last body parsed: the same bytes are not parsed
    #: The memo to parse with: b"" for none (a full parse), None for the poller's own
    #: memo of ``body_hash`` (the service knows it holds one).
    seen: bytes | None = b""


class Fetched(NamedTuple):
    """What polling one feed came to. ``polled`` is NOT_MODIFIED, UNCHANGED, CHANGED
    (``parsed`` and ``digest`` set) or FAILED (``error`` set; ``parse_error``: the
    body came but is not a feed we can read)."""

    feed: str
    token: int
    polled: Polled
    ms: float  # response time
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    max_age: float | None = None
    expires: datetime | None = None
    digest: str | None = None
    parsed: ParsedFeed | None = None
    per_day: float | None = None  # CHANGED: how often the feed publishes, by its items' dates
    full: bool = True  # CHANGED: the parse had no memo to go by
    error: str | None = None
    parse_error: bool = False
    retry_after: float | None = None


class Memos:
    """Each feed's memo of its last parse, with the hash of the body it came from."""

    def __init__(self) -> None:
        self._by_feed: dict[str, tuple[str, bytes]] = {}

    def seen_for(self, job: Job) -> bytes:
        """The memo ``job`` parses with: its own, else ours if it is of the body the
        store last parsed, else none."""
        if job.seen is not None:
            return job.seen
        held = self._by_feed.get(job.feed)
        return held[1] if held is not None and held[0] == job.body_hash else b""

    def keep(self, feed: str, digest: str, seen: bytes) -> None:
        self._by_feed[feed] = (digest, seen)


#: Runs a parse call: inline, or on a thread.
Runner = Callable[[Callable[[], ParsedFeed], int], Awaitable[ParsedFeed]]


async def poll_one(fetcher: Fetcher, job: Job, memos: Memos, run: Runner, *,
                   max_entries: int) -> Fetched:
    """Poll one feed. Never raises but for cancellation: the feed's own trouble, or a
    bug it ran into (logged with its traceback), is a FAILED result, and the
    other feeds go on. ``run(call, size)`` runs the parse of a body of ``size``
    bytes."""
    try:
        return await _poll_one(fetcher, job, memos, run, max_entries=max_entries)
    except Exception as exc:
        logger.exception("feed.crash feed=%s (the other feeds go on)", job.feed)
        return Fetched(job.feed, job.token, Polled.FAILED, 0.0,
                       error=f"internal error: {type(exc).__name__}")


async def _poll_one(fetcher: Fetcher, job: Job, memos: Memos, run: Runner, *,
                    max_entries: int) -> Fetched:
    started = time.monotonic()
    try:
        got = await fetcher.get(job.url, etag=job.etag, last_modified=job.last_modified)
    except FetchError as exc:
        return Fetched(job.feed, job.token, Polled.FAILED, (time.monotonic() - started) * 1000,
                       status=exc.status, error=str(exc), retry_after=exc.retry_after)
    ms = (time.monotonic() - started) * 1000
    if got.body is None:
        return Fetched(job.feed, job.token, Polled.NOT_MODIFIED, ms, status=got.status,
                       etag=got.etag, last_modified=got.last_modified, max_age=got.max_age,
                       expires=got.expires)
    digest = body_hash(got.body)
    if digest == job.body_hash:
        return Fetched(job.feed, job.token, Polled.UNCHANGED, ms, status=got.status, etag=got.etag,
                       last_modified=got.last_modified, max_age=got.max_age,
                       expires=got.expires)
    seen = memos.seen_for(job)
    call = functools.partial(parse_document, got.body, job.feed,
                             content_type=got.content_type, canonicalize=canonical_url,
                             now=job.now, max_entries=max_entries, seen=seen)
    try:
        parsed = await run(call, len(got.body))
    except ParseError as exc:
        return Fetched(job.feed, job.token, Polled.FAILED, ms, status=got.status, error=str(exc),
                       parse_error=True)
    memos.keep(job.feed, digest, parsed.seen)
    return Fetched(job.feed, job.token, Polled.CHANGED, ms, status=got.status, etag=got.etag,
                   last_modified=got.last_modified, max_age=got.max_age, expires=got.expires,
                   digest=digest, parsed=parsed, per_day=publish_rate(parsed.dates, job.now),
                   full=not seen)


class Poller(Protocol):
    """Where polls run. ``submit`` returns at once; each job's :class:`Fetched` goes
    to the ``on_results`` callback the poller was made with, on the service's loop."""

    def submit(self, jobs: Sequence[Job]) -> None: ...

    async def aclose(self) -> None: ...


class LocalPoller:
    """Polls on the service's own loop, parsing on one thread (not the loop's default
    executor: a thread per body at once, all contending for the interpreter lock)."""

    def __init__(self, fetcher: Fetcher, on_results: Callable[[Sequence[Fetched]], None], *,
                 max_entries: int) -> None:
        self.fetcher = fetcher
        self.on_results = on_results
        self.max_entries = max_entries
        self.memos = Memos()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            task = asyncio.create_task(self._one(job), name=f"poll:{job.feed}")
            self._tasks.add(task)  # held until done: a bare task could be collected
            task.add_done_callback(self._tasks.discard)

    async def _one(self, job: Job) -> None:
        got = await poll_one(self.fetcher, job, self.memos, self._run,
                             max_entries=self.max_entries)
        self.on_results([got])

    async def _run(self, call: Callable[[], ParsedFeed], size: int) -> ParsedFeed:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._thread.shutdown(cancel_futures=True)
