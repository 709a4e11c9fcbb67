"""Feed bytes -> entries (pure).

Parsing is behind one function, :func:`parse_feed`, so a faster parser can
take over the common case later with feedparser as the fallback. feedparser
copes with every dialect of RSS and Atom we have met, with broken encodings
and with markup soup; it sets ``bozo`` on malformed input, which we tolerate
as long as entries came out of it.

We never hand feedparser a string (it would treat it as a URL or a path): the
body is wrapped in a BytesIO.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from monitor import sanitize
from monitor.errors import ParseError
from monitor.types import Entry

logger = logging.getLogger(__name__)

_TAG = re.compile(r"<[^>]*>")
_BLOCK = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_SPACE = re.compile(r"\s+")


def plain_text(markup: str) -> str:
    """Markup -> one line of plain text (tags dropped, entities decoded)."""
    if "<" in markup:
        markup = _BLOCK.sub(" ", markup)
        markup = _TAG.sub(" ", markup)
    return _SPACE.sub(" ", html.unescape(markup)).strip()


def _when(raw: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get maps updated to published with a
        # DeprecationWarning, which an item with an empty pubDate set off.
        value = dict.get(raw, key) if isinstance(raw, dict) else raw.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _text(raw: Mapping[str, Any], key: str, limit: int) -> str:
    """A field as plain text. Markup is stripped only where the feed says it is markup:
    a plain-text title like "Why <!channel> pings everyone" keeps its angle brackets
    (the renderers escape them). Only the first ``limit * RAW_FACTOR`` characters
    are looked at, so an oversize field costs no more than a capped one."""
    value = str(raw.get(key) or "")[: limit * sanitize.RAW_FACTOR]
    detail = raw.get(f"{key}_detail") or {}
    if detail.get("type") != "text/plain":
        value = plain_text(value)
    return sanitize.clean_text(_SPACE.sub(" ", value), limit)


def _identity(url: str) -> str:
    return url.strip()


def parse_feed(
    body: bytes,
    feed: str,
    *,
    content_type: str | None = None,
    canonicalize: Callable[[str], str] = _identity,
    now: datetime | None = None,
    max_entries: int = sanitize.DEFAULT_MAX_ENTRIES,
) -> list[Entry]:
    """Parse a feed body into entries, in document order.

    ``feed`` is the feed's configured name (Entry.feed). ``canonicalize`` maps a
    link to its canonical form (``dedupe.canonical_url`` in the service).
    Every entry goes through :func:`monitor.sanitize.clean_entries`: dates
    after ``now`` plus a day are dropped (``now`` None: no upper bound), and at
    most ``max_entries`` are returned (the rest are logged).
    Raises ParseError when the body is not a feed at all.
    """
    headers = {"content-type": content_type} if content_type else None
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # feedparser is not supposed to raise, but it can
        raise ParseError(f"unparseable feed: {type(exc).__name__}: {exc}") from exc
    raw_entries = parsed.get("entries") or []
    if not raw_entries and parsed.get("bozo") and not parsed.get("feed"):
        problem = parsed.get("bozo_exception")
        raise ParseError(f"not a feed: {_problem(problem or 'no RSS or Atom found')}")
    if not raw_entries and not parsed.get("version") and parsed.get("bozo"):
        problem = parsed.get("bozo_exception") or "unknown format"
        raise ParseError(f"not a feed: {_problem(problem)}")

    def entries() -> Iterator[Entry]:
        for raw in raw_entries:
            title = _text(raw, "title", sanitize.TITLE_MAX)
            link = sanitize.clean_text(str(raw.get("link") or ""), sanitize.LINK_MAX)
            if not title and not link:
                continue
            summary = _text(raw, "summary", sanitize.SUMMARY_MAX)
            canonical = canonicalize(link) if link else ""
            guid = sanitize.strip_control(str(raw.get("id") or "")).strip() or None
            key = guid or canonical or "title:" + hashlib.sha1(title.encode()).hexdigest()[:16]
            yield Entry(feed=feed, key=key, guid=guid, link=link, canonical_url=canonical,
                        title=title or link, summary=summary, published=_when(raw))

    cleaned = sanitize.clean_entries(entries(), now=now, max_entries=max_entries)
    if cleaned.dropped:
        logger.warning("feed.capped feed=%s kept=%d dropped=%d (poll.max_entries)",
                       feed, len(cleaned.entries), cleaned.dropped)
    return list(cleaned.entries)


def _problem(problem: object) -> str:
    """feedparser's complaint, as one clean, short line (it may quote the body)."""
    return sanitize.clean_text(str(problem), 300)
