"""monitor.http against servers on 127.0.0.1 that answer with exact bytes: framing
(length, chunks, until close), compression, redirects, kept-alive connections,
TLS, and what a hostile server can send."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import Callable

import pytest
import trustme

from monitor import http

Answer = Callable[[bytes], bytes | None]  # the request's head -> what to send (None: close)


class RawServer:
    """Answers each request on a connection with ``answer(head)``; counts
    connections and keeps the request heads."""

    def __init__(self, answer: Answer, *, close_after: bool = False,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.close_after = close_after
        self.ssl = ssl_context
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self._handlers:
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers)
        await self.server.wait_closed()

    def url(self, path: str = "/f.xml", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                out = self.answer(head)
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    return
        except asyncio.CancelledError:
            pass  # the test is over
        finally:
            self._handlers.discard(task)
            writer.close()


def ok(body: bytes, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def client(**kw: object) -> http.Client:
    return http.Client(max_bytes=int(kw.pop("max_bytes", 10_000)),  # type: ignore[call-overload]
                       user_agent="test", **kw)  # type: ignore[arg-type]


async def test_connections_are_kept_alive_and_reused() -> None:
    async with RawServer(lambda head: ok(b"<rss/>")) as srv, client() as c:
        for _ in range(3):
            got = await c.get(srv.url())
            assert (got.status, got.body) == (200, b"<rss/>")
        assert srv.connections == 1
        assert srv.heads[0].startswith(b"GET /f.xml HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_a_connection_the_server_closed_is_replaced_unnoticed() -> None:
    async with RawServer(lambda head: ok(b"a"), close_after=True) as srv, client() as c:
        assert (await c.get(srv.url())).body == b"a"
        await asyncio.sleep(0.05)  # the server's close reaches us
        assert (await c.get(srv.url())).body == b"a"
        assert srv.connections == 2


async def test_a_kept_connection_dropped_mid_request_is_tried_once_more() -> None:
    served = 0

    def answer(head: bytes) -> bytes | None:
        nonlocal served
        served += 1
        return None if served == 2 else ok(b"x")  # the second request: closed unanswered

    async with RawServer(answer) as srv, client() as c:
        await c.get(srv.url())
        assert (await c.get(srv.url())).body == b"x"
        assert srv.connections == 2


@pytest.mark.parametrize("response", [
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4;ext=1\r\n<rss\r\n2\r\n/>\r\n0\r\nX-Trailer: 1\r\n\r\n", id="chunked"),
    pytest.param(b"HTTP/1.0 200 OK\r\n\r\n<rss/>", id="until-close"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<rss/>", id="1xx-first"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 6, 6\r\n\r\n<rss/>", id="repeated-length"),
])
async def test_bodies_by_each_framing(response: bytes) -> None:
    async with RawServer(lambda head: response, close_after=True) as srv, client() as c:
        got = await c.get(srv.url())
    assert (got.status, got.body) == (200, b"<rss/>")


@pytest.mark.parametrize(("encoding", "pack"), [
    pytest.param("gzip", gzip.compress, id="gzip"),
    pytest.param("deflate", zlib.compress, id="deflate-zlib"),
    pytest.param("deflate", lambda b: zlib.compress(b)[2:-4], id="deflate-raw"),
])
async def test_compressed_bodies_are_undone(encoding: str, pack: Callable[[bytes], bytes]) -> None:
    body = b"<rss>" + b"news " * 500 + b"</rss>"
    async with RawServer(lambda head: ok(pack(body), f"Content-Encoding: {encoding}")) as srv:
        async with client() as c:
            got = await c.get(srv.url())
    assert got.body == body and b"Accept-Encoding: gzip, deflate" in srv.heads[0]


@pytest.mark.parametrize(("response", "error"), [
    pytest.param(ok(b"x" * 20_000), "response of 20000 bytes exceeds max_bytes", id="declared"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 20_000, "exceeds max_bytes", id="until-close"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"ffff\r\n",
                 "exceeds max_bytes", id="chunk-size"),
    pytest.param(ok(gzip.compress(b"\0" * 1_000_000), "Content-Encoding: gzip"),
                 "exceeds max_bytes 10000 when decompressed", id="gzip-bomb"),
])
async def test_nothing_over_max_bytes_is_read(response: bytes, error: str) -> None:
    async with RawServer(lambda head: response) as srv, client() as c:
        with pytest.raises(http.TooLarge, match=error):
            await c.get(srv.url())


@pytest.mark.parametrize("response", [
    pytest.param(b"SPDY/9 200 OK\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="bad-status"),
    pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", id="bad-header"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", id="head-too-big"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", id="too-many-headers"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                 id="chunk-overrun"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="cut-off"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", id="switching"),
    pytest.param(ok(b"xx", "Content-Encoding: br"), id="unknown-encoding"),
    pytest.param(ok(b"not gzip", "Content-Encoding: gzip"), id="bad-gzip"),
])
async def test_a_malformed_response_is_an_error(response: bytes) -> None:
    async with RawServer(lambda head: response, close_after=True) as srv, client() as c:
        with pytest.raises(http.HTTPError):
            await c.get(srv.url())


async def test_redirects_are_followed_relative_or_not() -> None:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"GET /a "):
            return b"HTTP/1.1 301 Moved\r\nLocation: /b?x=1\r\nContent-Length: 0\r\n\r\n"
        if head.startswith(b"GET /b?x=1 "):
            return b"HTTP/1.1 302 Found\r\nLocation: c\r\nContent-Length: 0\r\n\r\n"
        return ok(b"<rss/>")

    async with RawServer(answer) as srv, client() as c:
        got = await c.get(srv.url("/a"))
    assert got.body == b"<rss/>" and got.url == srv.url("/c")


async def test_too_many_redirects() -> None:
    loop = b"HTTP/1.1 302 Found\r\nLocation: /f.xml\r\nContent-Length: 0\r\n\r\n"
    async with RawServer(lambda head: loop) as srv, client(max_redirects=3) as c:
        with pytest.raises(http.TooManyRedirects):
            await c.get(srv.url())
    assert len(srv.heads) == 4


async def test_credentials_in_the_url_go_to_their_origin_only() -> None:
    async with RawServer(lambda head: ok(b"elsewhere")) as other:
        def answer(head: bytes) -> bytes:
            if head.startswith(b"GET /go "):
                return (f"HTTP/1.1 302 Found\r\nLocation: {other.url()}\r\n"
                        "Content-Length: 0\r\n\r\n").encode()
            return ok(b"here")

        async with RawServer(answer) as srv, client() as c:
            url = srv.url("/f.xml").replace("://", "://us%40er:p%3Ass@")
            assert (await c.get(url)).body == b"here"
            assert b"Authorization: Basic dXNAZXI6cDpzcw==\r\n" in srv.heads[0]  # us@er:p:ss
            await c.get(url.replace("/f.xml", "/go"))
        assert b"Authorization" not in other.heads[0]


async def test_header_values_cannot_inject_lines() -> None:
    async with RawServer(lambda head: ok(b"x")) as srv, client() as c:
        await c.get(srv.url(), {"If-None-Match": '"a"\r\nX-Evil: 1', "If-Modified-Since": "x"})
    assert b"X-Evil" not in srv.heads[0] and b"If-Modified-Since: x" in srv.heads[0]


async def test_refused_and_unsupported_urls_are_connect_errors() -> None:
    async with RawServer(lambda head: ok(b"x")) as srv:
        port = srv.port
    async with client() as c:
        with pytest.raises(http.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/f.xml")
        with pytest.raises(http.ConnectError, match="cannot fetch a ftp URL"):
            await c.get("ftp://127.0.0.1/f.xml")


async def test_a_cancelled_request_does_not_leave_its_connection_for_the_next() -> None:
    hang = asyncio.Event()
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", ok(b"fresh")])
    async with RawServer(lambda head: next(answers)) as srv, client() as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await c.get(srv.url())  # two bytes of five, then nothing
        assert not hang.is_set()
        assert (await c.get(srv.url())).body == b"fresh"
        assert srv.connections == 2


async def test_https_with_a_trusted_certificate_only() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with RawServer(lambda head: ok(b"<rss/>"), ssl_context=server_ctx) as srv:
        async with http.Client(max_bytes=1000, user_agent="t", ssl_context=client_ctx) as c:
            assert (await c.get(srv.url(scheme="https"))).body == b"<rss/>"
        async with http.Client(max_bytes=1000, user_agent="t") as c:  # the system's CAs
            with pytest.raises(http.ConnectError):
                await c.get(srv.url(scheme="https"))




async def test_idle_connections_are_bounded_oldest_closed_first() -> None:
    servers = [RawServer(lambda head: ok(b"x")) for _ in range(4)]
    for srv in servers:
        await srv.__aenter__()
    try:
        async with client(max_idle=2) as c:
            for srv in servers:  # four origins, one kept-alive connection each
                await c.get(srv.url())
            assert c._pooled == 2
            for srv in servers:  # the two oldest were closed: new connections
                await c.get(srv.url())
            assert [srv.connections for srv in servers] == [2, 2, 2, 2]
            await c.get(servers[3].url())  # the newest is still kept
            assert servers[3].connections == 2 and c._pooled == 2
    finally:
        for srv in servers:
            await srv.__aexit__()
