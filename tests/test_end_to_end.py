"""Whole runs of the real CLI, as a user would: a config in a temp folder, feeds
served on 127.0.0.1, a local Slack-protocol server and a real SMTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from feeds import RSS, seed_story
from servers import FeedServer, SlackServer, SMTPServer
from stores import state_url

ROOT = Path(__file__).resolve().parent.parent

NK_WATCHLIST = """\
name: North Korean troops in Ukraine
all: ["North Korea*", "Ukraine"]
none: ["South Korea"]
feeds: all
notify: [newsroom, desk-mail]
"""


def make_config(tmp: Path, feeds: FeedServer, slack: SlackServer, smtp: SMTPServer,
                paths: dict[str, str], watchlists: dict[str, str] | None = None,
                extra: str = "", state: str = "sqlite:///state/monitor.db") -> Path:
    wl = tmp / "watchlists"
    wl.mkdir(exist_ok=True)
    for name, body in (watchlists or {"nk.yaml": NK_WATCHLIST}).items():
        (wl / name).write_text(body)
    feed_lines = "".join(f"  - {{name: {name}, url: '{feeds.url(path)}'}}\n"
                         for name, path in paths.items())
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"state: '{state}'\n"
        "poll: {interval: 5m, timeout: 3s}\n"
        f"feeds:\n{feed_lines}"
        "watchlists: watchlists/\n"
        f"templates: {ROOT / 'templates'}\n"
        "destinations:\n"
        f"  newsroom: {{type: slack, channel: '#alerts', token: '${{SLACK_BOT_TOKEN}}', "
        f"base_url: '{slack.base_url}'}}\n"
        f"  desk-mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, starttls: false, "
        "from: alerts@example.org, to: [desk@example.org]}\n"
        "  console: {type: console}\n" + extra)
    return cfg


def first_run(tmp: Path, feeds: FeedServer, slack: SlackServer,
              smtp: SMTPServer) -> tuple[RSS, Path]:
    """One empty feed "F" at /f.xml, a config for it, and the first poll done."""
    feed = RSS()
    feeds.set("/f.xml", feed.render())
    config = make_config(tmp, feeds, slack, smtp, {"F": "/f.xml"})
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    return feed, config


def cli(config: Path, *args: str, token: str = "xoxb-test-token",
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLACK_BOT_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    env.pop("NEWS_MONITOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=config.parent)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_seed_story_alerts_once_on_slack_and_email(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, backend: str) -> None:
    with state_url(backend, tmp_path) as state:
        seed_story_run(tmp_path, feed_server, slack_server, smtp_server, state)


def seed_story_run(tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
                   smtp_server: SMTPServer, state: str) -> None:
    world = RSS(title="World")
    world.add("Old news about Ukraine and North Korea", "https://news.example/old")
    world.add("Markets rally", "https://news.example/markets")
    feed_server.set("/world.xml", world.render())
    config = make_config(tmp_path, feed_server, slack_server, smtp_server, {"World": "/world.xml"},
                         state=state)

    # First poll: existing items are recorded, nothing alerts.
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert slack_server.messages == [] and smtp_server.received == []
    assert "first_poll=1" in r.stderr

    title, summary = seed_story()
    world.add(title, "https://news.example/nk-troops?utm_source=rss&utm_medium=feed", summary)
    feed_server.set("/world.xml", world.render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    [msg] = slack_server.messages
    assert msg.channel == slack_server.channel_id("#alerts")
    assert "North Korean troops" in (msg.text or "")
    assert msg.metadata and msg.metadata["event_type"] == "news_monitor_alert"
    [mail] = smtp_server.received
    assert mail.rcpt_tos == ("desk@example.org",)
    assert "North Korean troops" in str(mail.message["Subject"])
    assert mail.message.get_content_type() == "multipart/alternative"

    # A restart changes nothing: the story is not alerted again.
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1 and len(smtp_server.received) == 1

    r = cli(config, "alerts", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(line)["status"] for line in r.stdout.splitlines()) == ["sent", "sent"]


def test_broken_feeds_do_not_stop_the_good_one(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    good = RSS()
    feed_server.set("/good.xml", good.render())
    feed_server.fail("/500.xml", 500)
    feed_server.set("/garbage.xml", "<html><body>not a feed</body></html>",
                    content_type="text/html")
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {"Good": "/good.xml", "Broken": "/500.xml", "Garbage": "/garbage.xml",
                          "Nowhere": "/missing.xml"})
    assert cli(config, "run", "--once").returncode == 0
    title, summary = seed_story()
    good.add(title, "https://news.example/nk", summary)
    feed_server.set("/good.xml", good.render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1
    assert "feed=Broken" in r.stderr and "HTTP 500" in r.stderr
    assert "feed=Garbage" in r.stderr and "not a feed" in r.stderr
    assert "feed=Nowhere" in r.stderr and "HTTP 404" in r.stderr
    r = cli(config, "feeds")
    assert "failing " in r.stdout and "HTTP 500" in r.stdout


def test_hostile_title_pings_no_one(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    feed, config = first_run(tmp_path, feed_server, slack_server, smtp_server)
    feed.add("<!channel> <@U123> North Korea sends troops to Ukraine <https://evil.example|x>",
             "https://news.example/hostile", "<script>alert(1)</script> Ukraine")
    feed_server.set("/f.xml", feed.render())
    assert cli(config, "run", "--once").returncode == 0
    [msg] = slack_server.messages
    posted = str(msg.text) + str(msg.blocks)
    assert "<!channel>" not in posted and "<@U123>" not in posted
    assert "&lt;!channel&gt;" in posted
    assert "<https://evil.example|x>" not in posted
    [mail] = smtp_server.received
    html = mail.message.get_body(("html",))
    assert html is not None and "<script>" not in html.get_content()


def test_check_reports_path_and_line(tmp_path: Path, feed_server: FeedServer,
                                     slack_server: SlackServer, smtp_server: SMTPServer) -> None:
    config = make_config(tmp_path, feed_server, slack_server, smtp_server, {"F": "/f.xml"},
                         watchlists={"good.yaml": NK_WATCHLIST,
                                     "bad.yaml": "name: Bad\nall: [Kim]\nnotify: [pagerduty]\n"})
    r = cli(config, "check")
    assert r.returncode == 1
    assert f"{tmp_path}/watchlists/bad.yaml:3:" in r.stderr and "pagerduty" in r.stderr
    (tmp_path / "watchlists" / "bad.yaml").unlink()
    r = cli(config, "check")
    assert r.returncode == 0, r.stderr
    assert "1 watchlist," in r.stdout


def test_check_does_not_need_network_or_secrets_in_output(tmp_path: Path) -> None:
    (tmp_path / "monitor.yaml").write_text(
        "destinations:\n  s: {type: slack, channel: '#a', token: '${SLACK_BOT_TOKEN}'}\n"
        "watchlists: []\n")
    r = cli(tmp_path / "monitor.yaml", "check", token="xoxb-super-secret")
    assert r.returncode == 0, r.stderr
    assert "xoxb-super-secret" not in r.stdout + r.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_try_shows_matches_without_recording(tmp_path: Path, fmt: str) -> None:
    title, summary = seed_story()
    feed = RSS()
    feed.add(title, "https://news.example/nk", summary)
    feed.add("Markets rally", "https://news.example/m")
    path = tmp_path / "feed.xml"
    path.write_text(feed.render())
    wl = tmp_path / "nk.yaml"
    wl.write_text(NK_WATCHLIST)
    args = [sys.executable, "-m", "monitor.cli", "try", str(wl), str(path)]
    if fmt == "json":
        args.append("--json")
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if fmt == "json":
        [line] = r.stdout.splitlines()
        hit = json.loads(line)
        assert hit["title"] == title and hit["watchlist"] == "North Korean troops in Ukraine"
        assert set(hit["matched"]) >= {"North Korea*", "Ukraine"}
    else:
        assert "1 of 2 entries would alert" in r.stdout
    assert not (tmp_path / "state").exists()


OUTLETS = {
    "Daily Wire Service": ("/a.xml", None),
    "Global Times Online": (
        "/b.xml",
        ("North Korea to send thousands of troops to Ukraine front, think tank ISW says",
         "https://globaltimes.example/world/nk-troops-ukraine?utm_source=twitter"
         "&utm_medium=social&fbclid=IwAR0abc",
         "Several thousand North Korean soldiers are training in Russia and could be deployed "
         "to the frontline in Ukraine by the end of 2024, the Institute for the Study of War "
         "says.")),
    "Evening Herald": (
        "/c.xml",
        ("Thousands of North Korean troops training in Russia for Ukraine frontline, ISW says",
         "https://herald.example/news/2024/10/north-korean-troops/amp?cmpid=rss",
         "The Institute for the Study of War says several thousand North Korean infantry are "
         "training inside Russia ahead of deployment to the Ukraine frontline.")),
}


@pytest.mark.parametrize("method", ["tfidf", pytest.param("semantic", marks=pytest.mark.semantic)])
def test_one_story_three_outlets_one_alert_then_updates(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, method: str) -> None:
    feeds = {name: RSS(title=name) for name in OUTLETS}
    for name, (path, _) in OUTLETS.items():
        feeds[name].add(f"Unrelated item from {name}", f"https://{path[1]}.example/old")
        feed_server.set(path, feeds[name].render())
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in OUTLETS.items()},
                         extra=f"dedupe: {{method: {method}}}\n")
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr

    title, summary = seed_story()
    feeds["Daily Wire Service"].add(title, "https://dailywire.example/nk-troops?utm_campaign=x",
                                    summary)
    feed_server.set("/a.xml", feeds["Daily Wire Service"].render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1 and len(smtp_server.received) == 1

    for name, (path, item) in OUTLETS.items():
        if item is not None:
            feeds[name].add(*item)
            feed_server.set(path, feeds[name].render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1, [m.text for m in slack_server.messages]
    assert len(smtp_server.received) == 1  # later members produce no email
    assert slack_server.updates, r.stderr
    [msg] = slack_server.messages  # updated in place
    shown = str(msg.text) + json.dumps(msg.blocks)
    assert "Global Times Online" in shown and "Evening Herald" in shown

    # A restart changes nothing.
    updates = len(slack_server.updates)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1 and len(smtp_server.received) == 1
    assert len(slack_server.updates) == updates

    r = cli(config, "stories", "--since", "1h")
    assert r.returncode == 0, r.stderr
    assert "[3 from 3 sources]" in r.stdout, r.stdout


def test_backtest_and_dead_letter_retry(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    feed, config = first_run(tmp_path, feed_server, slack_server, smtp_server)
    title, summary = seed_story()
    feed.add(title, "https://news.example/nk", summary)
    feed.add("Kursk offensive stalls as winter sets in", "https://news.example/kursk")
    feed_server.set("/f.xml", feed.render())
    # Slack refuses the token: a permanent error, dead-lettered with its reason.
    r = cli(config, "run", "--once", token="xoxb-revoked")
    assert r.returncode == 0, r.stderr
    assert "invalid_auth" in r.stderr and "destination=newsroom" in r.stderr
    assert "xoxb-revoked" not in r.stderr
    r = cli(config, "alerts", "--failed", "--json")
    [failed] = [json.loads(line) for line in r.stdout.splitlines()]
    assert failed["destination"] == "newsroom" and "invalid_auth" in failed["error"]
    assert len(smtp_server.received) == 1  # the other destination was not held up
    # Fixed token: retry sends it.
    assert cli(config, "alerts", "retry", "--all").returncode == 0
    assert cli(config, "run", "--once").returncode == 0
    assert len(slack_server.messages) == 1
    # Sent now: nothing to retry, and said so (it printed "re-queued 0 alerts", exit 0).
    r = cli(config, "alerts", "retry", failed["id"])
    assert r.returncode == 1 and f"{failed['id']} is sent, not failed" in r.stderr, r.stderr

    # Backtest a query over the stored entries: what would it have fired?
    r = cli(config, "try", "Kursk OR Pyongyang", "--since", "7d", "--json")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line)["title"] for line in r.stdout.splitlines()]
    assert hits == ["Kursk offensive stalls as winter sets in"]
    r = cli(config, "try", '"North Korea*" AND Ukraine', "--since", "7d")
    assert "1 of 2 entries would alert" in r.stdout and "per day:" in r.stdout, r.stdout
