"""monitor.rawitems: a body cut at its items' end tags, reduced to its new items, and
the count that says whether the cut lines up with the items (test_parse_seen.py
checks what parse_document makes of it)."""

from __future__ import annotations

import hashlib

import pytest

from monitor import rawitems
from monitor.parse import parse_document

HEAD = b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
TAIL = b"</channel></rss>"
ATOM = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>T</title>"


def item(n: int) -> bytes:
    return b"<item><title>%d</title><guid>g%d</guid></item>" % (n, n)


def test_a_body_is_cut_after_each_end_tag_and_marked_from_each_start_tag() -> None:
    body = HEAD + item(1) + b"\n  " + item(2) + TAIL
    cut = rawitems.split(body, b"item")
    assert cut.pieces[1:] == [b"\n  " + item(2)[:-7], TAIL]
    assert cut.starts == [len(HEAD), 3]
    assert cut.marks[1] == hashlib.sha256(item(2)[:-7]).digest()[:8]
    assert rawitems.split(HEAD + b"<item/>" + TAIL, b"item").marks == []


def test_known_items_left_out_a_run_standing_as_one_placeholder() -> None:
    items = [item(n) for n in range(5)]
    body = HEAD + items[0] + b"\n" + items[1] + b"\n" + items[2] + b"<ttl>5</ttl>" + items[3] \
        + b"\n" + items[4] + TAIL
    cut = rawitems.split(body, b"item")
    doc, at = rawitems.reduced(cut, [False, True, True, True, False])
    assert doc == (HEAD + items[0] + b"\n<item> </item>" + b"<ttl>5</ttl><item> </item>" + b"\n"
                   + items[4] + TAIL)
    assert at == [0, -1, -1, 4]


@pytest.mark.parametrize(("doc", "count", "want"), [
    pytest.param(HEAD + item(1) + item(2) + TAIL, 2, True, id="plain"),
    pytest.param(HEAD + b"<item xml:lang='en' a=\"x>y\">t</item>" + TAIL, 1, True,
                 id="attributes"),
    pytest.param(HEAD + b"<items>2</items>" + item(1) + TAIL, 1, False, id="items-element"),
    pytest.param(HEAD + b"<!-- <item> -->" + item(1) + TAIL, 1, False, id="in-a-comment"),
    pytest.param(HEAD + b"<?pi </item ?>" + item(1) + TAIL, 1, False, id="in-a-pi"),
])
def test_aligned_counts_every_mention_of_the_name(doc: bytes, count: int, want: bool) -> None:
    # as aligned's caller makes sure: the parser found count items, as many as end tags
    assert doc.count(b"</item>") == count
    assert rawitems.aligned(doc, b"item", count) is want


def memo_kind(body: bytes) -> bytes:
    """What the memo of a parse of ``body`` marks: b"i"/b"e" an item's bytes, b"f" fields."""
    return parse_document(body, "f").seen[1:2]


@pytest.mark.parametrize(("body", "kind"), [
    pytest.param(HEAD + item(1) + b"\n" + item(2) + TAIL, b"i", id="plain"),
    pytest.param(HEAD + item(1) + b"<item></item>" + TAIL, b"f", id="an-empty-item"),
    pytest.param(HEAD + item(1) + b"<item/>" + TAIL, b"f", id="a-self-closing-item"),
    pytest.param(HEAD + item(1) + b"<item/><!-- </item> -->" + TAIL, b"f",
                 id="a-self-closing-item-and-an-end-tag-in-a-comment"),
    pytest.param(HEAD + item(1) + b"<item>a</item >" + TAIL, b"f", id="an-end-tag-with-space"),
    pytest.param(HEAD + b"<!-- </item> -->" + item(1) + TAIL, b"f", id="an-end-tag-in-a-comment"),
    pytest.param(HEAD + b"<item><title>t</title><category><![CDATA[</item>]]></category>"
                 b"</item>" + TAIL, b"f", id="an-end-tag-in-cdata"),
    pytest.param(HEAD + b"<item><title>t</title><x><item>n</item></x></item>" + TAIL, b"f",
                 id="a-nested-item"),
    pytest.param(HEAD + item(1).replace(b"<item>", b"<item xml:id='x'>") + TAIL, b"f",
                 id="an-xml-id"),
    pytest.param(ATOM + b"<entry><id>a</id></entry>\n<entry xml:base='b/'><id>b</id></entry>"
                 b"</feed>", b"e", id="atom"),
    pytest.param(ATOM + b"<entry><id>a</id></entry><a:entry xmlns:a='http://www.w3.org/2005/"
                 b"Atom'><a:id>b</a:id></a:entry><!-- <entry></entry> --></feed>", b"f",
                 id="atom-entry-with-a-prefix"),
])
def test_only_bodies_whose_items_line_up_are_marked_by_their_bytes(body: bytes,
                                                                   kind: bytes) -> None:
    assert memo_kind(body) == kind
