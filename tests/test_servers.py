"""The test servers themselves behave like the real thing where we rely on it."""

from __future__ import annotations

import asyncio
import gzip
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

import aiohttp
import pytest
from servers import FeedServer, SlackServer, SMTPServer


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def _api(
    slack: SlackServer, method: str, body: dict[str, object], token: str | None
) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        slack.base_url + method, data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


# --------------------------------------------------------------------------- feeds


def test_feed_etag_and_last_modified_give_304(feed_server: FeedServer) -> None:
    feed_server.set("/a.rss", "<rss/>")
    status, headers, body = _get(feed_server.url("/a.rss"))
    assert (status, body) == (200, b"<rss/>")
    etag, modified = headers["ETag"], headers["Last-Modified"]

    assert _get(feed_server.url("/a.rss"), {"If-None-Match": etag})[0] == 304
    assert _get(feed_server.url("/a.rss"), {"If-Modified-Since": modified})[0] == 304
    # If-None-Match wins over If-Modified-Since
    assert (
        _get(feed_server.url("/a.rss"), {"If-None-Match": '"x"', "If-Modified-Since": modified})[0]
        == 200
    )

    feed_server.set("/a.rss", "<rss>new</rss>")
    status, _, body = _get(feed_server.url("/a.rss"), {"If-None-Match": etag})
    assert (status, body) == (200, b"<rss>new</rss>")
    assert [r.status for r in feed_server.requests_for("/a.rss")] == [200, 304, 304, 200, 200]
    assert feed_server.requests[1].headers["If-None-Match"] == etag


def test_feed_gzip_fail_and_404(feed_server: FeedServer) -> None:
    feed_server.set("/z.rss", "<rss/>" * 100)
    status, headers, body = _get(feed_server.url("/z.rss"), {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == b"<rss/>" * 100

    feed_server.fail("/z.rss", 503, retry_after=120)
    status, headers, _ = _get(feed_server.url("/z.rss"))
    assert (status, headers["Retry-After"]) == (503, "120")
    assert _get(feed_server.url("/nope.rss"))[0] == 404


async def test_feed_hang_times_out(feed_server: FeedServer) -> None:
    feed_server.hang("/slow.rss")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await session.get(feed_server.url("/slow.rss"))
    assert feed_server.requests_for("/slow.rss")


# --------------------------------------------------------------------------- Slack


def test_slack_auth_and_channels(slack_server: SlackServer) -> None:
    post = {"channel": "#alerts", "text": "hi"}
    assert _api(slack_server, "chat.postMessage", post, "wrong") == {
        "ok": False,
        "error": "invalid_auth",
    }
    assert _api(slack_server, "chat.postMessage", post, None)["error"] == "not_authed"
    missing = _api(
        slack_server, "chat.postMessage", {"channel": "#nope", "text": "x"}, slack_server.token
    )
    assert missing["error"] == "channel_not_found"
    assert slack_server.messages == []


def test_slack_history_includes_metadata_newest_first(slack_server: SlackServer) -> None:
    token = slack_server.token
    meta = {"event_type": "news_monitor_alert", "event_payload": {"alert_id": "a1"}}
    first = _api(
        slack_server,
        "chat.postMessage",
        {"channel": "alerts", "text": "one", "metadata": meta},
        token,
    )
    second = _api(slack_server, "chat.postMessage", {"channel": "C123ALERTS", "text": "two"}, token)
    assert first["ok"] and first["channel"] == "C123ALERTS"
    assert float(str(second["ts"])) > float(str(first["ts"]))

    history = _api(
        slack_server,
        "conversations.history",
        {"channel": "C123ALERTS", "include_all_metadata": True},
        token,
    )
    messages = history["messages"]
    assert isinstance(messages, list)
    assert [m["text"] for m in messages] == ["two", "one"]
    assert messages[1]["metadata"] == meta
    plain = _api(slack_server, "conversations.history", {"channel": "C123ALERTS"}, token)
    assert isinstance(plain["messages"], list)
    assert "metadata" not in plain["messages"][1]

    update = {"channel": "C123ALERTS", "ts": first["ts"], "text": "one, edited"}
    assert _api(slack_server, "chat.update", update, token)["ok"]
    assert slack_server.messages[0].text == "one, edited"


def test_slack_faults(slack_server: SlackServer) -> None:
    slack_server.fail_next(1, status=429, retry_after=2)
    with pytest.raises(urllib.error.HTTPError) as info:
        _api(
            slack_server, "chat.postMessage", {"channel": "alerts", "text": "x"}, slack_server.token
        )
    with info.value as exc:
        assert (exc.code, exc.headers["Retry-After"]) == (429, "2")
    assert _api(
        slack_server, "chat.postMessage", {"channel": "alerts", "text": "x"}, slack_server.token
    )["ok"]

    slack_server.drop_next(1)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _api(
            slack_server,
            "chat.postMessage",
            {"channel": "alerts", "text": "kept"},
            slack_server.token,
        )
    assert slack_server.messages[-1].text == "kept"  # stored although nobody heard back


def test_slack_webhook(slack_server: SlackServer) -> None:
    request = urllib.request.Request(
        slack_server.webhook_url,
        data=b'{"text": "hello"}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok")
    assert slack_server.webhook_posts[0].body == {"text": "hello"}


# --------------------------------------------------------------------------- SMTP


def _mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.org", "hi"
    msg.set_content("body")
    return msg


def test_smtp_receives(smtp_server: SMTPServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(_mail())
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == ("b@example.org",)
    assert mail.message["Subject"] == "hi"

    smtp_server.fail_next(1, 451)
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.send_message(_mail())
    assert info.value.smtp_code == 451


def test_smtp_starttls_auth() -> None:
    with SMTPServer(auth=("alice", "pw"), starttls=True) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=server.client_context())
            client.login("alice", "pw")
            client.send_message(_mail())
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=server.client_context())
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
    (mail,) = server.received
    assert mail.tls and mail.authenticated_as == "alice"


def test_smtp_implicit_tls() -> None:
    with SMTPServer(implicit_tls=True) as server:
        ctx: ssl.SSLContext = server.client_context()
        with smtplib.SMTP_SSL(server.host, server.port, timeout=5, context=ctx) as client:
            client.send_message(_mail())
    assert server.received[0].tls
