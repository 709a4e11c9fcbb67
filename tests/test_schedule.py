"""schedule.py: when held alerts are due (pure; table tests with explicit times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.schedule import hold_for, next_digest, quiet_until
from monitor.types import AlertStatus, Mode, QuietHours, Watchlist

T = datetime(2026, 11, 25, tzinfo=UTC)  # a Wednesday; Berlin is UTC+1 in November
NIGHT = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
LUNCH = QuietHours(start="12:00", end="13:00", timezone="UTC")


@pytest.mark.parametrize(("qh", "now", "until"), [
    pytest.param(NIGHT, T.replace(hour=21, minute=30), T.replace(day=26, hour=6), id="late"),
    pytest.param(NIGHT, T.replace(hour=3), T.replace(hour=6), id="small-hours"),
    pytest.param(NIGHT, T.replace(hour=6, minute=0), None, id="just-over"),
    pytest.param(NIGHT, T.replace(hour=12), None, id="day"),
    pytest.param(LUNCH, T.replace(hour=12, minute=30), T.replace(hour=13), id="same-day"),
    pytest.param(None, T, None, id="none"),
])
def test_quiet_until(qh: QuietHours | None, now: datetime, until: datetime | None) -> None:
    assert quiet_until(qh, now) == until


@pytest.mark.parametrize(("wl", "now", "due"), [
    pytest.param(Watchlist(name="h", mode=Mode.DIGEST, every=timedelta(hours=1)),
                 T.replace(hour=12, minute=10), T.replace(hour=13), id="every-hour"),
    pytest.param(Watchlist(name="h", mode=Mode.DIGEST, every=timedelta(hours=1)),
                 T.replace(hour=13), T.replace(hour=14), id="strictly-after"),
    pytest.param(Watchlist(name="d", mode=Mode.DIGEST, at=("08:00", "17:00"),
                           timezone="Europe/Berlin"),
                 T.replace(hour=12), T.replace(hour=16), id="at-berlin"),
    pytest.param(Watchlist(name="d", mode=Mode.DIGEST, at=("08:00",), timezone="Europe/Berlin"),
                 T.replace(hour=12), T.replace(day=26, hour=7), id="tomorrow"),
    pytest.param(Watchlist(name="d", mode=Mode.DIGEST, at=("08:00",), timezone="Europe/Berlin"),
                 datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 29, 6, tzinfo=UTC),
                 id="across-dst"),
])
def test_next_digest(wl: Watchlist, now: datetime, due: datetime) -> None:
    assert next_digest(wl, now) == due


def test_hold_for_orders_the_rules() -> None:
    now = T.replace(hour=23)
    quiet = Watchlist(name="q", quiet_hours=NIGHT)
    assert hold_for(quiet, now, 0).status is AlertStatus.HELD
    assert hold_for(Watchlist(name="u", quiet_hours=NIGHT, urgent=True), now, 0).status \
        is AlertStatus.QUEUED
    capped = Watchlist(name="c", max_per_hour=2)
    assert hold_for(capped, now, 1).status is AlertStatus.QUEUED
    over = hold_for(capped, now.replace(minute=20), 2)
    assert over.status is AlertStatus.HELD and over.until == T.replace(day=26, hour=0)
    assert over.reason == "max_per_hour"
    digest = hold_for(Watchlist(name="d", mode=Mode.DIGEST, every=timedelta(hours=1),
                                urgent=True), now, 0)
    assert digest.status is AlertStatus.HELD and digest.reason == "digest"
