"""Several instances on one PostgreSQL store, and the store's server restarted
under a running instance: the real CLI as subprocesses, real servers on 127.0.0.1.

What is checked is what the README's "Scaling out" promises: every story is
alerted exactly once on Slack whichever instance polled it (or died while
sending it), every feed is polled within its interval plus the lease, and a
database restart costs a few seconds of retries, not an alert.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer
from stores import pg_schema_url, private_server
from test_resilience import distinct_headlines

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def write_config(tmp: Path, state: str, feeds: FeedServer, slack: SlackServer,
                 paths: list[str], *, interval: str, lease: str) -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    (tmp / "watchlists" / "desk.yaml").write_text(
        "name: Ukraine desk\nall: [Ukraine]\nnotify: [newsroom]\n")
    listed = "".join(f"  - {{name: {p.strip('/').removesuffix('.xml')}, "
                     f"url: '{feeds.url(p)}'}}\n" for p in paths)
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"state: '{state}'\n"
        # max_interval: a quiet feed's schedule is not stretched beyond its interval.
        f"poll: {{interval: {interval}, max_interval: {interval}, timeout: 2s, "
        f"lease: {lease}, parse_workers: 1}}\n"
        f"templates: {ROOT / 'templates'}\n"
        "destinations:\n"
        f"  newsroom: {{type: slack, channel: '#alerts', token: xoxb-test-token, "
        f"base_url: '{slack.base_url}', timeout: 2s}}\n"
        f"feeds:\n{listed}")
    return cfg


def start(cfg: Path, log: Path, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NEWS_MONITOR_INSTANCE": name}
    with log.open("ab") as err:
        # A session of its own: SIGKILL goes to its parse workers too, as when
        # a host dies, and none is left behind.
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config",
                                 str(cfg)], cwd=cfg.parent, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def alert_ids(slack: SlackServer) -> list[str]:
    """The alert behind each top-level message (replies in threads left out)."""
    return [m.metadata["event_payload"]["alert_id"] for m in slack.messages
            if m.metadata and m.thread_ts is None]


def alert_titles(conn: object) -> dict[str, str]:
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT a.id, e.title FROM alerts a JOIN entries e ON e.feed = a.entry_feed "
        "AND e.key = a.entry_key").fetchall()
    return {aid: title.removesuffix(" (Ukraine)") for aid, title in rows}


def wait_for(what: str, cond: object, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tails = "\n".join(f"== {p.name}\n{p.read_text()[-2500:]}" for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def test_three_instances_share_500_feeds_and_alert_each_story_once(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    n_feeds, interval, lease = 500, 8.0, 4.0
    paths = [f"/f{i:03d}.xml" for i in range(n_feeds)]
    rss = {p: RSS(title=p) for p in paths}
    for p in paths:  # what is there before we start: recorded, never alerted
        rss[p].add(f"Background item of {p}", f"https://{p.strip('/')}.example/old")
        feed_server.set(p, rss[p].render())
    titles = [*distinct_headlines(20), "Flood barrier fails at the northern grain port",
              "Rail convoy of medical supplies reaches the coast after long delay"]
    with pg_schema_url() as url:
        cfg = write_config(tmp_path, url, feed_server, slack_server, paths,
                           interval=f"{interval:g}s", lease=f"{lease:g}s")
        logs = [tmp_path / f"i{k}.log" for k in range(3)]
        procs = [start(cfg, logs[k], f"i{k}") for k in range(3)]
        import psycopg

        db = psycopg.connect(url, autocommit=True)

        def first_polled() -> int:
            try:
                return int(db.execute("SELECT COUNT(*) FROM feeds WHERE first_polled_at IS "
                                      "NOT NULL").fetchone()[0])  # type: ignore[index]
            except psycopg.errors.UndefinedTable:  # the instances are still migrating
                return 0

        try:
            # Recorded, not only fetched: from here on items are news.
            wait_for("the first poll of every feed", lambda: first_polled() == n_feeds, 120,
                     logs)

            def stored() -> list[tuple[str, str]]:
                """(story, title) of each matching item stored."""
                return [(story, title.removesuffix(" (Ukraine)")) for story, title in
                        db.execute("SELECT story_id, title FROM entries WHERE title LIKE %s",
                                   ("%(Ukraine)",))]

            def publish(rnd: int, distinct: list[str], shared: str, on: list[str]) -> None:
                for j, title in enumerate(distinct):
                    p = paths[rnd * 100 + j]
                    rss[p].add(f"{title} (Ukraine)", f"https://{p.strip('/')}.example/{rnd}")
                    feed_server.set(p, rss[p].render())
                # The shared event after the others: its words are then not what most
                # of the watchlist's matches say (which grouping discounts as the
                # watchlist's subject).
                count = len(stored()) + len(distinct)
                wait_for(f"round {rnd} stored", lambda: len(stored()) >= count, 60, logs)
                for p in on:  # one event, each feed its own link to it
                    rss[p].add(f"{shared} (Ukraine)", f"https://{p.strip('/')}.example/s{rnd}",
                               summary="The same report, carried by several feeds.")
                    feed_server.set(p, rss[p].render())

            publish(0, titles[:10], titles[20], paths[300:304])
            wait_for("the first alerts", lambda: len(alert_ids(slack_server)) >= 3, 60, logs)
            # Midway, the instance driving the Slack lane (and holding feeds): SIGKILL.
            (owner,) = db.execute("SELECT owner FROM leases WHERE name = %s",
                                  ("lane:newsroom",)).fetchone()  # type: ignore[misc]
            victim = int(owner.removeprefix("i"))
            os.killpg(procs[victim].pid, signal.SIGKILL)
            procs[victim].wait(10)
            survivors = [f"i{k}" for k in range(3) if k != victim]
            killed_at = time.monotonic()
            publish(1, titles[10:20], titles[21], paths[400:404])
            wait_for("every item stored", lambda: len(stored()) >= 28, 120, logs)

            def news() -> dict[str, set[str]]:
                got: dict[str, set[str]] = {}
                for story, title in stored():
                    got.setdefault(story, set()).add(title)
                return got

            wait_for("an alert per story",
                     lambda: len(alert_ids(slack_server)) >= len(news()), 120, logs)
            time.sleep(interval + lease)  # time for any duplicate to show
            end = time.monotonic()
            assert sum(p.poll() is None for p in procs) == 2, "a surviving instance died"
        finally:
            stop(procs)
        stories = news()
        items = stored()
        polled_by = Counter(r[0] for r in db.execute("SELECT polled_by FROM feeds"))
        alerted = dict(db.execute("SELECT id, story_id FROM alerts").fetchall())
        leases_after = db.execute("SELECT name, owner FROM leases WHERE owner <> %s",
                                  (f"i{victim}",)).fetchall()
        db.close()
    # The 4 reports of each shared event, polled by whichever instance: one story.
    assert sum(1 for ts in stories.values() if titles[20] in ts) == 1, stories
    assert sum(1 for ts in stories.values() if titles[21] in ts) == 1, stories
    assert len(items) == 20 + 2 * 4  # every item stored once
    # Every story alerted exactly once on Slack (two distinct headlines the
    # grouping puts in one story are one story here too).
    sent = Counter(alerted[aid] for aid in alert_ids(slack_server))
    assert sent == Counter(set(stories)), (sent, stories)
    assert len(stories) >= 18
    assert set(polled_by) >= set(survivors) and sum(polled_by.values()) == n_feeds
    assert len(leases_after) == 0  # the survivors gave theirs back on SIGTERM
    # Every feed polled within its interval plus the lease, the killed instance's too.
    bound = interval + lease + 2.0  # + the tick and the scheduler's jitter
    for p in paths:
        times = [r.at for r in feed_server.requests_for(p) if killed_at <= r.at <= end]
        gaps = [b - a for a, b in zip([killed_at, *times], [*times, end], strict=True)]
        assert max(gaps) <= bound, (p, max(gaps))


def test_a_database_restart_under_a_running_instance_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    rss = RSS()
    rss.add("Background item", "https://wire.example/old")
    feed_server.set("/wire.xml", rss.render())
    titles = distinct_headlines(3)
    with private_server() as pg:
        cfg = write_config(tmp_path, pg.url, feed_server, slack_server, ["/wire.xml"],
                           interval="0.5s", lease="5s")
        log = tmp_path / "service.log"
        proc = start(cfg, log, "solo")
        try:
            wait_for("the first poll", lambda: len(feed_server.requests) >= 2, 60, [log])

            def news(i: int) -> None:
                rss.add(f"{titles[i]} (Ukraine)", f"https://wire.example/{i}")
                feed_server.set("/wire.xml", rss.render())

            news(0)
            wait_for("the first alert", lambda: len(alert_ids(slack_server)) == 1, 30, [log])
            pg.stop()
            news(1)  # published while the database is down
            time.sleep(3)
            pg.start()
            wait_for("the alert published during the outage",
                     lambda: len(alert_ids(slack_server)) == 2, 60, [log])
            pg.stop()  # a restart right away
            pg.start()
            news(2)
            wait_for("the alert after the restart",
                     lambda: len(alert_ids(slack_server)) == 3, 60, [log])
            time.sleep(2)
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            stop([proc])
        import psycopg

        with psycopg.connect(pg.url) as conn:
            statuses = Counter(r[0] for r in conn.execute("SELECT status FROM alerts"))
            titled = alert_titles(conn)
    assert [titled[aid] for aid in alert_ids(slack_server)] == titles  # each once, in order
    assert statuses == {"sent": 3}
    text = log.read_text()
    assert "store.retry" in text or "failed" in text  # the outage was seen, and survived
