"""Log lines as a terminal, journald and a log shipper get them, from the real CLI."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from feeds import RSS
from servers import FeedServer, SlackServer, SMTPServer
from test_end_to_end import make_config

from monitor.logs import fields, priority

TOKEN = "xoxb-secret-token-do-not-log"


def run_once(config: Path, *pre: str, env_extra: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEWS_MONITOR_CONFIG", "JOURNAL_STREAM", "NEWS_MONITOR_LOG_LEVEL")}
    env.update({"SLACK_BOT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "monitor.cli", *pre, "run", "--once",
                           "--drain", "2s", "--config", str(config)], capture_output=True,
                          text=True, env=env, timeout=60, cwd=config.parent)


@pytest.fixture
def config(tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
           smtp_server: SMTPServer) -> Path:
    feed_server.set("/ok.xml", RSS().render())
    feed_server.fail("/bad.xml", 503)
    return make_config(tmp_path, feed_server, slack_server, smtp_server,
                       {"Good": "/ok.xml", "Bad": "/bad.xml"})


@pytest.mark.parametrize(("message", "event", "pairs"), [
    pytest.param("feed.polled feed=BBC new=3", "feed.polled", {"feed": "BBC", "new": "3"},
                 id="simple"),
    pytest.param("feed.error feed=Al Jazeera url=http://x error=cannot connect to x:443",
                 "feed.error", {"feed": "Al Jazeera", "url": "http://x",
                                "error": "cannot connect to x:443"}, id="values-with-spaces"),
    pytest.param("plain words", "plain", {}, id="no-pairs"),
])
def test_fields(message: str, event: str, pairs: dict[str, str]) -> None:
    assert fields(message) == (event, pairs)


def test_priorities_are_syslogs() -> None:
    assert [priority(lv) for lv in (logging.DEBUG, logging.INFO, logging.WARNING,
                                    logging.ERROR, logging.CRITICAL)] == [7, 6, 4, 3, 2]


def test_text_lines_are_one_event_each_with_a_utc_timestamp(config: Path) -> None:
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) "
                                  r"[a-z_]+\.[a-z_]+ ", ln) for ln in lines), r.stderr
    assert TOKEN not in r.stderr


def test_under_journald_no_timestamp_and_priority_prefixes(config: Path) -> None:
    r = run_once(config, env_extra={"JOURNAL_STREAM": "8:12345"})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert all(re.match(r"^<[2-7]>", ln) for ln in lines), r.stderr
    assert any(ln.startswith("<4>WARNING feed.error feed=Bad") for ln in lines), r.stderr
    assert any(ln.startswith("<6>INFO run.summary") for ln in lines), r.stderr


def test_json_lines_for_shippers(config: Path) -> None:
    r = run_once(config, "--log-format", "json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(ln) for ln in r.stderr.splitlines()]
    [err] = [x for x in records if x["event"] == "feed.error"]
    assert err["level"] == "warning" and err["feed"] == "Bad" and "503" in err["error"]
    [summary] = [x for x in records if x["event"] == "run.summary"]
    assert summary["feeds_polled"] == "2" and summary["feeds_failed"] == "1"
    assert all(x["time"].endswith("Z") for x in records)
    assert TOKEN not in r.stderr


def test_secrets_known_to_the_process_are_masked_in_every_line() -> None:
    """psycopg_pool logs its failed connects itself ('invalid percent-encoded token:
    "Pa%ss"'): no pattern would know that for a password."""
    from monitor import logs
    from monitor.logs import JsonFormatter, TextFormatter

    logs.hide(["Zq%9pool-secret", "ab"])  # under four characters: not a secret worth masking
    record = logging.LogRecord("psycopg.pool", logging.WARNING, __file__, 1,
                               "error connecting in 'news-monitor': invalid token: %r",
                               ("Zq%9pool-secret",), None)
    for formatter in (TextFormatter(journal=False), TextFormatter(journal=True)):
        line = formatter.format(record)
        assert "Zq%9pool-secret" not in line and "[redacted]" in line, line
    out = json.loads(JsonFormatter().format(record))
    assert "Zq%9pool-secret" not in json.dumps(out)
    plain = logging.LogRecord("monitor", logging.INFO, __file__, 1, "tab ab", (), None)
    assert "tab ab" in TextFormatter(journal=False).format(plain)
