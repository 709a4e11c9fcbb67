"""What the service counts, in Prometheus terms (``/metrics``, served by monitor.web).

One :class:`Metrics` per service, on its own registry (not the global one), so
two services in one process (the tests) never share counters. Counters are
incremented where things happen (``Service.poll``, the ingest, the outbox's
outcomes); the gauges that describe the store (alerts queued, feed lag) are
read from it when scraped, so they are never stale.

prometheus-client is thread-safe: the ingest, which runs in a worker thread,
counts too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.errors import FetchError, MonitorError, ParseError
from monitor.types import Alert, AlertStatus, FeedState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def error_kind(exc: MonitorError) -> str:
    """A small, closed label for a feed error: http_4xx, http_5xx, network, parse (pure)."""
    if isinstance(exc, ParseError):
        return "parse"
    if isinstance(exc, FetchError) and exc.status is not None:
        return f"http_{exc.status // 100}xx"
    return "network"


class _StoreGauges(Collector):
    """Gauges read at scrape time: alerts per destination and status, and feed lag."""

    def __init__(self, counts: Callable[[], dict[tuple[str, AlertStatus], int]],
                 feeds: Callable[[], Sequence[tuple[str, FeedState | None]]],
                 now: Callable[[], datetime]) -> None:
        self._counts, self._feeds, self._now = counts, feeds, now

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
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


class Metrics:
    def __init__(self) -> None:
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
        # Each poll counts under its feed's labels: the labelled children are kept,
        # not looked up (and their labels checked) once a poll.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, counter: Counter, *labels: str) -> Any:
        key = (counter, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def polled(self, feed: str, result: str) -> None:
        self._child(self.polls, feed, result).inc()

    def parsed(self, feed: str, entries: int, new: int) -> None:
        self._child(self.entries, feed).inc(entries)
        self._child(self.new_entries, feed).inc(new)

    def watch_store(self, counts: Callable[[], dict[tuple[str, AlertStatus], int]],
                    feeds: Callable[[], Sequence[tuple[str, FeedState | None]]],
                    now: Callable[[], datetime]) -> None:
        self.registry.register(_StoreGauges(counts, feeds, now))

    def feed_failed(self, feed: str, exc: MonitorError) -> None:
        self.polled(feed, "error")
        self.fetch_errors.labels(feed, error_kind(exc)).inc()

    def delivered(self, outcome: str, alert: Alert, now: datetime) -> None:
        self.alerts.labels(alert.destination, outcome).inc()
        if outcome == "sent":
            self.latency.labels(alert.destination).observe(
                max(0.0, (now - alert.created_at).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
