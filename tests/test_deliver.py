"""Senders against real local servers: what arrives, and how failures are classified."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from servers import FeedServer, SlackServer, SMTPServer, free_port

from monitor.deliver import ConsoleSender, EmailSender, SlackSender
from monitor.deliver.email import message_id
from monitor.errors import DeliveryError, PermanentDeliveryError
from monitor.render import Renderer
from monitor.types import Alert, Entry, Receipt, Rendered, Source, Story

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
WHEN = datetime(2024, 5, 1, 14, 3, tzinfo=UTC)
TOKEN = "xoxb-test-token"


def make_alert(alert_id: str = "alert-1", title: str = "Grain deal collapses") -> Alert:
    entry = Entry(
        feed="Reuters",
        key="k1",
        guid=None,
        link="https://example.org/grain",
        canonical_url="https://example.org/grain",
        title=title,
        summary="Talks over the grain corridor broke down.",
        published=WHEN,
    )
    return Alert(
        id=alert_id,
        watchlist="ukraine",
        destination="team",
        story_id="story-1",
        entry=entry,
        terms=("grain",),
        created_at=WHEN,
    )


RENDERER = Renderer(TEMPLATES)


def rendered(kind: str, alert: Alert, story: Story | None = None) -> Rendered:
    return RENDERER.alert(kind, alert, story)


@pytest.fixture
async def slack(slack_server: SlackServer) -> AsyncIterator[SlackSender]:
    sender = SlackSender(
        "team", token=TOKEN, channel="#alerts", base_url=slack_server.base_url, timeout=5
    )
    yield sender
    await sender.aclose()


@pytest.fixture
async def webhook(slack_server: SlackServer) -> AsyncIterator[SlackSender]:
    sender = SlackSender("hook", webhook_url=slack_server.webhook_url, timeout=5)
    yield sender
    await sender.aclose()


# --------------------------------------------------------------------------- Slack, bot token


async def test_slack_post_carries_metadata_and_returns_ts(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    alert = make_alert()
    receipt = await slack.send(alert, rendered("slack", alert))
    (message,) = slack_server.messages
    assert receipt == Receipt(remote_id=message.ts, remote_channel="C123ALERTS")
    assert message.metadata == {
        "event_type": "news_monitor_alert",
        "event_payload": {"alert_id": "alert-1", "story_id": "story-1"},
    }
    assert message.params["unfurl_links"] is False and message.params["unfurl_media"] is False
    assert message.text == "[ukraine] Grain deal collapses (Reuters)"
    assert message.blocks is not None and message.blocks[0]["type"] == "header"


async def test_slack_escapes_feed_text_end_to_end(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    alert = make_alert(title="<!channel> <@U123> <https://evil|click>")
    await slack.send(alert, rendered("slack", alert))
    (message,) = slack_server.messages
    assert "<!channel>" not in str(message.params) and "<@U123>" not in str(message.params)
    assert message.text is not None and "&lt;!channel&gt;" in message.text


async def test_find_posted_finds_the_alert_from_a_cold_start(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    alert = make_alert()
    receipt = await slack.send(alert, rendered("slack", alert))
    other = make_alert("alert-2")
    await slack.send(other, rendered("slack", other))

    # a fresh sender (as after a restart) knows only "#alerts", not the channel id
    fresh = SlackSender("team", token=TOKEN, channel="#alerts", base_url=slack_server.base_url)
    try:
        assert await fresh.find_posted("alert-1") == receipt
        assert await fresh.find_posted("never-sent") is None
    finally:
        await fresh.aclose()
    assert "conversations.list" in slack_server.calls


async def test_find_posted_after_the_answer_was_lost(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    """Slack stored the post but the connection dropped: retrying would post twice."""
    slack_server.drop_next(1)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await slack.send(alert, rendered("slack", alert))
    assert not info.value.permanent
    found = await slack.find_posted(alert.id)
    assert found is not None and found.remote_id == slack_server.messages[0].ts


async def test_history_reads_are_one_request_each_like_posts(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    """A read that meets a 5xx fails as a transient error after one request: the
    outbox retries it with backoff and counts the attempt (no hidden retries)."""
    alert = make_alert()
    receipt = await slack.send(alert, rendered("slack", alert))
    before = len(slack_server.calls)
    slack_server.fail_next(1, status=503)
    with pytest.raises(DeliveryError) as failed:
        await slack.find_posted(alert.id)
    assert not failed.value.permanent
    assert len(slack_server.calls) == before + 1
    assert await slack.find_posted(alert.id) == receipt
    slack_server.fail_next(1, status=503)
    with pytest.raises(DeliveryError):
        await slack.send(make_alert("alert-2"), rendered("slack", make_alert("alert-2")))
    assert len(slack_server.messages) == 1


async def test_update_changes_the_stored_message(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    alert = make_alert()
    receipt = await slack.send(alert, rendered("slack", alert))
    sent = _with_receipt(alert, receipt)
    story = Story(
        id="story-1",
        title="t",
        first_seen=WHEN,
        sources=(
            Source(feed="Reuters", title="t", link="https://r.example", seen_at=WHEN),
            Source(feed="AP", title="t", link="https://ap.example", seen_at=WHEN),
        ),
    )
    await slack.update(sent, rendered("slack", sent, story))
    (message,) = slack_server.messages
    assert "Also reported by: AP" in str(message.blocks)
    assert [u.ts for u in slack_server.updates] == [receipt.remote_id]


async def test_reply_threads_and_escapes(slack_server: SlackServer) -> None:
    sender = SlackSender(
        "team",
        token=TOKEN,
        channel="C123ALERTS",
        base_url=slack_server.base_url,
        thread_updates=True,
    )
    try:
        alert = make_alert()
        sent = _with_receipt(alert, await sender.send(alert, rendered("slack", alert)))
        await sender.reply(sent, "Also reported by AP: <!channel> news")
        parent, reply = slack_server.messages
        assert reply.thread_ts == parent.ts
        assert reply.text == "Also reported by AP: &lt;!channel&gt; news"
        assert reply.metadata is None
        assert await sender.find_posted(alert.id) == Receipt(
            remote_id=parent.ts, remote_channel="C123ALERTS"
        )
    finally:
        await sender.aclose()


async def test_reply_is_a_noop_without_thread_updates(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    alert = make_alert()
    sent = _with_receipt(alert, await slack.send(alert, rendered("slack", alert)))
    await slack.reply(sent, "more")
    assert len(slack_server.messages) == 1


@pytest.mark.parametrize(
    ("token", "channel", "code"),
    [
        pytest.param("xoxb-wrong-secret", "#alerts", "invalid_auth", id="invalid_auth"),
        pytest.param(TOKEN, "#no-such-channel", "channel_not_found", id="channel_not_found"),
    ],
)
async def test_slack_permanent_errors(
    slack_server: SlackServer, token: str, channel: str, code: str
) -> None:
    sender = SlackSender("team", token=token, channel=channel, base_url=slack_server.base_url)
    try:
        alert = make_alert()
        with pytest.raises(PermanentDeliveryError) as info:
            await sender.send(alert, rendered("slack", alert))
    finally:
        await sender.aclose()
    message = str(info.value)
    assert code in message and "'team'" in message
    assert "secret" not in message and TOKEN not in message


async def test_slack_429_is_retryable_with_retry_after(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    slack_server.fail_next(1, status=429, retry_after=2)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await slack.send(alert, rendered("slack", alert))
    assert not info.value.permanent
    assert info.value.retry_after == 2
    assert slack_server.calls == ["chat.postMessage"]  # slack-sdk did not retry by itself
    assert (await slack.send(alert, rendered("slack", alert))).remote_id


async def test_slack_503_is_retryable(slack: SlackSender, slack_server: SlackServer) -> None:
    slack_server.fail_next(1, status=503)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await slack.send(alert, rendered("slack", alert))
    assert not info.value.permanent and info.value.retry_after is None
    assert slack_server.calls == ["chat.postMessage"]


async def test_slack_ok_false_internal_error_is_retryable(
    slack: SlackSender, slack_server: SlackServer
) -> None:
    slack_server.fail_next(1, status=200, error="internal_error")
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await slack.send(alert, rendered("slack", alert))
    assert not info.value.permanent and "internal_error" in str(info.value)


async def test_slack_unreachable_is_retryable() -> None:
    port = free_port()
    sender = SlackSender(
        "team",
        token=TOKEN,
        channel="C123ALERTS",
        base_url=f"http://127.0.0.1:{port}/api/",
        timeout=5,
    )
    try:
        alert = make_alert()
        with pytest.raises(DeliveryError) as info:
            await sender.send(alert, rendered("slack", alert))
    finally:
        await sender.aclose()
    assert not info.value.permanent and "cannot connect" in str(info.value)


async def test_slack_timeout_is_retryable(feed_server: FeedServer) -> None:
    feed_server.hang("/api/chat.postMessage")  # any HTTP server that never answers will do
    sender = SlackSender(
        "team",
        token=TOKEN,
        channel="C123ALERTS",
        base_url=feed_server.url("/api/"),
        timeout=0.3,
    )
    try:
        alert = make_alert()
        with pytest.raises(DeliveryError) as info:
            await sender.send(alert, rendered("slack", alert))
    finally:
        await sender.aclose()
    assert not info.value.permanent and "timed out" in str(info.value)
    assert len(feed_server.requests) == 1


# --------------------------------------------------------------------------- Slack, webhook


async def test_webhook_posts(webhook: SlackSender, slack_server: SlackServer) -> None:
    alert = make_alert()
    receipt = await webhook.send(alert, rendered("slack", alert))
    assert receipt == Receipt()
    (post,) = slack_server.webhook_posts
    assert post.body["text"] == "[ukraine] Grain deal collapses (Reuters)"
    assert post.body["blocks"][0]["type"] == "header"
    assert post.body["unfurl_links"] is False
    assert await webhook.find_posted(alert.id) is None
    await webhook.update(_with_receipt(alert, Receipt(remote_id="1.2")), rendered("slack", alert))
    assert slack_server.updates == [] and slack_server.messages == []


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        pytest.param(404, "no_service", True, id="404-no_service"),
        pytest.param(403, "action_prohibited", True, id="403"),
        pytest.param(400, "invalid_payload", True, id="400-invalid_payload"),
        pytest.param(410, "channel_is_archived", True, id="410"),
        pytest.param(500, "internal_error", False, id="500"),
    ],
)
async def test_webhook_errors(
    webhook: SlackSender,
    slack_server: SlackServer,
    status: int,
    code: str,
    permanent: bool,
) -> None:
    slack_server.fail_next(1, status=status, error=code)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await webhook.send(alert, rendered("slack", alert))
    assert info.value.permanent is permanent
    assert code in str(info.value) and "s3cr3t" not in str(info.value)


async def test_webhook_429(webhook: SlackSender, slack_server: SlackServer) -> None:
    slack_server.fail_next(1, status=429, retry_after=7)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await webhook.send(alert, rendered("slack", alert))
    assert not info.value.permanent and info.value.retry_after == 7


async def test_webhook_unreachable_does_not_leak_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/webhook/T0/B0/s3cr3t"
    sender = SlackSender("hook", webhook_url=url, timeout=5)
    try:
        alert = make_alert()
        with pytest.raises(DeliveryError) as info:
            await sender.send(alert, rendered("slack", alert))
    finally:
        await sender.aclose()
    assert not info.value.permanent
    assert "s3cr3t" not in str(info.value) and info.value.__cause__ is None
    assert "s3cr3t" not in repr(sender)
    assert "s3cr3t" not in caplog.text  # slack-sdk logs URLs at DEBUG; ours never does


def test_slack_sender_needs_one_mode() -> None:
    with pytest.raises(ValueError):
        SlackSender("x")
    with pytest.raises(ValueError):
        SlackSender("x", token="t", channel="c", webhook_url="http://h/w")


# --------------------------------------------------------------------------- email


def email_sender(server: SMTPServer, **kwargs: object) -> EmailSender:
    options: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "sender": "news-monitor@example.org",
        "to": ["desk@example.org", "editor@example.org"],
        "timeout": 5,
    }
    options.update(kwargs)
    return EmailSender("desk", **options)  # type: ignore[arg-type]


def parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if not part.is_multipart() and isinstance(part, EmailMessage)
    }


async def test_email_multipart_with_deterministic_message_id(smtp_server: SMTPServer) -> None:
    sender = email_sender(smtp_server)
    alert = make_alert(title="Grain <script> deal")
    message = rendered("email", alert)
    first = await sender.send(alert, message)
    second = await sender.send(alert, message)  # a retry is recognisable as the same mail
    assert first == second == Receipt(remote_id="<alert-1@news-monitor>")

    mail = smtp_server.received[0]
    assert mail.mail_from == "news-monitor@example.org"
    assert mail.rcpt_tos == ("desk@example.org", "editor@example.org")
    msg = mail.message
    assert msg["Message-ID"] == "<alert-1@news-monitor>"
    assert msg["Subject"] == "[news-monitor] ukraine: Grain <script> deal"
    assert msg["Date"] is not None
    assert msg.get_content_type() == "multipart/alternative"
    body = parts(msg)
    assert "Grain <script> deal" in body["text/plain"]
    assert "<mark>Grain</mark> &lt;script&gt; deal" in body["text/html"]


async def test_email_starttls_and_auth_with_trustme() -> None:
    with SMTPServer(auth=("alice", "pw-secret"), starttls=True, auth_required=True) as server:
        sender = email_sender(
            server,
            starttls=True,
            username="alice",
            password="pw-secret",
            cert_bundle=server.cert_bundle,
        )
        alert = make_alert()
        await sender.send(alert, rendered("email", alert))

        wrong = email_sender(
            server,
            starttls=True,
            username="alice",
            password="wrong-secret",
            tls_context=server.client_context(),
        )
        with pytest.raises(PermanentDeliveryError) as info:
            await wrong.send(alert, rendered("email", alert))
    (mail,) = server.received
    assert mail.tls and mail.authenticated_as == "alice"
    assert "535" in str(info.value) and "secret" not in str(info.value)
    assert "secret" not in repr(wrong)


async def test_email_implicit_tls() -> None:
    with SMTPServer(implicit_tls=True) as server:
        sender = email_sender(server, tls=True, tls_context=server.client_context())
        alert = make_alert()
        await sender.send(alert, rendered("email", alert))
    assert server.received[0].tls


async def test_email_untrusted_certificate_is_retryable() -> None:
    with SMTPServer(starttls=True) as server:
        sender = email_sender(server, starttls=True)  # system trust store: not trustme's CA
        alert = make_alert()
        with pytest.raises(DeliveryError) as info:
            await sender.send(alert, rendered("email", alert))
    assert not info.value.permanent and server.received == []


async def test_email_starttls_required_but_not_offered_is_permanent(
    smtp_server: SMTPServer,
) -> None:
    sender = email_sender(smtp_server, starttls=True)
    alert = make_alert()
    with pytest.raises(PermanentDeliveryError):
        await sender.send(alert, rendered("email", alert))


@pytest.mark.parametrize(
    ("code", "stage", "permanent"),
    [
        pytest.param(550, "data", True, id="550-data"),
        pytest.param(451, "data", False, id="451-data"),
        pytest.param(550, "rcpt", True, id="550-rcpt"),
        pytest.param(450, "rcpt", False, id="450-rcpt"),
    ],
)
async def test_email_smtp_errors(
    smtp_server: SMTPServer, code: int, stage: str, permanent: bool
) -> None:
    smtp_server.fail_next(2 if stage == "rcpt" else 1, code, stage=stage)  # both recipients
    sender = email_sender(smtp_server)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await sender.send(alert, rendered("email", alert))
    assert info.value.permanent is permanent
    assert str(code) in str(info.value) and "'desk'" in str(info.value)
    assert smtp_server.received == []


async def test_email_one_recipient_refused_still_sends(smtp_server: SMTPServer) -> None:
    smtp_server.fail_next(1, 550, stage="rcpt")
    sender = email_sender(smtp_server)
    alert = make_alert()
    receipt = await sender.send(alert, rendered("email", alert))
    assert receipt.remote_id == "<alert-1@news-monitor>"
    assert smtp_server.received[0].rcpt_tos == ("editor@example.org",)


async def test_email_one_recipient_refused_for_now_gets_it_on_the_retry(
        smtp_server: SMTPServer) -> None:
    """Greylisting (450) for one recipient while the other took it: the alert was
    marked sent and that recipient never got it. Now the send fails for now,
    and the retry goes to that recipient alone, with the same Message-ID."""
    smtp_server.fail_next(1, 450, stage="rcpt")
    sender = email_sender(smtp_server)
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await sender.send(alert, rendered("email", alert))
    assert not info.value.permanent and "refused for now" in str(info.value)
    [first] = smtp_server.received
    receipt = await sender.send(alert, rendered("email", alert))
    assert receipt.remote_id == "<alert-1@news-monitor>"
    first_rcpt, second = smtp_server.received
    assert (first_rcpt.rcpt_tos, second.rcpt_tos) == (("editor@example.org",),
                                                      ("desk@example.org",))
    assert first.message["Message-ID"] == second.message["Message-ID"]
    # Done: the next alert goes to everyone again.
    other = make_alert(alert_id="alert-2")
    await sender.send(other, rendered("email", other))
    assert smtp_server.received[-1].rcpt_tos == ("desk@example.org", "editor@example.org")


async def test_email_server_down_is_retryable() -> None:
    sender = EmailSender(
        "desk",
        host="127.0.0.1",
        port=free_port(),
        sender="a@example.org",
        to=["b@example.org"],
        timeout=5,
        starttls=False,
    )
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await sender.send(alert, rendered("email", alert))
    assert not info.value.permanent


async def test_email_silent_server_times_out(feed_server: FeedServer) -> None:
    # an HTTP server never sends an SMTP greeting: the send must give up, retryably
    sender = EmailSender(
        "desk",
        host="127.0.0.1",
        port=feed_server.port,
        sender="a@example.org",
        to=["b@example.org"],
        timeout=0.3,
        starttls=False,
    )
    alert = make_alert()
    with pytest.raises(DeliveryError) as info:
        await sender.send(alert, rendered("email", alert))
    assert not info.value.permanent


async def test_email_digest_with_synthetic_alert(smtp_server: SMTPServer) -> None:
    digest = RENDERER.digest("email", "Daily digest", [("ukraine", [make_alert()])])
    carrier = make_alert(alert_id="digest:ukraine:2024-05-01")
    receipt = await email_sender(smtp_server).send(carrier, digest)
    assert receipt.remote_id == "<digest-ukraine-2024-05-01@news-monitor>"
    assert smtp_server.received[0].message["Subject"] == "[news-monitor] Daily digest"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("a1b2c3", "<a1b2c3@news-monitor>", id="hex"),
        pytest.param("digest:x y", "<digest-x-y@news-monitor>", id="unsafe-characters"),
        pytest.param("..a..b.", "<a.b@news-monitor>", id="dots"),
        pytest.param("", "<alert@news-monitor>", id="empty"),
    ],
)
def test_message_id(key: str, expected: str) -> None:
    assert message_id(key) == expected


# --------------------------------------------------------------------------- console


async def test_console_writes_to_stdout_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    sender = ConsoleSender("console")
    alert = make_alert()
    assert await sender.send(alert, rendered("console", alert)) == Receipt()
    out = capsys.readouterr().out
    assert out.startswith("[ukraine] Grain deal collapses\n") and out.endswith("\n\n")

    stream = io.StringIO()
    await ConsoleSender("console", stream=stream).send(alert, Rendered(text="hello"))
    assert stream.getvalue() == "hello\n\n"


# --------------------------------------------------------------------------- helpers


def _with_receipt(alert: Alert, receipt: Receipt) -> Alert:
    from dataclasses import replace

    return replace(alert, remote_id=receipt.remote_id, remote_channel=receipt.remote_channel)


async def test_a_story_joined_by_many_gets_a_few_replies_and_a_count(
        tmp_path: Path, slack_server: SlackServer) -> None:
    """An update posts at most REPLIES_PER_UPDATE thread replies about a story's new
    members; the rest are counted in one more, whatever the number of joins."""
    from monitor.dedupe import Join
    from monitor.deliver.outbox import REPLIES_PER_UPDATE, Outbox
    from monitor.store import PollRecord, StoredEntry, open_store

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    sender = SlackSender("team", token=TOKEN, channel="#alerts",
                         base_url=slack_server.base_url, timeout=5)
    try:
        alert = make_alert()
        sent = _with_receipt(alert, await sender.send(alert, rendered("slack", alert)))
        story = "story-1"
        members = [StoredEntry(entry=sent.entry, story_id=story, seen_at=WHEN)]
        for i in range(12):
            e = Entry(feed=f"Wire {i}", key=f"w{i}", guid=None, link=f"https://w{i}.example/",
                      canonical_url=f"https://w{i}.example/", title=f"Report {i}", summary="",
                      published=WHEN)
            members.append(StoredEntry(entry=e, story_id=story, seen_at=WHEN, join=Join(
                story_id=story, score=0.4, bar=0.35, how="tfidf", weak=True)))
        store.ingest(PollRecord(feed="Reuters", at=WHEN), members, [])
        outbox = Outbox(store, {"team": sender}, RENDERER, now=lambda: WHEN)
        await outbox._update(sender, replace(sent, story_id=story))
        replies = [m for m in slack_server.messages if m.thread_ts == sent.remote_id]
        assert len(replies) == REPLIES_PER_UPDATE + 1
        assert all("Possibly the same story: Wire" in (r.text or "")
                   for r in replies[:REPLIES_PER_UPDATE])
        assert (f"And {12 - REPLIES_PER_UPDATE} more reports, {12 - REPLIES_PER_UPDATE} of "
                "them possibly the same story") in (replies[-1].text or "")
    finally:
        await sender.aclose()
        store.close()


@pytest.mark.parametrize(("asked", "low", "high"), [
    (2.0, 2.0, 2.25),
    (0.0, 0.0, 0.25),
    (-5.0, 0.0, 0.25),
    (float("nan"), 0.0, 0.25),
    (2_592_000.0, 900.0, 900.25),  # a month: the destination's every alert waited
    (1e12, 900.0, 900.25),  # past a datetime's range
    (float("inf"), 900.0, 900.25),
])
def test_a_retry_after_is_honoured_up_to_the_cap(asked: float, low: float, high: float) -> None:
    import random

    from monitor.deliver.outbox import RetryPolicy

    delay = RetryPolicy().delay(3, asked, random.Random(1))
    assert low <= delay <= high
