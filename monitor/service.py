"""The running service: the only module that knows the whole pipeline.

::

    APScheduler (one interval job per feed)
        └── poll(feed)
              fetch (conditional GET)          monitor.fetch
              parse (off the loop)             monitor.parse
              decide new / retitled / alertable  (pure, here: decide())
              assign stories                   monitor.dedupe (StoryIndex)
              match                            monitor.match (Matcher)
              ingest: entries + alerts, one tx monitor.store   <- the outbox
        Outbox lanes (one per destination)     monitor.deliver.outbox
              render                           monitor.render
              send                             monitor.deliver.{slack,email,console}

All resources are opened in :meth:`Service.__aenter__` on an AsyncExitStack and
closed in reverse on the way out, so shutdown is one cancellation. One broken
feed or destination is logged (naming it), recorded in the store, and never
stops the rest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from monitor import config as cfg
from monitor.dedupe import DedupeSettings, Join, Method, StoryIndex, canonical_url, story_id_for
from monitor.deliver.console import ConsoleSender
from monitor.deliver.email import EmailSender
from monitor.deliver.outbox import Outbox
from monitor.deliver.slack import SlackSender
from monitor.errors import FetchError, MonitorError, ParseError
from monitor.fetch import Fetcher
from monitor.match import Matcher
from monitor.parse import parse_feed
from monitor.render import Renderer
from monitor.schedule import hold_for
from monitor.store import PollRecord, SqlStore, StoredEntry, alert_id, open_store
from monitor.types import Alert, AlertStatus, Entry, Feed, FeedState, Match, Sender, Watchlist

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ deciding (pure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one poll's entries mean, given what the store already knew."""

    new: tuple[Entry, ...] = ()
    alertable: frozenset[str] = frozenset()  # keys of new entries that may alert
    retitled: tuple[Entry, ...] = ()  # known GUIDs whose title changed: same story


def decide(
    entries: Sequence[Entry],
    known: dict[str, tuple[str, str]],
    *,
    first_poll: bool,
    now: datetime,
    backfill: timedelta,
    retention: timedelta,
) -> Decision:
    """Sort a poll's entries into new, alertable and retitled (pure).

    On a feed's first poll its existing items are recorded without alerting,
    except those published within ``backfill``. Later, every new item may
    alert, except one published before the retention window (an old item that
    reappeared after we pruned it).
    """
    new: list[Entry] = []
    alertable: set[str] = set()
    retitled: list[Entry] = []
    for e in entries:
        if e.key in known:
            if known[e.key][1] not in ("", e.title):
                retitled.append(e)
            continue
        new.append(e)
        if first_poll:
            if backfill and e.published is not None and now - e.published <= backfill:
                alertable.add(e.key)
        elif e.published is None or now - e.published <= retention:
            alertable.add(e.key)
    return Decision(new=tuple(new), alertable=frozenset(alertable), retitled=tuple(retitled))


def alerts_for(matches: Sequence[tuple[Match, str]], watchlists: dict[str, Watchlist],
               now: datetime, recent: dict[tuple[str, str], int] | None = None) -> list[Alert]:
    """One alert per match and destination, queued now or held (pure).

    ``recent`` counts, per (watchlist, destination), the alerts that went out
    immediately in the last hour: what ``max_per_hour`` is checked against.
    """
    counts = dict(recent or {})
    out = []
    for m, story in matches:
        wl = watchlists[m.watchlist]
        for dest in wl.notify:
            hold = hold_for(wl, now, counts.get((wl.name, dest), 0))
            if hold.status is AlertStatus.QUEUED:
                counts[(wl.name, dest)] = counts.get((wl.name, dest), 0) + 1
            out.append(Alert(id=alert_id(wl.name, dest, story), watchlist=wl.name,
                             destination=dest, story_id=story, entry=m.entry, terms=m.terms,
                             created_at=now, status=hold.status, hold_until=hold.until,
                             hold_reason=hold.reason or None))
    return out


# ------------------------------------------------------------------------ doing


def build_sender(name: str, dest: cfg.SlackDestination | cfg.EmailDestination
                 | cfg.ConsoleDestination) -> Sender:
    if isinstance(dest, cfg.SlackDestination):
        return SlackSender(name, token=dest.token, channel=dest.channel,
                           webhook_url=dest.webhook_url, base_url=dest.base_url,
                           thread_updates=dest.thread_updates,
                           timeout=dest.timeout.total_seconds())
    if isinstance(dest, cfg.EmailDestination):
        return EmailSender(name, host=dest.host, port=dest.port, starttls=dest.starttls,
                           tls=dest.tls, username=dest.username, password=dest.password,
                           sender=dest.sender, to=dest.to, timeout=dest.timeout.total_seconds())
    return ConsoleSender(name)


class Service:
    """The monitor. ``async with Service(config) as s: await s.run()`` (or ``run_once()``)."""

    def __init__(self, config: cfg.Config, *, now: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.now = now
        self._stack = AsyncExitStack()
        self.store: SqlStore
        self.fetcher: Fetcher
        self.outbox: Outbox
        self.senders: dict[str, Sender] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._ingesting = asyncio.Lock()
        self._apply(config)

    def _apply(self, config: cfg.Config) -> None:
        """Take the parts of a config that can change while running."""
        self.config = config
        self.watchlists = {w.name: w for w in config.watchlists}
        self.matcher = Matcher.compile(config.watchlists)
        self.renderer = Renderer(config.templates)

    async def __aenter__(self) -> Service:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()  # close what was opened before the failure
            raise
        return self

    async def _open(self) -> None:
        c = self.config
        self.store = open_store(c.state)
        self._stack.callback(self.store.close)
        self.fetcher = await self._stack.enter_async_context(Fetcher(
            timeout=c.poll.timeout.total_seconds(), max_bytes=c.poll.max_bytes,
            concurrency=c.poll.concurrency, per_host=c.poll.per_host,
            user_agent=c.poll.user_agent))
        for name, dest in c.destinations.items():
            sender = build_sender(name, dest)
            self.senders[name] = sender
            self._stack.push_async_callback(sender.aclose)
        pace = {name: 1.0 for name, d in c.destinations.items()
                if isinstance(d, cfg.SlackDestination)}
        self.outbox = Outbox(self.store, self.senders, self.renderer, now=self.now,
                             min_interval=pace)
        self._splits = (await asyncio.to_thread(self.store.splits_since, 0))[0]
        self.index = await asyncio.to_thread(self._rebuild_index, c.dedupe)
        for err in c.watchlist_errors:
            logger.warning("watchlist.invalid %s", err)
        logger.info("service.start feeds=%d watchlists=%d destinations=%d state=%s",
                    len(c.feeds), len(self.matcher), len(self.senders), _safe_url(c.state))

    def _rebuild_index(self, dedupe: cfg.DedupeConfig) -> StoryIndex:
        """The story index of the last ``window``, rebuilt from the store (memory stays
        bounded by the window, never by what the store holds)."""
        settings = DedupeSettings(**dedupe.settings())
        embed = None
        if settings.method is Method.SEMANTIC:
            from monitor.embed import Embedder  # the optional extra; heavy

            embedder = Embedder()
            embedder.load()  # a missing extra is a ConfigError now, not at the first story
            embed = embedder
        index = StoryIndex(settings, embed=embed)
        stored = self.store.entries_since(self.now() - dedupe.window)
        index.prepare(se.entry for se in stored)
        for se in stored:
            index.add(se.story_id, se.entry, se.seen_at, topics=self._topics(se.entry))
        return index

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    # -- one feed -----------------------------------------------------------------------

    async def poll(self, feed: Feed) -> int:
        """Poll one feed; returns the number of alerts queued. Never raises for feed trouble."""
        now = self.now()
        state = self.store.feed_state(feed.name)
        try:
            result = await self.fetcher.fetch(feed, state)
            if result.not_modified:
                self.store.record_poll(PollRecord(
                    feed=feed.name, at=now,
                    etag=result.etag or (state.etag if state else None),
                    last_modified=result.last_modified or (state.last_modified if state else None)))
                logger.debug("feed.not_modified feed=%s", feed.name)
                return 0
            assert result.body is not None
            entries = await asyncio.to_thread(
                parse_feed, result.body, feed.name, content_type=result.content_type,
                canonicalize=canonical_url)
        except (FetchError, ParseError) as exc:
            return self._feed_failed(feed, now, exc)
        # Off the loop (story assignment can embed text, and the store writes), one
        # feed at a time: the story index is not shared between threads.
        async with self._ingesting:
            queued = await asyncio.to_thread(self._ingest, feed, state, entries, now,
                                             result.etag, result.last_modified)
        if queued:
            self.outbox.wake()
        return queued

    def _feed_failed(self, feed: Feed, now: datetime, exc: MonitorError) -> int:
        logger.warning("feed.error feed=%s url=%s error=%s", feed.name, feed.url, exc)
        self.store.record_poll(PollRecord(feed=feed.name, at=now, error=str(exc)))
        return 0

    def _ingest(self, feed: Feed, state: FeedState | None, entries: list[Entry],
                now: datetime, etag: str | None, last_modified: str | None) -> int:
        c = self.config
        self._apply_splits()
        known = self.store.known(feed.name, (e.key for e in entries))
        first = state is None or state.first_polled_at is None
        d = decide(entries, known, first_poll=first, now=now, backfill=c.backfill,
                   retention=c.retention)
        by_url = self.store.story_by_url(e.canonical_url for e in d.new)
        self.index.prepare(e for e in d.new if e.canonical_url not in by_url)
        stored: list[StoredEntry] = []
        matches: list[tuple[Match, str]] = []
        for e in d.new:
            # Matched first: what the entry's watchlists all share is no evidence of a story.
            found = self.matcher.match(e)
            topics = [m.watchlist for m in found]
            join = Join(story_id=by_url.get(e.canonical_url), score=1.0, bar=1.0, how="url")
            if join.story_id is None:
                join = self.index.decide(e, now, topics=topics,
                                         terms=[t for m in found for t in m.terms])
            story = join.story_id or story_id_for(e)
            if join.story_id is not None:
                logger.debug("story.joined feed=%s story=%s how=%s score=%.3f bar=%.3f weak=%d",
                             feed.name, story, join.how, join.score, join.bar, join.weak)
            self.index.add(story, e, now, topics=topics)
            by_url.setdefault(e.canonical_url, story)
            stored.append(StoredEntry(entry=e, story_id=story, seen_at=now, join=join))
            if e.key in d.alertable:
                matches.extend((m, story) for m in found)
        recent: dict[tuple[str, str], int] = {}
        for name in {m.watchlist for m, _ in matches}:
            if self.watchlists[name].max_per_hour is not None:
                for dest, n in self.store.immediate_since(name, now - timedelta(hours=1)).items():
                    recent[(name, dest)] = n
        alerts = alerts_for(matches, self.watchlists, now, recent)
        queued = self.store.ingest(
            PollRecord(feed=feed.name, at=now, etag=etag, last_modified=last_modified),
            stored, alerts, d.retitled)
        logger.info("feed.polled feed=%s entries=%d new=%d matches=%d queued=%d%s",
                    feed.name, len(entries), len(d.new), len(matches), len(queued),
                    " first_poll=1" if first else "")
        return len(queued)

    def _apply_splits(self) -> None:
        """Move entries that `news-monitor stories split` gave a story of their own."""
        latest, splits = self.store.splits_since(self._splits)
        for feed, key, story in splits:
            for se in self.store.members(story):
                if (se.entry.feed, se.entry.key) == (feed, key):
                    self.index.add(story, se.entry, se.seen_at, topics=self._topics(se.entry))
        self._splits = latest

    def _topics(self, entry: Entry) -> list[str]:
        """The watchlists ``entry`` matches: what grouping takes as its subject."""
        return [m.watchlist for m in self.matcher.match(entry)]

    # -- whole runs ----------------------------------------------------------------------

    async def poll_all(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for feed in self.config.feeds:
                tg.create_task(self._poll_guarded(feed), name=f"poll:{feed.name}")

    async def _poll_guarded(self, feed: Feed) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self.poll(feed)
        except Exception:
            logger.exception("feed.crash feed=%s (the other feeds go on)", feed.name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def run_once(self, drain_timeout: float = 60.0) -> int:
        """Poll every feed once, deliver what resulted; returns alerts left queued."""
        await self.poll_all()
        left = await self.outbox.drain(within=drain_timeout)
        if left:
            logger.warning("outbox.left queued=%d (they go out on the next run)", left)
        return left

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or SIGTERM/SIGINT)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=loop)
        now = self.now()
        for feed in self.config.feeds:
            scheduler.add_job(
                self._poll_guarded, IntervalTrigger(seconds=feed.interval.total_seconds(),
                                                    timezone=UTC),
                args=[feed], id=f"feed:{feed.name}", name=feed.name, next_run_time=now,
                max_instances=1, coalesce=True, misfire_grace_time=None)
        scheduler.add_job(self._prune, IntervalTrigger(hours=6, timezone=UTC),
                          id="prune", next_run_time=now + timedelta(minutes=1))
        scheduler.start()
        try:
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(self.outbox.run(), name="outbox")
                await stop.wait()
                worker.cancel()
        finally:
            scheduler.shutdown(wait=False)
            # Let polls under way finish (each is bounded by the fetch timeout) so
            # nothing is cut off mid-transaction and nothing logs a cancellation.
            if self._inflight:
                await asyncio.wait(set(self._inflight),
                                   timeout=self.config.poll.timeout.total_seconds() + 5)
            logger.info("service.stop")

    async def _prune(self) -> None:
        n = self.store.prune(self.now() - self.config.retention)
        self.index.expire(self.now())
        logger.info("store.pruned entries=%d", n)


def _safe_url(url: str) -> str:
    """A state URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url
