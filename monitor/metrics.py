"""What the service counts, in Prometheus terms (``/metrics``, served by monitor.web).

One :class:`Metrics` per service, on its own registry (not the global one), so
two services in one process (the tests) never share counters. Counters are
incremented where things happen (``Service.poll``, the ingest, the outbox's
outcomes); the gauges that describe the store (alerts queued, feed lag) are
read from it when scraped, so they are never stale.

prometheus-client is thread-safe: the ingest, which runs in a worker thread,
counts too. It is imported, and the registry made, at the first count or
scrape (:meth:`Metrics._made`): a process that polls nothing never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.errors import FetchError, MonitorError, ParseError
from monitor.types import Alert, AlertStatus, FeedState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def error_kind(exc: MonitorError) -> str:
    """A small, closed label for a feed error: http_4xx, http_5xx, network, parse (pure)."""
    if isinstance(exc, ParseError):
        return "parse"
    if isinstance(exc, FetchError) and exc.status is not None:
        return f"http_{exc.status // 100}xx"
    return "network"


class _StoreGauges:
    """Gauges read at scrape time: alerts per destination and status, and feed lag
    (a prometheus-client Collector)."""

    def __init__(self, counts: Callable[[], dict[tuple[str, AlertStatus], int]],
                 feeds: Callable[[], Sequence[tuple[str, FeedState | None]]],
                 now: Callable[[], datetime]) -> None:
        self._counts, self._feeds, self._now = counts, feeds, now

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        return (GaugeMetricFamily("news_monitor_alerts", "Alerts in the outbox now, by status",
                                  labels=["destination", "status"]),
                GaugeMetricFamily("news_monitor_feed_lag_seconds",
                                  "Seconds since the feed was last polled", labels=["feed"]),
                GaugeMetricFamily("news_monitor_feed_failures",
                                  "Consecutive failed polls of the feed", labels=["feed"]))

    def describe(self) -> Iterator[Metric]:
        """The families collect() yields, empty. The registry asks for them when the
        collector is registered (to refuse clashing names); without this it
        collected, reading the store at every start, on the event loop."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        alerts, lag, failing = self._families()
        for (dest, status), n in sorted(self._counts().items(), key=lambda kv: kv[0][0]):
            if status in (AlertStatus.QUEUED, AlertStatus.HELD, AlertStatus.FAILED):
                alerts.add_metric([dest, status.value], n)
        yield alerts
        now = self._now()
        for name, state in self._feeds():
            if state is not None and state.last_polled_at is not None:
                lag.add_metric([name], (now - state.last_polled_at).total_seconds())
            failing.add_metric([name], state.failures if state else 0)
        yield lag
        yield failing


class _Instruments:
    """The registry and what the service counts in it."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("news_monitor_polls", "Feed polls, by result",
                             ["feed", "result"], registry=r)
        self.fetch_errors = Counter("news_monitor_fetch_errors", "Feed errors, by kind",
                                    ["feed", "kind"], registry=r)
        self.entries = Counter("news_monitor_entries_parsed", "Entries parsed from feeds",
                               ["feed"], registry=r)
        self.new_entries = Counter("news_monitor_entries_new", "Entries not seen before",
                                   ["feed"], registry=r)
        self.matches = Counter("news_monitor_matches", "New entries that matched a watchlist",
                               ["watchlist"], registry=r)
        self.alerts = Counter("news_monitor_deliveries", "Delivery attempts, by outcome",
                              ["destination", "outcome"], registry=r)
        self.latency = Histogram(
            "news_monitor_delivery_latency_seconds",
            "From an alert being queued to the destination taking it", ["destination"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600), registry=r)
        self.reloads = Counter("news_monitor_reloads", "Configuration reloads, by result",
                               ["result"], registry=r)


class Metrics:
    """What a service counts. ``counting=False``: nothing is counted (no ``http:``
    listener, so no /metrics for anyone to read), and prometheus-client is never
    imported: a 10,000-feed cycle counts some 13,000 times."""

    def __init__(self, *, counting: bool = True) -> None:
        self.counting = counting
        self._instruments: _Instruments | None = None
        self._store: _StoreGauges | None = None
        self._making = threading.Lock()
        # Each poll counts under its feed's labels: the labelled children are kept,
        # not looked up (and their labels checked) once a poll.
        self._children: dict[tuple[object, ...], Any] = {}

    def _made(self) -> _Instruments:
        """The instruments, made at first use. Under a lock, once: the loop and the
        ingest thread may both count first, and the loser's counts must not land in
        a registry nobody reads."""
        made = self._instruments
        if made is None:
            with self._making:
                made = self._instruments
                if made is None:
                    made = _Instruments()
                    if self._store is not None:
                        made.registry.register(self._store)
                    self._instruments = made
        return made

    @property
    def registry(self) -> CollectorRegistry:
        return self._made().registry

    @property
    def polls(self) -> Counter:
        return self._made().polls

    @property
    def fetch_errors(self) -> Counter:
        return self._made().fetch_errors

    @property
    def entries(self) -> Counter:
        return self._made().entries

    @property
    def new_entries(self) -> Counter:
        return self._made().new_entries

    @property
    def matches(self) -> Counter:
        return self._made().matches

    @property
    def alerts(self) -> Counter:
        return self._made().alerts

    @property
    def latency(self) -> Histogram:
        return self._made().latency

    @property
    def reloads(self) -> Counter:
        return self._made().reloads

    def _child(self, counter: Counter, *labels: str) -> Any:
        key = (counter, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def polled(self, feed: str, result: str) -> None:
        if self.counting:
            self._child(self.polls, feed, result).inc()

    def parsed(self, feed: str, entries: int, new: int) -> None:
        if self.counting:
            self._child(self.entries, feed).inc(entries)
            self._child(self.new_entries, feed).inc(new)

    def matched(self, watchlist: str) -> None:
        if self.counting:
            self._child(self.matches, watchlist).inc()

    def reloaded(self, result: str) -> None:
        if self.counting:
            self.reloads.labels(result).inc()

    def watch_store(self, counts: Callable[[], dict[tuple[str, AlertStatus], int]],
                    feeds: Callable[[], Sequence[tuple[str, FeedState | None]]],
                    now: Callable[[], datetime]) -> None:
        """Scrapes read the store through these (registered now if the registry is
        made, else with it: after the counters either way, as /metrics lists them)."""
        with self._making:
            self._store = _StoreGauges(counts, feeds, now)
            if self._instruments is not None:
                self._instruments.registry.register(self._store)

    def feed_failed(self, feed: str, exc: MonitorError) -> None:
        if self.counting:
            self.polled(feed, "error")
            self.fetch_errors.labels(feed, error_kind(exc)).inc()

    def delivered(self, outcome: str, alert: Alert, now: datetime) -> None:
        if not self.counting:
            return
        self.alerts.labels(alert.destination, outcome).inc()
        if outcome == "sent":
            self.latency.labels(alert.destination).observe(
                max(0.0, (now - alert.created_at).total_seconds()))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
