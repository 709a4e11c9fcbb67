"""Delivery that loses nothing and repeats nothing, with the real service as a
subprocess: Slack outages (429 with Retry-After, 503) and SIGKILL at random
moments while feeds keep publishing."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer, SMTPServer

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ROOT / "tests" / "data" / "story-clusters-1in4.csv"

pytestmark = pytest.mark.slow


def distinct_headlines(n: int) -> list[str]:
    """One real headline per labelled story: n different news events."""
    seen: dict[str, str] = {}
    with CLUSTERS.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seen.setdefault(row["story_id"], row["title"])
    titles = list(seen.values())
    assert len(titles) >= n
    return titles[:n]


def write_config(tmp: Path, feeds: FeedServer, slack: SlackServer, smtp: SMTPServer,
                 interval: str = "0.5s") -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    (tmp / "watchlists" / "desk.yaml").write_text(
        "name: Ukraine desk\nall: [Ukraine]\nnotify: [newsroom, desk-mail]\n")
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        "state: sqlite:///state/monitor.db\n"
        f"poll: {{interval: {interval}, timeout: 3s}}\n"
        f"feeds: [{{name: Wire, url: '{feeds.url('/wire.xml')}'}}]\n"
        f"templates: {ROOT / 'templates'}\n"
        "destinations:\n"
        f"  newsroom: {{type: slack, channel: '#alerts', token: xoxb-test-token, "
        f"base_url: '{slack.base_url}'}}\n"
        f"  desk-mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, starttls: false, "
        "from: a@example.org, to: [desk@example.org], timeout: 5s}\n")
    return cfg


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config",
                                 str(cfg)], cwd=cfg.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def run_once(cfg: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--once", "--config",
                        str(cfg)], cwd=cfg.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def db_rows(cfg: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(cfg.parent / "state" / "monitor.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def slack_alert_ids(slack: SlackServer) -> Counter[str]:
    return Counter(m.metadata["event_payload"]["alert_id"] for m in slack.messages
                   if m.metadata)


def test_slack_outage_every_alert_arrives_once_in_order(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    rss = RSS()
    feed_server.set("/wire.xml", rss.render())
    cfg = write_config(tmp_path, feed_server, slack_server, smtp_server)
    run_once(cfg)  # first poll: record what is there
    slack_server.fail_for(5, status=429, retry_after=2)
    slack_server.fail_next(2, status=503)
    smtp_server.fail_next(2, code=451)
    titles = distinct_headlines(6)
    proc = start(cfg, tmp_path / "service.log")
    try:
        for i, title in enumerate(titles):
            polls = len(feed_server.requests_for("/wire.xml"))
            rss.add(f"{title} (Ukraine desk)", f"https://wire.example/{i}")
            feed_server.set("/wire.xml", rss.render())
            deadline = time.monotonic() + 20
            while len(feed_server.requests_for("/wire.xml")) < polls + 2:
                assert time.monotonic() < deadline, "the service stopped polling"
                time.sleep(0.1)
        deadline = time.monotonic() + 90
        while len(slack_server.messages) < len(titles) or len(smtp_server.received) < len(titles):
            assert proc.poll() is None, (tmp_path / "service.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    links = [next(b for b in json.dumps(m.blocks).split('"') if "wire.example/" in b)
             for m in slack_server.messages]
    order = [int(link.rsplit("/", 1)[1].split("|")[0].split(">")[0]) for link in links]
    assert order == list(range(len(titles))), order  # each once, in the order found
    assert max(slack_alert_ids(slack_server).values()) == 1
    log = (tmp_path / "service.log").read_text()
    assert "rate limited" in log and "service_unavailable" in log  # the outage happened
    statuses = Counter(s for (s,) in db_rows(cfg, "SELECT status FROM alerts"))
    assert statuses == {"sent": 2 * len(titles)}


def test_sigkill_at_random_moments_loses_and_repeats_nothing(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    rng = random.Random(20261125)
    rss = RSS()
    lock = threading.Lock()
    feed_server.set("/wire.xml", rss.render())
    cfg = write_config(tmp_path, feed_server, slack_server, smtp_server, interval="0.3s")
    run_once(cfg)
    titles = distinct_headlines(40)
    published: list[str] = []
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.is_set() and i < len(titles):
            with lock:
                link = f"https://wire.example/{i}"
                rss.add(f"{titles[i]} (Ukraine desk)", link)
                feed_server.set("/wire.xml", rss.render())
                published.append(link)
            i += 1
            stop.wait(rng.uniform(0.2, 1.2))

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    log = tmp_path / "service.log"
    kills = 0
    try:
        while kills < 30:
            proc = start(cfg, log)
            time.sleep(rng.uniform(0.3, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
    finally:
        stop.set()
        thread.join(10)
    # Recover: the service starts again and finishes what was queued.
    run_once(cfg)
    run_once(cfg)

    assert len(published) >= 20
    recorded = {link for (link,) in db_rows(cfg, "SELECT link FROM entries")}
    assert set(published) <= recorded, "an entry was never recorded"
    alerts = db_rows(cfg, "SELECT a.id, a.destination, a.status, e.link FROM alerts a "
                          "JOIN entries e ON e.feed = a.entry_feed AND e.key = a.entry_key")
    assert {status for (_, _, status, _) in alerts} == {"sent"}
    stories_alerted = {sid for (sid,) in db_rows(cfg, "SELECT story_id FROM alerts")}
    story_of = dict(db_rows(cfg, "SELECT link, story_id FROM entries"))
    assert {story_of[link] for link in published} <= stories_alerted, "a story never alerted"
    slack_ids = {aid for (aid, dest, _, _) in alerts if dest == "newsroom"}
    mail_ids = {aid for (aid, dest, _, _) in alerts if dest == "desk-mail"}
    posted = slack_alert_ids(slack_server)
    assert set(posted) == slack_ids
    assert max(posted.values()) == 1, [k for k, v in posted.items() if v > 1]  # exactly once
    mailed = Counter(str(m.message["Message-ID"]).strip("<>").split("@")[0]
                     for m in smtp_server.received)
    assert mail_ids <= set(mailed)  # at least once
