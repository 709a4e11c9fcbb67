"""Feed date strings -> UTC datetimes, read exactly as feedparser reads them (pure).

feedparser's date parser tries up to nine handlers in turn, each lowercasing and
splitting the string, and it is a large share of what reading an item costs.
Nearly every feed writes one of two forms, spelt one way: RFC 822 in RSS
(``Wed, 25 Nov 2026 11:00:00 GMT``, ``... +0100``) and W3C-DTF in Atom and
``dc:date`` (``2026-11-25T11:00:00Z``, ``...+01:00``). :func:`parse_date` reads
those with one regular expression each and computes the same instant
feedparser's handler for that form would; any other string, and any value
those handlers would refuse (a 31st of June, a leap second, a year out of
range), goes to feedparser itself. tests/test_dates.py holds both to the same
answers on a large table and on random strings.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta

__all__ = ["from_struct_time", "parse_date"]

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
#: The zone names of feedparser's RFC 822 handler that feeds use, in hours.
_ZONES = {"GMT": 0, "UT": 0, "UTC": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
          "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) ([A-Z][a-z]{2}) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:([A-Z]{1,3})|([+-])([0-9]{2})([0-9]{2}))")
#: Fractions of a second: feedparser truncates them; more than 9 digits could
#: round up to the next second through its float().
_W3DTF = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))")


def parse_date(text: str) -> datetime | None:
    """A feed's date text as feedparser reads it, as an aware UTC datetime (None: no date)."""
    text = text.strip()
    m = _RFC822.fullmatch(text)
    if m is not None:
        day, month, year, hour, minute, second, zone, sign, zh, zm = m.groups()
        hours = _ZONES.get(zone) if zone is not None else int(zh)
        month_number = _MONTHS.get(month)
        if hours is not None and month_number is not None:
            minutes = 0 if zone is not None else int(zm)
            when = _instant(int(year), month_number, int(day), int(hour), int(minute),
                            int(second), -hours if sign == "-" else hours,
                            -minutes if sign == "-" else minutes)
            if when is not None:
                return when
    else:
        m = _W3DTF.fullmatch(text)
        if m is not None:
            year, month, day, hour, minute, second, sign, zh, zm = m.groups()
            hours = int(zh) if zh is not None else 0
            minutes = int(zm) if zm is not None else 0
            when = _instant(int(year), int(month), int(day), int(hour), int(minute),
                            int(second), -hours if sign == "-" else hours,
                            -minutes if sign == "-" else minutes)
            if when is not None:
                return when
    return from_struct_time(_feedparser_date(text)) if text else None


def _feedparser_date(text: str) -> time.struct_time | None:
    """feedparser's own parser, imported (with all it imports) only for the forms
    the regular expressions above leave to it."""
    from feedparser.datetimes import _parse_date

    got: time.struct_time | None = _parse_date(text)
    return got


def _instant(year: int, month: int, day: int, hour: int, minute: int, second: int,
             zone_hours: int, zone_minutes: int) -> datetime | None:
    """The instant both handlers compute (local time less the zone's offset), or None
    where they would refuse it or might not agree: then feedparser decides."""
    if not 1900 <= year <= 2999:
        return None
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    if zone_hours or zone_minutes:
        return local - timedelta(hours=zone_hours, minutes=zone_minutes)
    return local


def from_struct_time(value: time.struct_time | None) -> datetime | None:
    """feedparser's UTC time tuple as an aware datetime (None if it has none or is out of range)."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None
