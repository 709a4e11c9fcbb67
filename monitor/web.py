"""The HTTP listener: ``/healthz``, ``/metrics`` and a status page at ``/``.

Off unless the config says ``http: {listen: 127.0.0.1:8325}``. It runs on the
service's event loop (aiohttp) and reads what the service and the store
know; store reads go to a worker thread, so a slow disk never stalls polls.

* ``/healthz``: 200 ``ok`` only while the scheduler's heartbeat is fresh and
  the store takes a write; else 503 with the reason, for a load balancer or a
  probe.
* ``/metrics``: Prometheus text (monitor.metrics).
* ``/``: one server-rendered page (Jinja2, no scripts, no build step) with
  feed health, recent alerts and their story's members, matches per
  watchlist per day over 14 days, queued and failed alerts, and the reload
  error if the running config is not the one on disk. The page escapes
  everything it shows: titles come from feeds we do not control.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jinja2
from aiohttp import web

from monitor import redact
from monitor.errors import MonitorError, StoreError
from monitor.metrics import CONTENT_TYPE
from monitor.types import Alert, AlertStatus, Feed, FeedState, Story, Watchlist

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.metrics import Metrics
    from monitor.store import SqlStore

logger = logging.getLogger(__name__)

DAYS = 14
_TEMPLATE = Path(__file__).with_name("status.html.j2")


class Running(Protocol):
    """What the listener reads of the running service (monitor.service.Service):
    named here, so that this module, below the service, never imports it."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> SqlStore: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def watchlists(self) -> Mapping[str, Watchlist]: ...
    @property
    def reload_error(self) -> str | None: ...
    @property
    def now(self) -> Callable[[], datetime]: ...

    def healthy(self, now: float) -> str | None: ...

    def status_line(self) -> str: ...


# ------------------------------------------------------------------ the page's data (pure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    day: str  # YYYY-MM-DD
    count: int
    x: float
    y: float
    height: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """One watchlist's matches per day as bars in a 0..100 x 0..40 SVG box."""

    watchlist: str
    total: int
    peak: int
    bars: tuple[Bar, ...]


def days_back(today: datetime, n: int = DAYS) -> list[str]:
    """The last ``n`` UTC days, oldest first, ending with ``today`` (pure)."""
    day = today.astimezone(UTC).date()
    return [(day - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def charts(watchlists: Sequence[str], per_day: Mapping[tuple[str, str], int],
           days: Sequence[str]) -> list[Chart]:
    """Bar geometry for each watchlist's matches per day (pure)."""
    out = []
    width = 100 / max(1, len(days))
    for name in watchlists:
        counts = [per_day.get((name, d), 0) for d in days]
        peak = max(counts, default=0)
        bars = tuple(
            Bar(day=d, count=n, x=round(i * width + width * 0.1, 2),
                height=(h := round(38 * n / peak, 2) if peak else 0.0), y=round(40 - h, 2))
            for i, (d, n) in enumerate(zip(days, counts, strict=True)))
        out.append(Chart(watchlist=name, total=sum(counts), peak=peak, bars=bars))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedRow:
    name: str
    url: str
    interval: str
    last_polled: str
    polled_by: str | None  # which instance (several may share the store)
    failures: int
    error: str | None


def feed_rows(feeds: Sequence[Feed], states: Mapping[str, FeedState | None],
              now: datetime) -> list[FeedRow]:
    """Feeds with their health, failing ones first (pure)."""
    rows = []
    for f in feeds:
        st = states.get(f.name)
        polled = st.last_polled_at if st else None
        # The page is for anyone who can reach the port: no credentials from the
        # feed's URL, no secret a server echoed into an error.
        rows.append(FeedRow(name=f.name, url=redact.url(f.url), interval=_ago(f.interval),
                            last_polled=f"{_ago(now - polled)} ago" if polled else "never",
                            polled_by=st.polled_by if st else None,
                            failures=st.failures if st else 0,
                            error=redact.text(st.last_error or "") if st and st.failures
                            else None))
    return sorted(rows, key=lambda r: (-r.failures, r.name))


def href(url: str) -> str:
    """A link from a feed, only if it is http(s): ``javascript:`` must not be clickable (pure)."""
    return url if url.lower().startswith(("https://", "http://")) else "#"


def _ago(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


# ------------------------------------------------------------------------- handlers


class StatusApp:
    """The aiohttp application over one running service."""

    def __init__(self, service: Running) -> None:
        self.service = service
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATE.parent)),
                                 autoescape=True, undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True)
        env.filters["href"] = href
        self.template = env.get_template(_TEMPLATE.name)
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/", self.status)
        # Pages and scrapes at once, at most: each reads the store on a thread of the
        # loop's pool, which the heartbeat's status line shares, and a flood of them
        # starved it (the watchdog withheld, /healthz blaming the store).
        self._heavy = asyncio.Semaphore(2)

    async def healthz(self, request: web.Request) -> web.Response:
        s = self.service
        reason = s.healthy(asyncio.get_running_loop().time())
        if reason is None:
            try:
                async with asyncio.timeout(5):
                    await asyncio.to_thread(s.store.set_meta, "healthz",
                                            s.now().isoformat())
            except (StoreError, TimeoutError) as exc:
                # str(), not the exception: a TimeoutError is true and says nothing.
                reason = f"the store is not writable: {str(exc) or 'no answer in 5 s'}"
        if reason is not None:
            return web.Response(status=503, text=f"unhealthy: {reason}\n")
        return web.Response(text="ok\n")

    async def metrics(self, request: web.Request) -> web.Response:
        if self._heavy.locked():
            return _busy()
        async with self._heavy:
            body = await asyncio.to_thread(self.service.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def status(self, request: web.Request) -> web.Response:
        if self._heavy.locked():
            return _busy()
        async with self._heavy:
            page = await asyncio.to_thread(self._page)
        return web.Response(text=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    def _page(self) -> str:
        s = self.service
        now = s.now()
        store = s.store
        feeds = s.config.feeds
        known = store.feed_states(memos=False)  # one query, without the parse memos
        states = {f.name: known.get(f.name) for f in feeds}
        # The last sent of each kind, however many queued or failed ones came after.
        recent = store.list_alerts(AlertStatus.SENT, 20) + store.list_alerts(
            AlertStatus.FOLDED, 20)
        recent.sort(key=lambda a: a.sent_at or a.created_at, reverse=True)
        recent = recent[:20]
        stories: dict[str, Story] = {}
        for a in recent:
            if a.story_id not in stories and (story := store.story(a.story_id)):
                stories[a.story_id] = story
        queued = [a for a in store.list_alerts(AlertStatus.QUEUED, limit=50)]
        failed = store.list_alerts(AlertStatus.FAILED, limit=50)
        days = days_back(now)
        per_day = store.matches_per_day(datetime.fromisoformat(days[0]).replace(tzinfo=UTC))
        counts = store.alert_counts()
        context: dict[str, Any] = {
            "now": now, "status": s.status_line(), "reload_error": s.reload_error,
            "feeds": feed_rows(feeds, states, now), "recent": recent, "stories": stories,
            "queued": queued, "failed": failed, "days": days,
            "charts": charts(sorted(s.watchlists), per_day, days),
            "counts": _by_destination(counts), "path": str(s.config.path),
            "when": lambda a: _when(a, now),
        }
        return self.template.render(**context)


def _busy() -> web.Response:
    return web.Response(status=503, text="busy: other pages are being made; try again\n",
                        headers={"Retry-After": "1"})


def _by_destination(counts: Mapping[tuple[str, AlertStatus], int]) -> list[tuple[str, int, int]]:
    dests = sorted({d for d, _ in counts})
    return [(d, counts.get((d, AlertStatus.QUEUED), 0), counts.get((d, AlertStatus.FAILED), 0))
            for d in dests]


def _when(alert: Alert, now: datetime) -> str:
    at = alert.sent_at or alert.created_at
    return f"{at:%Y-%m-%d %H:%M} UTC ({_ago(now - at)} ago)"


async def start(service: Running, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port`` (0: any free port); the caller cleans the runner up."""
    runner = web.AppRunner(StatusApp(service).app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise MonitorError(f"http: cannot listen on {host}:{port}: "
                           f"{exc.strerror or exc}") from exc
    for address in runner.addresses:
        host_, port_ = address[:2]
        logger.info("http.listening url=http://%s:%d/", f"[{host_}]" if ":" in host_ else host_,
                    port_)
    return runner
