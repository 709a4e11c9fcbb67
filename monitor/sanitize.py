"""Untrusted feed values -> values every later stage can hold (pure).

A feed's publisher controls its titles, summaries, links, GUIDs and dates.
Every parse path makes its entries with :func:`make_entry` and keeps them with
:func:`keep_entries` (an entry from anywhere else goes through
:func:`clean_entry`, or :func:`clean_entries` for a poll's worth), so the
matcher, grouping, the store and every renderer only ever see entries that are:

* free of control characters: C0 (tab and newline survive in summaries
  only), DEL, C1 and lone surrogates are removed. They would reach terminals
  as escape sequences, email headers and Slack as garbage, and PostgreSQL
  refuses NUL outright;
* capped: a title at :data:`TITLE_MAX` characters, a summary at
  :data:`SUMMARY_MAX`, a link at :data:`LINK_MAX`, a GUID and the entry key
  at :data:`KEY_MAX_BYTES` UTF-8 bytes, each cut marked with :data:`CUT`.
  A cut GUID or key keeps a hash of the whole value, so two long GUIDs that
  share a prefix stay two entries;
* dated plausibly: a date before :data:`EARLIEST` or more than
  :data:`FUTURE_SLACK` after ``now`` is treated as missing;
* few enough: at most ``max_entries`` per feed per poll (the rest are
  counted, for the caller to log).

The text helpers (:func:`strip_control`, :func:`cap`) are also what other
modules use on untrusted strings that do not come from entries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from monitor.types import Entry

TITLE_MAX = 1000  # characters
SUMMARY_MAX = 5000  # characters: room for a long teaser, not a whole article
LINK_MAX = 2000  # characters: what browsers and Slack reliably take
KEY_MAX_BYTES = 2000  # UTF-8 bytes, for GUIDs and entry keys
#: How much raw markup parse looks at before stripping it: a few times the cap,
#: so markup around capped text survives while a megabyte title costs nothing.
RAW_FACTOR = 8
CUT = "…"
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clock skew and time zones written wrong
DEFAULT_MAX_ENTRIES = 1000  # per feed per poll; real feeds reach about 500

# C0 but tab and newline, DEL, C1, lone surrogates.
_CONTROL_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# The same plus tab, newline and carriage return: for one-line fields.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACES = re.compile(r"[ \t]*[\t\n\r][ \t\n\r]*")


#: What an ASCII string must not hold to be printable: the C0 controls and DEL.
_ASCII_CONTROL = bytes(range(0x20)) + b"\x7f"


def printable(text: str) -> bool:
    """``text.isprintable()``, sooner for long ASCII text (most of what feeds send):
    an ASCII character is printable unless it is a C0 control or DEL, which
    bytes.translate finds without looking each character up in Unicode's tables.
    Short text is not worth the encoding."""
    if len(text) > 80 and text.isascii():
        raw = text.encode("ascii")
        return len(raw.translate(None, _ASCII_CONTROL)) == len(raw)
    return text.isprintable()


def strip_control(text: str, *, keep_lines: bool = False) -> str:
    """``text`` without control characters or lone surrogates.

    One-line fields (titles, links, GUIDs, header values) lose tabs and line
    breaks too (a run of them becomes one space); ``keep_lines`` keeps tab and
    newline, for summaries.
    """
    if printable(text):  # no Cc (C0, DEL, C1, tab, line breaks) and no Cs: nothing to do
        return text
    if keep_lines:
        return _CONTROL_KEEP_LINES.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", _SPACES.sub(" ", text))


# What a terminal must not be handed raw: control characters but tab and
# newline, lone surrogates, and the bidirectional overrides that reorder a line.
_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` for a terminal: control characters shown as ``\\x1b``-style
    escapes instead of being obeyed. Tab and newline stay."""
    return _TERMINAL.sub(_escaped, text)


def ascii_json_safe(text: str) -> str:
    """JSON text (already dumped) with C1 controls, bidi overrides and lone
    surrogates written as ``\\uXXXX``: json.dumps(ensure_ascii=False) leaves
    them raw, where a terminal obeys them (or stdout cannot encode them)."""
    return _TERMINAL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def cap(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters, the cut marked with "…"."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(CUT))].rstrip() + CUT


def cap_bytes(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-8 bytes. A cut value keeps a hash of the whole,
    so that values sharing a long prefix stay distinct (GUIDs and keys identify)."""
    if len(text) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:16]
    room = max(0, limit - len(CUT.encode()) - len(digest))
    head = raw[:room].decode("utf-8", "ignore")
    return head + CUT + digest


def plausible(when: datetime | None, now: datetime | None) -> datetime | None:
    """``when`` if a news item could carry it, else None (treated as undated).

    ``now`` None checks only the lower bound (for callers without a clock,
    such as a parse of a file for ``try``).
    """
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when < EARLIEST:
        return None
    if now is not None and when > now + FUTURE_SLACK:
        return None
    return when


def clean_text(text: str, limit: int, *, keep_lines: bool = False) -> str:
    """Control characters removed, outer space trimmed, then capped."""
    if len(text) <= limit and printable(text) and text[:1] != " " and text[-1:] != " ":
        return text  # nothing to do: only a space is both whitespace and printable
    if len(text) > limit * RAW_FACTOR:  # don't scan a megabyte to keep a thousand
        text = text[: limit * RAW_FACTOR]
    return cap(strip_control(text, keep_lines=keep_lines).strip(), limit)


def clean_entry(entry: Entry, now: datetime | None) -> Entry:
    """One entry made safe to match, group, store and render (see the module docstring)."""
    guid = entry.guid
    if guid is not None:
        guid = cap_bytes(strip_control(guid).strip(), KEY_MAX_BYTES) or None
    title = clean_text(entry.title, TITLE_MAX)
    summary = clean_text(entry.summary, SUMMARY_MAX, keep_lines=True)
    link = clean_text(entry.link, LINK_MAX)
    canonical = clean_text(entry.canonical_url, LINK_MAX)
    key = cap_bytes(strip_control(entry.key), KEY_MAX_BYTES) or "empty"
    published = plausible(entry.published, now)
    if (guid, title, summary, link, canonical, key, published) == (
            entry.guid, entry.title, entry.summary, entry.link, entry.canonical_url,
            entry.key, entry.published):
        return entry
    return replace(entry, guid=guid, title=title, summary=summary, link=link,
                   canonical_url=canonical, key=key, published=published)


#: An item the parser recognised as one it made an entry of before, byte for byte
#: (see :func:`monitor.parse.parse_document`'s ``seen``), given as its key id
#: (:func:`key_id`): it is not made again, but it still holds its place, its key
#: and its share of ``max_entries``, so the entries kept are the ones a full parse
#: would keep. Plain bytes: a changed body is mostly recognised items.
Recognised: TypeAlias = bytes


def key_id(key: str) -> bytes:
    """An entry key in 8 bytes, for telling repeats apart within one feed's poll."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cleaned:
    """A poll's entries after :func:`keep_entries`; ``dropped`` were over ``max_entries``.
    ``kept``: the positions in the input of every item kept, in order (the
    entries, and the :data:`Recognised` items, which are not in ``entries``);
    ``ids``: their key ids, in the same order."""

    entries: tuple[Entry, ...]
    dropped: int = 0
    kept: tuple[int, ...] = ()
    ids: tuple[bytes, ...] = ()


def make_entry(*, feed: str, title: str, link: str, summary: str, guid: str,
               published: datetime | None, canonicalize: Callable[[str], str],
               now: datetime | None) -> Entry | None:
    """The entry of an item as a parser read it (``title`` and ``summary`` as plain
    text), clean: what :func:`clean_entry` makes of it, each field cleaned once.
    Its key is the GUID, else the canonical link, else a hash of the title; an
    item with neither a title nor a link makes none."""
    title = clean_text(title, TITLE_MAX)
    link = clean_text(link, LINK_MAX)
    if not title and not link:
        return None
    canonical = canonicalize(link) if link else ""
    stripped = strip_control(guid).strip()
    key = stripped or canonical or "title:" + hashlib.sha1(title.encode()).hexdigest()[:16]
    return Entry(feed=feed, key=cap_bytes(strip_control(key), KEY_MAX_BYTES) or "empty",
                 guid=cap_bytes(stripped, KEY_MAX_BYTES) if stripped else None, link=link,
                 canonical_url=clean_text(canonical, LINK_MAX),
                 title=title or clean_text(link, TITLE_MAX),
                 summary=clean_text(summary, SUMMARY_MAX), published=plausible(published, now))


def clean_entries(entries: Iterable[Entry | Recognised], *, now: datetime | None,
                  max_entries: int = DEFAULT_MAX_ENTRIES) -> Cleaned:
    """A poll's entries from anywhere, each cleaned, then kept as :func:`keep_entries`
    keeps them."""
    return keep_entries((raw if isinstance(raw, bytes) else clean_entry(raw, now)
                         for raw in entries), max_entries=max_entries)


def keep_entries(entries: Iterable[Entry | Recognised | None], *,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> Cleaned:
    """Every parse path's last step, on clean entries: repeats of a key dropped (the
    first one wins), at most ``max_entries`` kept in document order. None stands for
    an item that made no entry: it only holds its place."""
    kept: list[Entry] = []
    positions: list[int] = []
    ids: list[bytes] = []
    seen: set[bytes] = set()
    dropped = 0
    for i, e in enumerate(entries):
        if e is None:
            continue
        if len(positions) >= max_entries:
            dropped += 1
            continue
        entry = None
        if isinstance(e, bytes):  # Recognised
            ident = e
        elif e.title or e.link:
            ident, entry = key_id(e.key), e
        else:
            continue
        if ident not in seen:
            seen.add(ident)
            positions.append(i)
            ids.append(ident)
            if entry is not None:
                kept.append(entry)
    return Cleaned(entries=tuple(kept), dropped=dropped, kept=tuple(positions), ids=tuple(ids))


def header_value(value: str | None, limit: int = 1000) -> str | None:
    """An HTTP header value we may store and send back, else None.

    Validators (ETag, Last-Modified) are opaque tokens of printable ASCII;
    anything else (a decoded non-UTF-8 byte is a lone surrogate) is ignored,
    as if the server had sent none.
    """
    if value is None or len(value) > limit or not value.isascii() or not value.isprintable():
        return None
    return value
