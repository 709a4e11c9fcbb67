"""When things should happen (pure): digests, quiet hours, per-hour caps.

Every function takes ``now`` and the settings and returns a time or a
decision; none reads the clock. Digest times use APScheduler's triggers as
pure calculators (``CronTrigger`` for ``at:``, ``IntervalTrigger`` for
``every:``), so "08:00 Europe/Berlin" means what a person means across DST
changes. The time an alert is held until is stored with it, which is what
makes a digest due during downtime go out at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.types import AlertStatus, Mode, QuietHours, Watchlist

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
