"""Async HTTP for feeds: conditional GET, timeouts, size caps, Retry-After.

Header values we keep (ETag, Last-Modified, Content-Type) must be clean
printable ASCII (:func:`monitor.sanitize.header_value`); a server that sends
anything else is treated as having sent none, so a stray byte cannot end up
in the store or in our next request.
A :class:`Fetcher` owns one aiohttp session for the whole service (or for one
poll worker), a global concurrency limit and a per-host one (so ten feeds on one
site don't hammer it).
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

import aiohttp

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
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.I)


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
    max_age = parse_max_age(headers.get("Cache-Control"))
    return {"max_age": max_age,
            "expires": None if max_age is not None else parse_expires(headers.get("Expires"))}


class Fetcher:
    """Fetches feeds over one shared aiohttp session. Use as an async context manager."""

    def __init__(self, *, timeout: float = 20.0, max_bytes: int = 10 * 10**6,
                 concurrency: int = 50, per_host: int = 4,
                 user_agent: str = "news-monitor") -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self._global = asyncio.Semaphore(concurrency)
        self._per_host_limit = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": self.user_agent,
                     "Accept": "application/rss+xml, application/atom+xml, "
                               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"},
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).hostname or ""
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self._per_host_limit)
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
        if self._session is None:
            raise RuntimeError("Fetcher used outside its context")
        headers = {"Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        # The host's slot first: a slow host's feeds queue for their own slots
        # without holding global ones.
        async with self._host_limit(url), self._global:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._get(url, headers)
            except TimeoutError:
                raise FetchError(f"timed out after {self.timeout:g}s") from None
            except aiohttp.ClientConnectorError as exc:
                raise FetchError(f"cannot connect: {exc.os_error or exc}") from exc
            except aiohttp.TooManyRedirects:
                raise FetchError("too many redirects") from None
            except aiohttp.ClientError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from exc

    async def _get(self, url: str, headers: dict[str, str]) -> FetchResult:
        assert self._session is not None
        async with self._session.get(url, headers=headers, max_redirects=5) as resp:
            if resp.status == 304:
                return FetchResult(body=None, etag=header_value(resp.headers.get("ETag")),
                                   last_modified=header_value(resp.headers.get("Last-Modified")),
                                   status=304, **_caching(resp.headers))
            if resp.status >= 400:
                raise FetchError(
                    f"HTTP {resp.status} {clean_text(resp.reason or '', 100)}".rstrip(),
                    status=resp.status,
                    retry_after=parse_retry_after(resp.headers.get("Retry-After"),
                                                  datetime.now(UTC)))
            declared = resp.content_length
            if declared is not None and declared > self.max_bytes:
                raise FetchError(f"response of {declared} bytes exceeds max_bytes "
                                 f"{self.max_bytes}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(65536):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"response exceeds max_bytes {self.max_bytes}")
                chunks.append(chunk)
            return FetchResult(
                body=b"".join(chunks),
                etag=header_value(resp.headers.get("ETag")),
                last_modified=header_value(resp.headers.get("Last-Modified")),
                content_type=header_value(resp.headers.get("Content-Type")),
                status=resp.status, **_caching(resp.headers),
            )

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
