"""`news-monitor feeds`: the health table, OPML import and export. The real CLI as
a subprocess against feeds on 127.0.0.1; the OPML helpers as pure functions."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer

from monitor import config as cfg
from monitor.cli import _replace_checked, feed_rows
from monitor.errors import ConfigError
from monitor.opml import NAME_MAX, add_feeds, from_opml, read_opml, to_opml
from monitor.render import format_duration
from monitor.types import Feed, FeedState

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0"><head><title>My subscriptions</title></head><body>
  <outline text="News">
    <outline type="rss" text="BBC World" title="BBC World"
             xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml" htmlUrl="https://bbc.co.uk"/>
    <outline type="rss" text="Wire  Service" xmlUrl="https://wire.example/rss"/>
  </outline>
  <outline type="rss" text="BBC World" xmlUrl="https://other.example/bbc-copy.xml"/>
  <outline type="rss" text="dup" xmlUrl="https://wire.example/rss"/>
  <outline text="no url"/>
</body></opml>"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=config.parent)


@pytest.mark.parametrize(("d", "text"), [
    pytest.param(timedelta(seconds=45), "45s", id="seconds"),
    pytest.param(timedelta(minutes=2, seconds=10), "2m", id="minutes"),
    pytest.param(timedelta(hours=3), "3h", id="hours"),
    pytest.param(timedelta(hours=1, minutes=30), "1h30m", id="hours-minutes"),
    pytest.param(timedelta(days=1, hours=4), "1d4h", id="day-hours"),
    pytest.param(timedelta(days=9, hours=4), "9d", id="days"),
])
def test_format_duration(d: timedelta, text: str) -> None:
    assert format_duration(d) == text


def test_from_opml_finds_feeds_at_any_depth() -> None:
    assert from_opml(OPML) == [
        ("BBC World", "https://feeds.bbci.co.uk/news/world/rss.xml"),
        ("Wire Service", "https://wire.example/rss"),
        ("BBC World", "https://other.example/bbc-copy.xml"),
    ]
    with pytest.raises(ConfigError, match="not an OPML"):
        from_opml(b"<rss/>")
    with pytest.raises(ConfigError, match="not an OPML"):
        from_opml(b"<opml")


def test_read_opml_names_feeds_safely_and_says_what_it_left_out() -> None:
    found = read_opml(
        b"<opml><body>"
        b"<outline text='' xmlUrl='http://bob:s3cret@127.0.0.1/f?apikey=K3y'/>"
        b"<outline text='Evil&#x9b;31m &#10; Wire' xmlUrl='HTTPS://evil.example/rss'/>"
        b"<outline text='ftp' xmlUrl='ftp://x.example/rss'/>"
        b"<outline text='nl' xmlUrl='http://x.example/a&#10;b'/>"
        b"<outline text='long' title='" + b"x" * 500 + b"' xmlUrl='https://l.example/'/>"
        b"</body></opml>")
    assert found.feeds == [
        ("http://bob:[redacted]@127.0.0.1/f?apikey=[redacted]",
         "http://bob:s3cret@127.0.0.1/f?apikey=K3y"),
        ("Evil31m Wire", "https://evil.example/rss"),
        ("x" * NAME_MAX, "https://l.example/"),
    ]
    assert found.skipped == ["ftp://x.example/rss: not an http(s) URL",
                             "http://x.example/a b: a URL with spaces or control characters"]


def test_export_masks_secrets_unless_asked() -> None:
    feeds = [Feed(name="A", url="https://bob:s3cret@a.example/f?token=T0k3n&x=1",
                  interval=timedelta(1))]
    assert "s3cret" not in to_opml(feeds, title="t") and "T0k3n" not in to_opml(feeds, title="t")
    assert from_opml(to_opml(feeds, title="t", secrets=True).encode()) == [("A", feeds[0].url)]


def test_add_feeds_refuses_a_feeds_key_it_cannot_add_to() -> None:
    with pytest.raises(ConfigError, match="anchor"):
        add_feeds("feeds: &mine\n  - {name: B, url: 'https://b.example/'}\n",
                  [("A", "https://a.example/")], [])


def test_export_then_import_round_trips() -> None:
    feeds = [Feed(name="A & B", url="https://a.example/f?x=1&y=2", interval=timedelta(1)),
             Feed(name="C", url="https://c.example/rss", interval=timedelta(1))]
    assert from_opml(to_opml(feeds, title="t").encode()) == [(f.name, f.url) for f in feeds]


def test_add_feeds_keeps_the_file_and_makes_names_unique(tmp_path: Path) -> None:
    text = ("# my monitor\nstate: sqlite:///state/monitor.db\nfeeds:\n"
            "  # the wire first\n  - {name: BBC World, url: 'https://x.example/old'}\n"
            "destinations: {console: {type: console}}\n")
    new, added = add_feeds(text, from_opml(OPML), [("BBC World", "https://x.example/old")])
    assert [n for n, _ in added] == ["BBC World (2)", "Wire Service", "BBC World (3)"]
    assert new.startswith("# my monitor\n") and "# the wire first" in new
    (tmp_path / "monitor.yaml").write_text(new)
    (tmp_path / "watchlists").mkdir()
    loaded = cfg.load(tmp_path / "monitor.yaml")
    assert [f.name for f in loaded.feeds] == ["BBC World (2)", "Wire Service", "BBC World (3)",
                                              "BBC World"]
    assert add_feeds(new, from_opml(OPML), [(f.name, f.url) for f in loaded.feeds])[1] == []


def test_add_feeds_to_a_config_without_feeds() -> None:
    new, added = add_feeds("state: sqlite:///s.db\nfeeds: []\n", [("A", "https://a.example/")],
                           [])
    assert added == [("A", "https://a.example/")]
    assert new == 'state: sqlite:///s.db\nfeeds:\n  - {name: "A", url: "https://a.example/"}\n'
    with pytest.raises(ConfigError, match="flow list"):
        add_feeds("feeds: [{name: B, url: 'https://b.example/'}]\n", [("A", "https://a/")], [])


def test_health_rows() -> None:
    feeds = [Feed(name=n, url=f"https://{n}.example/", interval=timedelta(minutes=5))
             for n in ("ok", "failing", "gone", "new")]
    states = {
        "ok": FeedState(name="ok", last_polled_at=NOW - timedelta(minutes=2), status=200,
                        last_success_at=NOW - timedelta(minutes=2),
                        next_poll_at=NOW + timedelta(minutes=3), per_day=24.0,
                        response_ms=83.4, polled_by="web-2:4711"),
        "failing": FeedState(name="failing", failures=7, status=503,
                             last_polled_at=NOW - timedelta(minutes=1),
                             failing_since=NOW - timedelta(hours=26),
                             last_success_at=NOW - timedelta(hours=26),
                             last_error="HTTP 503 Service Unavailable",
                             next_poll_at=NOW + timedelta(hours=1)),
        "gone": FeedState(name="gone", failures=1, status=410, gone_url="https://gone.example/",
                          last_polled_at=NOW - timedelta(days=3), last_error="HTTP 410 Gone"),
    }
    rows = feed_rows(feeds, states, NOW)
    assert rows[1] == ("ok", "ok", "200", "2m ago", "in 3m", "24.0", "83ms", "web-2:4711", "")
    assert rows[2] == ("failing", "failing 1d2h x7", "503", "1d2h ago", "in 1h", "-", "-", "-",
                       "HTTP 503 Service Unavailable")
    assert rows[3][:5] == ("gone", "gone (410)", "410", "never", "never")
    assert rows[4][:5] == ("new", "new", "-", "never", "due")


def test_feeds_commands_end_to_end(tmp_path: Path, feed_server: FeedServer) -> None:
    rss = RSS()
    rss.add("A story", "https://wire.example/a")
    feed_server.set("/ok.xml", rss.render())
    feed_server.fail("/bad.xml", 500)
    (tmp_path / "watchlists").mkdir()
    config = tmp_path / "monitor.yaml"
    config.write_text("state: sqlite:///state/monitor.db\npoll: {parse_workers: 0}\nfeeds:\n"
                      f"  - {{name: Okay, url: '{feed_server.url('/ok.xml')}'}}\n"
                      f"  - {{name: Broken, url: '{feed_server.url('/bad.xml')}'}}\n")
    assert cli(config, "run", "--once").returncode == 0
    r = cli(config, "feeds")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["FEED", "STATUS", "HTTP"]
    okay = next(ln for ln in lines if ln.startswith("Okay"))
    broken = next(ln for ln in lines if ln.startswith("Broken"))
    assert " ok " in okay and "200" in okay and "s ago" in okay
    assert "failing " in broken and " x1 " in broken and "HTTP 500" in broken

    exported = cli(config, "feeds", "export")
    assert exported.returncode == 0, exported.stderr
    assert from_opml(exported.stdout.encode()) == [("Okay", feed_server.url("/ok.xml")),
                                                   ("Broken", feed_server.url("/bad.xml"))]
    opml = tmp_path / "subs.opml"
    opml.write_bytes(OPML)
    dry = cli(config, "feeds", "import", str(opml))
    assert dry.returncode == 0 and "3 new feeds" in dry.stdout and "dry run" in dry.stdout
    assert "Wire Service" not in config.read_text()
    wrote = cli(config, "feeds", "import", str(opml), "--write")
    assert wrote.returncode == 0, wrote.stderr
    assert len(cfg.load(config).feeds) == 5
    again = cli(config, "feeds", "import", str(opml), "--write")
    assert "0 new feeds, 3 already configured" in again.stdout


def test_an_import_prints_no_credentials(tmp_path: Path) -> None:
    (tmp_path / "watchlists").mkdir()
    config = tmp_path / "monitor.yaml"
    config.write_text("state: sqlite:///state/monitor.db\nfeeds:\n"
                      "  - {name: Okay, url: 'https://ok.example/rss'}\n")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(b"<opml><body><outline text='' "
                     b"xmlUrl='https://bob:s3cret@new.example/rss'/></body></opml>")
    for args in ((), ("--write",)):
        r = cli(config, "feeds", "import", str(opml), *args)
        assert r.returncode == 0, r.stderr
        assert "s3cret" not in r.stdout + r.stderr, r.stdout
        assert "bob:[redacted]@new.example" in r.stdout
    assert "s3cret" in config.read_text()  # the config keeps the URL as it is
    bad = tmp_path / "bad.opml"
    bad.write_bytes(b"<rss/>")
    r = cli(config, "feeds", "import", str(bad))
    assert r.returncode == 1 and f"{bad}: not an OPML file" in r.stderr, r.stderr


def test_a_config_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    (tmp_path / "watchlists").mkdir()
    config = tmp_path / "monitor.yaml"
    before = "state: sqlite:///state/monitor.db\nfeeds: []\n"
    config.write_text(before)
    config.chmod(0o600)
    with pytest.raises(ConfigError, match="left unchanged"):
        _replace_checked(config, before + "feeds:\n  - {name: A, url: 'https://a.example/'}\n")
    assert config.read_text() == before
    _replace_checked(config, "feeds:\n  - {name: A, url: 'https://a.example/'}\n")
    assert [f.name for f in cfg.load(config).feeds] == ["A"]
    assert config.stat().st_mode & 0o777 == 0o600  # a config may hold secrets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.yaml", "watchlists"]
