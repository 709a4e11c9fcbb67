"""Real local servers for the test suite: feeds, Slack, SMTP, all on 127.0.0.1.

Tests talk to these over real sockets instead of mocking aiohttp, slack-sdk or
aiosmtplib, so the code under test runs exactly as in production, and the same
servers work for in-process async tests and for tests that run the CLI as a
subprocess.

Each server runs in a background thread with its own event loop, so it keeps
answering while the test's own loop is blocked or busy, and while a subprocess
talks to it. Their API is plain and synchronous (``set``, ``fail_next``,
``messages``...), guarded by a lock, and each is a context manager::

    with FeedServer() as feeds, SlackServer() as slack, SMTPServer() as smtp:
        feeds.set("/world.rss", RSS)
        ...

``FeedServer``
    Serves feeds set with :meth:`FeedServer.set`, changeable between polls, with
    ETag / Last-Modified -> 304, gzip when the client accepts it, programmable
    failures (:meth:`~FeedServer.fail`) and hangs (:meth:`~FeedServer.hang`).
``SlackServer``
    Speaks enough of Slack's Web API (chat.postMessage, chat.update,
    conversations.history, conversations.list) and the incoming-webhook protocol
    to exercise our sender, with Slack's error codes and programmable outages.
``SMTPServer``
    aiosmtpd with optional AUTH, STARTTLS or implicit TLS (trustme certificates)
    and programmable 4xx/5xx answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email
import email.policy
import gzip
import hashlib
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free a moment ago (aiosmtpd needs a real one up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class _ThreadedAiohttpServer:
    """An aiohttp.web application served from a thread with its own event loop.

    Subclasses build the app in :meth:`_make_app`; handlers run on the server's
    loop and share state with the test thread through ``self._lock``, which is
    only ever held for a few plain statements (never across an ``await``).
    """

    #: seconds aiohttp waits for in-flight handlers on stop; hanging handlers
    #: are released before that (see ``_stopping``), so this is only a backstop.
    shutdown_timeout = 2.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    def _make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}-thread", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already gone
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start() if it happens early
            self._startup_error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self._make_app(), shutdown_timeout=self.shutdown_timeout, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            self._stopping.set()  # releases hanging handlers so cleanup is quick
            await runner.cleanup()

    async def _hang(self) -> web.StreamResponse:
        """Never answer (until the server stops): for client timeout tests."""
        assert self._stopping is not None
        await self._stopping.wait()
        return web.Response(status=503, text="server stopping")


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the feed server saw it."""

    method: str
    path: str
    headers: Mapping[str, str]
    status: int
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass(slots=True)
class _Resource:
    body: bytes
    content_type: str
    status: int
    headers: dict[str, str]
    etag: str | None
    last_modified: datetime | None
    gzip: bool
    fault: int | None = None  # answer with this status instead
    fault_headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class FeedServer(_ThreadedAiohttpServer):
    """Serves feed documents that tests change between polls.

    ``set()`` gives each body a strong ETag (a hash of the body) and a
    Last-Modified of the moment it was set, unless ``headers`` supplies them or
    ``etag=False`` / ``last_modified=False`` turns them off; matching
    If-None-Match / If-Modified-Since get 304 with no body. When the client
    sends ``Accept-Encoding: gzip`` the body goes out gzipped (``gzip=False``
    turns that off). Unknown paths are 404. Every request is recorded in
    :attr:`requests`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._resources: dict[str, _Resource] = {}
        self._requests: list[RecordedRequest] = []

    # -- test API

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.origin + path

    def set(
        self,
        path: str,
        body: bytes | str,
        content_type: str = "application/rss+xml",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        etag: bool = True,
        last_modified: bool | datetime = True,
        gzip: bool = True,
    ) -> None:
        """Serve ``body`` at ``path`` from now on (replacing any earlier body or fault)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        extra = dict(headers or {})
        lower = {k.lower(): v for k, v in extra.items()}
        tag = lower.get("etag")
        if tag is None and etag:
            tag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        modified: datetime | None
        if "last-modified" in lower:
            modified = parsedate_to_datetime(lower["last-modified"])
        elif isinstance(last_modified, datetime):
            modified = last_modified
        elif last_modified:
            modified = datetime.now(UTC).replace(microsecond=0)
        else:
            modified = None
        extra = {k: v for k, v in extra.items() if k.lower() not in ("etag", "last-modified")}
        with self._lock:
            self._resources[_norm(path)] = _Resource(
                body=data,
                content_type=content_type,
                status=status,
                headers=extra,
                etag=tag,
                last_modified=modified,
                gzip=gzip,
            )

    def fail(self, path: str, status: int = 500, *, retry_after: int | str | None = None) -> None:
        """Answer ``status`` at ``path`` until the next ``set()`` (optionally with Retry-After)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            res = self._resources.setdefault(_norm(path), _empty_resource())
            res.fault, res.fault_headers, res.hang = status, headers, False

    def hang(self, path: str) -> None:
        """Never answer requests for ``path`` until the next ``set()`` or stop."""
        with self._lock:
            res = self._resources.setdefault(_norm(path), _empty_resource())
            res.hang, res.fault = True, None

    def remove(self, path: str) -> None:
        with self._lock:
            self._resources.pop(_norm(path), None)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == _norm(path)]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- server side

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            res = copy.copy(self._resources.get(path))
        if res is not None and res.hang:
            self._record(request, 0)
            return await self._hang()
        response = self._respond(request, res)
        self._record(request, response.status)
        return response

    def _record(self, request: web.Request, status: int) -> None:
        with self._lock:
            self._requests.append(
                RecordedRequest(request.method, request.path, dict(request.headers), status,
                                time.monotonic())
            )

    def _respond(self, request: web.Request, res: _Resource | None) -> web.Response:
        if res is None or (res.fault is None and res.status == 404 and not res.body):
            return web.Response(status=404, text="not found")
        if res.fault is not None:
            return web.Response(status=res.fault, text="failing", headers=res.fault_headers)
        headers = dict(res.headers)
        if res.etag is not None:
            headers["ETag"] = res.etag
        if res.last_modified is not None:
            headers["Last-Modified"] = format_datetime(res.last_modified, usegmt=True)
        if res.status == 200 and _not_modified(request, res):
            return web.Response(status=304, headers=headers)
        body = res.body
        if res.gzip and "gzip" in request.headers.get("Accept-Encoding", "").lower():
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        headers["Content-Type"] = res.content_type
        return web.Response(status=res.status, body=body, headers=headers)


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _empty_resource() -> _Resource:
    return _Resource(
        body=b"",
        content_type="text/plain",
        status=404,
        headers={},
        etag=None,
        last_modified=None,
        gzip=False,
    )


def _not_modified(request: web.Request, res: _Resource) -> bool:
    """RFC 9110 13.1: If-None-Match wins; If-Modified-Since only without it."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if res.etag is None:
            return False
        wanted = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in wanted or res.etag.removeprefix("W/") in wanted
    ims = request.headers.get("If-Modified-Since")
    if ims is not None and res.last_modified is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return res.last_modified <= since
    return False


# --------------------------------------------------------------------------- Slack


@dataclass(slots=True)
class SlackMessage:
    """A message as the fake Slack stored it (updated in place by chat.update)."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    thread_ts: str | None
    params: dict[str, Any]  # the whole request, as decoded


@dataclass(frozen=True, slots=True)
class SlackUpdate:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class WebhookPost:
    path: str
    body: dict[str, Any]


@dataclass(slots=True)
class _Fault:
    status: int
    retry_after: int | None
    error: str | None
    remaining: int | None = None  # None: time-based
    until: float | None = None  # time.monotonic() deadline


class SlackServer(_ThreadedAiohttpServer):
    """A small, strict imitation of Slack's Web API and incoming webhooks.

    Web API (``base_url`` = ``http://127.0.0.1:PORT/api/``): chat.postMessage,
    chat.update, conversations.history, conversations.list. Bodies may be JSON
    or form-encoded; the token is checked (``Authorization: Bearer`` or a
    ``token`` field) against ``token``: none -> ``not_authed``, wrong ->
    ``invalid_auth``. Channels are addressed by id or, for posting, by name
    (with or without ``#``), as Slack allows; conversations.history wants an id,
    as Slack does. Logical errors come back as HTTP 200 ``{"ok": false,
    "error": code}``, like Slack: ``channel_not_found``, ``no_text``,
    ``msg_too_long``, ``invalid_blocks`` (more than 50 blocks, a header over 150
    characters or not plain_text, section text over 3000), ``message_not_found``.

    Incoming webhook: ``POST /webhook/<anything>`` with a JSON body answers 200
    ``ok``; bad JSON -> 400 ``invalid_payload``; neither text nor blocks -> 400
    ``no_text``.

    Faults, applied to the next requests of either kind: :meth:`fail_next`,
    :meth:`fail_for`, and :meth:`drop_next` (the post is stored, then the
    connection is dropped before any answer: "Slack got it, we didn't hear").
    """

    def __init__(
        self,
        token: str = "xoxb-test-token",
        channels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        #: channel name (without '#') -> id
        self.channels: dict[str, str] = dict(
            channels if channels is not None else {"alerts": "C123ALERTS", "news": "C123NEWS"}
        )
        self._messages: list[SlackMessage] = []
        self._updates: list[SlackUpdate] = []
        self._webhook_posts: list[WebhookPost] = []
        self._calls: list[str] = []
        self._faults: list[_Fault] = []
        self._drop = 0
        self._drop_answer: int | None = None
        self._denied: set[str] = set()
        self._last_ts = 0.0

    # -- test API

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.origin}/webhook/T0000/B0000/s3cr3tw3bh00kp4th"

    def channel_id(self, name: str) -> str:
        return self.channels[name.lstrip("#")]

    def add_channel(self, name: str, channel_id: str) -> None:
        with self._lock:
            self.channels[name.lstrip("#")] = channel_id

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        retry_after: int | None = None,
        *,
        error: str | None = None,
    ) -> None:
        """Fail the next ``n`` requests with ``status``.

        429 carries ``Retry-After`` (default 2 seconds). ``error`` sets Slack's
        error code; with ``status=200`` that gives an ``ok: false`` answer
        (e.g. ``fail_next(1, 200, error="internal_error")``).
        """
        if status == 429 and retry_after is None:
            retry_after = 2
        with self._lock:
            self._faults.append(_Fault(status, retry_after, error, remaining=n))

    def fail_for(
        self,
        seconds: float,
        status: int = 503,
        retry_after: int | None = None,
        *,
        error: str | None = None,
    ) -> None:
        """Fail every request for the next ``seconds`` (an outage)."""
        with self._lock:
            self._faults.append(
                _Fault(status, retry_after, error, until=time.monotonic() + seconds)
            )

    def drop_next(self, n: int = 1, answer: int | None = None) -> None:
        """Store the next ``n`` posts, then drop the connection without answering, or
        with ``answer``, answer that HTTP status with a gateway's HTML page (a
        proxy's 502 after Slack took the post)."""
        with self._lock:
            self._drop += n
            self._drop_answer = answer

    def deny(self, method: str) -> None:
        """Answer ``method`` with ``missing_scope`` from now on (an app installed
        without, say, channels:history)."""
        with self._lock:
            self._denied.add(method)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._drop = 0

    @property
    def messages(self) -> list[SlackMessage]:
        """Posted messages, oldest first (copies: later updates do not change them)."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages]

    @property
    def updates(self) -> list[SlackUpdate]:
        with self._lock:
            return list(self._updates)

    @property
    def webhook_posts(self) -> list[WebhookPost]:
        with self._lock:
            return list(self._webhook_posts)

    @property
    def calls(self) -> list[str]:
        """Every API method or webhook path requested, in order (faulted ones too)."""
        with self._lock:
            return list(self._calls)

    # -- server side

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        app.router.add_route("*", "/api/conversations.history", self._history)
        app.router.add_route("*", "/api/conversations.list", self._list)
        app.router.add_post("/webhook/{tail:.*}", self._webhook)
        return app

    def _take_fault(self) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [
                f
                for f in self._faults
                if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > now)
            ]
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def _next_ts(self) -> str:
        # Slack's ts is "seconds.micro", unique per channel and increasing.
        with self._lock:
            ts = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = ts
        return f"{ts:.6f}"

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    params[key] = value if isinstance(value, str) else str(value)
                for key in ("blocks", "metadata"):  # form bodies carry these as JSON text
                    if isinstance(params.get(key), str):
                        with contextlib.suppress(ValueError):
                            params[key] = json.loads(params[key])
        return params

    def _auth_error(self, request: web.Request, params: Mapping[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        token = token or params.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _resolve(self, channel: object, *, names: bool = True) -> str | None:
        if not isinstance(channel, str) or not channel:
            return None
        with self._lock:
            if channel in self.channels.values():
                return channel
            if names:
                return self.channels.get(channel.lstrip("#"))
        return None

    async def _api_preamble(
        self, request: web.Request, method: str
    ) -> tuple[dict[str, Any], web.Response | None]:
        with self._lock:
            self._calls.append(method)
        fault = self._take_fault()
        if fault is not None:
            return {}, _fault_response(fault, webhook=False)
        params = await self._params(request)
        error = self._auth_error(request, params)
        if error is not None:
            return params, _slack_error(error)
        with self._lock:
            if method in self._denied:
                return params, _slack_error("missing_scope")
        return params, None

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        params, early = await self._api_preamble(request, "chat.postMessage")
        if early is not None:
            return early
        channel = self._resolve(params.get("channel"))
        if channel is None:
            return _slack_error("channel_not_found")
        error = _check_content(params)
        if error is not None:
            return _slack_error(error)
        thread_ts = params.get("thread_ts") or None
        message = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=params.get("text"),
            blocks=params.get("blocks"),
            metadata=params.get("metadata"),
            thread_ts=str(thread_ts) if thread_ts else None,
            params=params,
        )
        with self._lock:
            self._messages.append(message)
            drop = self._drop > 0
            if drop:
                self._drop -= 1
        if drop and self._drop_answer is not None:
            return web.Response(status=self._drop_answer, content_type="text/html",
                                text="<html><body><h1>502 Bad Gateway</h1></body></html>")
        if drop:
            return _drop_connection(request)
        return web.json_response(
            {"ok": True, "channel": channel, "ts": message.ts, "message": _as_event(message, True)}
        )

    async def _update(self, request: web.Request) -> web.StreamResponse:
        params, early = await self._api_preamble(request, "chat.update")
        if early is not None:
            return early
        channel = self._resolve(params.get("channel"), names=False)
        if channel is None:
            return _slack_error("channel_not_found")
        ts = str(params.get("ts", ""))
        error = _check_content(params)
        if error is not None:
            return _slack_error(error)
        with self._lock:
            found = next((m for m in self._messages if m.channel == channel and m.ts == ts), None)
            if found is None:
                return _slack_error("message_not_found")
            if "text" in params:
                found.text = params["text"]
            if "blocks" in params:  # omitted blocks are kept, [] removes them
                found.blocks = params["blocks"] or None
            self._updates.append(SlackUpdate(channel, ts, params.get("text"), params.get("blocks")))
            event = _as_event(found, True)
        return web.json_response(
            {"ok": True, "channel": channel, "ts": ts, "text": event.get("text"), "message": event}
        )

    async def _history(self, request: web.Request) -> web.StreamResponse:
        params, early = await self._api_preamble(request, "conversations.history")
        if early is not None:
            return early
        channel = self._resolve(params.get("channel"), names=False)
        if channel is None:
            return _slack_error("channel_not_found")
        limit = max(1, min(int(params.get("limit") or 100), 999))
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        inclusive = _truthy(params.get("inclusive"))
        with_meta = _truthy(params.get("include_all_metadata"))
        with self._lock:
            # history lists channel messages, not thread replies (unless broadcast)
            found = [
                _as_event(m, with_meta)
                for m in reversed(self._messages)
                if m.channel == channel
                and (m.thread_ts is None or m.thread_ts == m.ts)
                and (
                    oldest <= float(m.ts) <= latest if inclusive else oldest < float(m.ts) < latest
                )
            ]
        start = int(params.get("cursor") or 0)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return web.json_response(
            {
                "ok": True,
                "messages": page,
                "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        )

    async def _list(self, request: web.Request) -> web.StreamResponse:
        params, early = await self._api_preamble(request, "conversations.list")
        if early is not None:
            return early
        with self._lock:
            channels = [{"id": cid, "name": name} for name, cid in self.channels.items()]
        return web.json_response(
            {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}
        )

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._calls.append("webhook")
        fault = self._take_fault()
        if fault is not None:
            return _fault_response(fault, webhook=True)
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        error = _check_content(body)
        if error is not None:
            return web.Response(status=400, text=error)
        with self._lock:
            self._webhook_posts.append(WebhookPost(request.path, body))
            drop = self._drop > 0
            if drop:
                self._drop -= 1
        if drop:
            return _drop_connection(request)
        return web.Response(status=200, text="ok")


def _truthy(value: object) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _slack_error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


def _fault_response(fault: _Fault, *, webhook: bool) -> web.Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    code = fault.error or {429: "ratelimited", 503: "service_unavailable"}.get(
        fault.status, "internal_error"
    )
    if webhook:
        return web.Response(status=fault.status, text=code, headers=headers)
    return web.json_response({"ok": False, "error": code}, status=fault.status, headers=headers)


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the socket without a response: the client sees a disconnect."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # nothing to send; aiohttp treats it as a gone client


def _check_content(params: Mapping[str, Any]) -> str | None:
    """The subset of Slack's validation our sender could trip over."""
    text, blocks = params.get("text"), params.get("blocks")
    if not text and not blocks:
        return "no_text"
    if isinstance(text, str) and len(text) > 40_000:
        return "msg_too_long"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            return "invalid_blocks"
        obj = block.get("text")
        if block["type"] == "header":
            if not isinstance(obj, dict) or obj.get("type") != "plain_text":
                return "invalid_blocks"
            if len(obj.get("text", "")) > 150:
                return "invalid_blocks"
        if block["type"] == "section" and isinstance(obj, dict):
            if len(obj.get("text", "")) > 3000:
                return "invalid_blocks"
        if block["type"] == "context" and len(block.get("elements", [])) > 10:
            return "invalid_blocks"
    return None


def _as_event(message: SlackMessage, with_metadata: bool) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "user": "U0BOT",
        "bot_id": "B0BOT",
        "ts": message.ts,
        "text": message.text or "",
    }
    if message.blocks:
        event["blocks"] = copy.deepcopy(message.blocks)
    if message.thread_ts:
        event["thread_ts"] = message.thread_ts
    if with_metadata and message.metadata:
        event["metadata"] = {
            "event_type": message.metadata.get("event_type"),
            "event_payload": copy.deepcopy(message.metadata.get("event_payload", {})),
        }
    return event


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool


class _Handler:
    """aiosmtpd handler: records messages and answers with programmed failures."""

    def __init__(self, server: SMTPServer) -> None:
        self._server = server

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._server._take_reply("rcpt")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._server._take_reply("data")
        if reply is not None:
            return reply
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            authenticated_as=login.decode() if isinstance(login, bytes) else login,
            tls=session.ssl is not None  # after STARTTLS
            or (
                server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None
            ),
        )
        with self._server._lock:
            self._server._received.append(mail)
        return "250 Message accepted for delivery"


class SMTPServer:
    """aiosmtpd on 127.0.0.1 with a free port; records what it receives.

    ``auth=("user", "password")`` enables AUTH PLAIN/LOGIN for that one account
    (``auth_required`` refuses mail without it). ``starttls=True`` offers
    STARTTLS, ``implicit_tls=True`` speaks TLS from the first byte; both use a
    trustme certificate for 127.0.0.1 whose CA is in :attr:`cert_bundle` (a
    PEM file) and :meth:`client_context`. As aiosmtpd does by default, AUTH is
    only offered over TLS unless ``auth_require_tls=False``.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        starttls: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedMail] = []
        self._replies: list[tuple[str, str]] = []  # (stage, reply)
        self._auth = auth
        self._auth_required = auth_required
        self._auth_require_tls = auth_require_tls
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._controller: Controller | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca: trustme.CA | None = None
        self.cert_bundle: str | None = None
        self.host = HOST
        self.port = 0

    def start(self) -> Self:
        server_ctx: ssl.SSLContext | None = None
        if self._starttls or self._implicit_tls:
            self.ca = trustme.CA()
            cert = self.ca.issue_cert(HOST, "localhost")
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(server_ctx)
            self._tmp = tempfile.TemporaryDirectory(prefix="smtp-ca-")
            bundle = Path(self._tmp.name) / "ca.pem"
            self.ca.cert_pem.write_to_path(str(bundle))
            self.cert_bundle = str(bundle)
        kwargs: dict[str, Any] = {
            "auth_required": self._auth_required,
            "auth_require_tls": self._auth_require_tls,
        }
        if self._auth is not None:
            kwargs["authenticator"] = self._authenticate
        if self._starttls and server_ctx is not None:
            kwargs["tls_context"] = server_ctx
        self.port = free_port()
        self._controller = Controller(
            _Handler(self),
            hostname=HOST,
            port=self.port,
            ssl_context=server_ctx if self._implicit_tls else None,
            server_hostname=HOST,
            **kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts this server's certificate."""
        if self.ca is None:
            raise RuntimeError("server was started without TLS")
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def fail_next(
        self, n: int = 1, code: int = 550, message: str | None = None, *, stage: str = "data"
    ) -> None:
        """Answer ``code`` to the next ``n`` messages, at DATA or (``stage="rcpt"``) RCPT TO."""
        if stage not in ("data", "rcpt"):
            raise ValueError("stage must be 'data' or 'rcpt'")
        text = message or ("5.7.1 Message rejected" if code >= 500 else "4.3.0 Try again later")
        with self._lock:
            self._replies.extend([(stage, f"{code} {text}")] * n)

    @property
    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    def _take_reply(self, stage: str) -> str | None:
        with self._lock:
            for i, (s, reply) in enumerate(self._replies):
                if s == stage:
                    del self._replies[i]
                    return reply
        return None

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        assert self._auth is not None
        user, password = self._auth
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


__all__ = [
    "FeedServer",
    "RecordedRequest",
    "ReceivedMail",
    "SMTPServer",
    "SlackMessage",
    "SlackServer",
    "SlackUpdate",
    "WebhookPost",
    "free_port",
]
