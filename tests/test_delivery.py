"""Delivery timing with a controllable clock: digests, quiet hours, max_per_hour,
and a digest that fell due while the service was down. In-process Service
against the local Slack server and aiosmtpd."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer, SMTPServer

from monitor import config as cfg
from monitor.service import Service
from monitor.types import AlertStatus

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


def slack_text(slack: SlackServer) -> list[str]:
    return [str(m.text) + str(m.blocks) for m in slack.messages]


@pytest.fixture
def setup(tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
          smtp_server: SMTPServer) -> Iterator[tuple[Path, RSS]]:
    rss = RSS()
    feed_server.set("/f.xml", rss.render())
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "monitor.yaml").write_text(
        "state: sqlite:///state/monitor.db\n"
        f"feeds: [{{name: Wire, url: '{feed_server.url('/f.xml')}'}}]\n"
        f"templates: {ROOT / 'templates'}\n"
        "destinations:\n"
        f"  newsroom: {{type: slack, channel: '#alerts', token: xoxb-test-token, "
        f"base_url: '{slack_server.base_url}'}}\n"
        f"  desk-mail: {{type: email, host: 127.0.0.1, port: {smtp_server.port}, "
        "starttls: false, from: a@example.org, to: [desk@example.org]}\n")
    yield tmp_path, rss


def watchlist(tmp: Path, name: str, body: str) -> None:
    (tmp / "watchlists" / f"{name}.yaml").write_text(
        f"name: {name}\nall: [Ukraine]\nnotify: [newsroom, desk-mail]\n{body}")


async def cycle(service: Service, feed_server: FeedServer, rss: RSS) -> None:
    feed_server.set("/f.xml", rss.render())
    await service.poll_all()
    await service.outbox.drain(within=10)


HEADLINES = [
    "Ukraine grain exports resume through Odesa port",
    "EU agrees new sanctions package over Ukraine war",
    "Power cuts hit Kharkiv as Ukraine braces for winter",
    "Ukraine's central bank holds interest rate at 13.5%",
    "Football: Ukraine qualify for Euro finals after playoff win",
    "IMF approves $2.2bn loan tranche for Ukraine",
]


def publish(rss: RSS, n: int, clock: Clock) -> list[str]:
    """n distinct stories (different events: they must not be merged into one).
    Returns their links, which every message about them carries."""
    links = [f"https://wire.example/story-{i}" for i in range(n)]
    for title, link in zip(HEADLINES[:n], links, strict=True):
        rss.add(title, link, published=clock())
    return links


async def test_digest_every_hour(setup: tuple[Path, RSS], feed_server: FeedServer,
                                 slack_server: SlackServer, smtp_server: SMTPServer) -> None:
    tmp, rss = setup
    watchlist(tmp, "hourly", "mode: digest\nevery: 1h\n")
    clock = Clock(datetime(2026, 11, 25, 12, 10, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)  # first poll records
        titles = publish(rss, 2, clock)
        await cycle(service, feed_server, rss)
        assert slack_server.messages == [] and smtp_server.received == []
        clock.advance(minutes=49)  # 12:59: not yet
        await service.outbox.drain(within=5)
        assert slack_server.messages == []
        clock.advance(minutes=2)  # 13:01: the digest is due
        await service.outbox.drain(within=5)
        [digest] = slack_text(slack_server)
        assert all(t in digest for t in titles) and "Digest" in digest
        [mail] = smtp_server.received
        assert all(t in mail.message.get_body(("plain",)).get_content() for t in titles)
        # No stories, no digest.
        clock.advance(hours=1)
        await cycle(service, feed_server, rss)
        assert len(slack_server.messages) == 1 and len(smtp_server.received) == 1
        assert {a.status for a in service.store.list_alerts()} == {AlertStatus.FOLDED}


async def test_digest_at_fixed_times_survives_restart(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    tmp, rss = setup
    watchlist(tmp, "morning", "mode: digest\nat: ['08:00']\ntimezone: Europe/Berlin\n")
    clock = Clock(datetime(2026, 11, 25, 18, 0, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        titles = publish(rss, 3, clock)
        await cycle(service, feed_server, rss)
        assert slack_server.messages == []
    # Down overnight; back at 09:30 Berlin (08:30 UTC): the 08:00 digest goes out on start.
    clock.t = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await service.outbox.drain(within=5)
    [digest] = slack_text(slack_server)
    assert all(t in digest for t in titles)


async def test_quiet_hours_hold_until_morning_and_urgent_bypasses(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    tmp, rss = setup
    quiet = "quiet_hours: {from: '22:00', to: '07:00', timezone: UTC}\n"
    watchlist(tmp, "calm", quiet)
    (tmp / "watchlists" / "urgent.yaml").write_text(
        f"name: urgent\nall: [Kursk]\nnotify: [newsroom]\nurgent: true\n{quiet}")
    clock = Clock(datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        titles = publish(rss, 2, clock)
        rss.add("Breaking: attack near Kursk", "https://wire.example/kursk", published=clock())
        await cycle(service, feed_server, rss)
        [urgent] = slack_text(slack_server)
        assert "Kursk" in urgent  # urgent: through at once
        clock.t = datetime(2026, 11, 26, 6, 59, tzinfo=UTC)
        await service.outbox.drain(within=5)
        assert len(slack_server.messages) == 1
        clock.t = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)
        await service.outbox.drain(within=5)
        assert len(slack_server.messages) == 2
        flushed = slack_text(slack_server)[1]
        assert all(t in flushed for t in titles) and "quiet" in flushed.lower()


async def test_max_per_hour_folds_the_rest(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    tmp, rss = setup
    watchlist(tmp, "capped", "max_per_hour: 2\n")
    clock = Clock(datetime(2026, 11, 25, 12, 30, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        titles = publish(rss, 5, clock)
        await cycle(service, feed_server, rss)
        assert len(slack_server.messages) == 2  # the first two, one by one
        clock.t = datetime(2026, 11, 25, 13, 0, 1, tzinfo=UTC)
        await service.outbox.drain(within=5)
        assert len(slack_server.messages) == 3
        summary = slack_text(slack_server)[2]
        assert "3 more stories" in summary
        assert sum(t in summary for t in titles) == 3


@pytest.mark.parametrize("answer", [
    pytest.param(None, id="connection-dropped"),  # Slack stores the post, the connection dies
    pytest.param(502, id="gateway-502"),  # a gateway's 502 after Slack took the post
])
async def test_post_that_landed_without_an_answer_is_not_posted_twice(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer,
        answer: int | None) -> None:
    """The retry looks in the channel's history before it posts again."""
    tmp, rss = setup
    watchlist(tmp, "desk", "")
    async with Service(cfg.load(tmp / "monitor.yaml")) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 1, Clock(datetime.now(UTC)))
        slack_server.drop_next(1, answer=answer)
        await cycle(service, feed_server, rss)
        [alert] = [a for a in service.store.list_alerts() if a.destination == "newsroom"]
        assert alert.status is AlertStatus.SENT, alert.last_error
        assert alert.remote_id == slack_server.messages[0].ts  # found in history by its id
    assert len(slack_server.messages) == 1
    assert "conversations.history" in slack_server.calls


async def test_a_plain_429_is_retried_without_reading_history(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    tmp, rss = setup
    watchlist(tmp, "desk", "")
    async with Service(cfg.load(tmp / "monitor.yaml")) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 1, Clock(datetime.now(UTC)))
        slack_server.fail_next(1, status=429, retry_after=1)
        await cycle(service, feed_server, rss)
    assert len(slack_server.messages) == 1
    assert "conversations.history" not in slack_server.calls  # Slack said no: nothing landed


async def test_email_digest_lists_the_other_outlets_under_the_story(
        setup: tuple[Path, RSS], feed_server: FeedServer, smtp_server: SMTPServer) -> None:
    from feeds import seed_story

    tmp, rss = setup
    (tmp / "watchlists" / "nk.yaml").write_text(
        "name: nk\nall: ['North Korea*', Ukraine]\nnotify: [desk-mail]\nmode: digest\n"
        "every: 1h\n")
    other = RSS()
    feed_server.set("/other.xml", other.render())
    text = (tmp / "monitor.yaml").read_text().replace(
        "feeds: [", f"feeds: [{{name: Herald, url: '{feed_server.url('/other.xml')}'}}, ")
    (tmp / "monitor.yaml").write_text(text)
    clock = Clock(datetime(2026, 11, 25, 12, 10, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        title, summary = seed_story()
        rss.add(title, "https://wire.example/nk", summary, published=clock())
        await cycle(service, feed_server, rss)
        other.add("Thousands of North Korean troops training in Russia for Ukraine frontline, "
                  "ISW says", "https://herald.example/nk",
                  "Several thousand North Korean soldiers are training in Russia for the "
                  "Ukraine frontline, the Institute for the Study of War says.",
                  published=clock())
        feed_server.set("/other.xml", other.render())
        await cycle(service, feed_server, rss)
        clock.advance(hours=1)
        await service.outbox.drain(within=5)
    [mail] = smtp_server.received
    body = mail.message.get_body(("plain",)).get_content()
    # One story, not two; the other outlet listed under it with its own headline and link.
    assert "Digest: 1 story for nk (1 story)" in body, body
    assert "also: Herald: Thousands of North Korean troops training" in body, body
    assert "https://herald.example/nk" in body
    html = mail.message.get_body(("html",)).get_content()
    assert '<a href="https://herald.example/nk">Thousands of North Korean troops' in html, html


async def test_without_channels_history_a_lost_answer_is_posted_again_not_failed(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """The lookup before a re-send is refused for good (missing_scope): the alert went
    `failed` and `alerts retry` failed it again. Now it is posted again: a
    possible duplicate costs a reader seconds, a lost alert is a missed story."""
    tmp, rss = setup
    watchlist(tmp, "desk", "")
    slack_server.deny("conversations.history")
    async with Service(cfg.load(tmp / "monitor.yaml")) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 1, Clock(datetime.now(UTC)))
        slack_server.drop_next(1)
        await cycle(service, feed_server, rss)
        [alert] = [a for a in service.store.list_alerts() if a.destination == "newsroom"]
        assert alert.status is AlertStatus.SENT, alert.last_error
    assert len(slack_server.messages) == 2  # the one whose answer was lost, and the re-post
    assert "alert.reconcile_failed" in caplog.text and "channels:history" in caplog.text


async def test_a_digest_whose_lookup_fails_for_now_is_looked_up_again_not_reposted(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    tmp, rss = setup
    (tmp / "watchlists" / "hourly.yaml").write_text(
        "name: hourly\nall: [Ukraine]\nnotify: [newsroom]\nmode: digest\nevery: 1h\n")
    clock = Clock(datetime(2026, 11, 25, 12, 10, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 2, clock)
        await cycle(service, feed_server, rss)
        clock.advance(minutes=51)
        slack_server.drop_next(1)  # the digest lands, its answer is lost
        await service.outbox.drain(within=1)
        assert len(slack_server.messages) == 1
        slack_server.fail_next(1, status=500)  # the lookup before a re-send fails, once
        await service.outbox.drain(within=8)
        assert {a.status for a in service.store.list_alerts()} == {AlertStatus.FOLDED}
    assert len(slack_server.messages) == 1  # found the second time, not posted again
    assert slack_server.calls[-1] == "conversations.history"


async def test_a_template_that_fails_on_one_alert_neither_loses_it_nor_stops_the_lane(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """`check` passes a template that works on its sample, then fails on a real item
    (here one without a link): the lane retried it every 5 s for good and sent
    nothing behind it, and `run --once` crashed. Now that alert goes out with
    the bundled templates, the error named, and the lane goes on."""
    import shutil

    tmp, rss = setup
    templates = tmp / "templates"
    shutil.copytree(ROOT / "templates", templates)
    slack_j2 = templates / "alert.slack.j2"
    slack_j2.write_text(slack_j2.read_text() + '\nSite: {{ link.split("/")[2] }}\n')
    config = tmp / "monitor.yaml"
    config.write_text(config.read_text().replace(f"templates: {ROOT / 'templates'}",
                                                 f"templates: {templates}"))
    watchlist(tmp, "desk", "")
    async with Service(cfg.load(config)) as service:
        assert service.renderer.check() == []
        await cycle(service, feed_server, rss)
        rss.add("Ukraine grain exports resume", "", "no link", published=datetime.now(UTC))
        rss.add("EU agrees new sanctions over Ukraine war", "https://wire.example/eu",
                published=datetime.now(UTC))
        await cycle(service, feed_server, rss)
        statuses = {a.entry.title: a.status for a in service.store.list_alerts()
                    if a.destination == "newsroom"}
    assert set(statuses.values()) == {AlertStatus.SENT}, statuses
    assert len(statuses) == 2
    texts = slack_text(slack_server)
    assert any("Site: wire.example" in t for t in texts)  # the user's template, where it works
    assert "template.failed" in caplog.text and "alert.slack.j2" in caplog.text


async def test_an_absurd_retry_after_waits_at_most_the_cap(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    """Retry-After: 10**12 overflowed the date (run --once died); 30 days held the
    destination's every alert for a month."""
    tmp, rss = setup
    watchlist(tmp, "desk", "")
    async with Service(cfg.load(tmp / "monitor.yaml")) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 1, Clock(datetime.now(UTC)))
        slack_server.fail_next(1, status=429, retry_after=10**12)
        await cycle(service, feed_server, rss)
        [alert] = [a for a in service.store.list_alerts() if a.destination == "newsroom"]
        assert alert.status is AlertStatus.QUEUED
        assert alert.next_attempt_at is not None
        wait = alert.next_attempt_at - datetime.now(UTC)
        assert timedelta(minutes=14) < wait <= timedelta(minutes=15, seconds=1)


async def test_a_digest_in_flight_is_not_listed_again_when_more_came_due_meanwhile(
        setup: tuple[Path, RSS], feed_server: FeedServer, slack_server: SlackServer) -> None:
    """The hourly digest landed without an answer; before its retry the two-hourly
    one came due too, and the next flush is one digest of both: another id. The
    digest in flight was looked for by its own id only if the set was the same,
    so the hourly story was posted twice. Now the one in flight is noted with
    its members, found, and only the rest is posted."""
    tmp, rss = setup
    for name, term, every in (("hourly", "Kharkiv", "1h"), ("twohourly", "sanctions", "2h")):
        (tmp / "watchlists" / f"{name}.yaml").write_text(
            f"name: {name}\nall: [{term}]\nnotify: [newsroom]\nmode: digest\nevery: {every}\n")
    clock = Clock(datetime(2026, 11, 25, 12, 10, tzinfo=UTC))
    async with Service(cfg.load(tmp / "monitor.yaml"), now=clock) as service:
        await cycle(service, feed_server, rss)
        publish(rss, 3, clock)  # sanctions (for two-hourly), Kharkiv (hourly), and another
        await cycle(service, feed_server, rss)
        clock.advance(minutes=51)  # 13:01: the hourly digest
        slack_server.drop_next(1)
        await service.outbox.drain(within=0.5)
        assert len(slack_server.messages) == 1 and "Kharkiv" in slack_text(slack_server)[0]
        clock.advance(hours=1)  # 14:01: the two-hourly one is due as well
        await service.outbox.drain(within=8)
        assert {a.status for a in service.store.list_alerts()} == {AlertStatus.FOLDED}
    texts = slack_text(slack_server)
    assert len(texts) == 2, texts
    assert sum("Kharkiv" in t for t in texts) == 1, texts
    assert "sanctions" in texts[1] and "Kharkiv" not in texts[1]
