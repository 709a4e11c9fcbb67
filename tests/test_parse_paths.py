"""The fast parse path (lxml) and feedparser give the same entries.

Every feed in tests/data and a corpus of feedparser-style edge cases is parsed
both ways; the entries must be equal field by field. ``fast`` says whether the
fast path is expected to take the document (True) or step aside for
feedparser (False): a fast path that declined everything would agree
trivially.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.parse import parse_document
from monitor.urls import canonical_url

DATA = Path(__file__).parent / "data"

A = "http://www.w3.org/2005/Atom"


def rss(items: str, *, head: str = "", ns: str = "", decl: str = "utf-8") -> bytes:
    return (f"<?xml version='1.0' encoding='{decl}'?>\n<rss version='2.0'{ns}><channel>"
            f"<title>T</title><link>https://example.org/</link>{head}{items}"
            "</channel></rss>").encode(decl)


def atom(entries: str, *, attrs: str = "") -> bytes:
    return (f"<?xml version='1.0' encoding='utf-8'?>\n<feed xmlns='{A}'{attrs}><title>T</title>"
            f"<id>urn:feed</id><updated>2026-11-25T12:00:00Z</updated>{entries}</feed>").encode()


CORPUS = [
    pytest.param(rss("<item><title>A &amp; B</title><link>https://x.org/a</link>"
                     "<description><![CDATA[<p>Hello <b>world</b> &amp; all</p>]]></description>"
                     "<pubDate>Wed, 25 Nov 2026 11:00:00 GMT</pubDate></item>"),
                 True, id="cdata-description"),
    pytest.param(rss("<item><title>&lt;b&gt;Bold&lt;/b&gt; claim</title><link>https://x.org/b</link>"
                     "<description>&lt;p&gt;escaped &amp;amp; markup&lt;/p&gt;</description></item>"),
                 True, id="escaped-markup-title-looks-like-html"),
    pytest.param(rss("<item><title>Why &lt;!channel&gt; pings everyone</title>"
                     "<link>https://x.org/c</link></item>"),
                 True, id="plain-title-with-angle-brackets"),
    pytest.param(rss("<item><title>Caf&#233; &#x2014; na&#239;ve</title><link>https://x.org/d</link>"
                     "</item>"),
                 True, id="numeric-character-references"),
    pytest.param(rss("<item><title>nbsp&nbsp;here</title><link>https://x.org/e</link></item>"),
                 False, id="html-entity-not-xml"),
    pytest.param(rss("<item><title>No link</title><guid>https://x.org/permalink</guid></item>"),
                 True, id="guid-is-permalink"),
    pytest.param(rss("<item><title>Not a link</title><guid isPermaLink='false'>abc-1</guid>"
                     "</item>"),
                 True, id="guid-not-permalink"),
    pytest.param(rss("<item><guid>https://x.org/g</guid><link>https://x.org/l</link>"
                     "<title>guid first</title></item>"),
                 True, id="link-after-guid-wins"),
    pytest.param(rss("<item><link>https://x.org/l2</link><title>link first</title>"
                     "<guid>https://x.org/g2</guid></item>"),
                 True, id="link-before-guid"),
    pytest.param(rss("<item><title>rel</title><link>/news/1?utm_source=rss&amp;id=3</link></item>"
                     "<item xml:base='https://base.example/dir/'><title>based</title>"
                     "<link>story.html</link></item>"),
                 True, id="relative-links-and-xml-base"),
    pytest.param(rss("<item><title>Only content</title><link>https://x.org/oc</link>"
                     "<content:encoded><![CDATA[<div>Full <i>text</i></div>]]></content:encoded>"
                     "</item>"
                     "<item><title>Both</title><link>https://x.org/both</link>"
                     "<content:encoded>&lt;p&gt;content&lt;/p&gt;</content:encoded>"
                     "<description>the description</description></item>",
                     ns=" xmlns:content='http://purl.org/rss/1.0/modules/content/'"),
                 True, id="content-encoded"),
    pytest.param(rss("<item><title>dc</title><link>https://x.org/dc</link>"
                     "<dc:date>2026-11-25T10:30:00+01:00</dc:date></item>"
                     "<item><title>both</title><link>https://x.org/dc2</link>"
                     "<dc:date>2026-11-25T10:30:00Z</dc:date>"
                     "<pubDate>Tue, 24 Nov 2026 08:00:00 -0500</pubDate></item>",
                     ns=" xmlns:dc='http://purl.org/dc/elements/1.1/'"),
                 True, id="dc-date-iso"),
    pytest.param(rss("<item><title>Dates</title><link>https://x.org/d1</link>"
                     "<pubDate>Wed, 25 Nov 2026 11:00:00 EST</pubDate></item>"
                     "<item><title>Bad date</title><link>https://x.org/d2</link>"
                     "<pubDate>sometime last week</pubDate></item>"
                     "<item><title>Short</title><link>https://x.org/d3</link>"
                     "<pubDate>25 Nov 2026 11:00 +0100</pubDate></item>"
                     "<item><title>ISO in pubDate</title><link>https://x.org/d4</link>"
                     "<pubDate>2026-11-25T11:00:00Z</pubDate></item>"),
                 True, id="rfc822-variants"),
    pytest.param(rss("<item><title>  spaced \n\t out  </title><link> https://x.org/s </link>"
                     "<description>  </description></item>"
                     "<item><link>https://x.org/untitled</link></item>"
                     "<item><description>nothing else</description></item>"),
                 True, id="missing-fields-and-whitespace"),
    pytest.param(rss("<item><title>dup</title><link>https://x.org/same</link></item>"
                     "<item><title>dup again</title><link>https://x.org/same</link></item>"),
                 True, id="repeated-item"),
    pytest.param(rss("<item><title>Ação é ótima</title><link>https://x.org/pt</link>"
                     "<description>Açúcar</description></item>", decl="iso-8859-1"),
                 True, id="iso-8859-1"),
    pytest.param(rss("<item><title>windows</title><link>https://x.org/w</link></item>",
                     decl="windows-1252"),
                 False, id="windows-1252-to-feedparser"),
    pytest.param(rss("<item><title>t</title><link>https://x.org/m</link>"
                     "<media:title>media title</media:title></item>",
                     ns=" xmlns:media='http://search.yahoo.com/mrss/'"),
                 False, id="media-title-to-feedparser"),
    pytest.param(rss("<item><title>t</title><link>https://x.org/mc</link>"
                     "<media:content url='https://x.org/i.jpg' medium='image'/></item>",
                     ns=" xmlns:media='http://search.yahoo.com/mrss/'"),
                 True, id="media-content-is-harmless"),
    pytest.param(rss("<item><title>t</title><link>https://x.org/i</link>"
                     "<itunes:summary>pod</itunes:summary></item>",
                     ns=" xmlns:itunes='http://www.itunes.com/dtds/podcast-1.0.dtd'"),
                 False, id="itunes-summary-to-feedparser"),
    pytest.param(rss("<item><title>ttl</title><link>https://x.org/ttl</link></item>",
                     head="<ttl>90</ttl><sy:updatePeriod>daily</sy:updatePeriod>"
                          "<sy:updateFrequency>4</sy:updateFrequency>",
                     ns=" xmlns:sy='http://purl.org/rss/1.0/modules/syndication/'"),
                 True, id="ttl-and-sy"),
    pytest.param(rss("<item><title>x</title><link>https://x.org/x</link></item>")[:-30],
                 False, id="truncated-to-feedparser"),
    pytest.param(b"<?xml version='1.0'?><!DOCTYPE rss SYSTEM 'http://my.netscape.com/publish/"
                 b"formats/rss-0.91.dtd'><rss version='0.91'><channel><title>t</title><item>"
                 b"<title>old</title><link>https://x.org/old</link></item></channel></rss>",
                 False, id="doctype-to-feedparser"),
    pytest.param(b"<?xml version='1.0'?><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-"
                 b"syntax-ns#' xmlns='http://purl.org/rss/1.0/'><channel><title>t</title></channel>"
                 b"<item><title>rdf</title><link>https://x.org/rdf</link></item></rdf:RDF>",
                 False, id="rss1-to-feedparser"),
    pytest.param(atom("<entry><title type='html'>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; more</title>"
                      "<link href='https://x.org/a1'/><id>urn:a1</id>"
                      "<updated>2026-11-25T11:00:00Z</updated>"
                      "<summary type='html'>&lt;p&gt;html summary&lt;/p&gt;</summary></entry>"),
                 True, id="atom-html"),
    pytest.param(atom("<entry><title type='text'>Plain &lt;tag&gt; &amp;amp; text</title>"
                      "<link rel='alternate' type='text/html' href='https://x.org/a2'/>"
                      "<link rel='self' href='https://x.org/a2.atom'/>"
                      "<id>urn:a2</id><published>2026-11-25T10:00:00+02:00</published>"
                      "<updated>2026-11-25T11:00:00Z</updated>"
                      "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
                      "<p>One <b>bold</b></p><p>Two</p></div></content></entry>"),
                 True, id="atom-text-title-xhtml-content"),
    pytest.param(atom("<entry><title>no link</title><id>https://x.org/id-as-link</id></entry>"
                      "<entry><title>tag id</title><id>tag:x.org,2026:1</id>"
                      "<link rel='enclosure' href='https://x.org/a.mp3'/></entry>"),
                 True, id="atom-id-as-link"),
    pytest.param(atom("<entry><title>relative</title><link href='post/1'/><id>urn:r</id></entry>",
                      attrs=" xml:base='https://base.example/blog/'"),
                 True, id="atom-xml-base"),
    pytest.param(atom("<entry><title>content first</title><link href='https://x.org/c1'/>"
                      "<id>urn:c1</id><content type='html'>&lt;i&gt;content&lt;/i&gt;</content>"
                      "<summary>the summary</summary></entry>"
                      "<entry><title>binary</title><link href='https://x.org/c2'/>"
                      "<id>urn:c2</id><content type='image/png'>iVBORw0KGgo=</content></entry>"),
                 True, id="atom-content-types"),
    pytest.param(atom("<entry><title>src</title><link href='https://x.org/src'/><id>urn:s</id>"
                      "<content src='https://x.org/body.html' type='text/html'/></entry>"),
                 False, id="atom-out-of-line-content-to-feedparser"),
    pytest.param(b"<?xml version='1.0'?><feed version='0.3' xmlns='http://purl.org/atom/ns#'>"
                 b"<title>t</title><entry><title>old atom</title>"
                 b"<link rel='alternate' type='text/html' href='https://x.org/o3'/>"
                 b"<id>urn:o3</id><issued>2004-01-01T00:00:00Z</issued></entry></feed>",
                 False, id="atom03-to-feedparser"),
    pytest.param(rss("<item><title>First</title><title>Second</title>"
                     "<link>https://x.org/t1</link><link>https://x.org/t2</link></item>"),
                 True, id="rss-two-titles"),
    pytest.param(atom("<entry><title>First</title><title type='html'>&lt;b&gt;Second</title>"
                      "<link href='https://x.org/t3'/><id>urn:t3</id></entry>"),
                 True, id="atom-two-titles"),
    pytest.param(b"<?xml version='1.0' encoding='ISO-8859-1'?><rss version='2.0'><channel>"
                 b"<title>T</title><item><title>\x93Quoted\x94 caf\xe9 \x97 dash</title>"
                 b"<link>https://x.org/w</link></item></channel></rss>",
                 False, id="windows-1252-bytes-declared-latin-1-to-feedparser"),
    pytest.param(rss("<item><title>caf\u00e9 cr\u00e8me</title><link>https://x.org/l</link></item>",
                     decl="iso-8859-1"),
                 True, id="latin-1"),
    pytest.param(rss("<item><title>a &#x85; b &#155; c &#x2019; d</title>"
                     "<link>https://x.org/c1</link></item>"),
                 False, id="c1-references-to-feedparser"),
    pytest.param(atom("<entry><title>x</title><link href='https://x.org/tc'/><id>urn:tc</id>"
                      "<content type='text'>plain &lt;b&gt; content</content></entry>"),
                 True, id="atom-text-content-keeps-its-brackets"),
]


@pytest.mark.parametrize(("body", "fast"), CORPUS)
def test_paths_agree_on_edge_cases(body: bytes, fast: bool) -> None:
    got = parse_document(body, "f", canonicalize=canonical_url)
    want = parse_document(body, "f", canonicalize=canonical_url, fast=False)
    assert got.fast is fast
    assert got.entries == want.entries
    assert got.hint == want.hint


@pytest.mark.parametrize("path", sorted(p for p in DATA.iterdir()
                                        if p.suffix in (".xml", ".atom", ".rss")),
                         ids=lambda p: p.name)
def test_paths_agree_on_every_sample_feed(path: Path) -> None:
    body = path.read_bytes()
    got = parse_document(body, path.stem, canonicalize=canonical_url)
    want = parse_document(body, path.stem, canonicalize=canonical_url, fast=False)
    assert got.entries == want.entries and got.entries
    assert got.hint == want.hint


def test_fast_path_takes_most_sample_feeds() -> None:
    """Most real feeds are well-formed: the fast path must not be a dead letter."""
    taken = [parse_document(p.read_bytes(), "f").fast for p in DATA.iterdir()
             if p.suffix in (".xml", ".atom", ".rss")]
    assert sum(taken) >= len(taken) - 1


def test_summaries_are_plain_text_on_both_paths() -> None:
    body = rss("<item><title>t</title><link>https://x.org/p</link><description>"
               "<![CDATA[<p>Hi <a href='/x'>there</a><script>alert(1)</script></p>]]>"
               "</description></item>")
    for fast in (True, False):
        (e,) = parse_document(body, "f", fast=fast).entries
        assert e.summary == "Hi there"
