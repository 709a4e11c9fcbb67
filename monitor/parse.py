"""Feed bytes -> entries (pure).

Two parsers, one result. A fast path (:func:`_fast_read`, lxml) reads
well-formed RSS 2.0 and Atom 1.0 with the elements it knows; anything else
(ill-formed XML, a DOCTYPE, a charset the HTTP header and the document
disagree on, RSS 1.0, Atom 0.3, an item element feedparser would read into a
field we fill) makes it step aside, and feedparser, which copes with every
dialect, broken encodings and markup soup, reads the body. Where the fast
path answers, it follows feedparser's rules (which element wins, when a
plain-text title is taken as markup, how a permalink GUID becomes the link,
feedparser's own date parser) so that both give the same entries: a test
checks that they agree on every feed in tests/data and on a corpus of edge
cases.

Both paths produce :class:`RawEntry` values and go through one final step,
:func:`to_entries`, which makes the :class:`~monitor.types.Entry` values with
:func:`monitor.sanitize.make_entry` (plain text, keys, control characters,
caps, plausible dates) and keeps them with :func:`monitor.sanitize.keep_entries`
(repeats, max_entries): whatever that step does applies to both paths.

Most bodies a feed serves are its last one with an item or two added, so a
parse is told what the last one made (``seen``, :attr:`ParsedFeed.seen`) and
makes only the items it does not recognise. Where the fast path read the last
body and its items lined up with the bytes between their end tags, the memo
holds a hash of each item's bytes (:mod:`monitor.rawitems`), and the known
items are not even parsed: only the rest of the body is. Elsewhere it holds a
hash of each item's fields (:func:`fingerprint`), which recognises an item
after parsing it but before the costlier making of its entry.

We never hand feedparser a string (it would treat it as a URL or a path): the
body is wrapped in a BytesIO.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import logging
import math
import re
import struct
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from lxml import etree

from monitor import rawitems, sanitize
from monitor.dates import from_struct_time, parse_date
from monitor.errors import ParseError
from monitor.types import Entry

logger = logging.getLogger(__name__)

_TAG = re.compile(r"<[^>]*>")
_BLOCK = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_BLOCK_START = re.compile(r"<[sS]")  # where a _BLOCK match can start


def plain_text(markup: str) -> str:
    """Markup -> one line of plain text (tags dropped, entities decoded)."""
    if "<" in markup:
        if _BLOCK_START.search(markup):
            markup = _BLOCK.sub(" ", markup)
        markup = _TAG.sub(" ", markup)
    if "&" in markup:
        markup = html.unescape(markup)
    return _one_line(markup)


def _one_line(text: str) -> str:
    """``" ".join(text.split())``, without splitting text that is one line already:
    only a space is both whitespace and printable."""
    trimmed = text.strip(" ")
    if "  " not in trimmed and sanitize.printable(trimmed):
        return trimmed
    return " ".join(text.split())


def _text(value: str, markup: bool) -> str:
    """A field as one line of plain text. Markup is stripped only where the feed says
    it is markup: a plain-text title like "Why <!channel> pings everyone" keeps its
    angle brackets (the renderers escape them)."""
    return plain_text(value) if markup else _one_line(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RawEntry:
    """One item's fields as a parser found them, before they become an Entry.

    ``*_markup``: the feed says the field is HTML (or, in RSS, it looks like it).
    """

    title: str = ""
    title_markup: bool = False
    link: str = ""
    summary: str = ""
    summary_markup: bool = True
    guid: str = ""
    published: datetime | None = None
    #: The fast path's date elements as written (RSS pubDate or Atom published,
    #: then dc:date or updated), parsed only for an item the last parse's memo
    #: does not vouch for (:meth:`when`): most items of a changed body are
    #: recognised, and a date is a large part of what reading one costs.
    published_text: str = ""
    updated_text: str = ""

    def when(self) -> datetime | None:
        """The item's date: ``published``, else the first of its date texts that parses."""
        return self.published or _date_text(self.published_text) or _date_text(
            self.updated_text)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFeed:
    """A parsed body: its entries in document order, and how often the feed says
    to poll it (``<ttl>``, ``sy:updatePeriod``/``sy:updateFrequency``)."""

    entries: tuple[Entry, ...]
    hint: timedelta | None = None
    fast: bool = False  # which parser read it (for logs and the bench)
    #: What to pass as ``seen`` next time: per item kept, its mark, key id and date.
    seen: bytes = b""
    #: Items kept but left out of ``entries``: ``seen`` recognised them.
    unchanged: int = 0
    #: Publication times (POSIX) of every dated item kept, recognised ones too.
    dates: tuple[float, ...] = ()


def _identity(url: str) -> str:
    return url.strip()


# ------------------------------------------------------------------ the memo

#: ParsedFeed.seen: this format byte, what its marks hash (``f``: an item's
#: fields, :func:`fingerprint`; ``i``/``e``: the bytes of an RSS item / Atom
#: entry, :mod:`monitor.rawitems`), the 8-byte hash of the context those bytes
#: were read in (:func:`_context`; zeros for fields), then per item kept its
#: mark (8 bytes), key id (8) and date as parsed (a double, NaN for none), so
#: that a recognised item's date is read back rather than parsed again.
_MEMO = b"\x03"
_KIND = {b"": b"f", b"item": b"i", b"entry": b"e"}
_NAME = {kind: name for name, kind in _KIND.items()}
_HEAD = 10
_SEEN = 24
_DATE = struct.Struct("<d")
_RECORD = struct.Struct("8s16s")


@dataclass(frozen=True, slots=True)
class _Memo:
    """A memo read back. ``name``: the item element whose bytes its marks hash (b""
    if they hash fields); ``records``: mark -> key id and packed date."""

    name: bytes = b""
    context: bytes = rawitems.NO_MARK
    records: Mapping[bytes, bytes] = field(default_factory=dict)


def _read_memo(seen: bytes) -> _Memo:
    """``seen`` read back. A memo of another format (an earlier release's: 24 bytes an
    item behind format byte 2, hashing fields only) vouches for nothing, and the
    parse is a full one."""
    name = _NAME.get(seen[1:2])
    if seen[:1] != _MEMO or name is None or (len(seen) - _HEAD) % _SEEN:
        return _Memo()
    records = dict(_RECORD.iter_unpack(memoryview(seen)[_HEAD:]))
    records.pop(rawitems.NO_MARK, None)  # the mark of no bytes at all recognises nothing
    return _Memo(name, seen[2:_HEAD], records)


def fingerprint(raw: RawEntry) -> bytes:
    """8 bytes that change with any field of an item an Entry is made from."""
    text = "\0".join((raw.guid, raw.link, raw.title, raw.summary, str(raw.published),
                      raw.published_text, raw.updated_text,
                      "m" if raw.title_markup else "p", "m" if raw.summary_markup else "p"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _packed(when: datetime | None) -> bytes:
    return _DATE.pack(math.nan if when is None else when.timestamp())


def _unpacked(data: bytes) -> datetime | None:
    (stamp,) = _DATE.unpack(data)
    if math.isnan(stamp):
        return None
    try:
        return datetime.fromtimestamp(stamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Read:
    """What a parser read. Per item: its fields, or for an item the memo recognised
    the rest of its memo record (key id, packed date), and its mark; ``memo``: the
    head of the memo to write (format, kind, context)."""

    items: list[RawEntry | bytes]
    marks: list[bytes]
    memo: bytes
    hint: timedelta | None
    fast: bool


def _by_fields(raws: list[RawEntry], memo: _Memo) -> tuple[list[RawEntry | bytes], list[bytes]]:
    """Items marked by their fields (:func:`fingerprint`), and recognised by them (a
    memo that hashed bytes recognises none: a full parse, once)."""
    marks = [fingerprint(raw) for raw in raws]
    known = memo.records
    return [known.get(mark) or raw for raw, mark in zip(raws, marks, strict=True)], marks


def _entry(raw: RawEntry, when: datetime | None, feed: str,
           canonicalize: Callable[[str], str], now: datetime | None) -> Entry | None:
    """An item's entry (None: neither a title nor a link). Only the first ``limit *
    RAW_FACTOR`` characters of a text are looked at, so an oversize field costs no
    more than a capped one."""
    factor = sanitize.RAW_FACTOR
    return sanitize.make_entry(
        feed=feed, title=_text(raw.title[:sanitize.TITLE_MAX * factor], raw.title_markup),
        link=raw.link, summary=_text(raw.summary[:sanitize.SUMMARY_MAX * factor],
                                     raw.summary_markup),
        guid=raw.guid, published=when, canonicalize=canonicalize, now=now)


def to_entries(items: Sequence[RawEntry | bytes], marks: Sequence[bytes], memo: bytes,
               feed: str, canonicalize: Callable[[str], str] = _identity, *,
               now: datetime | None = None,
               max_entries: int = sanitize.DEFAULT_MAX_ENTRIES) -> ToEntries:
    """The one step from raw fields to entries, shared by both parsers: each made by
    :func:`monitor.sanitize.make_entry` (dates after ``now`` plus a day are
    dropped), then :func:`monitor.sanitize.keep_entries` (repeats dropped, at most
    ``max_entries`` kept, the rest logged).

    An item the memo recognised (its record's key id and date instead of its
    fields) is made into nothing: the same item makes the same entry, which the
    caller has. It still holds its place and its key among the items, so that
    repeats and ``max_entries`` come out as in a full parse. The memo written
    for next time is ``memo`` then, per item kept, its mark and record."""
    inputs: list[Entry | sanitize.Recognised | None] = []  # per item
    parsed: dict[int, datetime | None] = {}  # per item made, its date as parsed
    add = inputs.append
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            add(item[:8])
        else:
            parsed[i] = when = item.when()
            add(_entry(item, when, feed, canonicalize, now))
    cleaned = sanitize.keep_entries(inputs, max_entries=max_entries)
    if cleaned.dropped:
        logger.warning("feed.capped feed=%s kept=%d dropped=%d (poll.max_entries)",
                       feed, len(cleaned.kept), cleaned.dropped)
    made = iter(cleaned.entries)
    records: list[bytes] = []
    dates: list[float] = []
    record, date, unpack = records.append, dates.append, _DATE.unpack_from
    earliest, latest = _EARLIEST, _latest_stamp(now)
    for i, ident in zip(cleaned.kept, cleaned.ids, strict=True):
        item = items[i]
        record(marks[i])
        if isinstance(item, bytes):  # recognised: its record as it was, its date re-checked
            record(item)
            (stamp,) = unpack(item, 8)
            if earliest <= stamp <= latest and stamp.is_integer():
                date(stamp)  # what the datetime below would say, for a whole second
            elif (when := sanitize.plausible(_unpacked(item[8:]), now)) is not None:
                date(when.timestamp())
        else:  # made now: its key id and (checked) date are the entry's
            record(ident + _packed(parsed[i]))
            when = next(made).published
            if when is not None:
                date(when.timestamp())
    return ToEntries(cleaned=cleaned, seen=memo + b"".join(records) if records else b"",
                     dates=tuple(dates))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_EARLIEST = (sanitize.EARLIEST - _EPOCH) // _SECOND
_LATEST = (datetime(3000, 1, 1, tzinfo=UTC) - _EPOCH) // _SECOND


def _latest_stamp(now: datetime | None) -> int:
    """The last whole second :func:`monitor.sanitize.plausible` takes, in POSIX time
    (without ``now``, the start of 3000: later dates take the long way)."""
    return _LATEST if now is None else (now + sanitize.FUTURE_SLACK - _EPOCH) // _SECOND


@dataclass(frozen=True, slots=True)
class ToEntries:
    """:func:`to_entries`' result: the cleaned entries, and for :class:`ParsedFeed`
    the ``seen`` memo and the dates of every item kept."""

    cleaned: sanitize.Cleaned
    seen: bytes
    dates: tuple[float, ...]


_PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1),
            "weekly": timedelta(weeks=1), "monthly": timedelta(days=30),
            "yearly": timedelta(days=365)}


def poll_hint(ttl: str | None, period: str | None, frequency: str | None) -> timedelta | None:
    """The feed's own word on how often to poll it: RSS ``<ttl>`` (minutes) and the
    syndication module's period / frequency; the longer of the two."""
    hints: list[timedelta] = []
    minutes = _count(ttl)
    if minutes:
        hints.append(timedelta(minutes=minutes))
    if period and period.strip().lower() in _PERIODS:
        hints.append(_PERIODS[period.strip().lower()] / max(_count(frequency) or 1, 1))
    return max(hints) if hints else None


#: A count in a feed is the feed's to choose: digits beyond this many are capped
#: (a year of minutes has six), so that no timedelta of it overflows.
_COUNT_DIGITS = 7
_COUNT = re.compile(r"\s*([0-9]+)\s*")


def _count(text: str | None) -> int | None:
    """A whole number written in ASCII digits (``str.isdigit`` also admits "²" and
    other digits ``int`` refuses), capped at :data:`_COUNT_DIGITS` digits."""
    m = _COUNT.fullmatch(text) if text else None
    if m is None:
        return None
    digits = m.group(1).lstrip("0") or "0"
    return int(digits) if len(digits) <= _COUNT_DIGITS else 10 ** _COUNT_DIGITS - 1


# ------------------------------------------------------------------ feedparser


def _when(raw: dict[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict maps a missing updated_parsed to published_parsed,
        # with a DeprecationWarning, when published_parsed did not parse.
        when = from_struct_time(dict.get(raw, key))
        if when is not None:
            return when
    return None


def _is_markup(raw: Mapping[str, Any], key: str) -> bool:
    detail = raw.get(f"{key}_detail")
    if detail is None and key == "summary" and raw.get("content"):
        detail = raw["content"][0]  # feedparser copies the content's value, not its type
    return bool((detail or {}).get("type") != "text/plain")


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,6})|([0-9]{1,7}));")


def _surrogates_mended(body: bytes) -> bytes:
    """``body`` with its character references to UTF-16 surrogates made whole: a pair
    (an emoji written as two, as UTF-16 does) becomes the one character it
    spells, a lone one U+FFFD, as HTML reads them. feedparser raises on the
    first such reference, and the whole feed would be lost for one title."""
    if b"&#" not in body:
        return body
    refs = [(m, int(m[1], 16) if m[1] else int(m[2])) for m in _CHAR_REF.finditer(body)]
    if not any(0xD800 <= v <= 0xDFFF for _, v in refs):
        return body
    out: list[bytes] = []
    at = i = 0
    while i < len(refs):
        m, v = refs[i]
        i += 1
        if not 0xD800 <= v <= 0xDFFF:
            continue
        out.append(body[at:m.start()])
        at = m.end()
        if v <= 0xDBFF and i < len(refs):
            low, w = refs[i]
            if low.start() == m.end() and 0xDC00 <= w <= 0xDFFF:
                out.append(b"&#x%X;" % (0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00)))
                at, i = low.end(), i + 1
                continue
        out.append(b"&#xFFFD;")
    out.append(body[at:])
    return b"".join(out)


def _feedparser(body: bytes, content_type: str | None) -> tuple[list[RawEntry],
                                                                  timedelta | None]:
    import feedparser  # imported by the first body that needs it (it imports much)

    headers = {"content-type": content_type} if content_type else None
    try:
        parsed = feedparser.parse(io.BytesIO(_surrogates_mended(body)),
                                  response_headers=headers)
    except Exception as exc:  # feedparser is not supposed to raise, but it can
        raise ParseError(f"unparseable feed: {type(exc).__name__}: {exc}") from exc
    raw_entries = parsed.get("entries") or []
    if not raw_entries and parsed.get("bozo") and not parsed.get("feed"):
        problem = parsed.get("bozo_exception")
        raise ParseError(f"not a feed: {_problem(problem or 'no RSS or Atom found')}")
    if not raw_entries and not parsed.get("version"):
        # Well-formed or not: an HTML login page, an XML error document or an empty
        # body served as a feed is a feed that stopped working, not one with no news.
        problem = parsed.get("bozo_exception") or "no RSS or Atom found"
        raise ParseError(f"not a feed: {_problem(problem)}")
    raws = [RawEntry(title=str(raw.get("title") or ""), title_markup=_is_markup(raw, "title"),
                     link=str(raw.get("link") or ""), summary=str(raw.get("summary") or ""),
                     summary_markup=_is_markup(raw, "summary"), guid=str(raw.get("id") or ""),
                     published=_when(raw))
            for raw in raw_entries]
    meta = parsed.get("feed") or {}
    return raws, poll_hint(meta.get("ttl"), meta.get("sy_updateperiod"),
                           meta.get("sy_updatefrequency"))


# ------------------------------------------------------------------ the fast path

_ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_DC_DATE = "{http://purl.org/dc/elements/1.1/}date"
_SY = "{http://purl.org/rss/1.0/modules/syndication/}"
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ATOM_TYPES = {"text": "text/plain", "plain": "text/plain", "html": "text/html",
               "xhtml": "application/xhtml+xml"}
#: Local names feedparser reads into a title, link, id, summary or date. An item
#: holding one of these that the fast path does not handle goes to feedparser.
_FIELD_NAMES = frozenset({"title", "link", "id", "guid", "description", "summary", "content",
                          "encoded", "body", "fullitem", "abstract", "published", "pubdate",
                          "issued", "updated", "modified", "created", "date", "lastbuilddate"})
#: Named like a field, but feedparser keeps it apart (media_content).
_HARMLESS = frozenset({"{http://search.yahoo.com/mrss/}content"})
_RSS_FIELDS = frozenset({"title", "link", "guid", "description", "pubDate", _CONTENT, _DC_DATE})
_ATOM_FIELDS = frozenset(_ATOM + n for n in ("title", "link", "id", "summary", "content",
                                            "published", "updated"))
#: No entities from a DTD, no network, no huge trees: a DOCTYPE goes to feedparser.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_BOM = b"\xef\xbb\xbf"
_C1_BYTE = re.compile(rb"[\x80-\x9f]")
_AMP = re.compile(r"&([A-Za-z0-9_]+);")
_URIFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+-.]*://)(/*)(.*?)")


class _Decline(Exception):
    """The fast path steps aside: feedparser reads this body."""


def _urljoin(base: str | None, uri: str) -> str:
    """feedparser's join: a relative link against xml:base (nothing to join without)."""
    if ":///" in uri:  # what _URIFIX changes: slashes beyond two after the scheme
        uri = _URIFIX.sub(r"\1\3", uri)
    if not base:
        return uri
    try:
        return urllib.parse.urljoin(base, uri)
    except ValueError:
        return ""


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _date_text(text: str) -> datetime | None:
    return parse_date(text) if text else None


def _inner(el: Any, kind: str, latin1_fix: bool) -> str:
    """An element's content as text, or as markup for an Atom xhtml construct."""
    if kind == "application/xhtml+xml":
        div = el[0] if len(el) == 1 and _local(el[0].tag) == "div" else el
        parts = [div.text or ""]
        parts += [etree.tostring(c, encoding="unicode", with_tail=True) for c in div]
        return "".join(parts).strip()
    text = "".join(el.itertext()) if len(el) else (el.text or "")
    if latin1_fix and not text.isascii():
        # feedparser's repair for UTF-8 that was read as ISO-8859-1 and encoded again,
        # for text all in ISO-8859-1 (ignoring the rest shows it without an exception)
        raw = text.encode("iso-8859-1", "ignore")
        if len(raw) == len(text):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
    return text.strip()


def _looks_like_html(text: str) -> bool:
    """feedparser's test, which needs an end tag or an entity to say yes."""
    if "<" not in text and "&" not in text:
        return False
    from feedparser.mixin import _FeedParserMixin

    return bool(_FeedParserMixin.looks_like_html(text))


def _check_no_stray_fields(child: Any) -> None:
    for el in child.iter():
        if el.tag not in _HARMLESS and _local(el.tag) in _FIELD_NAMES:
            raise _Decline(f"item element {el.tag}")


def _rss_item(item: Any, utf8: bool) -> RawEntry:
    title: str | None = None  # feedparser keeps an item's first title, its last link
    link = guid = ""
    have_link = title_markup = False
    summary: str | None = None
    content: str | None = None
    published = updated = ""
    for child in item:
        tag = child.tag
        if tag not in _RSS_FIELDS:
            _check_no_stray_fields(child)
            continue
        if len(child):
            raise _Decline(f"markup inside {tag}")
        if tag == "title":
            if title is not None:
                continue
            title = _inner(child, "text/plain", utf8)
            title_markup = _looks_like_html(title)
        elif tag == "link":
            # feedparser's repair of "&b;=2" in query strings, as it does it.
            text = (child.text or "").strip()
            if "&" in text:
                text = _AMP.sub(r"&\g<1>", text.replace("&amp;", "&"))
            link, have_link = _urljoin(child.base, text), True
        elif tag == "guid":
            permalink = child.get("isPermaLink", "true") == "true"
            guid = (child.text or "").strip()
            if permalink and guid:
                guid = _urljoin(child.base, guid)
            if permalink and not have_link:
                link, have_link = guid, True
        elif tag == "description":
            if summary is None:
                summary = _inner(child, "text/html", utf8)
        elif tag == _CONTENT:
            if content is None:
                content = _inner(child, "text/html", utf8)
        elif tag == "pubDate":
            published = child.text or ""
        elif tag == _DC_DATE:
            updated = child.text or ""
    return RawEntry(title=title or "", title_markup=title_markup, link=link, guid=guid,
                    summary=summary if summary is not None else content or "",
                    summary_markup=True, published_text=published, updated_text=updated)


def _atom_item(item: Any, utf8: bool) -> RawEntry:
    title: tuple[str, bool] | None = None
    link = guid = ""
    have_link = False
    summary: tuple[str, bool] | None = None
    content: tuple[str, bool] | None = None
    dates = {"published": "", "updated": ""}
    for child in item:
        tag = child.tag
        if tag not in _ATOM_FIELDS:
            _check_no_stray_fields(child)
            continue
        name = tag[len(_ATOM):]
        if name in ("title", "summary", "content"):
            raw_type = (child.get("type") or "text").strip().lower()
            kind = _ATOM_TYPES.get(raw_type, raw_type)
            if name == "content" and child.get("src") is not None:
                raise _Decline("out-of-line content")
            if kind not in _HTML_TYPES and kind != "text/plain":
                if name == "content":
                    continue  # feedparser keeps other media types out of the summary
                raise _Decline(f"{name} of type {raw_type}")
            if kind != "application/xhtml+xml" and len(child):
                raise _Decline(f"markup inside {name}")
            value = (_inner(child, kind, utf8), kind != "text/plain")
            if name == "title" and title is None:
                title = value
            elif name == "summary" and summary is None:
                summary = value
            elif name == "content" and content is None:
                content = value
        elif name == "link":
            rel = child.get("rel", "alternate")
            kind = child.get("type", "application/atom+xml" if rel == "self" else "text/html")
            href = child.get("href")
            if href is None:
                raise _Decline("atom link without href")
            if rel == "alternate" and _ATOM_TYPES.get(kind, kind) in _HTML_TYPES:
                link, have_link = _urljoin(child.base, href), True
        elif name == "id":
            guid = _urljoin(child.base, (child.text or "").strip())
            if not have_link:
                link, have_link = guid, True
        else:  # published, updated
            dates[name] = child.text or ""
    text, markup = summary or content or ("", True)
    title_text, title_markup = title or ("", False)
    return RawEntry(title=title_text, title_markup=title_markup, link=link, guid=guid,
                    summary=text, summary_markup=markup, published_text=dates["published"],
                    updated_text=dates["updated"])


def _declared(body: bytes) -> str:
    m = re.match(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([\w.:-]+)", body)
    return m.group(1).decode("ascii").lower() if m else "utf-8"


def _same_charset(a: str, b: str) -> bool:
    try:
        return codecs.lookup(a).name == codecs.lookup(b).name
    except LookupError:
        return False


def _encoding(body: bytes, content_type: str | None) -> bool:
    """Whether the body is UTF-8 (else ISO-8859-1, lxml's other encoding we take)."""
    if body[:3] != _BOM and body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _Decline("UTF-16")
    declared = _declared(body)
    m = _CHARSET.search(content_type or "")
    if m and not _same_charset(m.group(1), declared):
        raise _Decline(f"charset {m.group(1)} in the header, {declared} in the document")
    if not _same_charset(declared, "utf-8") and not _same_charset(declared, "iso-8859-1"):
        raise _Decline(f"encoding {declared}")
    if _same_charset(declared, "utf-8"):
        return True
    if _C1_BYTE.search(body):  # feedparser reads these as browsers do: Windows-1252
        raise _Decline("ISO-8859-1 declared, with Windows-1252 bytes")
    return False


@dataclass(frozen=True, slots=True)
class _Tree:
    """A parsed document: its root, the items' parent, their element name, the items."""

    root: Any
    parent: Any
    name: bytes
    items: list[Any]


def _tree(doc: bytes) -> _Tree:
    try:
        root = etree.fromstring(doc, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _Decline(f"not well-formed: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise _Decline("DOCTYPE")
    if root.tag == "rss" and root.get("version", "2.0").startswith("2."):
        channel = root.find("channel")
        if channel is None:
            raise _Decline("rss without channel")
        return _Tree(root, channel, b"item", channel.findall("item"))
    if root.tag == _ATOM + "feed":
        return _Tree(root, root, b"entry", root.findall(_ATOM + "entry"))
    raise _Decline(f"root element {root.tag}")


def _raws(tree: _Tree, utf8: bool) -> list[RawEntry]:
    read = _rss_item if tree.name == b"item" else _atom_item
    return [read(el, utf8) for el in tree.items]


def _marked(raws: Sequence[RawEntry], marks: Sequence[bytes], memo: _Memo,
            context: bytes, name: bytes) -> list[RawEntry | bytes]:
    """Items read and marked by their bytes (``name`` elements in ``context``), each
    recognised by its mark if the memo hashed bytes read in the same context, else
    by its fields if the memo hashed fields (the last body did not line up)."""
    known = memo.records
    if memo.name == name and memo.context == context:
        return [known.get(mark) or raw for raw, mark in zip(raws, marks, strict=True)]
    if memo.name or not known:
        return list(raws)
    return [known.get(fingerprint(raw)) or raw for raw in raws]


def _hint(tree: _Tree) -> timedelta | None:
    if tree.name != b"item":
        return None
    channel = tree.parent
    return poll_hint(channel.findtext("ttl"), channel.findtext(_SY + "updatePeriod"),
                     channel.findtext(_SY + "updateFrequency"))


#: Whether a tree has an xml:id attribute (see :func:`_aligned`).
_HAS_ID = etree.XPath("boolean(//@xml:id)")


def _aligned(doc: bytes, tree: _Tree) -> bool:
    """:func:`monitor.rawitems.aligned` for a parsed document whose exact end tags are
    as many as its items, once the tree shows what it takes: every item written
    without a prefix and none empty. And none for a document with an xml:id:
    libxml2 refuses two elements with one ID, so an item holding one, once known,
    could be put back twice into a body lxml refuses."""
    items = tree.items
    if tree.name == b"entry" and any(el.prefix is not None for el in items):
        return False
    if not all(len(el) or el.text for el in items) or _HAS_ID(tree.root):
        return False
    return rawitems.aligned(doc, tree.name, len(items))


def _context(body: bytes, content_type: str | None, tree: _Tree) -> bytes:
    """A hash of everything, besides an item's own bytes, that decides how lxml and
    the fast path read it: the encoding (declared, a byte order mark, the header's
    charset) and the start tags it sits in (their names, attributes, such as
    xml:base, and the namespaces in scope). An item's bytes are recognised only in
    the context they were read in."""
    m = _CHARSET.search(content_type or "")
    facts = (tree.name, _declared(body), body[:3] == _BOM, m.group(1).lower() if m else "",
             tree.root.tag, sorted(tree.root.attrib.items()), tree.parent.tag,
             sorted(tree.parent.attrib.items()),
             sorted((prefix or "", uri) for prefix, uri in tree.parent.nsmap.items()))
    return hashlib.blake2b(repr(facts).encode("utf-8", "surrogatepass"),
                           digest_size=8).digest()


def _read_whole(body: bytes, content_type: str | None, utf8: bool, memo: _Memo) -> _Read:
    """Parse the whole body. Mark its items by their bytes if they line up with the
    pieces between their end tags (:func:`_aligned`), else by their fields;
    recognise those the memo knows."""
    tree = _tree(body)
    raws = _raws(tree, utf8)
    cut = rawitems.split(body, tree.name)
    if len(cut.marks) != len(raws) or not _aligned(body, tree):
        items, marks = _by_fields(raws, memo)
        return _Read(items, marks, _MEMO + _KIND[b""] + rawitems.NO_MARK, _hint(tree), True)
    context = _context(body, content_type, tree)
    items = _marked(raws, cut.marks, memo, context, tree.name)
    return _Read(items, cut.marks, _MEMO + _KIND[tree.name] + context, _hint(tree), True)


def _read_reduced(body: bytes, content_type: str | None, utf8: bool, memo: _Memo,
                  cut: rawitems.Split, known: list[bytes | None]) -> _Read | None:
    """Parse the body with the items the memo knows by their bytes left out (see
    :mod:`monitor.rawitems` for why the result is the whole body's). None where the
    checks fail or the fast path declines: then the whole body decides."""
    doc, at = rawitems.reduced(cut, [rest is not None for rest in known])
    try:
        tree = _tree(doc)
    except _Decline:
        return None
    if (tree.name != cut.name or len(tree.items) != len(at) or not _aligned(doc, tree)
            or _context(body, content_type, tree) != memo.context):
        return None
    read = _rss_item if tree.name == b"item" else _atom_item
    items: list[RawEntry | bytes | None] = list(known)
    try:
        for el, i in zip(tree.items, at, strict=True):
            if i >= 0:  # a new item: the memo, of bytes, cannot know it by its fields
                items[i] = read(el, utf8)
    except _Decline:
        return None
    return _Read(cast(list[RawEntry | bytes], items), cut.marks,
                 _MEMO + _KIND[cut.name] + memo.context, _hint(tree), True)


#: A character reference to a C1 control: HTML (and feedparser) read &#x93; as the
#: Windows-1252 character (a curly quote), XML as a control, which is dropped.
_C1_REF = re.compile(rb"&#(?:[xX]0*[89][0-9a-fA-F]|0*(?:12[89]|1[3-5][0-9]));")


def _fast_read(body: bytes, content_type: str | None, memo: _Memo) -> _Read:
    """Read well-formed RSS 2.0 / Atom 1.0, or raise _Decline."""
    utf8 = _encoding(body, content_type)
    if _C1_REF.search(body):
        raise _Decline("a reference to a C1 control")
    if memo.name:
        cut = rawitems.split(body, memo.name)
        known = [memo.records.get(mark) for mark in cut.marks]
        if known.count(None) < len(known):
            read = _read_reduced(body, content_type, utf8, memo, cut, known)
            if read is not None:
                return read
    return _read_whole(body, content_type, utf8, memo)


# ------------------------------------------------------------------ the entry point


def parse_document(
    body: bytes,
    feed: str,
    *,
    content_type: str | None = None,
    canonicalize: Callable[[str], str] = _identity,
    now: datetime | None = None,
    max_entries: int = sanitize.DEFAULT_MAX_ENTRIES,
    fast: bool = True,
    seen: bytes = b"",
) -> ParsedFeed:
    """Parse a feed body: its entries in document order and its poll hint.

    ``feed`` is the feed's configured name (Entry.feed). ``canonicalize`` maps a
    link to its canonical form (``monitor.urls.canonical_url`` in the service).
    Every entry is made clean by :func:`monitor.sanitize.make_entry`: dates
    after ``now`` plus a day are dropped (``now`` None: no upper bound); at
    most ``max_entries`` are returned (the rest are logged). ``fast=False``
    goes straight to feedparser. Raises ParseError when the body is not a feed
    at all. ``seen``: the last parse's :attr:`ParsedFeed.seen` for this feed; the
    items it recognises are counted in ``unchanged``, not made into entries again.
    """
    memo = _read_memo(seen)
    read = None
    if fast:
        try:
            read = _fast_read(body, content_type, memo)
        except _Decline as why:
            logger.debug("parse.fallback feed=%s reason=%s", feed, _problem(why))
    if read is None:
        raws, hint = _feedparser(body, content_type)
        items, marks = _by_fields(raws, memo)
        read = _Read(items, marks, _MEMO + _KIND[b""] + rawitems.NO_MARK, hint, False)
    made = to_entries(read.items, read.marks, read.memo, feed, canonicalize, now=now,
                      max_entries=max_entries)
    entries = made.cleaned.entries
    return ParsedFeed(entries=entries, hint=read.hint, fast=read.fast, seen=made.seen,
                      unchanged=len(made.cleaned.kept) - len(entries), dates=made.dates)


def parse_feed(
    body: bytes,
    feed: str,
    *,
    content_type: str | None = None,
    canonicalize: Callable[[str], str] = _identity,
    now: datetime | None = None,
    max_entries: int = sanitize.DEFAULT_MAX_ENTRIES,
    fast: bool = True,
) -> list[Entry]:
    """Parse a feed body into entries, in document order (see :func:`parse_document`)."""
    return list(parse_document(body, feed, content_type=content_type,
                               canonicalize=canonicalize, now=now, max_entries=max_entries,
                               fast=fast).entries)


def _problem(problem: object) -> str:
    """feedparser's complaint, as one clean, short line (it may quote the body)."""
    return sanitize.clean_text(str(problem), 300)
