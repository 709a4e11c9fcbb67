"""The command line without dead ends: every mistake gets one clear line that says
what to do, as a new user would meet them (the real CLI in a subprocess)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from feeds import RSS

from monitor.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"}
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60, cwd=tmp)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "wl").mkdir()
    (tmp_path / "wl" / "ukraine.yaml").write_text(
        "name: Ukraine\nquery: ukraine and russia\nfeeds: [BBC]\nnotify: [console]\n")
    (tmp_path / "monitor.yaml").write_text(
        "feeds:\n  - {name: BBC, url: 'file://bbc.xml'}\nwatchlists: wl/\n"
        f"templates: {ROOT / 'templates'}\ndestinations: {{console: {{type: console}}}}\n")
    rss = RSS()
    rss.add("Ukraine and Russia talk", "https://news.example/talks")
    (tmp_path / "other.xml").write_text(rss.render())
    return tmp_path


def test_version(tmp: Path) -> None:
    r = run(tmp, "--version")
    assert r.returncode == 0 and r.stdout.startswith("news-monitor "), r


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            out.append((path, action))
    return out


def test_every_option_has_help() -> None:
    missing = [f"{path} {a.dest}" for path, a in _actions(build_parser(), "news-monitor")
               if not a.help]
    assert missing == []


def test_check_counts_with_plurals_and_warns_of_lowercase_operators(tmp: Path) -> None:
    r = run(tmp, "check")
    assert r.returncode == 0, r.stderr
    assert "ok: 1 feed, 1 watchlist, 1 destination" in r.stdout
    assert "warning: query: lowercase 'and' is a word to match, not an operator" in r.stderr
    assert str(tmp / "wl" / "ukraine.yaml") + ":2:" in r.stderr


def test_try_warns_of_lowercase_operators_and_an_excluding_feeds_filter(tmp: Path) -> None:
    r = run(tmp, "try", "wl/ukraine.yaml", "other.xml")
    assert r.returncode == 0, r.stderr
    assert "lowercase 'and'" in r.stderr
    assert "Ukraine: its feeds: filter (BBC) excludes every entry tried (from other)" in r.stderr
    assert "0 of 1 entry would alert" in r.stdout
    r = run(tmp, "try", "ukraine or russia", "other.xml")
    assert "lowercase 'or'" in r.stderr
    r = run(tmp, "try", "ukraine OR russia", "other.xml")
    assert "lowercase" not in r.stderr and "1 of 1 entry would alert" in r.stdout


def test_try_warns_that_source_terms_cannot_match_feeds_given_on_the_command_line(
        tmp: Path) -> None:
    r = run(tmp, "try", 'source:"BBC World" AND ukraine', "other.xml")
    assert r.returncode == 0, r
    assert "source: terms (BBC World) match feed names" in r.stderr
    assert "(other)" in r.stderr and "0 of 1 entry would alert" in r.stdout
    r = run(tmp, "try", "ukraine OR russia", "other.xml")
    assert "source:" not in r.stderr


def test_try_fails_when_no_feed_given_could_be_read(tmp: Path) -> None:
    """"0 of 0 entries would alert" and exit 0 read as a pass when nothing was tried."""
    (tmp / "broken.xml").write_text("<html>login</html>")
    r = run(tmp, "try", "ukraine OR russia", "broken.xml", "missing.xml")
    assert r.returncode == 1, r
    assert "none of the 2 feeds given could be read" in r.stderr
    r = run(tmp, "try", "ukraine OR russia", "broken.xml", "other.xml")  # one read: tried
    assert r.returncode == 0 and "1 of 1 entry would alert" in r.stdout, r


def test_try_with_a_missing_watchlist_file_is_an_error_not_a_query(tmp: Path) -> None:
    r = run(tmp, "try", "wl/ukrain.yaml", "other.xml")
    assert r.returncode == 1
    assert "wl/ukrain.yaml: no such watchlist file" in r.stderr
    assert "would alert" not in r.stdout


@pytest.mark.parametrize("args", [
    pytest.param(("try", "x", "--since", "1 hour"), id="try"),
    pytest.param(("stories", "--since", "yesterday"), id="stories"),
    pytest.param(("run", "--once", "--drain", "2 minutes"), id="drain"),
    pytest.param(("replay", "Ukraine", "--since", "1 day"), id="replay"),
])
def test_a_bad_duration_is_one_clear_line(tmp: Path, args: tuple[str, ...]) -> None:
    r = run(tmp, *args)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert "expected a duration like 30s, 5m, 48h or 7d" in line, line


def test_alerts_retry_of_an_unknown_id_exits_1(tmp: Path) -> None:
    r = run(tmp, "alerts", "retry", "no-such-alert")
    assert r.returncode == 1
    assert "no alert has the id 'no-such-alert'" in r.stderr


def test_unknown_names_list_the_known_ones_and_feeds_are_named(tmp: Path) -> None:
    wl = tmp / "wl" / "ukraine.yaml"
    wl.write_text("name: Ukraine\nall: [Ukraine]\nfeeds: [CNN]\nnotify: [pager]\n")
    r = run(tmp, "check")
    assert r.returncode == 1
    assert "unknown destination 'pager' (known: console)" in r.stderr
    wl.write_text("name: Ukraine\nall: [Ukraine]\nfeeds: [CNN]\nnotify: [console]\n")
    r = run(tmp, "check")
    assert "unknown feed 'CNN' (known: 'BBC')" in r.stderr
    config = tmp / "monitor.yaml"
    config.write_text(config.read_text().replace("file://bbc.xml", "ftp://bbc.xml"))
    r = run(tmp, "check")
    assert r.returncode == 1
    assert "feeds['BBC'].url:" in r.stderr and "feeds.0" not in r.stderr
