"""monitor.dates reads every date string as feedparser's own date parser does.

Its regular expressions take the two forms nearly every feed uses; whatever they
take must come out as the instant feedparser computes, and what they leave goes
to feedparser. Checked on a table of both forms with every field at and beyond
its limits, near misses spelt other ways, and random strings.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from feedparser.datetimes import _parse_date as feedparser_date
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import dates
from monitor.dates import from_struct_time, parse_date


def reference(text: str) -> datetime | None:
    text = text.strip()
    return from_struct_time(feedparser_date(text)) if text else None


def taken(text: str) -> bool:
    """Whether monitor.dates answers without feedparser (one of its forms, in range)."""
    called = []
    real = dates._feedparser_date
    dates._feedparser_date = lambda t: called.append(t) or real(t)
    try:
        parse_date(text)
    finally:
        dates._feedparser_date = real
    return not called


RFC_DAYS = ["", "Mon, ", "Thu, ", "mon, ", "Thursday, ", "Wed,"]
RFC_DATES = ["1 Jan", "29 Feb", "30 Feb", "31 Apr", "31 Dec", "0 Mar", "32 May", "15 Sept",
             "15 nov", "Nov 15", "7 Oct"]
RFC_YEARS = ["1899", "1900", "2000", "2024", "2999", "3000", "26", "0026"]
RFC_TIMES = ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "23:59:60", "7:05:09", "07:05"]
RFC_ZONES = ["GMT", "UT", "UTC", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT",
             "+0000", "-0500", "+0530", "-1200", "+1400", "+9959", "-9999", "+05:30", "gmt",
             "CET", "A", "Y", "GMT+1", "GMT-05:00", "Etc/GMT", "", "+05", "-00"]


def test_rfc822_table_agrees_with_feedparser() -> None:
    checked = hits = 0
    for day, date, year, clock, zone in itertools.product(RFC_DAYS, RFC_DATES, RFC_YEARS,
                                                          RFC_TIMES, RFC_ZONES):
        text = f"{day}{date} {year} {clock} {zone}".strip()
        assert parse_date(text) == reference(text), text
        checked += 1
        hits += taken(text)
    assert checked > 50_000
    assert hits > 1_000, "the fast form takes its share of the table"


def test_the_common_forms_are_read_without_feedparser() -> None:
    for text in ("Wed, 25 Nov 2026 11:00:00 GMT", "Sun, 17 Oct 2021 14:02:09 +0000",
                 "Sat, 16 Oct 2021 23:50:00 -0400", "25 Nov 2026 11:00:00 EST",
                 "Tue, 09 Nov 2021 10:00:00 Z", "2026-11-25T11:00:00Z",
                 "2021-10-17T08:00:00+08:00", "2021-10-16T22:13:05-04:00",
                 "2021-10-16T22:13:05.123456Z", "  2026-11-25T11:00:00Z\n"):
        assert taken(text), text
        assert parse_date(text) == reference(text) is not None, text


W3_DATES = ["2026-11-25", "1900-01-01", "1899-12-31", "2999-12-31", "3000-01-01",
            "2024-02-29", "2023-02-29", "2026-13-01", "2026-00-10", "2026-04-31",
            "2026-4-05", "20261125"]
W3_SEPS = ["T", "t", " "]
W3_TIMES = ["00:00:00", "23:59:59", "24:00:00", "10:60:00", "23:59:60", "10:30", "10:30:00.5",
            "10:30:00.123456789", "23:59:59.9999999999", "10:30:00,5", "1:02:03"]
W3_ZONES = ["Z", "z", "+00:00", "-05:00", "+05:30", "+14:00", "-99:99", "+0530", "+05", "",
            " Z", "GMT", "+5:30"]


def test_w3dtf_table_agrees_with_feedparser() -> None:
    checked = hits = 0
    for date, sep, clock, zone in itertools.product(W3_DATES, W3_SEPS, W3_TIMES, W3_ZONES):
        text = f"{date}{sep}{clock}{zone}"
        assert parse_date(text) == reference(text), text
        checked += 1
        hits += taken(text)
    assert hits > 80


def test_what_is_no_date_is_none() -> None:
    for text in ("", "   ", "sometime last week", "Wed, 25 Nov", "2026", "T", "Z"):
        assert parse_date(text) == reference(text), text


_digits = st.integers(0, 99).map(str) | st.integers(0, 99).map("{:02d}".format)
_rfc = st.builds(
    "{}{} {} {} {}:{}:{} {}".format,
    st.sampled_from(RFC_DAYS), _digits,
    st.sampled_from(["Jan", "Feb", "Jun", "Oct", "Dec", "jan", "Jux"]),
    st.integers(1890, 3010).map(str) | _digits,
    _digits, _digits, _digits,
    st.sampled_from(RFC_ZONES) | st.builds("{}{:02d}{:02d}".format, st.sampled_from("+-"),
                                           st.integers(0, 99), st.integers(0, 99)))
_w3 = st.builds(
    "{:04d}-{}-{}{}{}:{}:{}{}{}".format,
    st.integers(1, 9999), _digits, _digits, st.sampled_from(W3_SEPS), _digits, _digits, _digits,
    st.sampled_from(["", ".5", ".999999999", ".99999999999"]),
    st.sampled_from(W3_ZONES) | st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"),
                                          st.integers(0, 99), st.integers(0, 99)))


@settings(max_examples=1500, deadline=None)
@given(text=_rfc | _w3 | st.text(st.sampled_from("0123456789 :+-TZ,ADGMNSTUacdeimnotuv"),
                                 max_size=32))
def test_random_dates_agree_with_feedparser(text: str) -> None:
    assert parse_date(text) == reference(text)


def test_an_answer_is_aware_utc() -> None:
    got = parse_date("Wed, 25 Nov 2026 11:00:00 +0130")
    assert got == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert got is not None and got.tzinfo is UTC
