"""A parse that is told what the last one saw (``seen``) makes only the items that changed.

The rule checked everywhere: parsing body B with the ``seen`` of an earlier
parse gives exactly the entries a full parse of B gives, less those the earlier
parse had made byte for byte the same, with the same ``seen`` for next time,
the same dates and the same count of items. Repeated keys and ``max_entries``
must come out as in a full parse, because a recognised item still holds its
key and its place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_memo_written_before_dates_were_kept_vouches_for_nothing() -> None:
    # An earlier release wrote 16 bytes an item (fingerprint, key id) and no format
    # byte: such a memo, read from a store written then, makes the parse a full one.
    body = rss([("a", "Alpha", "one"), ("b", "Beta", "two")])
    full = parse(body)
    old = b"".join(full.seen[i:i + 16] for i in range(1, len(full.seen), 24))
    assert len(old) == 32
    got = parse(body, old)
    assert (got.entries, got.unchanged, got.seen) == (full.entries, 0, full.seen)
