"""Metrics: the store's gauges are read when scraped, and only then."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.metrics import Metrics
from monitor.types import AlertStatus, FeedState


def test_store_gauges_read_the_store_only_when_scraped() -> None:
    reads: list[str] = []

    def counts() -> dict[tuple[str, AlertStatus], int]:
        reads.append("alerts")
        return {("desk", AlertStatus.QUEUED): 2}

    def feeds() -> list[tuple[str, FeedState | None]]:
        reads.append("feeds")
        return [("BBC", FeedState(name="BBC", failures=3))]

    m = Metrics()
    m.watch_store(counts, feeds, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert reads == []  # registering asks describe(), not collect()
    text = m.render().decode()
    assert reads == ["alerts", "feeds"]
    assert 'news_monitor_alerts{destination="desk",status="queued"} 2.0' in text
    assert 'news_monitor_feed_failures{feed="BBC"} 3.0' in text
