"""Async HTTP for feeds: conditional GET, timeouts, size caps, Retry-After.

Header values we keep (ETag, Last-Modified, Content-Type) must be clean
printable ASCII (:func:`monitor.sanitize.header_value`); a server that sends
anything else is treated as having sent none, so a stray byte cannot end up
in the store or in our next request.
A :class:`Fetcher` owns one :class:`monitor.http.Client` for the whole service
(or for one poll worker), a global concurrency limit and a per-host one (so ten
feeds on one site don't hammer it).
``fetch`` returns a :class:`FetchResult`; "not modified" is a result, not an
exception. Everything that goes wrong with one feed is a
:class:`~monitor.errors.FetchError` naming the feed, so the caller can log it
once and move on.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from monitor import http
from monitor.errors import FetchError
from monitor.sanitize import clean_text, header_value
from monitor.types import Feed, FeedState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """The outcome of one successful poll. ``body`` is None when not modified."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    max_age: float | None = None  # Cache-Control max-age: the earliest sensible next poll
    expires: datetime | None = None  # Expires, when there is no max-age
    status: int = 200

    @property
    def not_modified(self) -> bool:
        return self.body is None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone admits "²", which float refuses
        return float(value)  # any length: next_poll caps what it honours
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*([0-9]+)", re.I)


def parse_max_age(value: str | None) -> float | None:
    m = _MAX_AGE.search(value or "")
    return float(m.group(1)) if m else None


def parse_expires(value: str | None) -> datetime | None:
    """An Expires HTTP-date; an invalid one (often "0" or "-1") means already expired."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _caching(headers: Mapping[str, str]) -> dict[str, Any]:
    """Cache-Control max-age, else Expires, from lower-cased headers."""
    max_age = parse_max_age(headers.get("cache-control"))
    return {"max_age": max_age,
            "expires": None if max_age is not None else parse_expires(headers.get("expires"))}


def _result(resp: http.Response) -> FetchResult:
    """What a response means for a poll (pure but for the clock Retry-After is read
    against): a 304, a body, or a FetchError for 4xx and 5xx."""
    headers = resp.headers
    caching = _caching(headers)
    if resp.status == 304:
        return FetchResult(body=None, etag=header_value(headers.get("etag")),
                           last_modified=header_value(headers.get("last-modified")),
                           status=304, **caching)
    if resp.status >= 400:
        raise FetchError(f"HTTP {resp.status} {clean_text(resp.reason, 100)}".rstrip(),
                         status=resp.status,
                         retry_after=parse_retry_after(headers.get("retry-after"),
                                                       datetime.now(UTC)))
    return FetchResult(body=resp.body, etag=header_value(headers.get("etag")),
                       last_modified=header_value(headers.get("last-modified")),
                       content_type=header_value(headers.get("content-type")),
                       status=resp.status, **caching)


#: What we ask servers for, feeds first.
ACCEPT = ("application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, "
          "*/*;q=0.5")


class Fetcher:
    """Fetches feeds over one shared HTTP client. Use as an async context manager."""

    def __init__(self, *, timeout: float = 20.0, max_bytes: int = 10 * 10**6,
                 concurrency: int = 50, per_host: int = 4,
                 user_agent: str = "news-monitor") -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self._concurrency = concurrency
        self._global = asyncio.Semaphore(concurrency)
        self._per_host_limit = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._by_url: dict[str, asyncio.Semaphore] = {}  # the same URLs, poll after poll
        self._client: http.Client | None = None

    async def __aenter__(self) -> Fetcher:
        self._client = http.Client(max_bytes=self.max_bytes, user_agent=self.user_agent,
                                   accept=ACCEPT, max_idle=self._concurrency)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        sem = self._by_url.get(url)
        if sem is None:
            try:
                host = urlsplit(url).hostname or ""
            except ValueError:
                host = ""
            sem = self._hosts.get(host)
            if sem is None:
                sem = self._hosts[host] = asyncio.Semaphore(self._per_host_limit)
            if len(self._by_url) >= 100_000:  # more than a poller's feeds
                self._by_url.clear()
            self._by_url[url] = sem
        return sem

    async def fetch(self, feed: Feed, state: FeedState | None = None) -> FetchResult:
        """GET ``feed.url`` conditionally on ``state``'s validators."""
        return await self.get(feed.url, etag=state.etag if state else None,
                              last_modified=state.last_modified if state else None)

    async def get(self, url: str, *, etag: str | None = None,
                  last_modified: str | None = None) -> FetchResult:
        """GET ``url``, conditionally on the validators of the last answer."""
        if url.startswith("file://"):
            return await asyncio.to_thread(self._read_file, url)
        if self._client is None:
            raise RuntimeError("Fetcher used outside its context")
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        # The host's slot first: a slow host's feeds queue for their own slots
        # without holding global ones.
        async with self._host_limit(url), self._global:
            try:
                async with asyncio.timeout(self.timeout):
                    resp = await self._client.get(url, headers)
            except TimeoutError:
                raise FetchError(f"timed out after {self.timeout:g}s") from None
            except http.ConnectError as exc:
                raise FetchError(f"cannot connect: {exc}") from exc
            except http.TooManyRedirects:
                raise FetchError("too many redirects") from None
            except http.TooLarge as exc:
                raise FetchError(str(exc)) from None
            except http.HTTPError as exc:
                raise FetchError(f"bad response: {exc}") from exc
        return _result(resp)

    def _read_file(self, url: str) -> FetchResult:
        path = Path(url.removeprefix("file://"))
        try:
            with path.open("rb") as f:
                body = f.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(body) > self.max_bytes:
            raise FetchError(f"file exceeds max_bytes {self.max_bytes}")
        return FetchResult(body=body)
