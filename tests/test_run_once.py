"""``run --once`` as cron runs it, ``replay``, and Slack retries that back off and count.

The real CLI in a subprocess, feeds and Slack on 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer, SMTPServer
from test_end_to_end import cli, make_config

from monitor.deliver.outbox import RetryPolicy
from monitor.service import Tally, asked_to_wait, exit_code, summary_line
from monitor.types import FeedState

UKRAINE = """\
name: Ukraine
all: [Ukraine]
notify: [newsroom]
"""


def summary(stderr: str) -> dict[str, int]:
    [line] = [ln for ln in stderr.splitlines() if "run.summary" in ln]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.parametrize(("tally", "queued", "code"), [
    pytest.param(Tally(polled=2, failed=2), 0, 1, id="every-feed-failed"),
    pytest.param(Tally(polled=2, failed=2), 3, 1, id="every-feed-failed-beats-queued"),
    pytest.param(Tally(polled=2, failed=1), 0, 0, id="one-feed-failed"),
    pytest.param(Tally(polled=2, failed=1), 1, 75, id="queued"),
    pytest.param(Tally(polled=0), 0, 0, id="no-feeds"),
    pytest.param(Tally(polled=3, sent=4), 0, 0, id="all-well"),
])
def test_exit_code(tally: Tally, queued: int, code: int) -> None:
    assert exit_code(tally, queued) == code


def test_summary_line_names_every_count() -> None:
    line = summary_line(Tally(polled=3, failed=1, new=7, sent=2, alerts_failed=1), 4)
    assert line == ("run.summary feeds_polled=3 feeds_failed=1 new_entries=7 alerts_sent=2 "
                    "alerts_queued=4 alerts_failed=1")


@pytest.mark.parametrize(("delay", "remaining", "retry_after", "expected"), [
    pytest.param(8.0, None, None, 8.0, id="unbounded"),
    pytest.param(8.0, 30.0, None, 8.0, id="fits"),
    pytest.param(43.0, 18.0, None, 17.0, id="shortened-to-fit-with-time-to-try"),
    pytest.param(43.0, 1.5, None, 43.0, id="no-time-left-the-drain-ends"),
    pytest.param(43.0, 18.0, 40.0, 43.0, id="retry-after-is-honoured"),
])
def test_backoff_fits_the_drain(delay: float, remaining: float | None,
                                retry_after: float | None, expected: float) -> None:
    assert RetryPolicy().within(delay, remaining, retry_after) == expected


def test_every_feed_failing_exits_1(tmp_path: Path, feed_server: FeedServer,
                                    slack_server: SlackServer, smtp_server: SMTPServer) -> None:
    feed_server.fail("/a.xml", 500)
    feed_server.fail("/b.xml", 404)
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {"A": "/a.xml", "B": "/b.xml"})
    r = cli(config, "run", "--once")
    assert r.returncode == 1, r.stderr
    got = summary(r.stderr)
    assert got["feeds_polled"] == 2 and got["feeds_failed"] == 2
    # one good feed is enough for cron to see success
    feed_server.set("/b.xml", RSS().render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["feeds_failed"] == 1


NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(("state", "waits"), [
    pytest.param(None, False, id="never-polled"),
    pytest.param(FeedState(name="f", status=429, next_poll_at=NOW + timedelta(hours=1)), True,
                 id="429-ahead"),
    pytest.param(FeedState(name="f", status=503, next_poll_at=NOW + timedelta(seconds=1)), True,
                 id="503-ahead"),
    pytest.param(FeedState(name="f", status=429, next_poll_at=NOW), False, id="429-come"),
    pytest.param(FeedState(name="f", status=500, next_poll_at=NOW + timedelta(hours=1)), False,
                 id="500-backing-off"),
    pytest.param(FeedState(name="f", status=200, next_poll_at=NOW + timedelta(hours=1)), False,
                 id="ok"),
])
def test_asked_to_wait(state: FeedState | None, waits: bool) -> None:
    assert asked_to_wait(state, NOW) is waits


def test_a_run_from_cron_leaves_a_server_that_asked_to_wait_alone(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """run --once polls every feed, except one whose server answered 429 or 503 and
    asked to wait (Retry-After, else our backoff) until a time not yet come."""
    feed_server.fail("/busy.xml", 429, retry_after=3600)
    feed_server.fail("/down.xml", 503)
    feed_server.fail("/broken.xml", 500)
    feed_server.set("/ok.xml", RSS().render())
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {"Busy": "/busy.xml", "Down": "/down.xml", "Broken": "/broken.xml",
                          "Ok": "/ok.xml"})
    for _ in range(2):
        r = cli(config, "run", "--once")
        assert r.returncode == 0, r.stderr
    counts = {p: len(feed_server.requests_for(p))
              for p in ("/busy.xml", "/down.xml", "/broken.xml", "/ok.xml")}
    assert counts == {"/busy.xml": 1, "/down.xml": 1, "/broken.xml": 2, "/ok.xml": 2}, counts
    assert "feed.deferred feed=Busy status=429" in r.stderr, r.stderr
    assert summary(r.stderr)["feeds_polled"] == 2


def _first_poll(tmp: Path, feeds: FeedServer, slack: SlackServer,
                smtp: SMTPServer) -> tuple[RSS, Path]:
    rss = RSS()
    feeds.set("/f.xml", rss.render())
    config = make_config(tmp, feeds, slack, smtp, {"F": "/f.xml"},
                         watchlists={"ukraine.yaml": UKRAINE})
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    return rss, config


def test_alerts_left_queued_exit_75_then_go_out(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    rss, config = _first_poll(tmp_path, feed_server, slack_server, smtp_server)
    rss.add("Ukraine grain deal signed", "https://news.example/grain")
    feed_server.set("/f.xml", rss.render())
    slack_server.fail_for(30, status=503)
    r = cli(config, "run", "--once", "--drain", "3s")
    assert r.returncode == 75, r.stderr
    got = summary(r.stderr)
    assert got["new_entries"] == 1 and got["alerts_queued"] == 1 and got["alerts_sent"] == 0
    slack_server.clear_faults()
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["alerts_sent"] == 1
    assert len(slack_server.messages) == 1


@pytest.mark.slow
def test_drain_keeps_retrying_until_its_deadline(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """A Slack outage shorter than --drain: the backoff is fitted into the drain, so
    the alert goes out instead of the run giving up early with the backoff past the end."""
    rss, config = _first_poll(tmp_path, feed_server, slack_server, smtp_server)
    rss.add("Ukraine grain deal signed", "https://news.example/grain")
    feed_server.set("/f.xml", rss.render())
    slack_server.fail_for(9, status=503)
    r = cli(config, "run", "--once", "--drain", "13s")
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["alerts_sent"] == 1
    attempts = [int(a) for a in re.findall(r"alert\.retry .*? attempt=(\d+)", r.stderr)]
    assert attempts == list(range(1, len(attempts) + 1)) and attempts


def test_channel_lookup_backs_off_and_counts_attempts(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """The post landed but its answer was lost; looking for it needs the channel id
    (conversations.list), and Slack is unreachable: each lookup is an attempt, the
    attempts count up and the waits grow, and the alert is posted once in the end."""
    rss, config = _first_poll(tmp_path, feed_server, slack_server, smtp_server)
    rss.add("Ukraine grain deal signed", "https://news.example/grain")
    feed_server.set("/f.xml", rss.render())
    slack_server.drop_next(1)
    r = cli(config, "run", "--once", "--drain", "0.5s")  # no time to look for it
    assert r.returncode == 75, r.stderr
    assert len(slack_server.messages) == 1
    slack_server.fail_for(30, status=503)
    r = cli(config, "run", "--once", "--drain", "6s")
    assert r.returncode == 75, r.stderr
    retries = re.findall(r"alert\.retry .*? attempt=(\d+) in=([\d.]+)s", r.stderr)
    attempts = [int(a) for a, _ in retries]
    assert attempts == list(range(2, len(attempts) + 2)) and len(attempts) >= 2, r.stderr
    lookups = slack_server.calls.count("conversations.list")
    assert 1 <= lookups <= len(attempts), (lookups, attempts)  # no hidden retries
    slack_server.clear_faults()
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1  # found in history, not posted again
    assert "alert.reconciled" in r.stderr


def test_replay_alerts_on_stored_entries_once_per_story(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """Entries recorded before a watchlist existed alert only when replayed: one
    alert per story (two outlets, one story), and never twice."""
    a, b = RSS(title="A"), RSS(title="B")
    a.add("Ukraine grain deal signed in Istanbul", "https://news.example/grain")
    b.add("Ukraine grain deal signed in Istanbul", "https://news.example/grain?utm_source=b")
    a.add("Markets rally on rate hopes", "https://news.example/markets")
    feed_server.set("/a.xml", a.render())
    feed_server.set("/b.xml", b.render())
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {"A": "/a.xml", "B": "/b.xml"},
                         watchlists={"other.yaml": UKRAINE.replace("Ukraine", "Brazil")})
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    (tmp_path / "watchlists" / "ukraine.yaml").write_text(UKRAINE)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert slack_server.messages == []  # a new watchlist applies to new entries only

    r = cli(config, "replay", "Ukraine", "--since", "24h")
    assert r.returncode == 0, r.stderr
    assert "queued 1 alert for 1 story" in r.stdout
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    [msg] = slack_server.messages
    assert "grain deal" in (msg.text or "")

    r = cli(config, "replay", "Ukraine")
    assert r.returncode == 0, r.stderr
    assert "queued 0 alerts for 0 stories" in r.stdout

    r = cli(config, "replay", "Nope")
    assert r.returncode == 1
    assert "no watchlist named 'Nope'" in r.stderr and "'Ukraine'" in r.stderr


#: What a run --once that fetches and sends nothing has no use for (slack-sdk and
#: aiosmtplib with their destinations configured, aiohttp without a feed to fetch,
#: prometheus-client with nothing counted, APScheduler and watchfiles outside
#: `run`): imported, they were a third of such a run's wall time.
UNUSED = {"slack_sdk", "aiosmtplib", "aiohttp", "prometheus_client", "apscheduler", "watchfiles"}


def test_a_run_with_nothing_to_fetch_or_send_loads_none_of_it(
        tmp_path: Path, slack_server: SlackServer, smtp_server: SMTPServer) -> None:
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "ukraine.yaml").write_text(
        "name: Ukraine\nall: [Ukraine]\nnotify: [newsroom, desk-mail, console]\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "state: sqlite:///state/monitor.db\nfeeds: []\nwatchlists: watchlists/\n"
        "destinations:\n"
        f"  newsroom: {{type: slack, channel: '#alerts', token: xoxb-t, "
        f"base_url: '{slack_server.base_url}'}}\n"
        f"  desk-mail: {{type: email, host: 127.0.0.1, port: {smtp_server.port}, "
        "starttls: false, from: alerts@example.org, to: [desk@example.org]}\n"
        "  console: {type: console}\n")
    script = ("import sys\nfrom monitor import cli\ncode = cli.main(sys.argv[1:])\n"
              "print(' '.join(sorted(sys.modules)))\nsys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", script, "run", "--once", "--config", str(config)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["feeds_polled"] == 0
    loaded = {name.partition(".")[0] for name in r.stdout.split()}
    assert loaded & UNUSED == set()
