"""Frozen value types shared by every stage of the pipeline, and the Protocols
behind which the I/O sits. Imports nothing local.

Datetimes are always timezone-aware UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed:
    """A feed to poll, as configured."""

    name: str
    url: str
    interval: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedState:
    """What we remember about a feed between polls, and its health.

    ``last_polled_at`` is the last attempt; ``failures`` counts consecutive
    failures since ``failing_since``. ``body_hash`` is the last 200 body's hash
    (an identical body is not parsed again); ``hint`` the feed's own ``<ttl>`` /
    ``sy:updatePeriod``, kept for polls that do not parse. ``gone_url`` is set
    when that URL answered 410 Gone: the feed is disabled until its URL changes.
    ``ops_alerted``: the "feed failing" ops alert went out for this failure run.
    ``polled_by``: the instance that polled it last (several may share a store).
    ``seen``: its last stored parse's memo of the items it made (see
    ``monitor.parse.ParsedFeed.seen``), ``seen_since`` when the last full parse was.
    """

    name: str
    etag: str | None = None
    last_modified: str | None = None
    first_polled_at: datetime | None = None
    last_polled_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    last_success_at: datetime | None = None
    failing_since: datetime | None = None
    status: int | None = None
    next_poll_at: datetime | None = None
    per_day: float | None = None
    response_ms: float | None = None
    body_hash: str | None = None
    hint: timedelta | None = None
    gone_url: str | None = None
    ops_alerted: bool = False
    polled_by: str | None = None
    seen: bytes = b""
    seen_since: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One item of a feed, as parsed.

    ``key`` identifies the item within its feed: the GUID, else the canonical
    link. ``canonical_url`` is the link with tracking noise removed
    (see ``monitor.urls.canonical_url``); it identifies the story across feeds.
    ``summary`` is plain text (markup stripped).
    """

    feed: str
    key: str
    guid: str | None
    link: str
    canonical_url: str
    title: str
    summary: str
    published: datetime | None

    # Entries cross from the poll workers to the service by the thousand: a plain
    # tuple of the fields pickles in half the time of dataclasses' own state.
    def __getstate__(self) -> tuple[object, ...]:
        return (self.feed, self.key, self.guid, self.link, self.canonical_url, self.title,
                self.summary, self.published)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(_ENTRY_FIELDS, state, strict=True):
            object.__setattr__(self, name, value)


_ENTRY_FIELDS = ("feed", "key", "guid", "link", "canonical_url", "title", "summary",
                 "published")


class Mode(enum.Enum):
    IMMEDIATE = "immediate"
    DIGEST = "digest"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietHours:
    start: str  # "HH:MM"
    end: str  # "HH:MM"
    timezone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Watchlist:
    """A team's standing question. ``query`` and all/any/none are ANDed together.

    ``feeds`` is None for every feed, else the set of feed names it applies to.
    ``path``/``line``/``query_line``/``query_column`` locate it for error messages.
    """

    name: str
    path: str = ""
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    query: str | None = None
    feeds: frozenset[str] | None = None
    notify: tuple[str, ...] = ()
    mode: Mode = Mode.IMMEDIATE
    every: timedelta | None = None
    at: tuple[str, ...] = ()
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    urgent: bool = False
    max_per_hour: int | None = None
    #: Alerts one feed may cause in one poll; the rest fold into one summary.
    max_per_poll: int = 20
    line: int = 1
    query_line: int | None = None
    query_column: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """An entry that satisfied a watchlist, with the terms that matched (as written)."""

    watchlist: str
    entry: Entry
    terms: tuple[str, ...] = ()


class AlertStatus(enum.Enum):
    QUEUED = "queued"  # waiting for the delivery worker
    HELD = "held"  # waiting for a digest or the end of quiet hours
    SENT = "sent"
    FAILED = "failed"  # dead letter: a permanent error; `alerts retry` re-queues
    FOLDED = "folded"  # delivered as part of a digest / "N more stories" summary


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One story for one watchlist to one destination: the unit of the outbox.

    ``id`` is deterministic (watchlist, destination, story) so a re-run can never
    queue the same alert twice.
    """

    id: str
    watchlist: str
    destination: str
    story_id: str
    entry: Entry
    terms: tuple[str, ...]
    created_at: datetime
    seq: int = 0  # order in which stories were found; delivery follows it per destination
    status: AlertStatus = AlertStatus.QUEUED
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    remote_id: str | None = None  # Slack ts, email Message-ID
    remote_channel: str | None = None  # Slack channel id the message landed in
    hold_until: datetime | None = None  # HELD: when the digest / quiet-hours flush is due
    hold_reason: str | None = None  # HELD: "digest", "quiet hours", "max_per_hour", "max_per_poll"
    maybe_sent: bool = False  # a send began and its outcome is unknown: look before resending


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One outlet's version of a story."""

    feed: str
    title: str
    link: str
    seen_at: datetime
    weak: bool = False  # joined the story on weak evidence: shown as "possibly the same story"


@dataclass(frozen=True, slots=True, kw_only=True)
class Story:
    """A cluster of entries from one or more outlets about one news event."""

    id: str
    title: str
    first_seen: datetime
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a destination told us after it took a message."""

    remote_id: str | None = None
    remote_channel: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """A message ready for one destination type."""

    subject: str = ""  # email subject / notification text
    text: str = ""  # plain text (Slack fallback, email text part, console)
    html: str | None = None  # email HTML part
    blocks: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)  # Slack Block Kit


class Sender(Protocol):
    """Delivers rendered alerts to one destination. Raises DeliveryError."""

    name: str

    async def send(self, alert: Alert, message: Rendered) -> Receipt: ...

    async def aclose(self) -> None: ...
