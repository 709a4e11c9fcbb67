"""The service as systemd runs it: a real process, a real notify socket, real signals.

READY=1 once up, STATUS= lines, WATCHDOG=1 while the loop and the scheduler
make progress, live reload from SIGHUP and from file changes (valid and
invalid), feeds added without a restart, and a bounded graceful stop.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer

from monitor import config as cfg
from monitor.notify import Notifier
from monitor.service import Service

ROOT = Path(__file__).resolve().parent.parent

WATCHLIST = """\
name: Ukraine
all: [Ukraine]
notify: [console]
"""


class NotifySocket:
    """What systemd listens on: a unix datagram socket, messages kept in order."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20,
                 contains: str | None = None) -> dict[str, str]:
        """The next message (after those already read) that sets ``key``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}= within {timeout}s; got {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.messages.append(msg)
            if key in msg and (value is None or msg[key] == value) and (
                    contains is None or contains in msg.get("STATUS", "")):
                return msg

    def drain(self) -> list[dict[str, str]]:
        """Messages that arrived since the last read."""
        self.sock.settimeout(0.01)
        got = []
        while True:
            try:
                data = self.sock.recv(65536).decode()
            except (TimeoutError, BlockingIOError):
                return got
            got.append(dict(line.split("=", 1) for line in data.split("\n") if "=" in line))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify")
    try:
        yield s
    finally:
        s.close()


def write_config(tmp: Path, feeds: dict[str, str], extra: str = "") -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    if not (tmp / "watchlists" / "ukraine.yaml").exists():
        (tmp / "watchlists" / "ukraine.yaml").write_text(WATCHLIST)
    lines = "".join(f"  - {{name: {n}, url: '{u}'}}\n" for n, u in feeds.items())
    path = tmp / "monitor.yaml"
    path.write_text("state: sqlite:///state/monitor.db\n"
                    "poll: {interval: 5m, timeout: 3s}\n"
                    f"feeds:\n{lines}"
                    "watchlists: watchlists/\n"
                    f"templates: {ROOT / 'templates'}\n"
                    "destinations:\n  console: {type: console}\n" + extra)
    return path


def start(config: Path, notify: NotifySocket, log: Path,
          watchdog_usec: int | None = 2_000_000) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": notify.path}
    env.pop("NEWS_MONITOR_CONFIG", None)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config",
                                 str(config)], cwd=config.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def wait_log(log: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = log.read_text()
        if text in got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_notify_watchdog_reload_and_stop_under_systemd_protocol(
        tmp_path: Path, feed_server: FeedServer, notify_socket: NotifySocket) -> None:
    a = RSS(title="A")
    a.add("Ukraine grain deal", "https://news.example/a1")
    feed_server.set("/a.xml", a.render())
    config = write_config(tmp_path, {"A": feed_server.url("/a.xml")})
    log = tmp_path / "service.log"
    proc = start(config, notify_socket, log)
    try:
        ready = notify_socket.wait_for("READY", "1")
        assert "1 feed" in ready["STATUS"] and "1 watchlist" in ready["STATUS"]
        notify_socket.wait_for("WATCHDOG", "1", timeout=5)
        wait_log(log, "feed.polled feed=A")

        # An invalid watchlist edit: detected from the file, rejected whole, reported
        # as path:line:column in the log and in STATUS=, the old set stays.
        wl = tmp_path / "watchlists" / "ukraine.yaml"
        wl.write_text('name: Ukraine\nquery: "Ukraine AND (grain"\nnotify: [console]\n')
        notify_socket.wait_for("RELOADING", "1")
        bad = notify_socket.wait_for("READY", "1")
        assert "reload failed" in bad["STATUS"]
        assert f"{wl}:2:" in bad["STATUS"]
        text = wait_log(log, "config.reload_failed")
        assert f"error={wl}:2:" in text
        assert proc.poll() is None

        # A valid config with a second feed, applied on SIGHUP without a restart.
        b = RSS(title="B")
        b.add("Ukraine talks resume", "https://news.example/b1")
        feed_server.set("/b.xml", b.render())
        wl.write_text(WATCHLIST)
        write_config(tmp_path, {"A": feed_server.url("/a.xml"), "B": feed_server.url("/b.xml")})
        proc.send_signal(signal.SIGHUP)
        good = notify_socket.wait_for("READY", "1", contains="2 feeds")
        assert "reload failed" not in good["STATUS"]
        wait_log(log, "config.reloaded feeds=2")
        wait_log(log, "feed.polled feed=B")
        notify_socket.wait_for("WATCHDOG", "1", timeout=5)

        assert stop(proc) == 0
        notify_socket.wait_for("STOPPING", "1", timeout=2)
        assert "service.stop" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_watchlist_broken_since_start_up_does_not_hold_back_reloads(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """Start-up leaves a broken watchlist out and runs the rest; a reload did not:
    every reload failed on that same old error, and a new watchlist added while
    running never applied. A reload is refused only when it would drop a
    watchlist that runs; one that does not run is left out, as at start-up."""
    feed_server.set("/a.xml", RSS().render())
    wls = tmp_path / "watchlists"
    wls.mkdir()
    (wls / "broken.yaml").write_text("name: Broken\nall: [Korea]\nnotify: [pager]\n")
    config = cfg.load(write_config(tmp_path, {"A": feed_server.url("/a.xml")}))
    assert [w.name for w in config.watchlists] == ["Ukraine"]
    async with Service(config, env={}, watch_files=False) as service:
        # A new watchlist, and the old broken one still broken: taken, broken one left out.
        (wls / "korea.yaml").write_text("name: Korea\nall: [Pyongyang]\nnotify: [console]\n")
        assert await service.reload() is True
        assert sorted(service.watchlists) == ["Korea", "Ukraine"]
        assert service.reload_error is None
        assert len(service.matcher) == 2

        # A new file, broken: left out too; the running set is all still there.
        (wls / "new-broken.yaml").write_text("name: New\nquery: '(a'\nnotify: [console]\n")
        assert await service.reload() is True
        assert sorted(service.watchlists) == ["Korea", "Ukraine"]

        # A running watchlist broken: the reload would drop it, so nothing is taken.
        (wls / "korea.yaml").write_text("name: Korea\nall: [Pyongyang]\nnotify: [pager]\n")
        (wls / "later.yaml").write_text("name: Later\nall: [Seoul]\nnotify: [console]\n")
        assert await service.reload() is False
        assert sorted(service.watchlists) == ["Korea", "Ukraine"]
        assert service.reload_error is not None and "korea.yaml:3:" in service.reload_error


async def test_a_failing_matcher_build_leaves_the_running_set_whole(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What can fail is built before anything is taken: a reload that fails there
    leaves feeds, watchlists and matcher as they were, not the config half new."""
    feed_server.set("/a.xml", RSS().render())
    config = cfg.load(write_config(tmp_path, {"A": feed_server.url("/a.xml")}))
    async with Service(config, env={}, watch_files=False) as service:
        write_config(tmp_path, {"A": feed_server.url("/a.xml"), "B": feed_server.url("/b.xml")})
        (tmp_path / "watchlists" / "korea.yaml").write_text(
            "name: Korea\nall: [Pyongyang]\nnotify: [console]\n")
        import monitor.service

        def broken(*_: object, **__: object) -> None:
            raise OverflowError("the matcher's core could not hold it")

        monkeypatch.setattr(monitor.service.Matcher, "compile", broken)
        with pytest.raises(OverflowError):
            await service.reload()
        assert [f.name for f in service.config.feeds] == ["A"]
        assert sorted(service.watchlists) == ["Ukraine"]
        assert len(service.matcher) == 1


class SlowFeed(http.server.ThreadingHTTPServer):
    """A feed that takes ``delay`` seconds to answer; ``asked`` is set on each request."""

    def __init__(self, body: str, delay: float) -> None:
        self.body, self.delay = body.encode(), delay
        self.asked = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.asked.set()
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/slow.xml"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.mark.slow
@pytest.mark.parametrize(("delay", "finishes"), [
    pytest.param(1.5, True, id="within-the-bound"),
    pytest.param(8.0, False, id="cut-off-at-the-bound"),
])
def test_sigterm_lets_a_poll_under_way_finish_within_the_bound(
        tmp_path: Path, notify_socket: NotifySocket, delay: float, finishes: bool) -> None:
    feed = RSS(title="Slow")
    feed.add("Ukraine: slow news", "https://news.example/s1")
    slow = SlowFeed(feed.render(), delay)
    try:
        config = write_config(tmp_path, {"Slow": slow.url},
                              extra="stop_timeout: 3s\n")
        config.write_text(config.read_text().replace("timeout: 3s}", "timeout: 20s}"))
        log = tmp_path / "service.log"
        proc = start(config, notify_socket, log, watchdog_usec=None)
        notify_socket.wait_for("READY", "1")
        assert slow.asked.wait(20)
        began = time.monotonic()
        assert stop(proc) == 0
        took = time.monotonic() - began
        text = log.read_text()
        assert "service.stopping" in text
        if finishes:
            assert "feed.polled feed=Slow" in text
            assert "service.stop_timeout" not in text
        else:
            assert "feed.polled feed=Slow" not in text
            assert "service.stop_timeout cut_off=1" in text
            assert took < 3 + 3, took
    finally:
        slow.close()


async def test_watchdog_only_while_the_scheduler_ticks(
        tmp_path: Path, feed_server: FeedServer, notify_socket: NotifySocket) -> None:
    """A paused scheduler (no poll tick) means no WATCHDOG=1, so systemd would restart."""
    feed_server.set("/a.xml", RSS().render())
    config = cfg.load(write_config(tmp_path, {"A": feed_server.url("/a.xml")}))
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000"}
    notifier = Notifier.from_env(env)
    stop_event = asyncio.Event()
    async with Service(config, notifier=notifier, env=env, watch_files=False) as service:
        task = asyncio.create_task(service.run(stop_event))
        try:
            await asyncio.sleep(1.6)
            beats = [m for m in notify_socket.drain() if m.get("WATCHDOG") == "1"]
            assert beats, "no WATCHDOG=1 while ticking"
            assert service._scheduler is not None
            service._scheduler.pause()
            await asyncio.sleep(1.0)  # the heartbeat goes stale
            notify_socket.drain()
            await asyncio.sleep(1.6)
            assert not [m for m in notify_socket.drain() if m.get("WATCHDOG") == "1"]
            service._scheduler.resume()
            await asyncio.sleep(1.6)
            assert [m for m in notify_socket.drain() if m.get("WATCHDOG") == "1"]
        finally:
            stop_event.set()
            await task
    notifier.close()


@pytest.mark.parametrize("long_lived", [True, False])
async def test_a_long_lived_service_checkpoints_its_store_on_a_thread(
        tmp_path: Path, feed_server: FeedServer, long_lived: bool) -> None:
    """`run` copies the store's WAL off the path of its commits; `run --once`
    (long_lived=False) leaves it to them and to its close."""
    feed_server.set("/a.xml", RSS().render())
    config = cfg.load(write_config(tmp_path, {"A": feed_server.url("/a.xml")}))
    async with Service(config, env={}, watch_files=False, long_lived=long_lived) as service:
        await service.poll_all()
        names = [t.name for t in threading.enumerate()]
        assert names.count("sqlite-checkpoint") == (1 if long_lived else 0)
    assert "sqlite-checkpoint" not in [t.name for t in threading.enumerate()]
