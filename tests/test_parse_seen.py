"""A parse that is told what the last one saw (``seen``) makes only the items that changed.

The rule checked everywhere: parsing body B with the ``seen`` of an earlier
parse gives exactly the entries a full parse of B gives, less those the earlier
parse had made byte for byte the same, with the same ``seen`` for next time,
the same dates and the same count of items. Repeated keys and ``max_entries``
must come out as in a full parse, because a recognised item still holds its
key and its place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import parse as parse_module
from monitor.errors import ParseError
from monitor.parse import ParsedFeed, parse_document
from monitor.urls import canonical_url

DATA = Path(__file__).parent / "data"
FEEDS = sorted(p for p in DATA.iterdir() if p.suffix in (".xml", ".rss", ".atom"))
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def parse(body: bytes, seen: bytes = b"", *, fast: bool = True,
          max_entries: int = 1000) -> ParsedFeed:
    return parse_document(body, "f", canonicalize=canonical_url, now=NOW, fast=fast,
                          max_entries=max_entries, seen=seen)


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """(guid, title, summary) per item; an empty guid leaves the item to its link. The
    link and date follow from the title, as an item's fields do not move with it."""
    out = []
    for guid, title, summary in items:
        g = f"<guid isPermaLink='false'>{guid}</guid>" if guid else ""
        out.append(f"<item><title>{title}</title><link>https://x.org/{title[:2]}</link>{g}"
                   f"<description>{summary}</description>"
                   f"<pubDate>Wed, {10 + len(title)} Nov 2026 11:00:00 GMT</pubDate></item>")
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>T</title>"
            f"<link>https://x.org/</link>{''.join(out)}</channel></rss>").encode()


def check_incremental(before: bytes, after: bytes, *, fast: bool = True,
                      max_entries: int = 1000) -> ParsedFeed:
    first = parse(before, fast=fast, max_entries=max_entries)
    full = parse(after, fast=fast, max_entries=max_entries)
    got = parse(after, first.seen, fast=fast, max_entries=max_entries)
    made_before = set(first.entries)
    assert got.entries == tuple(e for e in full.entries if e not in made_before)
    assert got.unchanged == len(full.entries) - len(got.entries)
    assert (got.seen, got.dates, got.hint, got.fast) == (full.seen, full.dates, full.hint,
                                                         full.fast)
    return got


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "feedparser"])
@pytest.mark.parametrize("path", FEEDS, ids=[p.name for p in FEEDS])
def test_a_body_parsed_again_with_what_it_saw_makes_nothing(path: Path, fast: bool) -> None:
    body = path.read_bytes()
    full = parse(body, fast=fast)
    assert full.entries, "the sample feed has entries"
    again = check_incremental(body, body, fast=fast)
    assert again.entries == ()
    assert again.unchanged == len(full.entries)


def test_only_new_and_edited_items_are_made() -> None:
    v1 = rss([("a", "Alpha", "one"), ("b", "Beta", "two"), ("c", "Gamma", "three")])
    v2 = rss([("n", "New", "zero"), ("a", "Alpha", "one"), ("b", "Beta edited", "two"),
              ("c", "Gamma", "three")])
    got = check_incremental(v1, v2)
    assert [(e.key, e.title) for e in got.entries] == [("n", "New"), ("b", "Beta edited")]
    assert got.unchanged == 2


def test_a_repeated_key_loses_to_a_recognised_item_as_in_a_full_parse() -> None:
    # "a" first, then an item repeating its key: a full parse keeps the first.
    v1 = rss([("a", "Alpha", "one")])
    v2 = rss([("a", "Alpha", "one"), ("a", "Impostor", "two"), ("d", "Delta", "x")])
    got = check_incremental(v1, v2)
    assert [e.key for e in got.entries] == ["d"]


def test_recognised_items_count_towards_max_entries() -> None:
    v1 = rss([("a", "Alpha", "1"), ("b", "Beta", "2")])
    v2 = rss([("a", "Alpha", "1"), ("b", "Beta", "2"), ("c", "Gamma", "3"), ("d", "D", "4")])
    got = check_incremental(v1, v2, max_entries=3)
    assert [e.key for e in got.entries] == ["c"]
    assert got.unchanged == 2


ITEM = st.tuples(st.sampled_from(["", "a", "b", "c", "d"]), st.sampled_from(["T1", "T2", "T3"]),
                 st.sampled_from(["s", "t"]))


@settings(max_examples=150, deadline=None)
@given(before=st.lists(ITEM, max_size=8), after=st.lists(ITEM, max_size=8),
       max_entries=st.integers(1, 9), fast=st.booleans())
def test_incremental_parse_equals_a_full_one(before: list[tuple[str, str, str]],
                                             after: list[tuple[str, str, str]],
                                             max_entries: int, fast: bool) -> None:
    check_incremental(rss(before), rss(after), fast=fast, max_entries=max_entries)


def test_an_item_whose_date_alone_changed_is_made_again() -> None:
    v1 = rss([("a", "Alpha", "one"), ("b", "Beta", "two")])
    v2 = v1.replace(b"Wed, 15 Nov 2026 11:00", b"Wed, 15 Nov 2026 12:30", 1)
    assert v2 != v1, "the first item's date is rewritten"
    got = check_incremental(v1, v2)
    assert [(e.key, e.published) for e in got.entries] == [
        ("a", datetime(2026, 11, 15, 12, 30, tzinfo=UTC))]


def test_a_recognised_items_date_still_counts_among_the_feeds_dates() -> None:
    body = rss([("a", "Alpha", "one"), ("b", "Beta", "two")])
    again = parse(body, parse(body).seen)
    assert again.entries == () and again.unchanged == 2
    assert sorted(again.dates) == [datetime(2026, 11, 14, 11, tzinfo=UTC).timestamp(),
                                   datetime(2026, 11, 15, 11, tzinfo=UTC).timestamp()]


def test_a_memo_of_an_earlier_format_vouches_for_nothing() -> None:
    # Earlier releases wrote 16 bytes an item (fingerprint, key id) and no format
    # byte, then format byte 2 and 24 bytes an item (fingerprint, key id, date). Such
    # a memo, read from a store written then, makes the parse a full one, which
    # writes a memo of today's format.
    body = rss([("a", "Alpha", "one"), ("b", "Beta", "two")])
    full = parse(body)
    by_fields = parse(body, fast=False).seen
    assert by_fields[:2] == b"\x03f" and len(by_fields) == 10 + 2 * 24
    records = by_fields[10:]
    format1 = b"".join(records[i:i + 16] for i in range(0, len(records), 24))
    format2 = b"\x02" + records
    for old in (format1, format2):
        got = parse(body, old)
        assert (got.entries, got.unchanged, got.seen) == (full.entries, 0, full.seen)
        assert got.seen[:1] == b"\x03"


# ------------------------------------------------- items recognised by their bytes
#
# Where the fast path read the last body and its items lined up with the bytes
# between their end tags, the memo holds a hash of each item's bytes, and a known
# item is not parsed at all (monitor/rawitems.py): only the rest of the body is.
# The same rule holds; these tests also count the items read, and throw bodies at
# the byte-level cut that would fool a cut that trusted itself.


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The titles of the items the fast path reads, as it reads them."""
    calls: list[str] = []
    for name in ("_rss_item", "_atom_item"):
        real = getattr(parse_module, name)

        def counting(item: Any, utf8: bool, real: Any = real) -> Any:
            raw = real(item, utf8)
            calls.append(raw.title)
            return raw

        monkeypatch.setattr(parse_module, name, counting)
    return calls


def item(n: int, extra: str = "") -> str:
    return (f"<item><title>Story {n}</title><link>https://x.org/{n}</link>"
            f"<guid isPermaLink='false'>g{n}</guid><description><![CDATA[<p>Text {n} "
            f"&amp; more</p>]]></description><pubDate>Wed, 1{n % 10} Nov 2026 11:00:00 GMT"
            f"</pubDate>{extra}</item>")


def doc(items: str, *, head: str = "", channel: str = "", rss_attrs: str = "",
        decl: str = "<?xml version='1.0' encoding='utf-8'?>") -> bytes:
    return (f"{decl}<rss version='2.0'{rss_attrs}><channel{channel}><title>T</title>"
            f"<link>https://x.org/</link>{head}{items}</channel></rss>").encode()


ITEMS = "\n".join(item(n) for n in range(1, 8))


def test_a_new_item_on_top_is_the_only_one_read(reads: list[str]) -> None:
    before = doc(ITEMS)
    after = doc(item(0) + "\n" + ITEMS.rsplit("\n", 1)[0])
    first = parse(before)
    assert first.seen[:2] == b"\x03i"
    reads.clear()
    got = parse(after, first.seen)
    assert reads == ["Story 0"]
    assert [e.title for e in got.entries] == ["Story 0"]
    assert got.unchanged == 6
    check_incremental(before, after)


def test_an_atom_entry_on_top_is_the_only_one_read(reads: list[str]) -> None:
    def entry(n: int) -> str:
        return (f"<entry><title type='html'>Entry &lt;b&gt;{n}&lt;/b&gt;</title>"
                f"<link href='/e/{n}'/><id>urn:e:{n}</id>"
                f"<updated>2026-11-2{n % 10}T10:00:00Z</updated><summary>s {n}</summary></entry>")

    def feed(ns: list[int], base: str = "https://x.org/") -> bytes:
        return (f"<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/"
                f"Atom' xml:base='{base}'><title>A</title><id>urn:a</id><updated>2026-11-25T"
                f"12:00:00Z</updated>{''.join(entry(n) for n in ns)}</feed>").encode()

    first = parse(feed([1, 2, 3, 4]))
    assert first.seen[:2] == b"\x03e"
    reads.clear()
    parse(feed([0, 1, 2, 3]), first.seen)
    assert reads == ["Entry <b>0</b>"]
    check_incremental(feed([1, 2, 3, 4]), feed([0, 1, 2, 3]))
    # another xml:base reads every entry again, with its new links
    got = check_incremental(feed([1, 2, 3, 4]), feed([0, 1, 2, 3], "https://y.org/"))
    assert [e.link for e in got.entries] == [f"https://y.org/e/{n}" for n in (0, 1, 2, 3)]


def test_the_head_changing_alone_reads_no_item(reads: list[str]) -> None:
    before = doc(ITEMS, head="<lastBuildDate>Wed, 25 Nov 2026 11:00:00 GMT</lastBuildDate>")
    after = doc(ITEMS, head="<lastBuildDate>Wed, 25 Nov 2026 11:30:00 GMT</lastBuildDate>"
                "<ttl>45</ttl>")
    first = parse(before)
    reads.clear()
    got = parse(after, first.seen)
    assert reads == [] and got.entries == () and got.unchanged == 7
    assert got.hint is not None and got.hint.total_seconds() == 45 * 60
    check_incremental(before, after)


def body_variants() -> list[tuple[str, bytes, bytes]]:
    """(name, before, after): bodies at the cut's edges, each before/after pair
    checked against a full parse."""
    old = item(1)
    rest = "\n".join(item(n) for n in range(2, 6))
    base = doc(old + "\n" + rest)
    plain = item(1).replace("<![CDATA[<p>", "").replace("</p>]]>", "")  # no CDATA of its own
    plain_base = doc(plain + "\n" + rest)
    cdata_fake = (f"<item><title>Fake</title><link>https://x.org/f</link><description>"
                  f"<![CDATA[</item>{plain}<item>]]></description></item>")
    return [
        ("old-item-in-a-comment", base, doc(f"<!-- {old} -->\n" + rest)),
        ("old-item-in-cdata", plain_base,
         doc(item(9, f"<category><![CDATA[{plain}]]></category>") + "\n" + rest)),
        ("old-item-between-end-tags-in-cdata", plain_base, doc(cdata_fake + "\n" + rest)),
        ("old-item-in-an-attribute", base, doc(f"<category a='{old}'>c</category>" + rest)),
        ("old-item-in-a-pi", base, doc(f"<?pi {old} ?>\n" + rest)),
        ("end-tag-in-a-comment", base, doc(old + "<!-- </item> -->\n" + rest)),
        ("end-tag-in-cdata-of-an-old-item",
         doc(item(1, "<category><![CDATA[ </item> ]]></category>") + rest),
         doc(item(0) + item(1, "<category><![CDATA[ </item> ]]></category>") + rest)),
        ("nested-item", base, doc(f"<item><title>Outer</title>{old}</item>" + rest)),
        ("namespaced-item", base,
         doc(f"<x:item xmlns:x='urn:x'>{old[6:-7]}</x:item>" + old + rest)),
        ("item-in-another-namespace", base,
         doc("<item xmlns='urn:x'><title>Other</title></item>" + old + rest)),
        ("items-element", base, doc("<items>3</items>" + old + rest)),
        ("item-prefixed-name", base, doc("<itemCount>3</itemCount>" + old + rest)),
        ("self-closing-item", base, doc("<item/>" + old + rest)),
        ("end-tag-with-space", base, doc(old.replace("</item>", "</item >") + rest)),
        ("item-with-attributes", doc(old.replace("<item>", "<item xml:lang='en'>") + rest),
         doc(item(0) + old.replace("<item>", "<item xml:lang='en'>") + rest)),
        ("item-with-xml-base", doc(old.replace("<item>", "<item xml:base='https://b.org/'>")
                                   + rest),
         doc(item(0) + old.replace("<item>", "<item xml:base='https://b.org/'>") + rest)),
        ("xml-id-repeated", doc(old.replace("<item>", "<item xml:id='i1'>") + rest),
         doc(old.replace("<item>", "<item xml:id='i1'>") * 2 + rest)),
        ("repeated-old-item", base, doc(old + old + rest)),
        ("old-items-reordered", base, doc(rest + old)),
        ("an-item-edited", base, doc(old.replace("Story 1", "Story 1, updated") + rest)),
        ("channel-xml-base-changed", doc(old + rest, channel=" xml:base='https://a.org/'"),
         doc(old + rest, channel=" xml:base='https://b.org/'")),
        ("namespace-changed",
         doc(item(1, "<dc:date>2026-11-20T10:00:00Z</dc:date>") + rest,
             rss_attrs=" xmlns:dc='http://purl.org/dc/elements/1.1/'"),
         doc(item(1, "<dc:date>2026-11-20T10:00:00Z</dc:date>") + rest,
             rss_attrs=" xmlns:dc='urn:not-dc'")),
        ("namespace-moved-to-channel",
         doc(item(1, "<dc:date>2026-11-20T10:00:00Z</dc:date>") + rest,
             rss_attrs=" xmlns:dc='http://purl.org/dc/elements/1.1/'"),
         doc(item(1, "<dc:date>2026-11-20T10:00:00Z</dc:date>") + rest,
             channel=" xmlns:dc='http://purl.org/dc/elements/1.1/'")),
        ("encoding-changed", base,
         doc(old + rest, decl="<?xml version='1.0' encoding='iso-8859-1'?>")),
        ("doctype-added", base, doc(old + rest, decl="<?xml version='1.0'?><!DOCTYPE rss>")),
        ("entity-declared", base,
         doc(old.replace("Story 1", "Story &x;") + rest,
             decl="<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY x 'X'>]>")),
        ("truncated", base, doc(old + rest)[:-40]),
        ("truncated-in-an-item", base, doc(old + rest)[: len(doc(old)) - 30]),
        ("channel-elements-between-items", base,
         doc(old + "<ttl>60</ttl><!-- ad -->" + rest + "<category>c</category>")),
        ("ill-formed-new-item", base, doc(item(0).replace("</title>", "") + old + rest)),
        ("undeclared-prefix-in-new-item", base, doc(item(0, "<zz:x>1</zz:x>") + old + rest)),
        ("rss-version-1", base, doc(old + rest).replace(b"version='2.0'", b"version='1.0'")),
        ("not-a-feed", base, b"<html><body>" + old.encode() + rest.encode() + b"</body></html>"),
        ("crlf", doc(old + "\r\n" + rest), doc(item(0) + "\r\n" + old + "\r\n" + rest)),
        ("empty", base, doc("")),
    ]


def check_never_wrong(before: bytes, after: bytes) -> ParsedFeed | None:
    """What the fallbacks keep where the memo cannot vouch for a body (a full parse,
    or an item marked by its bytes last time and by its fields now): the entries of
    a full parse, less some of those made before, never one more or one missing
    that was not made before; the same seen, dates, hint and path. None for a body
    that is no feed (then neither parse takes it)."""
    try:
        full = parse(after)
    except ParseError:
        with pytest.raises(ParseError):
            parse(after, parse(before).seen)
        return None
    first = parse(before)
    got = parse(after, first.seen)
    assert (got.seen, got.dates, got.hint, got.fast) == (full.seen, full.dates, full.hint,
                                                         full.fast)
    made_before = set(first.entries)
    it = iter(full.entries)
    assert all(any(e == f for f in it) for e in got.entries), "in a full parse's order"
    assert {e for e in full.entries if e not in made_before} <= set(got.entries)
    assert got.unchanged == len(full.entries) - len(got.entries)
    return got


#: The variants a memo of items' bytes recognises item for item.
RECOGNISED = {"namespaced-item", "item-with-attributes", "item-with-xml-base",
              "repeated-old-item", "old-items-reordered", "an-item-edited",
              "namespace-moved-to-channel", "channel-elements-between-items", "crlf",
              "end-tag-in-cdata-of-an-old-item"}


@pytest.mark.parametrize(("name", "before", "after"), [pytest.param(n, b, a, id=n)
                                                       for n, b, a in body_variants()])
def test_bodies_at_the_cuts_edges_read_as_in_a_full_parse(name: str, before: bytes,
                                                          after: bytes) -> None:
    check_never_wrong(before, after)
    if name in RECOGNISED:
        check_incremental(before, after)


def test_a_changed_charset_reads_every_item_again(reads: list[str]) -> None:
    body = doc(ITEMS)
    first = parse_document(body, "f", content_type="text/xml; charset=utf-8")
    reads.clear()
    got = parse_document(body, "f", content_type="text/xml; Charset=UTF-8", seen=first.seen)
    assert got.entries == () and got.unchanged == 7 and reads == []
    got = parse_document(body, "f", content_type="application/rss+xml", seen=first.seen)
    assert len(reads) == 7 and len(got.entries) == 7 and got.unchanged == 0


def next_bodies(body: bytes) -> list[tuple[str, bytes]]:
    """A real feed's next bodies: a new item on top (its first one edited) with the
    last gone, an item edited in the middle, one removed, two swapped."""
    spans = [m.span() for m in re.finditer(rb"<(item|entry)[\s>].*?</\1\s*>", body, re.S)]
    if len(spans) < 3:
        return []
    first, mid, last = spans[0], spans[len(spans) // 2], spans[-1]

    def edited(span: tuple[int, int]) -> bytes:
        text = body[span[0]:span[1]]
        for old, new in ((b"</title>", b" (update)</title>"), (b"</guid>", b"-2</guid>"),
                         (b"</id>", b"-2</id>"), (b"</link>", b"?v=2</link>")):
            text = text.replace(old, new, 1)
        return text

    def at(span: tuple[int, int]) -> bytes:
        return body[span[0]:span[1]]

    return [
        ("new-on-top", body[:first[0]] + edited(first) + body[first[0]:last[0]] + body[last[1]:]),
        ("edited", body[:mid[0]] + edited(mid) + body[mid[1]:]),
        ("removed", body[:mid[0]] + body[mid[1]:]),
        ("swapped", body[:first[0]] + at(mid) + body[first[1]:mid[0]] + at(first)
         + body[mid[1]:]),
    ]


@pytest.mark.parametrize("path", FEEDS, ids=[p.name for p in FEEDS])
def test_real_feeds_next_bodies_read_as_in_a_full_parse(path: Path, reads: list[str]) -> None:
    body = path.read_bytes()
    first = parse(body)
    for _name, after in next_bodies(body):
        got = check_incremental(body, after)
        if first.fast and first.seen[1:2] in (b"i", b"e") and _name == "new-on-top":
            reads.clear()
            parse(after, first.seen)
            assert len(reads) <= 2, "the new item, and the first one if its piece holds the head"
            assert got.unchanged >= len(first.entries) - 2


# Items and what goes between them, at and beyond the cut's edges; a body is made of
# some of them, and the next body keeps some, drops some and adds others.
PLAIN_ITEMS = [item(n) for n in range(1, 6)]
TRICKY_ITEMS = [
    item(6, "<category><![CDATA[</item><item>]]></category>"),
    item(7, "<!-- </item> <item> -->"),
    item(8).replace("<item>", "<item xml:lang='en'>"),
    item(9).replace("<item>", "<item xml:base='https://b.org/dir/'>").replace(
        "https://x.org/9", "rel/9"),
    item(10).replace("<item>", "<item\n>").replace("</item>", "</item >"),
    "<item/>",
    "<x:item><title>x</title></x:item>",
    "<item xmlns='urn:other'><title>other</title></item>",
    item(11, "<x:note>n</x:note><?pi <item> ?>"),
    item(12).replace("<item>", "<item xml:id='a'>"),
]
PLAIN_BETWEEN = ["", "\n", "\r\n  ", "<!-- ad -->", "<ttl>30</ttl>"]
BETWEEN = [*PLAIN_BETWEEN, "<items>2</items>", "<!-- <item> -->", "<?pi </item> ?>"]
HEADS = [("", ""), (" xml:base='https://a.org/'", ""), ("", " xmlns:x='urn:x'"),
         (" xmlns:x='urn:y'", " xmlns:x='urn:x'")]


@st.composite
def bodies(draw: st.DrawFn, pool: list[str], between: list[str] = BETWEEN) -> bytes:
    parts = draw(st.lists(st.sampled_from(pool), max_size=7))
    out = "".join(draw(st.sampled_from(between)) + p for p in parts)
    channel, rss_attrs = draw(st.sampled_from(HEADS))
    return doc(out, channel=channel, rss_attrs=rss_attrs + " xmlns:x='urn:x'"
               if "xmlns:x" not in rss_attrs + channel else rss_attrs)


@settings(max_examples=300, deadline=None)
@given(before=bodies(PLAIN_ITEMS + TRICKY_ITEMS), after=bodies(PLAIN_ITEMS + TRICKY_ITEMS))
def test_mixed_bodies_are_never_misread(before: bytes, after: bytes) -> None:
    check_never_wrong(before, after)


@settings(max_examples=200, deadline=None)
@given(before=bodies(PLAIN_ITEMS, PLAIN_BETWEEN), after=bodies(PLAIN_ITEMS, PLAIN_BETWEEN))
def test_plain_bodies_are_read_item_for_item(before: bytes, after: bytes) -> None:
    check_never_wrong(before, after)
    first, full = parse(before), parse(after)
    if first.seen[1:2] == full.seen[1:2] == b"i" and first.seen[2:10] == full.seen[2:10]:
        check_incremental(before, after)


@settings(max_examples=300, deadline=None)
@given(before=bodies(PLAIN_ITEMS + TRICKY_ITEMS), data=st.data())
def test_a_hostile_change_to_a_body_is_no_crash(before: bytes, data: st.DataObject) -> None:
    """Cut, spliced and truncated bodies, with the memo of an intact one: a ParseError
    at worst, and where both parses take the body, what the fallbacks keep."""
    after = bytearray(before)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(after)))
        cut = data.draw(st.integers(0, 40))
        insert = data.draw(st.sampled_from([b"", b"<item>", b"</item>", b"<!--", b"-->",
                                            b"<![CDATA[", b"]]>", b"'", b"<", b"\xff",
                                            PLAIN_ITEMS[0].encode()]))
        after[at:at + cut] = insert
    check_never_wrong(before, bytes(after))


@settings(max_examples=200, deadline=None)
@given(seen=st.binary(max_size=80) | st.builds(lambda kind, rest: b"\x03" + kind + rest,
                                               st.sampled_from([b"f", b"i", b"e", b"x"]),
                                               st.binary(max_size=200)),
       fast=st.booleans())
def test_a_memo_of_garbage_recognises_nothing_and_breaks_nothing(seen: bytes,
                                                                 fast: bool) -> None:
    """The memo is read back from the store: whatever bytes come back, the parse is
    a full one (a random record matching an item is a 2**-64 chance)."""
    body = doc(ITEMS)
    full = parse(body, fast=fast)
    got = parse(body, seen, fast=fast)
    assert (got.entries, got.unchanged, got.seen, got.dates) == (full.entries, 0, full.seen,
                                                                 full.dates)


@settings(max_examples=100, deadline=None)
@given(stamps=st.lists(st.binary(min_size=8, max_size=8), min_size=7, max_size=7))
def test_a_memo_with_garbage_dates_still_recognises_its_items(stamps: list[bytes]) -> None:
    body = doc(ITEMS)
    seen = bytearray(parse(body).seen)
    for n, stamp in enumerate(stamps):
        at = 10 + 24 * n + 16
        seen[at:at + 8] = stamp
    got = parse(body, bytes(seen))
    assert got.entries == () and got.unchanged == 7
    assert all(datetime(1990, 1, 1, tzinfo=UTC).timestamp() <= t <= NOW.timestamp() + 86400
               for t in got.dates)
