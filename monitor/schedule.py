"""When things should happen (pure): feed polls, digests, quiet hours, per-hour caps.

Every function takes ``now`` and the settings and returns a time or a
decision; none reads the clock. :func:`next_poll` decides when a feed is
polled next from what the last poll told us (the shape of reader's
``Decider``): the service stores the answer per feed and one scheduler tick
takes the feeds that are due. Digest times use APScheduler's triggers as
pure calculators (``CronTrigger`` for ``at:``, ``IntervalTrigger`` for
``every:``), so "08:00 Europe/Berlin" means what a person means across DST
changes. The time an alert is held until is stored with it, which is what
makes a digest due during downtime go out at the next start.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.types import AlertStatus, Feed, FeedState, Mode, QuietHours, Watchlist

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _clock(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h), int(m))


def quiet_until(qh: QuietHours | None, now: datetime) -> datetime | None:
    """The end of the quiet period ``now`` falls in (UTC), or None if it is not quiet."""
    if qh is None:
        return None
    tz = ZoneInfo(qh.timezone)
    local = now.astimezone(tz)
    start, end = _clock(qh.start), _clock(qh.end)
    t = local.time()
    if start == end:
        return None
    if start < end:  # e.g. 12:00-14:00, same day
        inside = start <= t < end
        end_day = local.date()
    else:  # e.g. 22:00-07:00, across midnight
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def next_digest(wl: Watchlist, now: datetime) -> datetime:
    """The next time ``wl``'s digest goes out, strictly after ``now`` (UTC)."""
    # Imported here: only digest watchlists need APScheduler's triggers.
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if wl.at:
        fires: list[datetime] = []
        for hhmm in wl.at:
            t = _clock(hhmm)
            trig = CronTrigger(hour=t.hour, minute=t.minute, timezone=ZoneInfo(wl.timezone))
            fire = trig.get_next_fire_time(None, now + timedelta(microseconds=1))
            if fire is not None:
                fires.append(datetime.fromtimestamp(fire.timestamp(), tz=UTC))
        return min(fires)
    every = wl.every or timedelta(hours=1)
    # Anchored at the epoch so restarts keep the same rhythm (every 1h = on the hour).
    trig = IntervalTrigger(seconds=every.total_seconds(), start_date=_EPOCH, timezone=UTC)
    fire = trig.get_next_fire_time(None, now + timedelta(microseconds=1))
    return datetime.fromtimestamp(fire.timestamp(), tz=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """What to do with a new alert: send now (QUEUED) or hold it until ``until``."""

    status: AlertStatus
    until: datetime | None = None
    reason: str = ""


def hold_for(wl: Watchlist, now: datetime, sent_last_hour: int) -> Hold:
    """Decide whether a new alert of ``wl`` goes out now or waits (pure).

    Digest watchlists wait for their next digest. Quiet hours hold immediate
    alerts until they end (``urgent`` bypasses them). Beyond ``max_per_hour``
    alerts in the last hour, further stories are folded into one
    "N more stories" summary at the end of the hour.
    """
    if wl.mode is Mode.DIGEST:
        return Hold(status=AlertStatus.HELD, until=next_digest(wl, now), reason="digest")
    if not wl.urgent:
        until = quiet_until(wl.quiet_hours, now)
        if until is not None:
            return Hold(status=AlertStatus.HELD, until=until, reason="quiet hours")
    if wl.max_per_hour is not None and sent_last_hour >= wl.max_per_hour:
        hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return Hold(status=AlertStatus.HELD, until=hour_end, reason="max_per_hour")
    return Hold(status=AlertStatus.QUEUED)


# ------------------------------------------------------------------ feed polls


class Polled(enum.Enum):
    """How one poll ended, as far as scheduling cares."""

    CHANGED = "changed"  # a 200 with a body we had not seen
    UNCHANGED = "unchanged"  # a 200 with the same bytes as last time
    NOT_MODIFIED = "not_modified"  # a 304
    FAILED = "failed"  # network trouble, 4xx/5xx, a body that is not a feed
    GONE = "gone"  # 410: the publisher says the feed will not come back


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one poll told us that bears on the next one.

    ``max_age`` and ``expires`` come from the response's caching headers;
    ``hint`` is the feed's own (RSS ``<ttl>``, ``sy:updatePeriod``);
    ``per_day`` is how often the feed really publishes (:func:`publish_rate`).
    ``failures`` counts consecutive failures including this poll.
    """

    polled: Polled
    status: int | None = None
    retry_after: float | None = None
    max_age: float | None = None
    expires: datetime | None = None
    hint: timedelta | None = None
    per_day: float | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PollLimits:
    """``poll.min_interval`` / ``poll.max_interval``: no hint, rate or backoff goes outside."""

    min_interval: timedelta = timedelta(0)
    max_interval: timedelta = timedelta(hours=1)


#: Retry-After beyond this is taken as a mistake (or a ban): we ask again after a day.
_MAX_RETRY_AFTER = timedelta(days=1)
#: Polls per expected new item: twice, so an item waits half its gap on average.
_POLLS_PER_ITEM = 2
#: A quiet feed is polled at most this many times less often than configured:
#: its next item is news too, and the configured interval is the user's word.
_MAX_STRETCH = 4


def publish_rate(published: Sequence[float], now: datetime) -> float | None:
    """Items per day the feed publishes, from its items' dates (POSIX seconds, as
    ``ParsedFeed.dates``; None: cannot tell).

    Measured over the span the feed's items cover (up to ``now``), so a feed that
    keeps 50 items over a month reads as quiet and one with 50 in an hour as busy.
    """
    at = now.timestamp()
    # Items stamped alike (a bulk import, a CMS that dates by the day) are one
    # publication as far as the rate goes: counted apart, fifty read as thousands a day.
    dates = {d for d in published if d <= at}
    if len(dates) < 2:
        return None
    span = (at - min(dates)) / 86400
    if span <= 0:
        return None
    return (len(dates) - 1) / span


def _clamp(value: timedelta, limits: PollLimits) -> timedelta:
    return max(limits.min_interval, min(limits.max_interval, value))


def poll_interval(feed: Feed, outcome: Outcome, now: datetime, limits: PollLimits, *,
                  jitter: float = 0.0) -> timedelta:
    """The gap before the next poll of a feed that answered.

    The feed's configured interval, stretched (never shortened, at most
    fourfold) for a feed that publishes rarely, and never shorter than the
    publisher asks for: caching headers, ``<ttl>``, ``sy:updatePeriod``. Always
    within the limits. ``jitter`` (in [0, 1)) takes up to a tenth off our own
    gap, never off what the publisher asks.
    """
    gap = feed.interval
    if outcome.per_day is not None:
        by_rate = (timedelta(days=1) / (outcome.per_day * _POLLS_PER_ITEM)
                   if outcome.per_day > 0 else feed.interval * _MAX_STRETCH)
        gap = max(gap, min(by_rate, feed.interval * _MAX_STRETCH))
    gap *= 1 - 0.1 * jitter
    # A header's number can be any size: past max_interval it is capped anyway,
    # and a timedelta of it could overflow.
    top = limits.max_interval.total_seconds()
    asked = [timedelta(seconds=min(outcome.max_age, top)) if outcome.max_age is not None
             else None,
             outcome.expires - now if outcome.expires is not None else None,
             outcome.hint]
    for floor in asked:
        if floor is not None:
            gap = max(gap, floor)
    return _clamp(gap, limits)


def backoff(feed: Feed, failures: int, jitter: float, limits: PollLimits) -> timedelta:
    """Exponential backoff after ``failures`` consecutive failures, capped at max_interval.

    ``jitter`` in [0, 1) (the service hashes the feed's name and failure count:
    deterministic, yet feeds that failed together spread out) takes off up to a
    quarter, so a host's feeds do not come back in lockstep.
    """
    doubled = feed.interval * (2 ** min(max(failures - 1, 0), 20))
    return _clamp(min(doubled, limits.max_interval) * (1 - 0.25 * jitter), limits)


def next_poll(feed: Feed, state: FeedState | None, outcome: Outcome, now: datetime, *,
              limits: PollLimits = PollLimits(), jitter: float = 0.0) -> datetime | None:
    """When to poll ``feed`` next, given how this poll went (pure).

    None means never: the feed answered 410 Gone and is disabled. Retry-After on
    429 and 503 is honoured (up to a day) even beyond max_interval: it is the
    server's word. ``state`` is what the store knew before this poll; a success
    after failures schedules as a success. ``jitter`` (in [0, 1)) moves a success
    up to a tenth earlier, so feeds first polled together drift apart, but never
    earlier than the publisher asks (:func:`poll_interval`).
    """
    if outcome.polled is Polled.GONE:
        return None
    if outcome.polled is Polled.FAILED:
        failures = outcome.failures or (state.failures + 1 if state else 1)
        gap = backoff(feed, failures, jitter, limits)
        if outcome.status in (429, 503) and outcome.retry_after is not None:
            asked = timedelta(seconds=min(outcome.retry_after,
                                          _MAX_RETRY_AFTER.total_seconds()))
            gap = max(gap, asked)
        return now + gap
    return now + poll_interval(feed, outcome, now, limits, jitter=jitter)
