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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

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
        value = raw.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _text(raw: Mapping[str, Any], key: str) -> str:
    """A field as plain text. Markup is stripped only where the feed says it is markup:
    a plain-text title like "Why <!channel> pings everyone" keeps its angle brackets
    (the renderers escape them)."""
    value = raw.get(key) or ""
    detail = raw.get(f"{key}_detail") or {}
    if detail.get("type") == "text/plain":
        return _SPACE.sub(" ", value).strip()
    return plain_text(value)


def _identity(url: str) -> str:
    return url.strip()


def parse_feed(
    body: bytes,
    feed: str,
    *,
    content_type: str | None = None,
    canonicalize: Callable[[str], str] = _identity,
) -> list[Entry]:
    """Parse a feed body into entries, in document order.

    ``feed`` is the feed's configured name (Entry.feed). ``canonicalize`` maps a
    link to its canonical form (``dedupe.canonical_url`` in the service).
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
        raise ParseError(f"not a feed: {problem or 'no RSS or Atom found'}")
    if not raw_entries and not parsed.get("version") and parsed.get("bozo"):
        raise ParseError(f"not a feed: {parsed.get('bozo_exception') or 'unknown format'}")

    entries: list[Entry] = []
    seen: set[str] = set()
    for raw in raw_entries:
        title = _text(raw, "title")
        link = (raw.get("link") or "").strip()
        summary = _text(raw, "summary")
        if not title and not link:
            continue
        canonical = canonicalize(link) if link else ""
        guid = (raw.get("id") or "").strip() or None
        key = guid or canonical or "title:" + hashlib.sha1(title.encode()).hexdigest()[:16]
        if key in seen:  # a feed that repeats an item: the first one wins
            continue
        seen.add(key)
        entries.append(Entry(
            feed=feed, key=key, guid=guid, link=link, canonical_url=canonical,
            title=title or link, summary=summary, published=_when(raw),
        ))
    return entries
