"""A hostile feed publisher (issue #12): each finding of the review, reproduced
through the real CLI with feeds served from 127.0.0.1, and the service still
starting, recording and delivering afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from feeds import RSS, seed_story
from servers import FeedServer, SlackServer, SMTPServer
from stores import state_url
from test_end_to_end import cli, make_config

NOW = format_datetime(datetime.now(UTC), usegmt=True)


def rss(*items: str) -> str:
    """An RSS document around raw ``<item>`` bodies (whatever they hold)."""
    body = "".join(f"<item>{it}</item>" for it in items)
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            "<title>Evil Wire</title><link>https://evil.example/</link>"
            f"<description>x</description>{body}</channel></rss>")


def item(title: str, link: str, *, guid: str | None = None, date: str = NOW,
         summary: str = "", raw_title: bool = False) -> str:
    t = title if raw_title else escape(title)
    g = f"<guid isPermaLink='false'>{escape(guid)}</guid>" if guid else ""
    return (f"<title>{t}</title><link>{escape(link)}</link>{g}"
            f"<description>{escape(summary)}</description><pubDate>{date}</pubDate>")


def started(tmp: Path, feeds: FeedServer, slack: SlackServer, smtp: SMTPServer,
            state: str = "sqlite:///state/monitor.db", extra: str = "",
            watchlists: dict[str, str] | None = None) -> Path:
    """A config with one feed "Evil" at /evil.xml and a good feed "Good" at
    /good.xml, both polled once (empty) so that later items alert."""
    feeds.set("/evil.xml", rss())
    feeds.set("/good.xml", RSS().render())
    config = make_config(tmp, feeds, slack, smtp, {"Evil": "/evil.xml", "Good": "/good.xml"},
                         state=state, extra=extra, watchlists=watchlists)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    return config


def publish_good(feeds: FeedServer) -> str:
    """A normal story on the good feed: what must still be delivered."""
    title, summary = seed_story()
    good = RSS()
    good.add(title, "https://news.example/nk-good", summary)
    feeds.set("/good.xml", good.render())
    return title


# ------------------------------------------------------------------ 1. dates


def test_an_implausible_date_does_not_stop_later_starts(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    feed_server.set("/evil.xml", rss(
        item("North Korea troops Ukraine ancient", "https://evil.example/old",
             date="0999-06-01T00:00:00Z"),
        item("North Korea troops Ukraine future", "https://evil.example/future",
             date="Sat, 01 Jan 2300 00:00:00 GMT")))
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    for args in (("run", "--once"), ("try", "--since", "1d", "Ukraine"), ("run", "--once")):
        r = cli(config, *args)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    title = publish_good(feed_server)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert any(title[:30] in (m.text or "") for m in slack_server.messages)
