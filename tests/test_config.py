"""Config loading: typed values, ${VAR}, relative paths, and path:line errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor import config as cfg
from monitor.errors import ConfigError

WATCHLIST = """\
name: North Korean troops in Ukraine
all: ["North Korea*", "Ukraine"]
none: ["South Korea"]
notify: [console]
"""


def write(tmp: Path, text: str, wl: dict[str, str] | None = None) -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    for name, body in (wl if wl is not None else {"nk.yaml": WATCHLIST}).items():
        (tmp / "watchlists" / name).write_text(body)
    p = tmp / "monitor.yaml"
    p.write_text(text)
    return p


def test_full_example_loads(tmp_path: Path) -> None:
    p = write(tmp_path, """\
state: sqlite:///state/monitor.db
poll: {interval: 5m, timeout: 20s, concurrency: 50, max_bytes: 10MB}
backfill: 0
feeds:
  - {name: BBC World, url: "https://feeds.bbci.co.uk/news/world/rss.xml", interval: 2m}
  - {name: Other, url: "https://example.org/feed"}
watchlists: watchlists/
destinations:
  newsroom: {type: slack, channel: "#alerts", token: "${SLACK_BOT_TOKEN}", base_url: "https://slack.com/api/"}
  desk-mail: {type: email, host: localhost, port: 25, starttls: false, username: null, password: null, from: alerts@example.org, to: [desk@example.org]}
  console: {type: console}
""")
    c = cfg.load(p, env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert c.state == f"sqlite:///{tmp_path}/state/monitor.db"
    assert c.poll.max_bytes == 10_000_000
    assert c.feeds[0].interval == timedelta(minutes=2)
    assert c.feeds[1].interval == timedelta(minutes=5)
    assert c.destinations["newsroom"].token == "xoxb-1"  # type: ignore[union-attr]
    assert c.destinations["desk-mail"].to == ("desk@example.org",)  # type: ignore[union-attr]
    [wl] = c.watchlists
    assert wl.all == ("North Korea*", "Ukraine") and wl.notify == ("console",)
    assert "xoxb-1" not in repr(c.destinations["newsroom"])  # secrets stay out of reprs


def test_missing_env_var_is_named_with_line(tmp_path: Path) -> None:
    p = write(tmp_path, "destinations:\n  s: {type: slack, channel: '#a', token: '${NOPE}'}\n")
    with pytest.raises(ConfigError) as e:
        cfg.load(p, env={})
    assert str(e.value).startswith(f"{p}:2:")
    assert "NOPE" in str(e.value)


@pytest.mark.parametrize(("text", "line", "needle"), [
    pytest.param("poll: {interval: soon}\n", 1, "duration", id="bad-duration"),
    pytest.param("feeds:\n  - {name: A, url: 'https://a'}\n  - {name: B, urll: x}\n", 3,
                 "unknown key", id="typo-key"),
    pytest.param("feeds:\n  - {name: A, url: 'ftp://a'}\n", 2, "http", id="bad-url"),
    pytest.param("destinations:\n  x:\n    type: email\n    to: [a@b]\n", 2, "from",
                 id="missing-from"),
    pytest.param("destinations:\n  x: {type: pager}\n", 2, "type", id="unknown-type"),
    pytest.param("feeds: [\n", 2, "invalid YAML", id="bad-yaml"),
    pytest.param("feeds:\n  - {name: A, url: 'https://a'}\n  - {name: A, url: 'https://b'}\n",
                 1, "unique", id="duplicate-feed"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        cfg.load(p, env={})
    errors = cfg.split_errors(e.value)
    assert all(err.path == str(p) for err in errors)
    hits = [err for err in errors if needle in str(err)]
    assert hits, [str(err) for err in errors]
    assert hits[0].line == line, str(hits[0])


def test_bad_watchlist_is_reported_and_others_load(tmp_path: Path) -> None:
    p = write(tmp_path, "destinations: {console: {type: console}}\n", {
        "a-good.yaml": WATCHLIST,
        "b-bad.yaml": "name: broken\nall: [Ukraine]\nnotify: [pager]\n",
        "c-noterms.yaml": "name: empty\nnotify: [console]\n",
    })
    c = cfg.load(p, env={})
    assert [w.name for w in c.watchlists] == ["North Korean troops in Ukraine"]
    errs = [str(e) for e in c.watchlist_errors]
    assert any(e.startswith(f"{tmp_path}/watchlists/b-bad.yaml:3:") and "pager" in e
               for e in errs), errs
    assert any("c-noterms.yaml:1:" in e and "needs a query" in e for e in errs), errs


def test_query_error_points_at_line_and_column(tmp_path: Path) -> None:
    body = "name: q\nquery: '(Ukraine OR Kursk'\nnotify: [console]\n"
    p = write(tmp_path, "destinations: {console: {type: console}}\n", {"q.yaml": body})
    c = cfg.load(p, env={})
    [err] = c.watchlist_errors
    assert err.path and err.path.endswith("q.yaml")
    assert err.line == 2
    assert err.column is not None and err.column >= 8  # inside the quoted query
    assert "query" in str(err)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("xoxb-from-file\n")
    p = write(tmp_path, "destinations:\n  s: {type: slack, channel: '#a', "
                        f"token_file: '{tmp_path}/token'}}\n")
    c = cfg.load(p, env={})
    assert c.destinations["s"].token == "xoxb-from-file"  # type: ignore[union-attr]


def test_find_config_order() -> None:
    assert cfg.find_config("x.yaml", {"NEWS_MONITOR_CONFIG": "y.yaml"}) == Path("x.yaml")
    assert cfg.find_config(None, {"NEWS_MONITOR_CONFIG": "y.yaml"}) == Path("y.yaml")
    assert cfg.find_config(None, {}) == Path("monitor.yaml")


@pytest.mark.parametrize(("raw", "seconds"), [
    (90, 90), ("20s", 20), ("5m", 300), ("48h", 172800), ("7d", 604800), ("0", 0),
])
def test_durations(raw: object, seconds: float) -> None:
    assert cfg.parse_duration(raw).total_seconds() == seconds


def test_repo_default_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    c = cfg.load(root / "monitor.yaml", env={})
    assert c.feeds and c.watchlists and not c.watchlist_errors
    assert c.destinations.keys() == {"console"}


@pytest.mark.parametrize(("body", "line", "needle"), [
    pytest.param("name: q\nquery: 'NOT Ukraine'\nnotify: [console]\n", 2, "query",
                 id="negative-only-query"),
    pytest.param("name: q\nquery: 'titel:Kim'\nnotify: [console]\n", 2, "query",
                 id="unknown-field"),
    pytest.param("name: q\nall: [Kim]\nquery: 'Putin NEAR/x Kim'\nnotify: [console]\n", 3,
                 "NEAR", id="near-without-number"),
])
def test_query_errors(tmp_path: Path, body: str, line: int, needle: str) -> None:
    p = write(tmp_path, "destinations: {console: {type: console}}\n", {"q.yaml": body})
    [err] = cfg.load(p, env={}).watchlist_errors
    assert err.line == line and needle in str(err), str(err)


def test_stricter_semantic_dedupe_from_the_readme(tmp_path: Path) -> None:
    """The README's stricter semantic settings reach DedupeSettings as written."""
    from monitor.dedupe import DedupeSettings, Method

    p = write(tmp_path, """\
dedupe:
  method: semantic
  semantic_threshold: 0.36
  semantic_conflict_penalty: 0.08
""")
    settings = DedupeSettings(**cfg.load(p, env={}).dedupe.settings())
    assert settings.method is Method.SEMANTIC
    assert settings.semantic_threshold == 0.36
    assert settings.semantic_conflict_penalty == 0.08
    assert settings.semantic_tightness_margin == DedupeSettings().semantic_tightness_margin


def test_dedupe_knob_out_of_range_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "dedupe:\n  method: semantic\n  semantic_tightness_margin: 2\n")
    with pytest.raises(ConfigError) as e:
        cfg.load(p, env={})
    [err] = cfg.split_errors(e.value)
    assert err.line == 3 and "semantic_tightness_margin" in str(err), str(err)
