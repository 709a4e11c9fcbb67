"""A hostile feed publisher (issue #12): each finding of the review, reproduced
through the real CLI with feeds served from 127.0.0.1, and the service still
starting, recording and delivering afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from feeds import RSS, seed_story
from servers import FeedServer, SlackServer, SMTPServer
from stores import fresh_store, state_url
from test_end_to_end import cli, make_config

from monitor.errors import StoreError
from monitor.store import PollRecord, StoredEntry
from monitor.types import Entry

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


# ------------------------------------------------- 5. one bad value, one feed


class RawHTTPServer:
    """Answers every request on 127.0.0.1 with the same bytes, headers and all:
    for what aiohttp's server refuses to send (a non-UTF-8 byte in a header)."""

    def __init__(self, response: bytes, delay: float = 0.0) -> None:
        self.response = response
        self.delay = delay
        self.requested = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requested.set()
                time.sleep(self.delay)
                try:
                    conn.sendall(self.response)
                except OSError:
                    pass


def test_a_bad_validator_header_is_ignored_and_the_feed_keeps_working(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    body = rss(item("Markets rally", "https://evil.example/m")).encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                b"ETag: \"abc\xff\xfe\"\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 G\xffT\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                + body)
    with RawHTTPServer(response) as raw:
        feed_server.set("/good.xml", RSS().render())
        config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                             {"Good": "/good.xml"},
                             )
        text = config.read_text().replace(
            "feeds:\n", f"feeds:\n  - {{name: Raw, url: 'http://127.0.0.1:{raw.port}/f.xml'}}\n")
        config.write_text(text)
        for _ in range(2):
            r = cli(config, "run", "--once")
            assert r.returncode == 0, r.stderr
            assert "Traceback" not in r.stderr
        r = cli(config, "feeds")
        assert r.returncode == 0, r.stderr
        raw_line = next(line for line in r.stdout.splitlines() if line.startswith("Raw "))
        assert raw_line.split()[1] == "ok", r.stdout  # the STATUS column
        title = publish_good(feed_server)
        r = cli(config, "run", "--once")
        assert r.returncode == 0, r.stderr
        assert any(title[:30] in (m.text or "") for m in slack_server.messages)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_nul_in_a_title_breaks_nothing(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, backend: str) -> None:
    with state_url(backend, tmp_path) as state:
        config = started(tmp_path, feed_server, slack_server, smtp_server, state=state)
        feed_server.set("/evil.xml", rss(
            item("Chess&#0; club of North Korea visits Ukraine\x01 for a tournament",
                 "https://evil.example/nul",
                 raw_title=True)))
        title = publish_good(feed_server)
        r = cli(config, "run", "--once")
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        r = cli(config, "feeds")
        assert "failing " not in r.stdout, r.stdout
        texts = [m.text or "" for m in slack_server.messages]
        assert any(title[:30] in t for t in texts)
        assert any("Chess club of North Korea" in t for t in texts), texts
        assert all("\x00" not in t and "\x01" not in t for t in texts)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_store_refuses_what_it_cannot_read_back(tmp_path: Path, backend: str) -> None:
    """The store's boundary: a value no backend can hold is a StoreError (the
    poll records it as the feed's failure), never a UnicodeEncodeError."""
    now = datetime.now(UTC)
    e = Entry(feed="F", key="k", guid=None, link="https://x.example/", canonical_url="",
              title="nul \x00 here", summary="", published=None)
    with fresh_store(backend, tmp_path) as store:
        with pytest.raises(StoreError):
            store.ingest(PollRecord(feed="F", at=now), [StoredEntry(entry=e, story_id="s",
                                                                    seen_at=now)], [])
        with pytest.raises(StoreError):
            store.record_poll(PollRecord(feed="F", at=now, etag='"\udcff"'))
        store.record_poll(PollRecord(feed="F", at=now, error="still usable"))
        state = store.feed_state("F")
        assert state is not None and state.failures == 1


# -------------------------------------------------------------- 6. secrets

TOKEN = "xoxb-test-token"


def test_no_secret_reaches_logs_alerts_or_feeds(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    secret_url = feed_server.url("/private.xml").replace("://", "://bob:hunter2@")
    text = config.read_text().replace(
        "feeds:\n", f"feeds:\n  - {{name: Private, url: '{secret_url}?token=s3cr3tv4lue'}}\n")
    config.write_text(text)
    # Servers that echo what they were sent: the token, the AUTH exchange, a password.
    slack_server.fail_next(1, 200, error=f"invalid_auth: {TOKEN} Bearer {TOKEN}")
    smtp_server.fail_next(1, 550, "5.7.1 AUTH PLAIN AHVzZXIAaHVudGVyMg== password=hunter2 "
                                  f"token {TOKEN}")
    publish_good(feed_server)
    outputs = []
    for args in (("run", "--once"), ("feeds",), ("alerts",), ("alerts", "--json"),
                 ("alerts", "--failed")):
        r = cli(config, *args)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout + r.stderr)
    everything = "\n".join(outputs)
    assert "Private" in everything and "127.0.0.1" in everything
    for secret in ("hunter2", TOKEN, "AHVzZXIAaHVudGVyMg", "s3cr3tv4lue"):
        assert secret not in everything, secret
    assert "failed" in outputs[3]  # the refused alerts are there, their reasons cleaned


def test_a_server_echoing_a_feeds_credentials_does_not_leak_them(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """The feed URL's password and token, echoed back in plain words by its server,
    are masked as the URL itself is: in logs, the feeds table and `try`."""
    response = (b"HTTP/1.1 500 Echo bob:pw-hunter2 token=s3cr3tv4lue\r\nContent-Length: 0"
                b"\r\nConnection: close\r\n\r\n")
    with RawHTTPServer(response) as raw:
        config = started(tmp_path, feed_server, slack_server, smtp_server)
        secret_url = f"http://bob:pw-hunter2@127.0.0.1:{raw.port}/f.xml?token=s3cr3tv4lue"
        config.write_text(config.read_text().replace(
            "feeds:\n", f"feeds:\n  - {{name: Private, url: '{secret_url}'}}\n"))
        outputs = [cli(config, *args) for args in (("run", "--once"), ("feeds",),
                                                   ("try", "Ukraine", secret_url))]
    everything = "\n".join(r.stdout + r.stderr for r in outputs)
    assert "Private" in everything and "HTTP 500" in everything, everything
    assert "bob:[redacted]@127.0.0.1" in outputs[2].stderr, outputs[2].stderr
    for secret in ("pw-hunter2", "s3cr3tv4lue"):
        assert secret not in everything, secret


# ------------------------------------------------- 7. control characters

HOSTILE = "North Korea\x1b]0;pwned\x07 troops\x1b[8m Ukraine\x9b31m\x00\x08 grain"


def test_control_characters_reach_no_terminal_header_or_slack(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    xml_title = "".join(f"&#{ord(c)};" if ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 else c
                        for c in HOSTILE)
    feed_server.set("/evil.xml", rss(item(xml_title, "https://evil.example/esc",
                                          raw_title=True, summary="Ukraine \x1b[2J")))
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    outputs = [r.stdout + r.stderr]
    for args in (("alerts",), ("alerts", "--json"), ("stories",), ("stories", "--json"),
                 ("feeds",)):
        r = cli(config, *args)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout + r.stderr)
    for out in outputs:
        assert not any(c in out for c in "\x1b\x07\x9b\x00\x08"), out
    assert "North Korea" in outputs[1]
    [msg] = slack_server.messages
    posted = json.dumps({"text": msg.text, "blocks": msg.blocks}, ensure_ascii=False)
    assert not any(c in json.loads(posted)["text"] for c in "\x1b\x07\x9b\x00")
    assert "\\u001b" not in posted and "\\u0007" not in posted
    [mail] = smtp_server.received
    subject = str(mail.message["Subject"])
    assert "North Korea" in subject and not any(c in subject for c in "\x1b\x07\x9b\x00")


def test_the_console_destination_escapes_control_characters(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    wl = "name: Console\nall: [Ukraine]\nnotify: [console]\n"
    config = started(tmp_path, feed_server, slack_server, smtp_server,
                     watchlists={"c.yaml": wl})
    # Straight into the store's old rows: the console must escape, whatever it is handed.
    feed_server.set("/evil.xml", rss(item("Ukraine &#27;]0;pwned&#7; news", "https://e.example/c",
                                          raw_title=True)))
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert "Ukraine" in r.stdout
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout


# ------------------------------------------------------- 2. long titles


def test_a_megabyte_title_is_capped_and_cheap(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    long_title = "Chess: North Korea meets Ukraine " + "pawn " * 200_000  # 1,000,000 characters
    feed_server.set("/evil.xml", rss(item(long_title, "https://evil.example/long",
                                          guid="g" * 1_000_000, summary="s " * 500_000)))
    title = publish_good(feed_server)
    started_at = time.monotonic()
    r = cli(config, "run", "--once", timeout=60)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started_at < 20
    [mail_a, mail_b] = smtp_server.received
    subjects = [str(m.message["Subject"]) for m in (mail_a, mail_b)]
    assert all(len(s) <= 300 for s in subjects), [len(s) for s in subjects]
    assert any(title[:30] in s for s in subjects)
    for m in slack_server.messages:
        assert len(m.text or "") <= 4000
    r = cli(config, "alerts", "--json")
    titles = [json.loads(line)["title"] for line in r.stdout.splitlines()]
    assert all(len(t) <= 1000 for t in titles) and any(t.endswith("…") for t in titles)


def test_building_an_email_for_a_huge_subject_is_cheap() -> None:
    """Header folding is superlinear in the subject's length: the sender caps it,
    whatever reached it, so the event loop is never held for long."""
    from monitor.deliver.email import EmailSender
    from monitor.store import alert_id
    from monitor.types import Alert, Rendered

    e = Entry(feed="F", key="k", guid=None, link="https://x.example/", canonical_url="",
              title="t", summary="", published=None)
    a = Alert(id=alert_id("w", "d", "s"), watchlist="w", destination="d", story_id="s",
              entry=e, terms=(), created_at=datetime.now(UTC))
    sender = EmailSender("m", host="127.0.0.1", sender="a@example.org", to=["b@example.org"])
    started_at = time.process_time()
    msg = sender.build(a, Rendered(subject="word " * 80_000 + "\x1b\x00", text="x"))
    msg.as_bytes()
    assert time.process_time() - started_at < 1.0
    assert len(str(msg["Subject"])) <= 300


# ---------------------------------------------------- 8. bad watchlist files


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\nname: Bomb\nany: [x]\nnotify: [newsroom]\n"


BAD_WATCHLISTS = {
    "recursive.yaml": "name: Recursive\nany: &a [x, *a]\nnotify: [newsroom]\n",
    "tag.yaml": "name: Tag\nany: !!python/name:os.system x\nnotify: [newsroom]\n",
    "key.yaml": "name: Key\n? {a: 1}\n: x\nany: [x]\nnotify: [newsroom]\n",
    "bomb.yaml": _alias_bomb(),
    "deep.yaml": "name: Deep\nany: " + "[" * 3000 + "]" * 3000 + "\nnotify: [newsroom]\n",
}


def test_one_bad_watchlist_file_stops_nothing_else(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    from test_end_to_end import NK_WATCHLIST

    config = started(tmp_path, feed_server, slack_server, smtp_server,
                     watchlists={"nk.yaml": NK_WATCHLIST, **BAD_WATCHLISTS})
    started_at = time.monotonic()
    r = cli(config, "check", timeout=60)
    assert time.monotonic() - started_at < 20
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    for name in BAD_WATCHLISTS:
        assert re.search(rf"{tmp_path}/watchlists/{name}:\d+(:\d+)?: ", r.stderr), (name, r.stderr)
    title = publish_good(feed_server)
    r = cli(config, "run", "--once", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "recursive.yaml" in r.stderr
    assert any(title[:30] in (m.text or "") for m in slack_server.messages)


# ------------------------------------------------------------ 3. floods


def _words(i: int) -> str:
    """Four made-up words no other title shares: each item its own story."""
    letters = "bcdfghjklmnpqrstvwxz"
    return " ".join("".join(letters[(i * 7 + k * 13 + j * 3) % 20] + "aeiou"[(i + j + k) % 5]
                            for j in range(4)) + str(i) for k in range(4))


def test_one_feed_cannot_flood_a_channel_or_bury_another_watchlist(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    watchlists = {
        "burst.yaml": "name: Burst\nall: [Ukraine]\nnotify: [newsroom]\nmax_per_poll: 4\n",
        "calm.yaml": "name: Calm\nall: [Kyrgyzstan]\nnotify: [newsroom]\n",
    }
    config = started(tmp_path, feed_server, slack_server, smtp_server, watchlists=watchlists)
    feed_server.set("/evil.xml", rss(*(
        item(f"Ukraine {_words(i)}", f"https://evil.example/{i}") for i in range(40))))
    good = RSS()
    good.add("Kyrgyzstan opens a new railway to China", "https://news.example/kg")
    feed_server.set("/good.xml", good.render())
    r = cli(config, "run", "--once", timeout=120)
    assert r.returncode == 0, r.stderr
    texts = [m.text or "" for m in slack_server.messages]
    assert len(texts) == 4 + 1 + 1, texts  # four alerts, Calm's alert, one summary
    calm = next(i for i, t in enumerate(texts) if "Kyrgyzstan" in t)
    assert calm <= 2, texts  # not behind Burst's whole burst
    assert "36 more" in texts[-1] and "Evil" in texts[-1], texts[-1]
    # Nothing alerts twice: the folded stories are claimed too.
    r = cli(config, "run", "--once", timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 6


def test_the_default_flood_guard_is_twenty_per_feed_and_watchlist() -> None:
    from monitor.service import alerts_for
    from monitor.types import AlertStatus, Match, Watchlist

    now = datetime.now(UTC)
    wl = Watchlist(name="W", all=("x",), notify=("a", "b"))
    matches = [(Match(watchlist="W", entry=Entry(
        feed="Evil Wire", key=str(i), guid=None, link=f"https://e.example/{i}",
        canonical_url=f"https://e.example/{i}", title=f"x {i}", summary="", published=now)),
        f"story{i}") for i in range(2000)]
    alerts = alerts_for(matches, {"W": wl}, now)
    for dest in ("a", "b"):
        mine = [a for a in alerts if a.destination == dest]
        assert sum(a.status is AlertStatus.QUEUED for a in mine) == 20
        assert all(a.hold_reason == "max_per_poll" for a in mine[20:])


# --------------------------------------------------------- 4. retention


def _counts(db: Path) -> dict[str, int]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("entries", "stories", "alerts", "watchlist_stories", "seen_keys",
                          "meta") if t in tables}
    finally:
        conn.close()


def test_retention_deletes_rows_and_nothing_alerts_twice(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    # Retention must outlast a run (poll to prune), as 30 days outlast a poll interval.
    config = started(tmp_path, feed_server, slack_server, smtp_server, extra="retention: 5s\n")
    # An undated item that stays in the feed (undated: it would alert whenever it
    # looked new) and entries with fresh oversize GUIDs rotating through.
    stays = item("North Korea sends chess players to Ukraine", "https://evil.example/stays",
                 date="")
    db = tmp_path / "state" / "monitor.db"
    sizes = []
    for rotation in range(6):
        if rotation == 4:  # an hour on: the next poll parses the body whole, not by its memo
            import sqlite3

            conn = sqlite3.connect(db)
            conn.execute("UPDATE feeds SET seen_since = '2000-01-01T00:00:00.000000Z'")
            conn.commit()
            conn.close()
        rotating = [item(f"Markets {_words(rotation * 100 + i)}",
                         f"https://evil.example/r{rotation}-{i}",
                         guid=f"{rotation}-{i}-" + "g" * 20_000) for i in range(30)]
        feed_server.set("/evil.xml", rss(stays, *rotating))
        r = cli(config, "run", "--once")
        assert r.returncode == 0, r.stderr
        sizes.append(_counts(db))
        time.sleep(5.1)
    texts = [m.text or "" for m in slack_server.messages]
    assert sum("chess players" in t for t in texts) == 1, texts  # once, ever (whole parse too)
    # Steady: what a poll adds, the next poll's prune takes away; a key lives while
    # its item may still be in the feed (until a whole parse finds it gone).
    assert sizes[5]["entries"] == sizes[3]["entries"] <= 31, sizes
    assert sizes[3].get("seen_keys", 0) <= 4 * 31, sizes  # rotated out since the last whole parse
    assert sizes[5].get("seen_keys", 0) <= 2 * 31, sizes  # gone after the whole parse


# ------------------------------------------------------------ 9. shutdown


def test_shutdown_lets_a_poll_under_way_finish(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    body = rss(item("Markets rally", "https://slow.example/m")).encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    with RawHTTPServer(response, delay=1.5) as slow:
        feed_server.set("/good.xml", RSS().render())
        config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                             {"Good": "/good.xml"})
        config.write_text(config.read_text().replace(
            "feeds:\n", f"feeds:\n  - {{name: Slow, url: 'http://127.0.0.1:{slow.port}/f'}}\n"))
        env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config",
                                 str(config)], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert slow.requested.wait(30), "the service never polled"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr
        assert "CancelledError" not in stderr and "Traceback" not in stderr, stderr
        assert "feed=Slow" in stderr and "service.stop" in stderr
        r = cli(config, "feeds")
        slow_line = next(line for line in r.stdout.splitlines() if line.startswith("Slow "))
        # STATUS ok, LAST OK not "never": the poll under way was finished and recorded.
        assert slow_line.split()[1] == "ok" and " never " not in slow_line, r.stdout


def test_a_thread_reply_is_escaped_once(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """Regression (issue #12, finding 9): "B&B" reached the thread as B&amp;amp;B."""
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    config.write_text(config.read_text().replace("channel: '#alerts',",
                                                 "channel: '#alerts', thread_updates: true,"))
    link = "https://news.example/nk-bnb"
    feed_server.set("/evil.xml", rss(item("North Korea troops reach Ukraine", link)))
    assert cli(config, "run", "--once").returncode == 0
    good = RSS()
    good.add("B&B owners: North Korea troops reach Ukraine", link)
    feed_server.set("/good.xml", good.render())
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    replies = [m for m in slack_server.messages if m.thread_ts]
    assert replies, [m.text for m in slack_server.messages]
    assert "B&amp;B owners" in (replies[0].text or "")
    assert "&amp;amp;" not in (replies[0].text or "")


async def test_a_rotating_feed_cannot_grow_the_story_index_without_bound(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """Finding 4, memory: every poll's watched entries stay in the index for the
    dedupe window; a feed's share of it is bounded (here 100), the rest grouped by
    URL. (Entries no watchlist matches are never held: here all of them match.)"""
    from monitor import config as cfg
    from monitor.service import Service

    markets = 'name: Markets\nall: ["Markets"]\nfeeds: all\nnotify: [newsroom]\n'
    config = started(tmp_path, feed_server, slack_server, smtp_server,
                     watchlists={"markets.yaml": markets})
    sizes = []
    loaded = cfg.load(config, env={**os.environ, "SLACK_BOT_TOKEN": TOKEN})
    async with Service(loaded, index_budget=100) as service:
        for rotation in range(4):
            feed_server.set("/evil.xml", rss(*(
                item(f"Markets {_words(rotation * 1000 + i)}",
                     f"https://evil.example/{rotation}/{i}") for i in range(80))))
            await service.poll_all()
            sizes.append(len(service.index))
        state = service.store.feed_state("Evil")
        assert state is not None and state.failures == 0
        recorded = service.store.entries_since(datetime.now(UTC) - timedelta(hours=1))
        assert len([se for se in recorded if se.entry.feed == "Evil"]) == 320  # all stored
    assert sizes[0] == 80 and max(sizes) <= 100, sizes


def test_a_floods_summary_is_one_cheap_message() -> None:
    """The summary of 1,980 folded alerts is rendered on the event loop: it lists
    a few and counts the rest."""
    from monitor.deliver.outbox import DIGEST_ITEMS, digest_title
    from monitor.render import Renderer
    from monitor.types import Alert

    now = datetime.now(UTC)
    alerts = [Alert(id=f"a{i}", watchlist="W", destination="d", story_id=f"s{i}",
                    entry=Entry(feed="Evil Wire", key=str(i), guid=None,
                                link=f"https://e.example/{i}", canonical_url="",
                                title="t " * 400, summary="s" * 5000, published=now),
                    terms=("x",), created_at=now, hold_reason="max_per_poll")
              for i in range(1980)]
    title = digest_title({"max_per_poll"}, {"W": alerts}, len(alerts))
    assert title.startswith("…and 1,980 more") and "Evil Wire" in title
    renderer = Renderer(Path(__file__).resolve().parent.parent / "templates")
    started_at = time.process_time()
    for kind in ("slack", "email", "console"):
        message = renderer.digest(kind, title, [("W", alerts)], {}, max_items=DIGEST_ITEMS)
        assert message.text.count("e.example/") <= DIGEST_ITEMS + 1
    assert time.process_time() - started_at < 1.0


def test_a_floods_summary_lists_the_other_feeds_news_too() -> None:
    """A summary that lists a few of a watchlist's folded stories takes them from
    every feed in turn: 500 from one feed cannot hide another feed's two, and it
    says how many it does not list."""
    from monitor.deliver.outbox import DIGEST_ITEMS
    from monitor.render import Renderer
    from monitor.types import Alert

    now = datetime.now(UTC)

    def alert(feed: str, i: int) -> Alert:
        return Alert(id=f"{feed}{i}", watchlist="W", destination="d", story_id=f"{feed}{i}",
                     entry=Entry(feed=feed, key=str(i), guid=None,
                                 link=f"https://{feed.lower()}.example/{i}", canonical_url="",
                                 title=f"{feed} story {i}", summary="", published=now),
                     terms=("x",), created_at=now, hold_reason="max_per_hour")

    alerts = [alert("Flood", i) for i in range(300)] + [alert("Quiet", 1)]
    alerts += [alert("Flood", i) for i in range(300, 500)] + [alert("Quiet", 2)]
    renderer = Renderer(Path(__file__).resolve().parent.parent / "templates")
    for kind in ("slack", "email", "console"):
        message = renderer.digest(kind, "t", [("W", alerts)], {}, max_items=DIGEST_ITEMS)
        text = message.text + json.dumps(message.blocks, ensure_ascii=False)
        assert "Quiet story 1" in text and "Quiet story 2" in text, kind
        assert f"…and {len(alerts) - DIGEST_ITEMS} more, not listed" in text, kind


def test_a_store_error_in_one_feeds_ingest_is_that_feeds_failure(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """Whatever the store refuses (here a trigger of the database itself), the poll
    is recorded as the feed's failure and the other feeds go on."""
    import sqlite3

    config = started(tmp_path, feed_server, slack_server, smtp_server)
    conn = sqlite3.connect(tmp_path / "state" / "monitor.db")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.feed = 'Evil' "
                 "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END")
    conn.commit()
    conn.close()
    feed_server.set("/evil.xml", rss(item("Markets rally", "https://evil.example/m")))
    title = publish_good(feed_server)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "feed.crash" not in r.stderr, r.stderr
    assert any(title[:30] in (m.text or "") for m in slack_server.messages)
    r = cli(config, "feeds")
    evil = next(line for line in r.stdout.splitlines() if line.startswith("Evil "))
    assert "failing " in evil and " x1 " in evil and "refused by the database" in evil, \
        r.stdout


@pytest.mark.parametrize(("status", "headers", "ttl"), [
    pytest.param(200, {"Cache-Control": "max-age=" + "9" * 30}, "", id="max-age"),
    pytest.param(200, {}, "<ttl>" + "9" * 30 + "</ttl>", id="ttl"),
    pytest.param(429, {"Retry-After": "9" * 30}, "", id="retry-after"),
])
def test_a_number_of_any_size_from_a_feed_is_capped_not_a_crash(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, status: int, headers: dict[str, str], ttl: str) -> None:
    """The numbers a server or a feed picks (caching headers, Retry-After, <ttl>) go
    into the feed's schedule capped: its poll is recorded (entries, or the
    failure it is), and no bug ends it unrecorded."""
    config = started(tmp_path, feed_server, slack_server, smtp_server)
    body = rss(item("Markets rally", "https://evil.example/m")).replace(
        "<description>x</description>", f"<description>x</description>{ttl}")
    feed_server.set("/evil.xml", body, status=status, headers=headers)
    title = publish_good(feed_server)
    r = cli(config, "run", "--once")
    assert "Traceback" not in r.stderr and "feed.crash" not in r.stderr, r.stderr
    assert any(title[:30] in (m.text or "") for m in slack_server.messages)
    evil = next(line for line in cli(config, "feeds").stdout.splitlines()
                if line.startswith("Evil "))
    if status == 200:
        assert r.returncode == 0, r.stderr
        assert "failing" not in evil and " 200 " in evil, evil
    else:
        line = " ".join(evil.split())
        assert f"failing 0s x1 {status} " in line and f"HTTP {status}" in line, evil
        if status == 429:  # a Retry-After past a day is taken as a day
            assert " in 23h59m " in line or " in 1d " in line, evil
