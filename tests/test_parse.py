"""parse_feed against real feeds from news sites (tests/data, copied from ../shared/data)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.parse import parse_document, parse_feed, plain_text, poll_hint

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(("name", "count", "first_title"), [
    pytest.param("headlines-2021-10-17_cnn.xml", 50,
                 "An antiviral pill is being heralded", id="cnn-rss"),
    pytest.param("node-feedparser_tpm.atom", 20, "Hannity Announces Fox", id="tpm-atom"),
    pytest.param("rss-parser_encoding-jn-pt.rss", 40, "Mãe de utente", id="iso-8859-1"),
    pytest.param("greatfire_bbc-chinese.xml", 66, "萨达姆之墓", id="chinese"),
])
def test_real_feeds(name: str, count: int, first_title: str) -> None:
    entries = parse_feed((DATA / name).read_bytes(), "src")
    assert len(entries) == count
    assert entries[0].title.startswith(first_title)
    assert all(e.feed == "src" and e.key for e in entries)
    assert len({e.key for e in entries}) == len(entries)
    assert all("<" not in e.summary or "&lt;" in e.summary for e in entries[:5])


def test_key_is_guid_else_canonical_link() -> None:
    rss = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>A</title><link>https://x.org/a?utm_source=rss</link><guid>g-1</guid></item>
    <item><title>B</title><link>https://x.org/b?utm_source=rss</link></item>
    <item><title>B again</title><link>https://x.org/b?utm_source=rss</link></item>
    </channel></rss>"""
    entries = parse_feed(rss, "f", canonicalize=lambda u: u.split("?")[0])
    assert [e.key for e in entries] == ["g-1", "https://x.org/b"]  # repeated item dropped
    assert entries[1].canonical_url == "https://x.org/b"


def test_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_feed(b"<html><body>Service unavailable</body></html>" * 3, "f")
    with pytest.raises(ParseError):
        parse_feed(b"\x00\x01 not xml at all", "f")


def test_plain_text_strips_markup_and_scripts() -> None:
    assert plain_text("<p>Hello <b>world</b> &amp; <script>alert(1)</script>all</p>") == \
        "Hello world & all"


@pytest.mark.parametrize(("ttl", "period", "frequency", "hint"), [
    pytest.param("90", None, None, timedelta(minutes=90), id="ttl"),
    pytest.param(" 60 ", None, None, timedelta(hours=1), id="ttl-spaced"),
    pytest.param("0", None, None, None, id="ttl-zero"),
    pytest.param("-3", None, None, None, id="ttl-negative"),
    pytest.param("1e5", None, None, None, id="ttl-float"),
    pytest.param("\u00b2", None, None, None, id="ttl-superscript-digit"),
    pytest.param("\u0663", None, None, None, id="ttl-arabic-digit"),
    pytest.param("9" * 20, None, None, timedelta(minutes=9_999_999), id="ttl-beyond-timedelta"),
    pytest.param("9" * 5000, None, None, timedelta(minutes=9_999_999),
                 id="ttl-beyond-int-str-limit"),
    pytest.param(None, "hourly", "2", timedelta(minutes=30), id="sy"),
    pytest.param(None, "Daily", "\u00b2", timedelta(days=1), id="sy-odd-frequency"),
    pytest.param(None, "hourly", "0", timedelta(hours=1), id="sy-zero-frequency"),
    pytest.param("30", "hourly", None, timedelta(hours=1), id="the-longer"),
    pytest.param(None, "fortnightly", None, None, id="unknown-period"),
])
def test_poll_hint(ttl: str | None, period: str | None, frequency: str | None,
                   hint: timedelta | None) -> None:
    assert poll_hint(ttl, period, frequency) == hint


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "feedparser"])
def test_a_ttl_of_any_size_is_a_hint_not_an_error(fast: bool) -> None:
    body = (b"<rss version='2.0'><channel><title>t</title><ttl>" + b"9" * 30 + b"</ttl><item>"
            b"<title>A</title><link>https://x.org/a</link></item></channel></rss>")
    parsed = parse_document(body, "f", fast=fast)
    assert [e.title for e in parsed.entries] == ["A"]
    assert parsed.hint == timedelta(minutes=9_999_999)


@pytest.mark.parametrize("body", [
    pytest.param(b"", id="empty"),
    pytest.param(b"<error><code>AccessDenied</code></error>", id="xml-error-document"),
    pytest.param(b"<html><body><form action='/login'>Sign in</form></body></html>",
                 id="login-page"),
])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "feedparser"])
def test_a_body_that_is_no_feed_is_an_error_even_if_well_formed(body: bytes, fast: bool) -> None:
    """Served as a feed with a 200, such a body means the feed stopped working: it
    must show as failing, not as a feed that had no news."""
    with pytest.raises(ParseError, match="not a feed"):
        parse_document(body, "f", fast=fast, content_type="application/rss+xml")


@pytest.mark.parametrize("body", [
    pytest.param(b"<rss version='2.0'><channel><title>t</title></channel></rss>", id="rss"),
    pytest.param(b"<feed xmlns='http://www.w3.org/2005/Atom'><title>t</title></feed>",
                 id="atom"),
])
def test_a_feed_with_no_items_is_no_error(body: bytes) -> None:
    for fast in (True, False):
        assert parse_document(body, "f", fast=fast).entries == ()
