"""schedule.next_poll: when a feed is polled next (pure; a table with explicit times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import Outcome, Polled, PollLimits, next_poll, publish_rate
from monitor.types import Feed, FeedState

T = datetime(2026, 11, 25, 12, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
LIMITS = PollLimits(min_interval=MIN, max_interval=6 * HOUR)
FEED = Feed(name="f", url="http://127.0.0.1/f.xml", interval=timedelta(minutes=5))
FAILING = FeedState(name="f", failures=3)


def ok(**kw: object) -> Outcome:
    return Outcome(polled=Polled.CHANGED, **kw)  # type: ignore[arg-type]


def failed(failures: int, **kw: object) -> Outcome:
    return Outcome(polled=Polled.FAILED, failures=failures, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("feed", "outcome", "after"), [
    pytest.param(FEED, ok(), timedelta(minutes=5), id="configured-interval"),
    pytest.param(FEED, Outcome(polled=Polled.NOT_MODIFIED), timedelta(minutes=5), id="304"),
    pytest.param(FEED, Outcome(polled=Polled.UNCHANGED), timedelta(minutes=5), id="same-body"),
    pytest.param(Feed(name="f", url="u", interval=timedelta(seconds=5)), ok(), MIN,
                 id="below-min-interval"),
    pytest.param(Feed(name="f", url="u", interval=timedelta(days=2)), ok(), 6 * HOUR,
                 id="above-max-interval"),
    pytest.param(FEED, ok(max_age=1800.0), timedelta(minutes=30), id="max-age"),
    pytest.param(FEED, ok(max_age=60.0), timedelta(minutes=5), id="max-age-shorter-ignored"),
    pytest.param(FEED, ok(max_age=10 * 86400.0), 6 * HOUR, id="max-age-capped"),
    pytest.param(FEED, ok(expires=T + timedelta(minutes=20)), timedelta(minutes=20),
                 id="expires"),
    pytest.param(FEED, ok(expires=T - HOUR), timedelta(minutes=5), id="expires-past"),
    pytest.param(FEED, ok(hint=timedelta(minutes=60)), HOUR, id="rss-ttl"),
    pytest.param(FEED, ok(hint=timedelta(days=1)), 6 * HOUR, id="sy-daily-capped"),
    pytest.param(FEED, ok(per_day=96.0), timedelta(minutes=7.5), id="quiet-feed-stretched"),
    pytest.param(FEED, ok(per_day=4.0), timedelta(minutes=20), id="stretch-at-most-fourfold"),
    pytest.param(FEED, ok(per_day=2000.0), timedelta(minutes=5), id="busy-feed-not-shortened"),
    pytest.param(FEED, ok(per_day=0.0), timedelta(minutes=20), id="silent-feed"),
    pytest.param(Feed(name="f", url="u", interval=2 * HOUR), ok(per_day=1.0), 6 * HOUR,
                 id="stretch-within-max-interval"),
    pytest.param(FEED, failed(1), timedelta(minutes=5), id="first-failure"),
    pytest.param(FEED, failed(2), timedelta(minutes=10), id="second-failure"),
    pytest.param(FEED, failed(4), timedelta(minutes=40), id="fourth-failure"),
    pytest.param(FEED, failed(30), 6 * HOUR, id="backoff-capped"),
    pytest.param(FEED, failed(1, status=429, retry_after=7200.0), 2 * HOUR, id="429-retry-after"),
    pytest.param(FEED, failed(1, status=503, retry_after=86400.0 * 9), timedelta(days=1),
                 id="503-retry-after-capped-at-a-day"),
    pytest.param(FEED, failed(5, status=503, retry_after=30.0), timedelta(minutes=80),
                 id="retry-after-shorter-than-backoff"),
    pytest.param(FEED, failed(1, status=500, retry_after=7200.0), timedelta(minutes=5),
                 id="retry-after-only-on-429-503"),
    # A header's number is the server's to choose: past any timedelta, it is capped.
    pytest.param(FEED, failed(1, status=429, retry_after=1e20), timedelta(days=1),
                 id="retry-after-beyond-timedelta"),
    pytest.param(FEED, failed(1, status=503, retry_after=float("inf")), timedelta(days=1),
                 id="retry-after-infinite"),
    pytest.param(FEED, ok(max_age=1e20), 6 * HOUR, id="max-age-beyond-timedelta"),
])
def test_next_poll(feed: Feed, outcome: Outcome, after: timedelta) -> None:
    assert next_poll(feed, None, outcome, T, limits=LIMITS) == T + after


def test_failures_count_from_state_when_outcome_does_not_say() -> None:
    out = Outcome(polled=Polled.FAILED)
    assert next_poll(FEED, FAILING, out, T, limits=LIMITS) == T + timedelta(minutes=40)
    assert next_poll(FEED, None, out, T, limits=LIMITS) == T + timedelta(minutes=5)


def test_success_after_failures_is_back_to_the_interval() -> None:
    assert next_poll(FEED, FAILING, ok(), T, limits=LIMITS) == T + timedelta(minutes=5)


def test_gone_is_never() -> None:
    assert next_poll(FEED, None, Outcome(polled=Polled.GONE, status=410), T) is None


@given(failures=st.integers(1, 60), jitter=st.floats(0, 1, exclude_max=True))
def test_backoff_stays_within_limits_and_jitter_only_shortens(failures: int,
                                                              jitter: float) -> None:
    plain = next_poll(FEED, None, failed(failures), T, limits=LIMITS)
    jittered = next_poll(FEED, None, failed(failures), T, limits=LIMITS, jitter=jitter)
    assert plain is not None and jittered is not None
    assert T + MIN <= jittered <= plain <= T + LIMITS.max_interval


@pytest.mark.parametrize("outcome", [
    pytest.param(ok(hint=timedelta(minutes=30)), id="rss-ttl"),
    pytest.param(ok(max_age=1800.0), id="max-age"),
    pytest.param(ok(expires=T + timedelta(minutes=30)), id="expires"),
])
def test_jitter_never_polls_sooner_than_the_publisher_asks(outcome: Outcome) -> None:
    assert next_poll(FEED, None, outcome, T, limits=LIMITS, jitter=0.99) == T + 30 * MIN


def test_jitter_spreads_successes_by_at_most_a_tenth() -> None:
    late = next_poll(FEED, None, ok(), T, limits=LIMITS, jitter=0.0)
    early = next_poll(FEED, None, ok(), T, limits=LIMITS, jitter=0.99)
    assert late == T + timedelta(minutes=5)
    assert early is not None and T + timedelta(minutes=4.5) <= early < T + timedelta(minutes=5)


@pytest.mark.parametrize(("published", "rate"), [
    pytest.param([T - timedelta(hours=h) for h in (0, 6, 12, 18, 24)], 4.0, id="every-6h"),
    pytest.param([T - timedelta(days=10), T - timedelta(days=5)], 0.1, id="two-in-ten-days"),
    pytest.param([T], None, id="one-item"),
    pytest.param([None, None, T], None, id="undated"),
    pytest.param([T + timedelta(days=1), T + timedelta(days=2)], None, id="future-dates"),
    pytest.param([T - timedelta(minutes=1)] * 50, None, id="stamped-alike"),
    pytest.param([T - timedelta(days=1)] * 30 + [T - timedelta(days=2)] * 20, 0.5,
                 id="two-stamps-in-two-days"),
])
def test_publish_rate(published: list[datetime | None], rate: float | None) -> None:
    got = publish_rate([d.timestamp() for d in published if d is not None], T)
    assert got == (None if rate is None else pytest.approx(rate))
