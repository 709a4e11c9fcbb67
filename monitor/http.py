"""A small HTTP/1.1 client for what a feed poller asks: one GET at a time per
connection, connections kept alive per origin.

::

    Client.get(url, headers)
      a kept-alive connection to the origin, or a new one (TLS for https)
      the request; the response read by _Connection, a protocol that parses as
      bytes arrive: status line, headers, then a body by Content-Length, by
      chunks or until the server closes; 1xx answers skipped
      gzip / deflate undone; 301, 302, 303, 307, 308 followed (at most max_redirects)

Polling thousands of feeds is thousands of small requests, and a general
client's per-request machinery (URL objects, header multidicts, tracing hooks,
cookie jars, response streams) costs several times what the request does;
this one keeps only what a conditional GET of a feed needs. Everything a
server sends is hostile: a status line, headers and chunk sizes are read
within fixed limits, a body (and what it inflates to) within ``max_bytes``,
and anything malformed is an :class:`HTTPError` that ends the connection.

Errors: :class:`ConnectError` (no connection: DNS, refused, TLS),
:class:`TooManyRedirects`, :class:`TooLarge`, and :class:`HTTPError` for
the rest (a broken or cut-off response). The caller maps them to its own.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

#: The most header bytes (status line included) taken from one response.
MAX_HEAD = 64 * 1024
#: The most header lines taken from one response.
MAX_HEADERS = 100
#: The longest chunk-size line (the size in hex, then extensions).
MAX_CHUNK_LINE = 1024
#: How long a kept-alive connection may sit idle before we drop it ourselves:
#: most servers close theirs after a few seconds to a minute.
IDLE = 30.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: URLs kept taken apart: more than a poller's feeds, fewer than would matter.
_TARGETS = 100_000
# Path and query characters sent as they are: RFC 3986's reserved and unreserved
# ones, and "%" so that what the URL already escapes stays escaped.
_SAFE = "/?#[]@!$&'()*+,;=-._~%:"


class HTTPError(Exception):
    """A response that could not be read: malformed, cut off, or refused by a limit."""


class ConnectError(HTTPError):
    """No connection to the server: name resolution, refusal, TLS."""


class TooManyRedirects(HTTPError):
    pass


class TooLarge(HTTPError):
    """A body (or what it inflates to) over ``max_bytes``."""


@dataclass(frozen=True, slots=True)
class Response:
    """A whole response. ``headers``: names lower-cased; a repeated header's values
    joined with ", "."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    url: str  # after redirects


class _Framing:
    NONE, LENGTH, CHUNKED, CLOSE = range(4)


class _Connection(asyncio.Protocol):
    """One connection: writes a request, parses its response as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int) -> None:
        self.loop = loop
        self.max_bytes = max_bytes
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: asyncio.Future[tuple[int, str, dict[str, str], bytes]] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.pooled = False  # in the client's idle pool
        self._reset()

    def _reset(self) -> None:
        self.got_any = False  # a byte of this response arrived
        self.head: tuple[int, str, dict[str, str]] | None = None
        self.framing = _Framing.NONE
        self.left = 0  # LENGTH: bytes to come; CHUNKED: of the current chunk
        self.chunk_state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.body: list[bytes] = []
        self.size = 0
        self.reusable = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self.close()
            return
        self.got_any = True
        self.buf += data
        try:
            self._parse()
        except HTTPError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed connection is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.done is None or self.done.done():
            return
        if self.head is not None and self.framing == _Framing.CLOSE:
            self._finish()
            return
        why = f": {exc}" if exc else ""
        self._fail(HTTPError(f"the server closed the connection before the response "
                             f"was complete{why}"))

    # -- requests

    def request(self, data: bytes) -> asyncio.Future[tuple[int, str, dict[str, str], bytes]]:
        self._reset()
        self.done = self.loop.create_future()
        if self.transport is None or self.closed:
            self.done.set_exception(HTTPError("the connection was closed"))
        else:
            self.transport.write(data)
        return self.done

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- parsing

    def _fail(self, exc: HTTPError) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        self.close()

    def _finish(self) -> None:
        assert self.head is not None and self.done is not None
        status, reason, headers = self.head
        body = b"".join(self.body)
        self.body = []
        if self.buf:  # more than the response: nothing may follow it unasked
            self.reusable = False
        if not self.reusable:
            self.close()
        if not self.done.done():
            self.done.set_result((status, reason, headers, body))

    def _take(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise TooLarge(f"response exceeds max_bytes {self.max_bytes}")
        self.body.append(bytes(data))

    def _parse(self) -> None:
        while True:
            if self.head is None:
                if not self._parse_head():
                    return
                if self.head is None:
                    continue  # a 1xx answer: the real one follows
                if self.framing == _Framing.NONE:
                    self._finish()
                    return
            if self.framing == _Framing.LENGTH:
                n = min(self.left, len(self.buf))
                if n:
                    self._take(self.buf[:n])
                    del self.buf[:n]
                    self.left -= n
                if self.left == 0:
                    self._finish()
                return
            if self.framing == _Framing.CLOSE:
                if self.buf:
                    self._take(self.buf)
                    self.buf.clear()
                return
            if self._parse_chunks():
                self._finish()
            return

    def _parse_head(self) -> bool:
        """Read a status line and headers if all of them are here; False if not yet."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise HTTPError(f"response headers over {MAX_HEAD} bytes")
            return False
        if end > MAX_HEAD:
            raise HTTPError(f"response headers over {MAX_HEAD} bytes")
        lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[:end + 4]
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise HTTPError("not an HTTP/1.x response")
        status = int(code)
        if len(lines) - 1 > MAX_HEADERS:
            raise HTTPError(f"more than {MAX_HEADERS} response headers")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise HTTPError("a malformed response header")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise HTTPError("the server switched protocols")
            return True  # self.head stays None: the final answer follows
        self.head = (status, reason.decode("latin-1"), headers)
        conn = headers.get("connection", "").lower()
        keep = version == b"HTTP/1.1" and "close" not in conn
        if status in (204, 304):
            self.framing = _Framing.NONE
            self.reusable = keep
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.framing, self.chunk_state, self.left = _Framing.CHUNKED, 0, 0
            self.reusable = keep
        elif "content-length" in headers:
            length = headers["content-length"].split(",")[0].strip()
            if not length.isdigit():
                raise HTTPError("a malformed Content-Length")
            self.left = int(length)
            if self.left > self.max_bytes:
                raise TooLarge(f"response of {self.left} bytes exceeds max_bytes "
                               f"{self.max_bytes}")
            self.framing = _Framing.LENGTH if self.left else _Framing.NONE
            self.reusable = keep
        else:
            self.framing = _Framing.CLOSE  # until the server closes: not reusable
        return True

    def _parse_chunks(self) -> bool:
        """Read chunks as far as they are here; True at the end of the body."""
        buf = self.buf
        while True:
            if self.chunk_state == 0:  # the size line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HTTPError("a malformed chunk size")
                    return False
                size = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[:end + 2]
                try:
                    self.left = int(size, 16)
                except ValueError:
                    raise HTTPError("a malformed chunk size") from None
                if self.left < 0 or len(size) > 16:
                    raise HTTPError("a malformed chunk size")
                if self.size + self.left > self.max_bytes:
                    raise TooLarge(f"response exceeds max_bytes {self.max_bytes}")
                self.chunk_state = 1 if self.left else 3
            elif self.chunk_state == 1:  # the data
                n = min(self.left, len(buf))
                if n:
                    self._take(buf[:n])
                    del buf[:n]
                    self.left -= n
                if self.left:
                    return False
                self.chunk_state = 2
            elif self.chunk_state == 2:  # the CRLF after the data
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise HTTPError("a malformed chunk")
                del buf[:2]
                self.chunk_state = 0
            else:  # trailers, up to an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise HTTPError("trailers too long")
                    return False
                del buf[:end + 2]
                if end == 0:
                    return True


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """A gzip or deflate body as it was, within ``max_bytes``; identity as it is."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        tries = [16 + zlib.MAX_WBITS]
    elif enc == "deflate":  # zlib-wrapped as the standard says, or raw as some send
        tries = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        raise HTTPError(f"an unknown Content-Encoding {encoding[:40]!r}")
    for wbits in tries:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, max_bytes + 1)
        except zlib.error:
            continue
        if len(out) > max_bytes or d.unconsumed_tail:
            raise TooLarge(f"response exceeds max_bytes {max_bytes} when decompressed")
        return out
    raise HTTPError(f"a body that does not decompress as {enc}")


class Client:
    """GETs over kept-alive connections, per origin. Use as an async context manager."""

    def __init__(self, *, max_bytes: int, user_agent: str, accept: str = "*/*",
                 max_redirects: int = 5, ssl_context: ssl.SSLContext | None = None,
                 max_idle: int = 100) -> None:
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.accept = accept
        self.max_redirects = max_redirects
        self.max_idle = max_idle
        self._ssl = ssl_context
        # Idle connections by origin, and all of them oldest first: feeds on
        # thousands of hosts would otherwise leave a socket open to each.
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._order: collections.deque[tuple[tuple[str, str, int], _Connection]] = (
            collections.deque())
        self._pooled = 0
        self._targets: dict[str, _Target] = {}  # a poller asks for the same URLs again

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._order.clear()
        self._pooled = 0

    def _put(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        """Keep ``conn`` for the origin's next request; beyond ``max_idle`` idle
        connections the oldest is closed."""
        conn.idle_since = conn.loop.time()
        conn.pooled = True
        self._idle.setdefault(origin, []).append(conn)
        self._order.append((origin, conn))
        self._pooled += 1
        while self._pooled > self.max_idle:
            old_origin, old = self._order.popleft()
            if old.pooled:
                self._unpool(old_origin, old)
                old.close()
        if len(self._order) > 4 * self.max_idle + 16:  # entries of connections taken back
            self._order = collections.deque(item for item in self._order if item[1].pooled)

    def _unpool(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        conn.pooled = False
        self._pooled -= 1
        conns = self._idle[origin]
        conns.remove(conn)
        if not conns:
            del self._idle[origin]

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        """GET ``url``, following redirects; raises HTTPError (and its kinds)."""
        origin_auth: tuple[tuple[str, str, int], str] | None = None
        for _ in range(self.max_redirects + 1):
            target = self._target(url)
            if origin_auth is None and target.auth:
                origin_auth = (target.origin, target.auth)
            auth = origin_auth[1] if origin_auth and origin_auth[0] == target.origin else None
            status, reason, got, body = await self._exchange(target, headers or {}, auth)
            if status in _REDIRECTS and "location" in got:
                try:
                    url = urljoin(url, got["location"])
                except ValueError:
                    raise HTTPError("a malformed redirect Location") from None
                continue
            body = _inflate(body, got.get("content-encoding", ""), self.max_bytes)
            return Response(status, reason, got, body, url)
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _TARGETS:
                self._targets.clear()
            target = self._targets[url] = _Target(url)
        return target

    async def _exchange(self, target: _Target, headers: Mapping[str, str],
                        auth: str | None) -> tuple[int, str, dict[str, str], bytes]:
        lines = [f"GET {target.path} HTTP/1.1", f"Host: {target.host_header}",
                 f"User-Agent: {self.user_agent}", f"Accept: {self.accept}",
                 "Accept-Encoding: gzip, deflate"]
        if auth:
            lines.append(f"Authorization: Basic {auth}")
        for name, value in headers.items():
            if "\r" not in value and "\n" not in value:
                lines.append(f"{name}: {value}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        # A kept-alive connection may have been closed by the server meanwhile:
        # such a failure (before any byte came back) is tried once on a new one.
        conn, reused = await self._connection(target)
        for attempt in (1, 2):
            done = conn.request(data)
            try:
                got = await done
            except HTTPError:
                if reused and attempt == 1 and not conn.got_any:
                    conn.close()
                    conn, reused = await self._connection(target, fresh=True)
                    continue
                raise
            except BaseException:  # cancelled (a timeout): the connection is mid-answer
                conn.close()
                raise
            if conn.reusable and not conn.closed:
                self._put(target.origin, conn)
            return got
        raise AssertionError("unreachable")

    async def _connection(self, target: _Target, *,
                          fresh: bool = False) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while not fresh and (idle := self._idle.get(target.origin)):
            conn = idle[-1]
            self._unpool(target.origin, conn)
            if not conn.closed and loop.time() - conn.idle_since < IDLE:
                return conn, True
            conn.close()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, self.max_bytes), target.hostname, target.port,
                ssl=self._context() if target.scheme == "https" else None,
                server_hostname=target.hostname if target.scheme == "https" else None)
        except (OSError, ssl.SSLError, UnicodeError, ValueError) as exc:
            raise ConnectError(f"{target.hostname}:{target.port}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from exc
        return conn, False


class _Target:
    """A URL taken apart for a request."""

    __slots__ = ("scheme", "hostname", "port", "path", "host_header", "auth", "origin")

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConnectError(f"a malformed URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ConnectError(f"cannot fetch a {scheme or 'relative'} URL")
        host = parts.hostname or ""
        if not host:
            raise ConnectError("a URL without a host")
        try:
            ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            raise ConnectError(f"a host name that cannot be encoded: {host!r}") from None
        default = 443 if scheme == "https" else 80
        self.scheme = scheme
        self.hostname = ascii_host
        self.port = port or default
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        path = quote(parts.path or "/", safe=_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_SAFE)
        self.path = path
        self.auth = ""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.auth = base64.b64encode(pair.encode("utf-8")).decode("ascii")
        self.origin = (scheme, ascii_host, self.port)
