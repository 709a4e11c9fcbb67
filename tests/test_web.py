"""The HTTP listener of a running service: /healthz, /metrics, and the status page in
a real headless Chromium (a screenshot of it is kept under test-artifacts/)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from feeds import RSS
from servers import FeedServer, SlackServer
from tools import need

from monitor import config as cfg
from monitor.service import Service
from monitor.web import charts, days_back, href

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

WATCHLIST = """\
name: Ukraine
all: [Ukraine]
notify: [console, newsroom]
"""


def write_config(tmp: Path, feeds: FeedServer, slack: SlackServer) -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    (tmp / "watchlists" / "ukraine.yaml").write_text(WATCHLIST)
    (tmp / "watchlists" / "brazil.yaml").write_text(
        "name: Brazil\nall: [Brazil]\nnotify: [console]\n")
    path = tmp / "monitor.yaml"
    path.write_text(
        "state: sqlite:///state/monitor.db\n"
        "poll: {interval: 5m, timeout: 3s}\n"
        "backfill: 24h\n"
        "feeds:\n"
        f"  - {{name: Alpha News, url: '{feeds.url('/a.xml')}'}}\n"
        f"  - {{name: Beta Wire, url: '{feeds.url('/b.xml')}'}}\n"
        f"  - {{name: Broken Feed, url: '{feeds.url('/broken.xml')}'}}\n"
        "watchlists: watchlists/\n"
        f"templates: {ROOT / 'templates'}\n"
        "http: {listen: '127.0.0.1:0'}\n"
        "destinations:\n"
        "  console: {type: console}\n"
        # a token Slack refuses: its alerts end up failed (dead letter)
        f"  newsroom: {{type: slack, channel: '#alerts', token: xoxb-revoked, "
        f"base_url: '{slack.base_url}'}}\n")
    return path


def publish(feeds: FeedServer) -> None:
    a, b = RSS(title="A"), RSS(title="B")
    a.add("Ukraine grain deal signed in Istanbul", "https://news.example/grain",
          "Ukraine and Russia agree to reopen Black Sea ports for grain exports.")
    b.add("Ukraine grain deal signed in Istanbul", "https://news.example/grain?utm_source=b",
          "Ukraine and Russia agree to reopen Black Sea ports for grain exports.")
    a.add("Brazil election goes to a runoff", "https://news.example/brazil")
    a.add("Ukraine markets rally <script>alert(1)</script>", "javascript:alert(1)")
    feeds.set("/a.xml", a.render())
    feeds.set("/b.xml", b.render())
    feeds.fail("/broken.xml", 500)


def wait_log(log: Path, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not logged within {timeout}s:\n{log.read_text()}")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (127.0.0.1 only)
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, kept off the network apart from the page it is given."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is missing (Debian package chromium; make test installs it)"
    return subprocess.run(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--no-default-browser-check", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@need("chromium", "chromium")
def test_status_page_health_and_metrics_of_a_running_service(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    publish(feed_server)
    config = write_config(tmp_path, feed_server, slack_server)
    log = tmp_path / "service.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config",
                                 str(config)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        base = wait_log(log, r"http\.listening url=(http://127\.0\.0\.1:\d+/)").group(1)
        wait_log(log, r"alert\.failed .*destination=newsroom")
        wait_log(log, r"alert\.sent .*destination=console")

        status, body = get(base + "healthz")
        assert (status, body) == (200, "ok\n")

        status, metrics = get(base + "metrics")
        assert status == 200
        assert 'news_monitor_polls_total{feed="Alpha News",result="ok"} 1.0' in metrics
        assert 'news_monitor_fetch_errors_total{feed="Broken Feed",kind="http_5xx"} 1.0' in metrics
        assert 'news_monitor_matches_total{watchlist="Ukraine"}' in metrics
        assert 'news_monitor_deliveries_total{destination="console",outcome="sent"}' in metrics
        assert 'news_monitor_deliveries_total{destination="newsroom",outcome="failed"}' in metrics
        assert 'news_monitor_delivery_latency_seconds_bucket{destination="console"' in metrics
        assert 'news_monitor_feed_lag_seconds{feed="Alpha News"}' in metrics
        assert 'news_monitor_alerts{destination="newsroom",status="failed"}' in metrics
        assert 'news_monitor_entries_parsed_total{feed="Alpha News"} 3.0' in metrics

        # a broken edit: the page says the previous config is in force, and where the error is
        wl = tmp_path / "watchlists" / "brazil.yaml"
        wl.write_text("name: Brazil\nall: [Brazil]\nnotify: [pager]\n")
        wait_log(log, r"config\.reload_failed")

        profile = tmp_path / "chromium"
        r = chromium("--dump-dom", base, profile=profile)
        assert r.returncode == 0, r.stderr
        dom = r.stdout
        assert "news-monitor" in dom and "3 feeds" in dom
        assert 'id="reload-error"' in dom and f"{wl}:3:" in dom and "pager" in dom
        # feed health: the failing one named, with its error
        feeds_part = dom[dom.index('id="feeds"'):dom.index('id="matches"')]
        assert "Broken Feed" in feeds_part and "failing" in feeds_part and "500" in feeds_part
        # recent alerts, linked, with the story's members from both outlets
        recent = dom[dom.index('id="recent"'):dom.index('id="outbox"')]
        assert 'href="https://news.example/grain"' in recent
        assert "Alpha News: " in recent and "Beta Wire: " in recent
        # hostile titles are text, a javascript: link is not a link
        assert "Ukraine markets rally" in dom
        assert "<script>alert(1)</script>" not in dom
        assert 'href="javascript:' not in dom
        # one chart per watchlist, 14 bars each, today's bar non-empty for Ukraine
        assert dom.count("<figure") == 2
        ukraine = dom[dom.index('aria-label="Ukraine'):]
        ukraine = ukraine[:ukraine.index("</figure>")]
        assert ukraine.count("<rect") == 14
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert re.search(rf"<title>{today}: [1-9]\d*</title>", ukraine), ukraine
        # the dead letter, with the command that re-queues it
        outbox = dom[dom.index('id="outbox"'):]
        assert "invalid_auth" in outbox and "news-monitor alerts retry" in outbox

        ARTIFACTS.mkdir(exist_ok=True)
        for name, size in (("desktop", "1280,1400"), ("phone", "390,1600")):
            shot = ARTIFACTS / f"status-page-{name}.png"
            shot.unlink(missing_ok=True)
            r = chromium(f"--screenshot={shot}", f"--window-size={size}", base,
                         profile=profile)
            assert r.returncode == 0, r.stderr
            assert shot.stat().st_size > 10_000, shot
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_healthz_is_503_with_the_reason(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    publish(feed_server)
    path = write_config(tmp_path, feed_server, slack_server)
    config = cfg.load(path)
    stop = asyncio.Event()
    async with Service(config, env={}, watch_files=False) as service:
        task = asyncio.create_task(service.run(stop))
        try:
            async with aiohttp.ClientSession() as http:
                base = await _base_url(service)
                async with http.get(base + "healthz") as r:
                    assert (r.status, await r.text()) == (200, "ok\n")
                service._scheduler.pause()
                await asyncio.sleep(6)
                async with http.get(base + "healthz") as r:
                    assert r.status == 503
                    assert "the scheduler has not ticked" in await r.text()
                service._scheduler.resume()
                await asyncio.sleep(1.5)
                async with http.get(base + "healthz") as r:
                    assert r.status == 200
                held = threading.Event()

                def hold_the_store() -> None:
                    with service.store._lock:  # a write that takes longer than the check waits
                        held.set()
                        time.sleep(8)  # past the check's 5 s, with room for a slow machine

                holder = threading.Thread(target=hold_the_store)
                holder.start()
                held.wait()
                async with http.get(base + "healthz") as r:
                    assert r.status == 503
                    assert "the store is not writable: no answer in 5 s" in await r.text()
                await asyncio.to_thread(holder.join)
                with service.store._lock:  # not under the check's write, still waiting
                    service.store._conn.close()  # the disk went away under us
                async with http.get(base + "healthz") as r:
                    assert r.status == 503
                    assert "the store is not writable" in await r.text()
        finally:
            stop.set()
            await task


async def _base_url(service: Service) -> str:
    """Where the service's listener ended up (port 0 picks a free one)."""
    for _ in range(100):
        http = getattr(service, "http_runner", None)
        if http is not None and http.addresses:
            host, port = http.addresses[0][:2]
            return f"http://{host}:{port}/"
        await asyncio.sleep(0.05)
    raise AssertionError("the service did not start listening")


def test_href_keeps_only_web_links() -> None:
    assert href("https://a.example/x") == "https://a.example/x"
    assert href("HTTP://a.example/") == "HTTP://a.example/"
    assert href("javascript:alert(1)") == "#"
    assert href("data:text/html,x") == "#"


def test_charts_scale_bars_to_the_busiest_day() -> None:
    days = days_back(datetime(2026, 12, 1, 9, tzinfo=UTC), 3)
    assert days == ["2026-11-29", "2026-11-30", "2026-12-01"]
    [c, empty] = charts(["W", "Quiet"], {("W", "2026-11-29"): 2, ("W", "2026-12-01"): 4}, days)
    assert (c.total, c.peak) == (6, 4)
    assert [b.height for b in c.bars] == [19.0, 0.0, 38.0]
    assert [b.y for b in c.bars] == [21.0, 40.0, 2.0]
    assert empty.total == 0 and all(b.height == 0 for b in empty.bars)
    assert days_back(datetime(2026, 12, 1, tzinfo=UTC))[0] == (
        datetime(2026, 12, 1, tzinfo=UTC) - timedelta(days=13)).strftime("%Y-%m-%d")


async def test_the_page_lists_what_was_sent_however_much_waits_behind_it(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """The page took the newest 200 alerts of any status and kept the sent ones: with
    200 queued behind the last one sent, it said 'No alerts sent yet.'"""
    from monitor.store import PollRecord, StoredEntry, alert_id
    from monitor.types import Alert, Entry, Receipt
    from monitor.web import StatusApp

    publish(feed_server)
    config = cfg.load(write_config(tmp_path, feed_server, slack_server))
    now = datetime.now(UTC)

    def one(i: int) -> tuple[StoredEntry, Alert]:
        link = f"https://wire.example/{i}"
        e = Entry(feed="Alpha News", key=str(i), guid=str(i), link=link, canonical_url=link,
                  title=f"Ukraine story {i}", summary="s", published=now)
        return (StoredEntry(entry=e, story_id=f"s{i}", seen_at=now),
                Alert(id=alert_id("Ukraine", "newsroom", f"s{i}"), watchlist="Ukraine",
                      destination="newsroom", story_id=f"s{i}", entry=e, terms=("Ukraine",),
                      created_at=now))

    async with Service(config, env={}, watch_files=False) as service:
        store = service.store
        se, sent = one(0)
        store.ingest(PollRecord(feed="Alpha News", at=now), [se], [sent])
        store.mark_sent(sent.id, now, Receipt(remote_id="1.1"))
        pairs = [one(i) for i in range(1, 211)]
        store.ingest(PollRecord(feed="Alpha News", at=now), [p[0] for p in pairs],
                     [p[1] for p in pairs])
        page = await asyncio.to_thread(StatusApp(service)._page)
    assert "No alerts sent yet." not in page
    assert "Ukraine story 0" in page


async def test_pages_in_a_flood_neither_queue_nor_stop_the_heartbeat(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """150 page loads at once, each waiting on a store held elsewhere, took every
    thread of the loop's pool; the heartbeat's status line waited behind them, the
    heartbeat stopped, and the watchdog was withheld. Now two pages are made at
    once (the rest are told to come back), and the heartbeat waits for nothing."""
    publish(feed_server)
    config = cfg.load(write_config(tmp_path, feed_server, slack_server))
    stop = asyncio.Event()
    async with Service(config, env={}, watch_files=False) as service:
        task = asyncio.create_task(service.run(stop))
        try:
            base = await _base_url(service)
            held = threading.Event()

            def hold_the_store() -> None:
                with service.store._lock:
                    held.set()
                    time.sleep(7)

            holder = threading.Thread(target=hold_the_store)
            holder.start()
            held.wait()
            async with aiohttp.ClientSession() as http:
                async def load() -> int:
                    async with http.get(base) as r:
                        await r.read()
                        return r.status

                loads = [asyncio.create_task(load()) for _ in range(40)]
                await asyncio.sleep(6.5)  # the store still held: the heartbeat goes on
                assert service.healthy(asyncio.get_running_loop().time()) is None
                statuses = await asyncio.gather(*loads)
            await asyncio.to_thread(holder.join)
            assert statuses.count(200) == 2 and statuses.count(503) == 38, statuses
        finally:
            stop.set()
            await task


def test_a_port_already_taken_fails_before_any_poll(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer) -> None:
    """The scheduler started before the listener: a taken port ended the service
    with APScheduler's CancelledError tracebacks (and once a poll's crash) before
    the one line that said why."""
    import socket

    publish(feed_server)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, feed_server, slack_server)
        config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        r = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--config",
                            str(config)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"http: cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr and "feed.polled" not in r.stderr, r.stderr
