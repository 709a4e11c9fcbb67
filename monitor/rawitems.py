"""A feed body's items as bytes: recognising unchanged items without parsing them (pure).

Most changed bodies are the last one with an item or two added on top. To
tell the old items apart from the new without parsing them, the body is cut at
the exact bytes of the items' end tag (``</item>``, ``</entry>``, a literal
split in C) into *pieces*: each but the last is what comes before an item
(usually whitespace) and then the item up to its end tag. An item's *mark*
is a hash of its piece from its start tag (the first ``<item`` in it) on.
:mod:`monitor.parse` remembers the marks of the items it made and, next time,
leaves out each item whose mark it knows, a run of them with only whitespace
between standing as one placeholder item, and parses what is left (the
*reduced* body): little more than the new items.

The cut knows nothing of comments, CDATA, processing instructions or other
elements whose names start alike; what makes it safe is a count
(:func:`aligned`). An RSS item has no namespace, so it is written ``<item``,
never with a prefix (an Atom entry is checked to have none), and one with
something in it has one ``<item`` and one ``</item``. So where the parser found
N items, none empty, and a well-formed document holds N exact end tags and 2N
mentions of ``<item`` or ``</item`` in all, there is no other mention anywhere:
the exact end tags are the items' own, and each piece holds one item, starting
at its one ``<item``. Only then are an item's bytes vouched for (its mark
remembered), read in a context the caller hashes too (the encoding, the start
tags around the items), and in a body without an ``xml:id`` (libxml2 refuses
two elements with one ID: a known item holding one, put back twice, could make
a body it refuses of a reduced one it takes).

The reduced body must pass the same checks, in the same context, with as many
items as were left in it, new and placeholders. Then each placeholder is an
item of the channel, and the reduced body with each put back as the bytes it
stands for (whole elements, read in that context, whitespace between them) is
the real body, well-formed, with those items there. On an ill-formed body the
checks may pass where a full parse would have gone to feedparser: a hostile
publisher can only misread its own feed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NO_MARK", "Split", "aligned", "reduced", "split"]

#: The mark of a piece with no start tag in it (its body does not line up): it matches
#: nothing.
NO_MARK = bytes(8)


@dataclass(frozen=True, slots=True)
class Split:
    """A body cut after each exact ``</name>``: ``pieces`` (one more than ``marks``,
    the last being what follows the last item), per item piece where its item's
    start tag is (the first ``<name`` in it, -1 for none) and its mark."""

    name: bytes
    pieces: list[bytes]
    starts: list[int]
    marks: list[bytes]


def split(body: bytes, name: bytes) -> Split:
    """``body`` cut at its items' end tags (``name``: ``b"item"`` or ``b"entry"``)."""
    pieces = _ENDS[name].split(body)
    opener = b"<" + name
    starts = [piece.find(opener) for piece in pieces[:-1]]
    sha256 = hashlib.sha256
    marks = [sha256(piece[start:]).digest()[:8] if start >= 0 else NO_MARK
             for piece, start in zip(pieces, starts, strict=False)]
    return Split(name=name, pieces=pieces, starts=starts, marks=marks)


#: What stands for a run of known items in a reduced body: an item with something in
#: it (see :func:`aligned`), never read.
def _placeholder(name: bytes) -> bytes:
    return b"<" + name + b"> </" + name + b">"


def reduced(cut: Split, known: Sequence[bool]) -> tuple[bytes, list[int]]:
    """The body with its known items (per item piece, in order) left out, each run of
    them that only whitespace separates standing as one placeholder item; and per
    item left in it, the index of its piece (-1 for a placeholder)."""
    end = b"</" + cut.name + b">"
    placeholder = _placeholder(cut.name)
    out: list[bytes] = []
    items: list[int] = []
    in_run = False
    for i, (piece, start, is_known) in enumerate(zip(cut.pieces, cut.starts, known,
                                                     strict=False)):
        if not is_known:
            out += (piece, end)
            items.append(i)
            in_run = False
        elif not in_run or piece[:start].strip(b" \t\r\n"):
            out += (piece[:start], placeholder)
            items.append(-1)
            in_run = True
    out.append(cut.pieces[-1])
    return b"".join(out), items


_ENDS = {name: re.compile(b"</" + name + b">") for name in (b"item", b"entry")}
_MENTIONS = {name: re.compile(b"</?" + name) for name in (b"item", b"entry")}


def aligned(doc: bytes, name: bytes, count: int) -> bool:
    """Whether each piece of well-formed ``doc`` is exactly one of its ``count`` items.

    The caller vouches that the parser found ``count`` items, each written
    ``<name`` (an RSS item has no namespace, so no prefix; an Atom entry must be
    seen to have none) and none empty (so none written ``<name/>``), and that
    ``doc`` holds ``count`` exact end tags ``</name>``. Then each item is written
    with one ``<name`` and one ``</name``, and if ``doc`` holds no more of them,
    there is none in a comment, CDATA section or processing instruction, nor
    another element named so, nor an end tag spelt otherwise: the exact end
    tags are the items' own, and each piece holds one ``<name``, where its item
    starts."""
    return len(_MENTIONS[name].findall(doc)) == 2 * count
