"""The running service: the only module that knows the whole pipeline.

::

    APScheduler (one job, poll_due, every second)
        └── due feeds from the store (next_poll_at <= now)
              poll: a Job to the poller        monitor.poller, monitor.workers
                fetch (conditional GET)        monitor.fetch
                304 or the same body: stop     (body hash per feed)
                parse, with the feed's memo    monitor.parse
              its Fetched back, on the loop:
              next poll time                   monitor.schedule.next_poll
              304 / same body: group commit    monitor.store
              decide new / retitled / alertable  (pure, here: decide())
              assign stories                   monitor.dedupe (StoryIndex)
              match                            monitor.match (Matcher)
              ingest: entries + alerts, one tx monitor.store   <- the outbox
        Outbox lanes (one per destination)     monitor.deliver.outbox
              render                           monitor.render
              send                             monitor.deliver.{slack,email,console}

Threads and processes: fetching and parsing run in poll workers, processes of
their own (monitor.workers; for a thousand feeds or more, one per core), or for
fewer feeds on the loop with parsing on a thread (monitor.poller.LocalPoller).
At most twice ``poll.concurrency`` polls are under way: a feed's slot is free
again once its poll is recorded, so fetching waits for storing, not the other
way round. The loop's store calls (the outbox's too) run on the store's own
thread (awaited, so the loop never waits on its lock); the story index is owned
by one ingest thread (ingest and expiry both run there, and at start-up its
fill from the store, while the first polls fetch and parse).

All resources are opened in :meth:`Service.__aenter__` on an AsyncExitStack and
closed in reverse on the way out. One broken feed or destination is logged
(naming it), recorded in the store, and never stops the rest.

Several instances may share one PostgreSQL store; the database decides who
does what, each instance's scheduler only drives its own ticks: the tick
*claims* due feeds with a lease (``claim_feeds``), each outbox lane is held by
one instance at a time (a ``lane:<destination>`` lease, renewed at every step:
digests and quiet-hour flushes go with it), pruning takes the ``job:prune``
lease for its hour, and story assignment runs under a cluster-wide lock after
adding to the index what the others stored since (:meth:`Service._assignment`).
A stopping instance gives its leases back; a killed one's run out.

Beside the pipeline, :meth:`Service.run` keeps a heartbeat: a scheduler job
(``tick``) that proves the scheduler makes progress. The systemd watchdog
(``WATCHDOG=1``, monitor.notify) and ``/healthz`` (monitor.web) both look at it.
SIGHUP and changed files reload the configuration all or nothing
(monitor.reload); SIGTERM/SIGINT stop new work and give the work under way
``stop_timeout`` to finish.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import heapq
import itertools
import logging
import os
import signal
import socket
import zlib
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from monitor import config as cfg
from monitor import redact
from monitor.dedupe import DedupeSettings, Join, Method, StoryIndex, event_time, story_id_for
from monitor.deliver.outbox import Outbox, Outcome, kind_of
from monitor.errors import FetchError, MonitorError, ParseError, StoreError
from monitor.fetch import Fetcher
from monitor.match import Matcher
from monitor.metrics import Metrics
from monitor.notify import Notifier, watchdog_interval
from monitor.poller import Fetched, Job, LocalPoller, Poller, body_hash
from monitor.render import Renderer, format_duration, ops_notice
from monitor.schedule import Outcome as PollOutcome
from monitor.schedule import Polled, PollLimits, hold_for, next_poll
from monitor.store import (
    Found,
    Ingest,
    Lookup,
    PollRecord,
    SqlStore,
    StoredEntry,
    alert_id,
    open_store,
)
from monitor.types import (
    Alert,
    AlertStatus,
    Entry,
    Feed,
    FeedState,
    Match,
    Sender,
    Watchlist,
)
from monitor.workers import WorkerPool, WorkerSettings, poll_workers, shares

logger = logging.getLogger(__name__)

#: Seconds between heartbeats of the scheduler; also how often idle outbox lanes
#: look for alerts queued by another process (`alerts retry`, `replay`).
TICK = 1.0


_T = TypeVar("_T")


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Entries one feed may put into the story index per dedupe window. News feeds
#: publish hundreds a day; only a feed rotating thousands per poll reaches it,
#: and beyond it its entries are grouped by URL alone. So the index holds at
#: most feeds x budget members, whatever a publisher sends.
INDEX_BUDGET = 10_000


#: How long a feed's last stored parse vouches for its unchanged items
#: (ParsedFeed.seen, kept with the feed's state and written in the transaction
#: that stores the entries it vouches for): an item recognised is not made into
#: an entry, looked up or stored again. Past this, a full parse touches the
#: compact keys of items still in the feed, as the store's pruning expects.
SEEN_FOR = timedelta(hours=1)

#: Feeds whose states :meth:`Service.poll_all` reads at once after its first page.
POLL_ALL_PAGE = 1000

#: Ingests run under one hold of the assignment lock at most: a bound on how long
#: another instance's ingests wait for it.
INGEST_BATCH = 32


@dataclass(slots=True)
class _Notice:
    """An ops notice under way: whether it says failing (or back), its text as first
    made, and the destinations that took it (not sent it again)."""

    failing: bool
    text: str
    sent: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Pending:
    """One poll's records, decided within a hold of the assignment lock and written
    with the others of its batch (:meth:`Service._write`); after the hold,
    ``then`` finishes the poll with the alerts queued, and returns the poll's
    result."""

    records: Ingest
    then: Callable[[list[Alert]], int]
    written: list[Alert] | BaseException | None = None  # the alerts queued, or why not


def _jitter(name: str, failures: int, now: datetime) -> float:
    """A value in [0, 1) from the feed and the moment: deterministic for a test,
    different between feeds that failed together (a CRC spreads them as well as
    a cryptographic hash would, for a fraction of the cost: every poll asks)."""
    return zlib.crc32(f"{name}\0{failures}\0{_iso(now)}".encode("utf-8", "surrogatepass")) / 2**32


#: The polls sent together share their moment: its text is made once.
_iso = functools.lru_cache(maxsize=16)(datetime.isoformat)


#: Allocations between collections of the youngest generation (Python's default
#: is 700): a poll cycle makes tens of thousands of short-lived objects.
GC_YOUNG = 10_000


def settle_memory() -> None:
    """For the process that runs a Service, once it is open: what exists then
    (modules, the configuration, compiled watchlists, the store's caches) lives
    as long as the process, so the collector's full passes stop walking it
    (gc.freeze; it is still freed the usual way when nothing refers to it),
    and the youngest generation is collected less often. Full passes over
    everything had cost a tenth of the service's CPU in a 10,000-feed cycle."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 10, 10)


def instance_name(env: Mapping[str, str]) -> str:
    """What this instance is called in the store (leases, ``polled_by``):
    ``$NEWS_MONITOR_INSTANCE``, else host:pid, unique among live instances."""
    return env.get("NEWS_MONITOR_INSTANCE") or f"{socket.gethostname()}:{os.getpid()}"


def gone_here(owners: Iterable[str], host: str, alive: Callable[[int], bool]) -> list[str]:
    """The claim owners named ``host:pid`` for this host whose process is gone (pure,
    given ``alive``): a crashed instance restarted here takes its work back at
    once instead of waiting for its leases to run out."""
    out = []
    for owner in owners:
        name, sep, pid = owner.rpartition(":")
        if sep and name == host and pid.isdigit() and not alive(int(pid)):
            out.append(owner)
    return sorted(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: How long one instance's prune claims the job for: an hourly job, run by one
#: instance of the cluster each hour, whichever looks first.
PRUNE_EVERY = timedelta(hours=1)


# ------------------------------------------------------------------ deciding (pure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one poll's entries mean, given what the store already knew."""

    new: tuple[Entry, ...] = ()  # in the order they happened (event_time), oldest first
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
    reappeared after we pruned it). New items come oldest first, whatever order
    the feed lists them in (most list the newest first): a story then grows as
    the news did, its first report opens it, and alerts go out in that order.
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
    new.sort(key=lambda e: event_time(e, now))  # stable: ties keep the feed's order
    return Decision(new=tuple(new), alertable=frozenset(alertable), retitled=tuple(retitled))


def asked_to_wait(state: FeedState | None, now: datetime) -> bool:
    """Whether the feed's server asked us to stay away until after ``now`` (a 429 or
    503, with its Retry-After or our backoff): what even ``run --once``, which
    polls every feed, honours, so that a run from cron is not the client that
    hammers an overloaded server or gets itself banned."""
    return (state is not None and state.status in (429, 503)
            and state.next_poll_at is not None and state.next_poll_at > now)


def memo_for(state: FeedState | None, now: datetime, held: str | None) -> bytes | None:
    """The memo a poll of the feed in ``state`` parses with (pure), as ``Job.seen``:
    none (b"") for a feed never parsed, or past SEEN_FOR since its last full parse;
    the poller's own (None) when it holds the one of the last body stored
    (``held``: the hash of the body it last parsed the feed from); else the one
    stored."""
    if (state is None or state.first_polled_at is None or state.seen_since is None
            or now - state.seen_since >= SEEN_FOR):
        return b""
    if held is not None and held == state.body_hash:
        return None
    return state.seen


def link(stories: dict[str, str], url: str, story: str) -> None:
    """Note in ``stories`` (canonical_url -> story) that an entry of ``story`` has
    ``url``: of several, the smallest id wins, as SqlStore.story_by_url's does."""
    if url and (url not in stories or story < stories[url]):
        stories[url] = story


def index_room(added: Sequence[tuple[datetime, int]], now: datetime, window: timedelta,
               budget: int) -> int:
    """How many more entries a feed may add to the story index now (pure):
    ``added`` is (when, how many) for its recent polls."""
    return max(0, budget - sum(n for at, n in added if at > now - window))


def alerts_for(matches: Sequence[tuple[Match, str]], watchlists: dict[str, Watchlist],
               now: datetime, recent: dict[tuple[str, str], int] | None = None) -> list[Alert]:
    """One alert per match and destination, queued now or held (pure).

    ``recent`` counts, per (watchlist, destination), the alerts that went out
    immediately in the last hour: what ``max_per_hour`` is checked against.
    ``matches`` are one feed's in one poll (or fewer): beyond a watchlist's
    ``max_per_poll`` immediate alerts to one destination, the rest are held
    as due now with reason "max_per_poll", and the outbox sends them as one
    summary after the others, so one feed's burst cannot flood a channel.
    """
    counts = dict(recent or {})
    this_poll: dict[tuple[str, str], int] = {}
    out = []
    for m, story in matches:
        wl = watchlists[m.watchlist]
        for dest in wl.notify:
            hold = hold_for(wl, now, counts.get((wl.name, dest), 0))
            status, until, reason = hold.status, hold.until, hold.reason or None
            if status is AlertStatus.QUEUED:
                if this_poll.get((wl.name, dest), 0) >= wl.max_per_poll:
                    status, until, reason = AlertStatus.HELD, now, "max_per_poll"
                else:
                    this_poll[(wl.name, dest)] = this_poll.get((wl.name, dest), 0) + 1
                    counts[(wl.name, dest)] = counts.get((wl.name, dest), 0) + 1
            out.append(Alert(id=alert_id(wl.name, dest, story), watchlist=wl.name,
                             destination=dest, story_id=story, entry=m.entry, terms=m.terms,
                             created_at=now, status=status, hold_until=until,
                             hold_reason=reason))
    return out


class _Round:
    """Polls started together (one claim, or ``poll_all``): ``done`` once each of them
    is over, recorded or failed, and no more are to come (``more``: pages of them
    are still being read)."""

    __slots__ = ("left", "done", "more")

    def __init__(self, done: asyncio.Future[None], *, more: bool) -> None:
        self.left = 0
        self.done = done
        self.more = more

    def over(self) -> None:
        if self.left == 0 and not self.more and not self.done.done():
            self.done.set_result(None)


@dataclass(slots=True, eq=False)
class _Poll:
    """One feed's poll under way: waiting for a slot, at the poller, or being stored."""

    feed: Feed
    state: FeedState | None
    round: _Round
    now: datetime | None = None  # when it went to the poller


@dataclass(slots=True)
class Tally:
    """What a run did, counted as it goes: ``run --once``'s summary line."""

    polled: int = 0
    failed: int = 0
    new: int = 0
    sent: int = 0
    alerts_failed: int = 0
    failed_feeds: list[str] = field(default_factory=list)


def summary_line(t: Tally, queued: int) -> str:
    """``run --once``'s last line (pure)."""
    return (f"run.summary feeds_polled={t.polled} feeds_failed={t.failed} new_entries={t.new} "
            f"alerts_sent={t.sent} alerts_queued={queued} alerts_failed={t.alerts_failed}")


EX_TEMPFAIL = 75  # sysexits.h: try again later


def exit_code(t: Tally, queued: int) -> int:
    """1 when every feed failed, 75 when alerts stay queued, else 0 (pure): what cron sees."""
    if t.polled and t.failed == t.polled:
        return 1
    return EX_TEMPFAIL if queued else 0


def ticking(now: float, last_tick: float | None, within: float) -> bool:
    """Whether the scheduler's heartbeat was seen within ``within`` seconds (pure)."""
    return last_tick is not None and now - last_tick <= within


def renewing(last: datetime | None, now: datetime, lease: timedelta) -> bool:
    """Whether the claims under way are extended now (pure): at most every quarter
    lease, so none has less than three quarters of its lease left. Renewing at
    every claim rewrote every row held several times a second while a long due
    list drained."""
    return last is None or now - last >= lease / 4


def status_text(*, feeds: int, due: int, watchlists: int, queued: int, last_error: str | None,
                reload_error: str | None) -> str:
    """The one line ``systemctl status`` shows (pure)."""
    parts = [f"{_n(feeds, 'feed')} ({due} due)", _n(watchlists, "watchlist"),
             f"{_n(queued, 'alert')} queued"]
    if reload_error:
        parts.append(f"reload failed, previous config in force: {reload_error}")
    if last_error:
        parts.append(f"last error: {last_error}")
    return "; ".join(parts)


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------ doing


def build_sender(name: str, dest: cfg.SlackDestination | cfg.EmailDestination
                 | cfg.ConsoleDestination) -> Sender:
    """The sender for a destination; only its kind's module is imported (slack-sdk and
    aiosmtplib are for the processes that have such a destination)."""
    if isinstance(dest, cfg.SlackDestination):
        from monitor.deliver.slack import SlackSender

        return SlackSender(name, token=dest.token, channel=dest.channel,
                           webhook_url=dest.webhook_url, base_url=dest.base_url,
                           thread_updates=dest.thread_updates,
                           timeout=dest.timeout.total_seconds())
    if isinstance(dest, cfg.EmailDestination):
        from monitor.deliver.email import EmailSender

        return EmailSender(name, host=dest.host, port=dest.port, starttls=dest.starttls,
                           tls=dest.tls, username=dest.username, password=dest.password,
                           sender=dest.sender, to=dest.to, timeout=dest.timeout.total_seconds())
    from monitor.deliver.console import ConsoleSender

    return ConsoleSender(name)


class Service:
    """The monitor. ``async with Service(config) as s: await s.run()`` (or ``run_once()``)."""

    def __init__(self, config: cfg.Config, *, now: Callable[[], datetime] = utcnow,
                 notifier: Notifier | None = None, env: Mapping[str, str] | None = None,
                 watch_files: bool = True, index_budget: int = INDEX_BUDGET,
                 long_lived: bool = True) -> None:
        self.config = config
        self.now = now
        self.env = os.environ if env is None else env
        self.notifier = notifier or Notifier.from_env(self.env)
        self.watch_files = watch_files
        # A service that keeps running copies the store's log into its database on
        # a thread of its own (SqlStore.background_checkpoints), off the path of
        # its ingests and poll records. One pass (`run --once`) keeps the copy in
        # its commits: its close must copy what is left anyway, and would first
        # wait for a background copy under way.
        self.long_lived = long_lived
        self.index_budget = index_budget
        self.instance = instance_name(self.env)
        self._synced = 0  # the last entries row the story index has seen (any instance's)
        self._linked: dict[str, str] = {}  # canonical_url -> story, stored within a hold
        self._unwritten: list[_Pending] = []  # decided within the hold, not yet written
        self._indexed: dict[str, list[tuple[datetime, int]]] = {}  # feed -> (poll, added)
        self._stack = AsyncExitStack()
        self.store: SqlStore
        self.poller: Poller
        self.outbox: Outbox
        self.senders: dict[str, Sender] = {}
        self._notices: dict[str, _Notice] = {}  # by feed: ops notices not yet everywhere
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # per-poll work: a failure, an ingest
        self._polling: set[str] = set()  # feeds with a poll under way (poll_due skips them)
        self._waiting: collections.deque[_Poll] = collections.deque()  # for a slot
        self._sent: dict[int, _Poll] = {}  # at the poller, by token
        self._tokens = itertools.count(1)
        self._busy = 0  # polls sent and not over yet: at most _window
        self._sending = False  # a _send is scheduled
        self._held: dict[str, str] = {}  # feed -> hash of the body the poller's memo is of
        self._more_due = False  # the last claim was cut short: more feeds may be due
        self._renewed: datetime | None = None  # when the claims under way were last extended
        self._stopping = False  # set by _stop: poll_due claims and starts nothing more
        self._pumping = False
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._index_thread = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self._ingest_queue: list[Any] = []  # heap of (at, seq, call, lookup, future)
        self._ingest_seq = itertools.count()
        self._ingest_asked = False  # an _ingest_next is on its way to the ingest thread
        self._batch: list[tuple[PollRecord, Callable[[BaseException | None], None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._scheduler: Any = None  # APScheduler's AsyncIOScheduler while run() runs
        self.tally = Tally()
        self.last_tick: float | None = None  # loop time of the scheduler's last heartbeat
        self._status_task: asyncio.Task[None] | None = None  # the STATUS= refresh under way
        self.tick_every = TICK
        self._last_look = 0.0  # loop time the tick last refreshed STATUS= and woke the outbox
        self._status_sent = ""
        self.last_error: str | None = None
        self.reload_error: str | None = None
        # Counted only where /metrics can be read (web.start needs ``http:`` at start).
        self.metrics = Metrics(counting=config.http is not None)
        self.http_runner: Any = None  # aiohttp's AppRunner while run() serves http
        self.reloaded_at: datetime | None = None
        self._apply(config)

    def _apply(self, config: cfg.Config) -> None:
        """Take the parts of a config that can change while running: what can fail
        is built first, so that a failure leaves the service on the config before."""
        matcher = Matcher.compile(config.watchlists)
        renderer = Renderer(config.templates)
        self.config = config
        self._feeds = {f.name: f for f in config.feeds}
        self._window = 2 * config.poll.concurrency
        self._limits = PollLimits(min_interval=config.poll.min_interval,
                                  max_interval=config.poll.max_interval)
        self.watchlists = {w.name: w for w in config.watchlists}
        self.matcher = matcher
        self.renderer = renderer
        if hasattr(self, "outbox"):
            self.outbox.renderer = self.renderer

    async def __aenter__(self) -> Service:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()  # close what was opened before the failure
            raise
        return self

    async def _open(self) -> None:
        c = self.config
        # Registered first, so they are shut down last (after everything using them).
        self._stack.callback(self._db_thread.shutdown)
        self._stack.callback(self._index_thread.shutdown)
        self.store = await self._db(open_store, c.state)
        self._stack.callback(self.store.close)
        if self.long_lived:
            await self._db(self.store.background_checkpoints)
        self._stack.push_async_callback(self._release)  # before the store closes
        await self._db(self._take_back)
        await self._db(self.store.sync_feeds, [(f.name, f.url) for f in c.feeds])
        await self._open_poller(await self._db(self.store.count_unpolled))
        for name, dest in c.destinations.items():
            sender = build_sender(name, dest)
            self.senders[name] = sender
            self._stack.push_async_callback(sender.aclose)
        pace = {name: 1.0 for name, d in c.destinations.items()
                if isinstance(d, cfg.SlackDestination)}
        self.outbox = Outbox(self.store, self.senders, self.renderer, now=self.now,
                             min_interval=pace, on_outcome=self._outcome, call=self._db,
                             owner=self.instance, lease=c.poll.lease)
        self._splits = (await self._db(self.store.splits_since, 0))[0]
        self.index = await self._owned(self._new_index, c.dedupe)
        # Filled from the store on the ingest thread while the first polls fetch and
        # parse: ingest runs on that thread too, so it waits for the fill, and
        # nothing else needs the index.
        filling = asyncio.get_running_loop().run_in_executor(
            self._index_thread, self._fill_synced, self.index, c.dedupe.window)
        filling.add_done_callback(_log_fill)
        self.metrics.watch_store(self.store.alert_counts, self._feed_health, self.now)
        for err in c.watchlist_errors:
            logger.warning("watchlist.invalid %s", err)
        _warn_operator_words(c.watchlists)
        for problem in self.renderer.check():  # also loads them: reload swaps whole sets
            logger.warning("template.invalid %s", problem)
        logger.info("service.start feeds=%d watchlists=%d destinations=%d state=%s "
                    "instance=%s", len(c.feeds), len(self.matcher), len(self.senders),
                    redact.url(c.state), self.instance)

    async def _open_poller(self, unpolled: int) -> None:
        """Poll workers (started, not waited for: the first jobs wait in their pipes
        while they import), or a poller on this loop."""
        p = self.config.poll
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        n = poll_workers(p.parse_workers, feeds=len(self.config.feeds), unpolled=unpolled,
                         cores=cores, concurrency=p.concurrency)
        if n:
            concurrency, per_host, by_host = shares(n, p.concurrency, p.per_host)
            pool = WorkerPool(n, WorkerSettings(
                timeout=p.timeout.total_seconds(), max_bytes=p.max_bytes,
                concurrency=concurrency, per_host=per_host, user_agent=p.user_agent,
                max_entries=p.max_entries, log_level=logging.getLogger().getEffectiveLevel()),
                by_host=by_host, on_results=self._took)
            self._stack.push_async_callback(pool.aclose)
            await pool.start()
            self.poller = pool
        else:
            fetcher = await self._stack.enter_async_context(Fetcher(
                timeout=p.timeout.total_seconds(), max_bytes=p.max_bytes,
                concurrency=p.concurrency, per_host=p.per_host, user_agent=p.user_agent))
            local = LocalPoller(fetcher, self._took, max_entries=p.max_entries)
            self._stack.push_async_callback(local.aclose)
            self.poller = local
        logger.debug("poller.start workers=%d", n)

    def _new_index(self, dedupe: cfg.DedupeConfig) -> StoryIndex:
        """An empty story index (a missing semantic extra is a ConfigError here)."""
        settings = DedupeSettings(**dedupe.settings())
        embed = None
        if settings.method is Method.SEMANTIC:
            from monitor.embed import Embedder  # the optional extra; heavy

            embedder = Embedder()
            embedder.load()  # a missing extra is a ConfigError now, not at the first story
            embed = embedder
        return StoryIndex(settings, embed=embed)

    def _fill_index(self, index: StoryIndex, window: timedelta) -> int:
        """The story index of the last ``window``, rebuilt from the store (memory stays
        bounded by the window, never by what the store holds).

        Only the entries of stories a watchlist matched when they were stored are
        read and matched again: the index holds nothing else. An entry stored
        before its watchlist existed is not held after a restart (a story of it
        that comes again is a new one for that watchlist, as it would be anyway)."""
        stored = self.store.watched_since(self.now() - window)
        kept: list[StoredEntry] = []  # each feed's newest, within its budget
        per_feed: dict[str, dict[datetime, int]] = {}
        for se in reversed(stored):
            counts = per_feed.setdefault(se.entry.feed, {})
            if sum(counts.values()) < self.index_budget:
                counts[se.seen_at] = counts.get(se.seen_at, 0) + 1
                kept.append(se)
        kept.reverse()
        self._indexed = {feed: sorted(counts.items()) for feed, counts in per_feed.items()}
        index.prepare(se.entry for se in kept)
        held = 0
        for se in kept:
            topics = self._topics(se.entry)
            if topics or index.holds(se.story_id):
                index.add(se.story_id, se.entry, se.seen_at, topics=topics)
                held += 1
        logger.debug("index.filled entries=%d held=%d", len(stored), held)
        return len(stored)

    def _fill_synced(self, index: StoryIndex, window: timedelta) -> int:
        """:meth:`_fill_index` under the assignment lock, noting the last row it saw:
        from there :meth:`_assign` adds what other instances store."""
        with self.store.assigning() as hold:
            self._synced = hold.last
            return self._fill_index(index, window)

    def _assign(self, feed: Feed, state: FeedState | None, entries: list[Entry],
                poll: PollRecord, unchanged: int, found: Found) -> _Pending:
        """:meth:`_ingest` as one instance of several (on the ingest thread, within
        the batch's :meth:`_assignment`), with what the store said of the entries
        before the hold (:meth:`_ingest_next`). Which of them are new is the
        feed's own business (its lease is ours); which story a link belongs to
        may have changed since, through the entries in ``_linked``."""
        by_url = found.by_url
        for url in {e.canonical_url for e in entries} & self._linked.keys():
            link(by_url, url, self._linked[url])
        if poll.by != self.instance:
            poll = replace(poll, by=self.instance)
        return self._ingest(feed, state, entries, poll,
                            found.known, unchanged, by_url)

    @contextmanager
    def _assignment(self) -> Iterator[None]:
        """Hold the store's assignment lock (cluster-wide on PostgreSQL) for a batch of
        ingests. First the entries other instances stored since the last look
        join the index, so the same news lands in the same story whichever
        instance polls it; nobody else stores entries meanwhile, so the last row
        afterwards is this batch's. The hold and the look are paid once for the
        batch, not once per poll. ``_linked`` holds the links stored since the
        batch's reads were made (those entries, then the batch's own)."""
        self._apply_splits()
        with self.store.assigning(self._synced) as hold:
            self._synced, fresh = hold.last, hold.fresh
            self._linked = {}
            for se in fresh:
                link(self._linked, se.entry.canonical_url, se.story_id)
            # Held as _ingest holds its own: members of watched stories only.
            topics_of = [(se, self._topics(se.entry)) for se in fresh]
            self.index.prepare(se.entry for se, topics in topics_of if topics)
            held = 0
            for se, topics in topics_of:
                if topics or self.index.holds(se.story_id):
                    self.index.add(se.story_id, se.entry, se.seen_at, topics=topics)
                    held += 1
            if fresh:
                logger.debug("index.synced entries=%d held=%d", len(fresh), held)
            try:
                yield
            finally:
                self._linked = {}
        self._synced = hold.last

    def _feed_health(self) -> list[tuple[str, FeedState | None]]:
        """Each configured feed's stored state, in one query (for /metrics), without
        the parse memos: 10,000 of them are about 50 MB a scrape."""
        states = self.store.feed_states(memos=False)
        return [(f.name, states.get(f.name)) for f in self.config.feeds]

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    # -- one feed -----------------------------------------------------------------------

    async def _db(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a store call on the store's thread: the loop never waits on its lock."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    async def _in_time_order(self, at: datetime, fn: Callable[..., _Pending], *args: Any,
                             lookup: Lookup | None = None) -> int:
        """:meth:`_owned`, but among the calls queued for the ingest thread together,
        the one whose entries happened first (``at``) runs first: polls that finish
        at once (a cycle's first polls, ``run --once``) are grouped in the order
        their news happened, as one poll's entries are (``decide``). With a
        ``lookup``, what the store finds for it is ``fn``'s last argument."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        job: tuple[datetime, int, Callable[..., _Pending], Lookup | None,
                   asyncio.Future[int]] = (
            at, next(self._ingest_seq), functools.partial(fn, *args), lookup, done)
        heapq.heappush(self._ingest_queue, job)
        if not self._ingest_asked:
            self._ingest_asked = True  # one call takes all that is queued by then
            self._index_thread.submit(self._ingest_next, loop)
        return await done

    def _ingest_next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the ingests queued now, earliest news first, in one :meth:`_assignment`
        (on the ingest thread). Their store reads go first, together and outside
        the hold: the lock serialises every instance's ingests, and a round trip
        made under it is one all the others wait for. Their writes go last,
        together (:meth:`_write`), and their outcomes go back to the loop in one
        call. A failing ingest fails its own poll; failing reads or a failing
        hold, every poll of the batch. More than a batch queued: the rest is
        the next call's."""
        self._ingest_asked = False  # from here, what is queued asks again
        jobs: list[tuple[Callable[..., _Pending], Lookup | None, asyncio.Future[int]]] = []
        while self._ingest_queue and len(jobs) < INGEST_BATCH:
            _, _, call, lookup, done = heapq.heappop(self._ingest_queue)
            if not done.cancelled():  # its poll was cut off (a stop)
                jobs.append((call, lookup, done))
        if self._ingest_queue and not self._ingest_asked:
            self._ingest_asked = True
            self._index_thread.submit(self._ingest_next, loop)
        if not jobs:
            return
        outcomes: list[tuple[int, BaseException | None]] = []
        try:
            found = iter(self.store.look_up([lk for _, lk, _ in jobs if lk is not None]))
            calls = [call if lk is None else functools.partial(call, next(found))
                     for call, lk, _ in jobs]
            with self._assignment():
                decided: list[_Pending | BaseException] = []
                try:
                    for call in calls:
                        try:
                            pending = call()
                        except BaseException as exc:  # handed to the awaiting poll
                            decided.append(exc)
                            continue
                        decided.append(pending)
                        self._unwritten.append(pending)
                    self._write()
                finally:
                    self._unwritten = []
            for d in decided:  # after the hold: logs and counts need no lock
                if isinstance(d, BaseException):
                    outcomes.append((0, d))
                elif isinstance(d.written, BaseException) or d.written is None:
                    outcomes.append((0, d.written or StoreError("not written")))
                else:
                    try:
                        outcomes.append((d.then(d.written), None))
                    except BaseException as exc:
                        outcomes.append((0, exc))
        except BaseException as exc:
            outcomes = [(0, exc)] * len(jobs)
        loop.call_soon_threadsafe(_settle, [(done, result, error) for (_, _, done),
                                            (result, error) in zip(jobs, outcomes, strict=True)])

    def _write(self) -> None:
        """Write the records decided so far in this hold, in one store call (on the
        ingest thread, within the hold). One transaction and one round trip for
        the batch instead of one each: the hold, which every other instance's
        ingests wait for, is spent deciding, not waiting on the database. A
        poll whose records are refused fails alone (``SqlStore.ingest_all``)."""
        batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        written: Sequence[list[Alert] | BaseException]
        try:
            written = self.store.ingest_all([p.records for p in batch])
        except BaseException as exc:  # handed to every poll of the batch
            written = [exc] * len(batch)
        for p, w in zip(batch, written, strict=True):
            p.written = w

    async def _owned(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the ingest thread, the one owner of the story index."""
        return await asyncio.get_running_loop().run_in_executor(self._index_thread, fn, *args)

    async def _record(self, poll: PollRecord) -> None:
        """Record a poll that ingests nothing (304, same body, failure), committed with
        the others that arrived meanwhile: one transaction for many polls instead of
        one each. Returns once committed, so a poll is over only when it is stored."""
        done = asyncio.get_running_loop().create_future()

        def then(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        self._commit(poll, then)
        await done

    def _commit(self, poll: PollRecord, then: Callable[[BaseException | None], None]) -> None:
        """Put ``poll`` in the next group commit; ``then(None)`` once it is stored, or
        ``then(error)``."""
        if poll.by != self.instance:
            poll = replace(poll, by=self.instance)
        self._batch.append((poll, then))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_batches(), name="commit")

    async def _commit_batches(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                error: BaseException | None = None
                try:
                    await self._db(self.store.record_polls, [p for p, _ in batch])
                except Exception as exc:  # each poll that waits on it reports it
                    error = exc
                for _, then in batch:
                    then(error)
        finally:
            self._committer = None

    # -- polls under way --------------------------------------------------------------

    async def _poll_feeds(self, items: Sequence[tuple[Feed, FeedState | None]],
                          more: AsyncIterator[Sequence[tuple[Feed, FeedState | None]]]
                          | None = None) -> None:
        """Poll these feeds, and those of ``more`` as its pages come; returns once
        every poll is over (recorded, or failed).

        At most ``_window`` polls are under way at once (sent to the poller, or
        being stored): the rest wait their turn here, so a first poll of
        thousands of feeds never holds more bodies than the store keeps up with.
        Cancelled (a stop cut short), or failing to read a page of ``more``, it
        drops the polls not yet sent; those at the poller finish on their own if
        they can.
        """
        if not items and more is None:
            return
        rnd = _Round(asyncio.get_running_loop().create_future(), more=more is not None)
        self._queue(items, rnd)
        try:
            if more is not None:
                async for page in more:
                    self._queue(page, rnd)
                rnd.more = False
                rnd.over()
            await rnd.done
        except BaseException:
            dropped = [p for p in self._waiting if p.round is rnd]
            if dropped:
                self._waiting = collections.deque(p for p in self._waiting if p.round is not rnd)
                for p in dropped:
                    self._polling.discard(p.feed.name)
            raise

    def _queue(self, items: Sequence[tuple[Feed, FeedState | None]], rnd: _Round) -> None:
        """Add polls of ``items`` to ``rnd``, waiting for a slot."""
        for feed, state in items:
            self._polling.add(feed.name)
            self.tally.polled += 1
            self._waiting.append(_Poll(feed, state, rnd))
        rnd.left += len(items)
        self._send()

    async def _poll_with_memos(self, items: Sequence[tuple[Feed, FeedState | None]]) -> None:
        """A claim's polls (their feeds already marked under way), memos first."""
        try:
            items = await self._with_memos(items)
        except BaseException:
            for feed, _ in items:
                self._polling.discard(feed.name)
            raise
        await self._poll_feeds(items)

    def _send(self) -> None:
        """Send waiting polls to the poller while fewer than ``_window`` are under way."""
        self._sending = False
        room = self._window - self._busy
        if room <= 0 or not self._waiting:
            return
        now = self.now()
        jobs: list[Job] = []
        while self._waiting and len(jobs) < room:
            p = self._waiting.popleft()
            p.now = now
            token = next(self._tokens)
            self._sent[token] = p
            st = p.state
            if st is None:
                jobs.append(Job(p.feed.name, p.feed.url, now, token))
            else:
                jobs.append(Job(p.feed.name, p.feed.url, now, token, st.etag, st.last_modified,
                                st.body_hash, memo_for(st, now, self._held.get(st.name))))
        self._busy += len(jobs)
        self.poller.submit(jobs)

    def _over(self, p: _Poll) -> None:
        """A poll is over: its slot goes to the next waiting one, its round may be done."""
        self._busy -= 1
        self._polling.discard(p.feed.name)
        p.round.left -= 1
        p.round.over()
        if self._waiting and not self._sending:
            self._sending = True  # once for the many polls a batch of results ends
            asyncio.get_running_loop().call_soon(self._send)
        self._pump()

    def _then(self, p: _Poll, work: Coroutine[Any, Any, Any]) -> None:
        """Finish ``p`` with ``work`` in a task of its own; a bug in it is logged and
        ends that poll alone."""
        async def run() -> None:
            try:
                await work
            except Exception as exc:
                logger.exception("feed.crash feed=%s (the other feeds go on)", p.feed.name)
                await self._crashed(p, exc)
            finally:
                self._over(p)

        task = asyncio.create_task(run(), name=f"poll:{p.feed.name}")
        self._tasks.add(task)  # held until done: a bare task could be collected
        task.add_done_callback(self._tasks.discard)

    async def _crashed(self, p: _Poll, exc: Exception) -> None:
        """Record a poll a bug ended as the feed's failure, as the poll workers do:
        unrecorded, the feed would stay due, uncounted and never backed off."""
        if p.now is None:
            return
        try:
            await self._feed_failed(p.feed, p.state, p.now,
                                    MonitorError(f"internal error: {type(exc).__name__}"),
                                    None)  # no response time: it would pull the mean down
        except Exception:
            logger.exception("feed.unrecorded feed=%s", p.feed.name)

    def _took(self, results: Sequence[Fetched]) -> None:
        """The poller's results, on the loop. A 304 or an unchanged body goes into the
        next group commit from here; a changed body or a failure is finished in a
        task of its own."""
        for r in results:
            p = self._sent.pop(r.token, None)
            if p is None:
                continue  # its round was cut off and the service is closing
            try:
                if r.polled is Polled.CHANGED:
                    if r.digest is not None:
                        self._held[r.feed] = r.digest
                    self._then(p, self._changed(p, r))
                elif r.polled is Polled.FAILED:
                    exc: MonitorError = (ParseError(r.error or "") if r.parse_error else
                                         FetchError(r.error or "", status=r.status,
                                                    retry_after=r.retry_after))
                    assert p.now is not None
                    self._then(p, self._feed_failed(p.feed, p.state, p.now, exc, r.ms,
                                                    r.status))
                else:
                    self._unchanged(p, r)
            except Exception as exc:
                logger.exception("feed.crash feed=%s (the other feeds go on)", r.feed)
                self._then(p, self._crashed(p, exc))

    def _unchanged(self, p: _Poll, r: Fetched) -> None:
        """A 304, or the same body as last time: only the validators and the next poll
        time are recorded."""
        feed, state, now = p.feed, p.state, p.now
        assert now is not None
        not_modified = r.polled is Polled.NOT_MODIFIED
        # A 304 may leave the validators out: the ones we sent still stand.
        etag = r.etag or (state.etag if not_modified and state else None)
        modified = r.last_modified or (state.last_modified if not_modified and state else None)
        outcome = PollOutcome(polled=r.polled, status=r.status, max_age=r.max_age,
                              expires=r.expires, hint=state.hint if state else None,
                              per_day=state.per_day if state else None)
        record = PollRecord(feed=feed.name, at=now, status=r.status, response_ms=r.ms,
                            next_poll_at=self._next_poll(feed, state, outcome, now), etag=etag,
                            last_modified=modified, by=self.instance)
        logger.debug("feed.%s feed=%s", r.polled.value, feed.name)
        self.metrics.polled(feed.name, r.polled.value)

        def then(exc: BaseException | None) -> None:
            if exc is not None:
                err = exc if isinstance(exc, MonitorError) else StoreError(str(exc))
                self._then(p, self._feed_failed(feed, state, now, err, r.ms))
            elif (state is not None and state.ops_alerted) or feed.name in self._notices:
                self._then(p, self._recovered(feed, state, now))
            else:
                self._over(p)

        self._commit(record, then)

    async def _changed(self, p: _Poll, r: Fetched) -> int:
        """A new body, parsed: decide and ingest its entries, and record the poll."""
        feed, state, now, parsed = p.feed, p.state, p.now, r.parsed
        assert now is not None and parsed is not None
        try:
            per_day = r.per_day
            outcome = PollOutcome(polled=Polled.CHANGED, status=r.status, max_age=r.max_age,
                                  expires=r.expires, hint=parsed.hint, per_day=per_day)
            record = PollRecord(
                feed=feed.name, at=now, status=r.status, response_ms=r.ms,
                next_poll_at=self._next_poll(feed, state, outcome, now), parsed=True,
                body_hash=r.digest, per_day=per_day, hint=parsed.hint, etag=r.etag,
                last_modified=r.last_modified, seen=parsed.seen,
                seen_since=state.seen_since if not r.full and state else now, by=self.instance)
            # parsed.entries are the new and edited items (see ParsedFeed.seen), as a rule
            at = min((event_time(e, now) for e in parsed.entries), default=now)
            entries = list(parsed.entries)
            # A feed's first poll: none of its keys can be known yet, only its links.
            first = state is None or state.first_polled_at is None
            queued = await self._in_time_order(
                at, self._assign, feed, state, entries, record, parsed.unchanged,
                lookup=Lookup(feed.name, () if first else tuple(e.key for e in entries),
                              tuple(e.canonical_url for e in entries)))
        except StoreError as exc:
            return await self._feed_failed(feed, state, now, exc, r.ms, r.status)
        if queued:
            self.outbox.wake()
        await self._recovered(feed, state, now)
        return queued

    def _next_poll(self, feed: Feed, state: FeedState | None, outcome: PollOutcome,
                   now: datetime) -> datetime | None:
        return next_poll(feed, state, outcome, now, limits=self._limits,
                         jitter=_jitter(feed.name, outcome.failures, now))

    async def _feed_failed(self, feed: Feed, state: FeedState | None, now: datetime,
                           exc: MonitorError, ms: float | None,
                           status: int | None = None) -> int:
        failures = (state.failures if state else 0) + 1
        if isinstance(exc, FetchError):
            status = exc.status
        gone = status == 410
        outcome = PollOutcome(polled=Polled.GONE if gone else Polled.FAILED, status=status,
                          retry_after=exc.retry_after if isinstance(exc, FetchError) else None,
                          failures=failures)
        due = self._next_poll(feed, state, outcome, now)
        self.metrics.feed_failed(feed.name, exc)
        self.tally.failed += 1
        self.tally.failed_feeds.append(feed.name)
        error = redact.text(str(exc), secrets=redact.url_secrets(feed.url))
        self.last_error = f"{feed.name}: {error}"
        if gone:
            logger.warning("feed.gone feed=%s url=%s: HTTP 410 Gone, the feed is disabled "
                           "until its url changes in the config", feed.name,
                           redact.url(feed.url))
        else:
            logger.warning("feed.error feed=%s url=%s error=%s failures=%d next=%s", feed.name,
                           redact.url(feed.url), error, failures,
                           due.isoformat() if due else "never")
        try:
            await self._record(PollRecord(
                feed=feed.name, at=now, error=error, status=status, response_ms=ms,
                next_poll_at=due, gone_url=feed.url if gone else None))
        except StoreError as store_exc:
            logger.warning("feed.unrecorded feed=%s error=%s", feed.name,
                           redact.text(str(store_exc)))
            return 0
        if not self.config.ops or (state and state.ops_alerted):
            return 0
        since = state.failing_since if state and state.failing_since else now
        if gone:  # no later poll will find it failing for longer: told at once
            await self._ops_alert(feed, now, f"{feed.name} is gone (HTTP 410): it is not "
                                  "polled until its url changes in the config", alerted=True)
        elif now - since >= self.config.poll.alert_after:
            await self._ops_alert(feed, now, f"{feed.name} has been failing for "
                                  f"{format_duration(now - since)}: {error}", alerted=True)
        return 0

    async def _recovered(self, feed: Feed, state: FeedState | None, now: datetime) -> None:
        pending = self._notices.get(feed.name)
        if pending is not None and pending.failing and not pending.sent:
            del self._notices[feed.name]  # nobody was told it failed
            return
        if (state is not None and state.ops_alerted) or pending is not None:
            # failing_since is gone once a success is recorded: a notice first made
            # before that keeps its text (_Notice); one made after says no duration.
            since = state.failing_since if state is not None else None
            after = f" after {format_duration(now - since)} of failures" if since else ""
            await self._ops_alert(feed, now, f"{feed.name} is working again{after}",
                                  alerted=False)

    async def _ops_alert(self, feed: Feed, now: datetime, text: str, *, alerted: bool) -> None:
        """Tell the ``ops:`` destinations that a feed is dead or back. Sent directly, not
        through the outbox: it is about the monitor, not a story. Marked only once
        every destination took it; until then each later poll tries again the
        destinations that have not (with the text first made), and only those."""
        notice = self._notices.get(feed.name)
        if notice is None or notice.failing != alerted:
            # Back before every destination heard it failed: only those that did hear.
            told = set(self.config.ops) - notice.sent if notice and not alerted else set()
            notice = self._notices[feed.name] = _Notice(alerted, text, told)
        url = redact.url(feed.url)
        entry = Entry(feed=feed.name, key=f"ops:{feed.name}", guid=None, link=url,
                      canonical_url=url, title=notice.text, summary="", published=now)
        for name in self.config.ops:
            if name in notice.sent:
                continue
            sender = self.senders[name]
            alert = Alert(id=f"ops-{body_hash(f'{feed.name}{now}'.encode())[:16]}",
                          watchlist="ops", destination=name, story_id=f"ops:{feed.name}",
                          entry=entry, terms=(), created_at=now)
            try:
                await sender.send(alert, ops_notice(kind_of(sender), notice.text, url))
            except MonitorError as exc:
                logger.warning("ops.alert_failed feed=%s destination=%s error=%s", feed.name,
                               name, exc)
            else:
                notice.sent.add(name)
        if notice.sent.issuperset(self.config.ops):
            del self._notices[feed.name]
            logger.info("ops.alert feed=%s failing=%d", feed.name, int(alerted))
            await self._db(self.store.set_ops_alerted, feed.name, alerted)

    def _outcome(self, outcome: Outcome, alert: Alert) -> None:
        if outcome is Outcome.SENT:
            self.tally.sent += 1
        elif outcome is Outcome.FAILED:
            self.tally.alerts_failed += 1
            self.last_error = f"alert {alert.id} to {alert.destination} failed"
        self.metrics.delivered(outcome.value, alert, self.now())

    def _ingest(self, feed: Feed, state: FeedState | None, entries: list[Entry],
                poll: PollRecord, known: dict[str, tuple[str, str]], unchanged: int,
                by_url: dict[str, str]) -> _Pending:
        """Decide, group and match one poll's entries, and what to record (on the
        ingest thread, within a hold; :meth:`_write` records it):
        ``entries`` are those the parse made, ``known`` those of them the store has
        (``SqlStore.known``), ``unchanged`` the items the parse recognised, and
        ``by_url`` the stories of their links (``SqlStore.story_by_url``)."""
        c = self.config
        now = poll.at
        first = state is None or state.first_polled_at is None
        d = decide(entries, known, first_poll=first, now=now, backfill=c.backfill,
                   retention=c.retention)
        window = c.dedupe.window
        added = [p for p in self._indexed.get(feed.name, []) if p[0] > now - window]
        room = index_room(added, now, window, self.index_budget)
        self.index.prepare(e for e in d.new[:room] if e.canonical_url not in by_url)
        stored: list[StoredEntry] = []
        matches: list[tuple[Match, str]] = []
        indexed = 0
        for i, e in enumerate(d.new):
            # Matched first: what the entry's watchlists all share is no evidence of a story.
            found = self.matcher.match(e)
            topics = [m.watchlist for m in found]
            join: Join | None = None  # None: the entry opens a story
            if (by_link := by_url.get(e.canonical_url)) is not None:
                join = Join(story_id=by_link, score=1.0, bar=1.0, how="url")
            elif i < room and self.index.stories():  # an empty index has none to join
                join = self.index.decide(e, now, topics=topics,
                                         terms=[t for m in found for t in m.terms])
                if join.story_id is None:
                    join = None
            if join is None:
                story = story_id_for(e)
            else:
                story = join.story_id or story_id_for(e)
                logger.debug("story.joined feed=%s story=%s how=%s score=%.3f bar=%.3f weak=%d",
                             feed.name, story, join.how, join.score, join.bar, join.weak)
            # Held only if someone watches its story: an entry no watchlist matched
            # alerts no one, so it is only looked up (to join a watched story as
            # one more outlet), never a candidate itself. That bounds the index by
            # the watched news, not by everything every feed publishes.
            if i < room and (found or self.index.holds(story)):
                self.index.add(story, e, now, topics=topics)
                indexed += 1
            by_url.setdefault(e.canonical_url, story)
            stored.append(StoredEntry(entry=e, story_id=story, seen_at=now, join=join,
                                      watched=bool(found)))
            if e.key in d.alertable:
                matches.extend((m, story) for m in found)
        recent: dict[tuple[str, str], int] = {}
        for name in {m.watchlist for m, _ in matches}:
            if self.watchlists[name].max_per_hour is not None:
                if any(a.watchlist == name for p in self._unwritten for a in p.records.alerts):
                    self._write()  # what counts against the limit includes this batch's
                for dest, n in self.store.immediate_since(name, now - timedelta(hours=1)).items():
                    recent[(name, dest)] = n
        self._indexed[feed.name] = [*added, (now, indexed)] if indexed else added
        if len(d.new) > room:
            logger.warning("feed.index_budget feed=%s grouped_by_url=%d (over %d entries in %s)",
                           feed.name, len(d.new) - room, self.index_budget, window)
        alerts = alerts_for(matches, self.watchlists, now, recent)
        for se in stored:  # for the batch's next ingests (_assign)
            link(self._linked, se.entry.canonical_url, se.story_id)
        # Here, not with the hourly prune: the index is this thread's, and a feed
        # rotating many entries per poll must not outgrow the window in between.
        self.index.expire(now)

        def then(queued: list[Alert]) -> int:
            # A poll that found nothing new is routine: debug, so the journal shows news
            # (and a feed's first poll, which sets what counts as new from then on).
            logger.log(logging.INFO if d.new or first else logging.DEBUG,
                       "feed.polled feed=%s entries=%d new=%d matches=%d queued=%d%s%s",
                       feed.name, len(entries) + unchanged, len(d.new), len(matches),
                       len(queued), f" unchanged={unchanged}" if unchanged else "",
                       " first_poll=1" if first else "")
            self.tally.new += len(d.new)
            self.metrics.polled(feed.name, "ok")
            self.metrics.parsed(feed.name, len(entries) + unchanged, len(d.new))
            for m, _ in matches:
                self.metrics.matched(m.watchlist)
            return len(queued)

        present = [e.key for e in entries if e.key in known and not known[e.key][0]]
        return _Pending(Ingest(poll, stored, alerts, d.retitled, present), then)

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
        """Poll every configured feed once, except those disabled by 410 Gone and those
        whose server asked to wait (:func:`asked_to_wait`)."""
        await self._poll_feeds((), self._pages_of_all())

    async def _pages_of_all(self) -> AsyncIterator[Sequence[tuple[Feed, FeedState | None]]]:
        """Every configured feed with its state, a page at a time, the first just
        enough to fill the poller: it starts on those while the rest are read,
        instead of waiting for the state of every feed."""
        feeds = self.config.feeds
        start, size = 0, self._window
        while start < len(feeds):
            page = feeds[start:start + size]
            states = await self._db(functools.partial(
                self.store.feed_states, [f.name for f in page], memos=False))
            now = self.now()
            items = []
            for feed in page:
                st = states.get(feed.name)
                if st is not None and st.gone_url == feed.url:
                    continue
                if asked_to_wait(st, now):
                    assert st is not None and st.next_poll_at is not None
                    logger.info("feed.deferred feed=%s status=%s until=%s (the server asked "
                                "to wait)", feed.name, st.status, st.next_poll_at.isoformat())
                    continue
                items.append((feed, st))
            yield await self._with_memos(items)
            start, size = start + size, POLL_ALL_PAGE

    async def _with_memos(self, items: Sequence[tuple[Feed, FeedState | None]]
                          ) -> Sequence[tuple[Feed, FeedState | None]]:
        """``items`` (their states read without memos), with the stored memo of each
        feed whose poller may not hold it (see memo_for): after a start, or a
        worker's restart. A poll without its memo would only cost a full parse."""
        now = self.now()
        wanted = [st.name for _, st in items if st is not None and st.body_hash is not None
                  and st.first_polled_at is not None and st.seen_since is not None
                  and now - st.seen_since < SEEN_FOR and self._held.get(st.name) != st.body_hash]
        if not wanted:
            return items
        try:
            memos = await self._db(self.store.memos, wanted)
        except StoreError as exc:  # full parses, then: nothing is lost
            logger.warning("store.memos_failed error=%s", redact.text(str(exc)))
            return items
        return [(feed, replace(st, seen=memos[st.name]) if st is not None and st.name in memos
                 else st) for feed, st in items]

    def _claim_room(self) -> int:
        """How many due feeds the tick may claim now: twice the fetch concurrency,
        less the polls under way. A claimed feed waits for a fetch slot while its
        lease runs, so claiming more than can start soon would hold feeds another
        instance could poll, and let leases lapse under a long queue."""
        return max(0, 2 * self.config.poll.concurrency - len(self._polling))

    def _pump(self) -> None:
        """Claim again as soon as half the room is free, if the last claim was cut
        short, instead of waiting for the next tick: a long due list drains at
        the speed of the polls, not of the tick."""
        if (self._more_due and not self._pumping and self._scheduler is not None
                and self._claim_room() >= self.config.poll.concurrency):
            self._pumping = True
            task = asyncio.create_task(self._pumped(), name="poll_due:pump")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _pumped(self) -> None:
        try:
            await self.poll_due()
        finally:
            self._pumping = False

    async def poll_due(self) -> int:
        """Start a poll of every feed the store says is due; returns how many started.

        10,000 feeds are 10,000 rows, not 10,000 scheduler jobs, and a restart
        polls only what is due. Feeds still being polled are skipped. Due feeds
        are claimed for ``poll.lease``: instances sharing the store each get
        their own, and a dead one's are due again when its lease runs out.
        """
        if self._stopping:
            return 0
        room = self._claim_room()
        now = self.now()
        try:
            # An instance at work keeps its claims, however long the queue.
            if self._polling and renewing(self._renewed, now, self.config.poll.lease):
                await self._db(self.store.renew_feeds, self.instance,
                               now + self.config.poll.lease, list(self._polling))
                self._renewed = now
            due = await self._db(functools.partial(
                self.store.claim_feeds, now, self.instance, self.config.poll.lease, room,
                memos=False)) if room else []
        except StoreError as exc:  # the database is away: the next tick tries again
            logger.warning("schedule.claim_failed error=%s", redact.text(str(exc)))
            return 0
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return 0  # the scheduler's shutdown cut a claim short: no error, the exit releases it
        if self._stopping:  # claimed while stopping: polled by the next to claim (released at exit)
            return 0
        self._more_due = len(due) >= room
        items = []
        for st in due:
            feed = self._feeds.get(st.name)
            if feed is not None and st.name not in self._polling:
                items.append((feed, st))
                self._polling.add(st.name)  # under way from now: the next claim leaves room
        if items:
            task = asyncio.create_task(self._poll_with_memos(items), name="poll_due:polls")
            self._inflight.add(task)  # held until done: a bare task could be collected
            task.add_done_callback(self._inflight.discard)
            logger.debug("schedule.tick started=%d", len(items))
        return len(items)

    async def run_once(self, drain_timeout: float = 60.0) -> int:
        """Poll every feed once, deliver what resulted; returns alerts left queued.

        ``drain_timeout`` bounds the delivery phase, retries and their backoff included.
        """
        await self.poll_all()
        left = await self.outbox.drain(within=drain_timeout)
        await self._prune()  # a run from cron must not let the state grow either
        if left:
            logger.warning("outbox.left queued=%d (they go out on the next run)", left)
        return left

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set or SIGTERM/SIGINT arrives; SIGHUP reloads."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        stop = stop or asyncio.Event()
        self._reload_wanted = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig, handler in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set),
                             (signal.SIGHUP, self._reload_wanted.set)):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread: the caller's stop event still works
        dog = watchdog_interval(self.env, os.getpid())
        # The heartbeat comes several times per watchdog check, so one late tick is no alarm.
        self.tick_every = min(TICK, dog / 8) if dog else TICK
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=loop)
        self._scheduler = scheduler
        now = self.now()
        shortest = min([self.config.poll.tick, *(f.interval for f in self.config.feeds)])
        every = max(shortest.total_seconds(), 0.05)
        # Jitter: instances sharing a PostgreSQL store do not all look at once.
        scheduler.add_job(self.poll_due, IntervalTrigger(seconds=every, jitter=every / 5,
                                                         timezone=UTC),
                          id="poll_due", next_run_time=now, max_instances=1, coalesce=True,
                          misfire_grace_time=None)
        scheduler.add_job(self._prune, IntervalTrigger(hours=1, timezone=UTC),
                          id="prune", next_run_time=now + timedelta(minutes=1))
        scheduler.add_job(self._tick, IntervalTrigger(seconds=self.tick_every, timezone=UTC),
                          id="tick", next_run_time=now, max_instances=1, coalesce=True,
                          misfire_grace_time=None)
        http = None
        try:
            if self.config.http is not None:  # first: a port taken fails before any poll
                from monitor import web

                http = await web.start(self, self.config.http.host, self.config.http.port)
                self.http_runner = http
            scheduler.start()
            self.last_tick = loop.time()
            self._status_sent = await self._status()
            self.notifier.ready(self._status_sent)
            logger.info("service.ready feeds=%d watchlists=%d watchdog=%s",
                        len(self.config.feeds), len(self.watchlists),
                        f"{dog:g}s" if dog else "off")
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(self.outbox.run(), name="outbox")
                helpers = [tg.create_task(self._reloads(), name="reload")]
                if dog:
                    helpers.append(tg.create_task(self._watchdog(dog), name="watchdog"))
                if self.watch_files:
                    helpers.append(tg.create_task(self._watch(), name="watch"))
                await stop.wait()
                await self._stop(worker, helpers)
        finally:
            if http is not None:
                await http.cleanup()
            for sig in installed:
                loop.remove_signal_handler(sig)
            if scheduler.running:
                scheduler.shutdown(wait=False)
            self._scheduler = None
            if self._status_task is not None and not self._status_task.done():
                self._status_task.cancel()  # its thread's read is dropped with it
            logger.info("service.stop")

    async def _stop(self, worker: asyncio.Task[None],
                    helpers: Sequence[asyncio.Task[None]]) -> None:
        """Take no new work; give polls and deliveries under way ``stop_timeout``, then
        cut them off. Pausing, not shutting down, the scheduler: its shutdown cancels
        the jobs running, which is what the bound is for."""
        bound = self.config.stop_timeout.total_seconds()
        self._stopping = True  # a claim under way starts no polls
        self.notifier.stopping()
        logger.info("service.stopping timeout=%gs polls_in_flight=%d", bound, len(self._polling))
        if self._scheduler is not None:
            self._scheduler.pause()
        for h in helpers:
            h.cancel()
        self.outbox.stop()
        _, left = await asyncio.wait({worker, *self._inflight, *self._tasks}, timeout=bound)
        if left:
            logger.warning("service.stop_timeout cut_off=%d after=%gs", len(left), bound)
            for t in left:
                t.cancel()
            await asyncio.wait(left, timeout=1.0)

    def _take_back(self) -> None:
        """At start: claims under this instance's name, or of a dead instance of this
        host, are from a run that crashed: free them now."""
        for owner in [self.instance, *gone_here(self.store.owners(), socket.gethostname(),
                                                _alive)]:
            self.store.release(owner)

    async def _release(self) -> None:
        """Give this instance's claims back, so the others take over now, not when
        the leases run out."""
        try:
            await self._db(self.store.release, self.instance)
        except StoreError as exc:
            logger.warning("store.release_failed error=%s (the leases run out instead)",
                           redact.text(str(exc)))

    async def _tick(self) -> None:
        """The scheduler's heartbeat; every few seconds, also the status line and a look
        at the outbox for alerts queued by another process."""
        loop = asyncio.get_running_loop()
        last = self._last_look
        self.last_tick = loop.time()
        if self.last_tick - last < 5.0:
            return
        self._last_look = self.last_tick
        self.outbox.wake()
        # Not awaited: the heartbeat is the watchdog's, and must not wait for a thread
        # (a busy pool, a store locked from outside); one refresh at a time.
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.create_task(self._refresh_status(), name="status")

    async def _refresh_status(self) -> None:
        try:
            text = await self._status()
        except StoreError as exc:  # the database is away: the polls say so too
            logger.warning("status.unavailable error=%s", redact.text(str(exc)))
            return
        if text != self._status_sent:
            self.notifier.status(text)
            self._status_sent = text

    def feeds_due(self) -> int:
        """Feeds whose poll time has come (or that are being polled). Reads the store."""
        if self._scheduler is None:
            return 0
        return self.store.count_due(self.now())

    def status_line(self) -> str:
        """The STATUS= text. Reads the store: on the loop, await ``_status()``."""
        counts = self.store.alert_counts()
        queued = sum(n for (_, status), n in counts.items() if status is AlertStatus.QUEUED)
        return status_text(feeds=len(self.config.feeds), due=self.feeds_due(),
                           watchlists=len(self.watchlists), queued=queued,
                           last_error=self.last_error, reload_error=self.reload_error)

    async def _status(self) -> str:
        return await asyncio.to_thread(self.status_line)

    def healthy(self, now: float) -> str | None:
        """Why the service is not healthy, or None: the heartbeat is fresh (the store is
        checked by the caller, who can wait for it)."""
        if self._scheduler is None:
            return "the scheduler is not running"
        within = max(5.0, 3 * self.tick_every)
        if not ticking(now, self.last_tick, within):
            ago = "never" if self.last_tick is None else f"{now - self.last_tick:.0f}s ago"
            return f"the scheduler has not ticked for {within:g}s (last tick: {ago})"
        return None

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 at half the interval, only while the heartbeat is fresh.

        A blocked event loop sends nothing (this coroutine cannot run), a stuck
        scheduler sends nothing (its heartbeat goes stale): either way systemd
        sees the silence and restarts the service.
        """
        loop = asyncio.get_running_loop()
        withheld = False
        while True:
            await asyncio.sleep(interval / 2)
            if ticking(loop.time(), self.last_tick, interval / 2):
                self.notifier.watchdog()
                if withheld:
                    logger.info("watchdog.resumed")
                withheld = False
            elif not withheld:
                logger.warning("watchdog.withheld reason=%s", self.healthy(loop.time()))
                withheld = True

    async def _reloads(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reload()
            except Exception:  # a bug in reloading must not stop the service
                logger.exception("config.reload_crash kept=previous")
                self.reload_error = "reload failed unexpectedly: see the log"
                self.notifier.ready(await self._status())

    async def _watch(self) -> None:
        from monitor.reload import changes

        try:
            async for paths in changes(lambda: self.config):
                logger.info("config.changed files=%s", ",".join(sorted(str(p) for p in paths)))
                self._reload_wanted.set()
        except Exception as exc:  # e.g. out of inotify watches: SIGHUP still works
            logger.warning("config.watch_failed error=%s (send SIGHUP to reload)", exc)

    async def reload(self) -> bool:
        """Load the configuration again and take all of it, or keep all of the old one.

        Swapped between two feeds' ingests, so each poll sees one whole set; polls
        and deliveries under way carry on. Returns whether the new set was taken.
        """
        from monitor.reload import candidate, feed_changes

        self.notifier.reloading()
        got = await asyncio.to_thread(candidate, self.config.path, self.config, self.env)
        if got.problems or got.config is None:
            more = len(got.problems) - 1
            self.reload_error = got.problems[0] + (f" (and {more} more)" if more > 0 else "")
            for problem in got.problems:
                logger.error("config.reload_failed kept=previous error=%s", problem)
            self.metrics.reloaded("failed")
            self.notifier.ready(await self._status())
            return False
        new = got.config
        for problem in got.left_out:
            logger.warning("watchlist.invalid %s", problem)
        _warn_operator_words(new.watchlists)
        change = feed_changes(self.config.feeds, new.feeds)
        await self._owned(self._apply, new)  # on the ingest thread: between two ingests
        # New feeds get a row (due now); changed ones are due now; removed ones are
        # no longer in the config, which is what poll_due polls from.
        await self._db(self.store.sync_feeds, [(f.name, f.url) for f in new.feeds])
        await self._db(self.store.make_due, [f.name for f in change.changed])
        self.reload_error = None
        self.reloaded_at = self.now()
        self.metrics.reloaded("ok")
        logger.info("config.reloaded feeds=%d watchlists=%d added=%d removed=%d changed=%d",
                    len(new.feeds), len(self.watchlists), len(change.added),
                    len(change.removed), len(change.changed))
        self._status_sent = await self._status()
        self.notifier.ready(self._status_sent)
        return True

    async def _prune(self) -> None:
        """Retention: rows older than ``retention`` go (see SqlStore.prune); once an
        hour for all instances sharing the store, by whichever claims it first."""
        now = self.now()
        try:
            if not await self._db(self.store.claim, "job:prune", self.instance, now,
                                  now + PRUNE_EVERY):
                logger.debug("store.prune_skipped (another instance pruned this hour)")
                return
            n = await self._db(self.store.prune, now - self.config.retention, now)
        except StoreError as exc:
            logger.warning("store.prune_failed error=%s", redact.text(str(exc)))
            return
        logger.info("store.pruned entries=%d", n)


def _warn_operator_words(watchlists: Sequence[Watchlist]) -> None:
    """A lowercase ``and`` (or ``Or``, ``near/5``) between two terms of a query is a
    word an entry must contain, which is rarely what was meant: said where it
    runs, not only by ``check`` and ``try``."""
    from monitor.query import lowercase_operators

    for wl in watchlists:
        for word, _ in lowercase_operators(wl.query or ""):
            logger.warning("watchlist.operator_word watchlist=%r path=%s word=%r (a word to "
                           "match, not an operator; write %s)", wl.name, wl.path, word,
                           word.upper())


def _settle(outcomes: Sequence[tuple[asyncio.Future[int], int, BaseException | None]]) -> None:
    """Hand a batch of ingests' outcomes to the polls awaiting them (on the loop)."""
    for done, result, error in outcomes:
        if done.done():
            continue
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)


def _log_fill(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        logger.error("index.fill_failed error=%s (stories group from new entries only)",
                     redact.text(str(exc)), exc_info=exc)
