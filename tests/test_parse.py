"""parse_feed against real feeds from news sites (tests/data, copied from ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.parse import parse_feed, plain_text

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
