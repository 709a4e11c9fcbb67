"""Config loading: typed values, ${VAR}, relative paths, and path:line errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import config as cfg
from monitor.errors import ConfigError

WATCHLIST = """\
name: North Korean troops in Ukraine
all: ["North Korea*", "Ukraine"]
none: ["South Korea"]
notify: [console]
"""


@pytest.fixture(autouse=True,
                params=["libyaml", "pure-python"] if yaml.__with_libyaml__ else ["pure-python"])
def yaml_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test here runs on both readers: libyaml's, and PyYAML's alone (what a
    PyYAML built without libyaml has, and what words every error)."""
    if request.param == "pure-python":
        monkeypatch.setattr(cfg, "_CBoundedLoader", None)
    return str(request.param)


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
    pytest.param("feeds:\n  - {name: A, url: 'http://127.0.0.1:99999/f'}\n", 2,
                 "Port out of range", id="bad-port"),
    pytest.param("destinations:\n  x:\n    type: email\n    to: [a@b]\n", 2, "from",
                 id="missing-from"),
    pytest.param("destinations:\n  x: {type: pager}\n", 2, "type", id="unknown-type"),
    pytest.param("feeds: [\n", 2, "invalid YAML", id="bad-yaml"),
    pytest.param("feeds:\n  - {name: A, url: 'https://a'}\n  - {name: A, url: 'https://b'}\n",
                 1, "unique", id="duplicate-feed"),
    pytest.param("feeds:\n  - {name: A, url: 'https://a'}\nstate: x\nfeeds: []\n", 4,
                 "'feeds' is given twice (first at line 1", id="duplicate-key"),
    pytest.param("poll: {interval: 0}\n", 1, "poll.interval: must be longer than 0",
                 id="zero-interval"),
    pytest.param("poll: {max_interval: 0s}\n", 1, "max_interval: must be longer than 0",
                 id="zero-max-interval"),
    pytest.param("poll: {min_interval: 2h, max_interval: 1h}\n", 1,
                 "min_interval (2:00:00) must not be longer than max_interval",
                 id="bounds-out-of-order"),
    pytest.param("feeds:\n  - {name: A, url: 'https://a', interval: 0}\n", 2,
                 "interval: must be longer than 0", id="zero-feed-interval"),
    # Too long for a datetime to add: a traceback at start-up, or every poll crashing.
    pytest.param("retention: 99999999999d\n", 1, "duration from 0 to 3650d",
                 id="duration-overflow"),
    pytest.param("retention: .inf\n", 1, "duration from 0 to 3650d", id="duration-infinite"),
    pytest.param("retention: .nan\n", 1, "duration from 0 to 3650d", id="duration-nan"),
    pytest.param("poll: {interval: 999999999999999}\n", 1, "duration from 0 to 3650d",
                 id="interval-overflow"),
    pytest.param("dedupe: {window: -5}\n", 1, "duration from 0 to 3650d",
                 id="negative-duration"),
    pytest.param("poll: {timeout: 0}\n", 1, "poll.timeout: must be longer than 0",
                 id="zero-timeout"),
    pytest.param("poll: {max_bytes: -1}\n", 1, "size from 1 byte", id="negative-size"),
    pytest.param("poll: {max_bytes: 99999999999GB}\n", 1, "size from 1 byte", id="size-overflow"),
    pytest.param("quiet_hours: {from: 22:00, to: '07:00'}\n", 1,
                 "YAML reads an unquoted 22:00 as one; quote it: '22:00'", id="sexagesimal-time"),
    pytest.param("destinations:\n  s: {type: slack, webhook_url: 'https://hooks.example:99999"
                 "/T0/B0/s3cretpath'}\n", 2, "webhook_url is not a valid URL", id="webhook-port"),
    pytest.param("destinations:\n  s: {type: slack, webhook_url: 'https:///T0/B0/s3cretpath'}\n",
                 2, "webhook_url has no host", id="webhook-no-host"),
    pytest.param("feeds:\n  - {name: \"BBC\\nINFO alert.sent forged\", url: 'https://a'}\n", 2,
                 "a name cannot hold control characters", id="newline-in-feed-name"),
    pytest.param("destinations:\n  \"desk\\tmail\": {type: console}\n", 1,
                 "a name cannot hold control characters (a newline, a tab): 'desk\\tmail'",
                 id="tab-in-destination-name"),
    # A URL the store cannot open is refused with its line, its password masked.
    pytest.param("state: postgresql+psycopg://mon:S3cret@db/x\n", 1,
                 "postgresql+psycopg://mon:[redacted]@db/x is not a store", id="state-scheme"),
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


@pytest.mark.parametrize(("query", "line", "column"), [
    pytest.param("query: |\n    a AND\n    foo:b\n", 4, 5, id="literal"),
    pytest.param("query: >\n    a AND\n    foo:b\n", 4, 5, id="folded"),
    pytest.param("query: >-\n    a AND b AND c AND d AND\n      e AND foo:b\n", 4, 13,
                 id="folded-more-indented"),
    pytest.param("query: a AND\n    foo:b\n", 3, 5, id="plain-two-lines"),
    pytest.param("query: 'a AND\n    foo:b'\n", 3, 5, id="single-quoted-two-lines"),
    pytest.param('query: "a AND\n    foo:b"\n', 3, 5, id="double-quoted-two-lines"),
    pytest.param('query: "\\"a\\" AND foo:b"\n', 2, 19, id="escaped-quotes"),
    pytest.param("query: 'it''s AND foo:b'\n", 2, 19, id="doubled-single-quote"),
    pytest.param("query: a AND foo:b\n", 2, 14, id="plain"),
    pytest.param("query: |\n    a AND (b\n", 3, 11, id="open-paren-on-line-two"),
])
def test_query_errors_point_at_their_line_and_column(tmp_path: Path, query: str, line: int,
                                                    column: int) -> None:
    """However the query is written in YAML: folded, quoted, escaped, on several lines."""
    body = f"name: x\n{query}notify: [console]\n"
    p = write(tmp_path, "destinations: {console: {type: console}}\n", {"q.yaml": body})
    [err] = cfg.load(p, env={}).watchlist_errors
    assert (err.line, err.column) == (line, column), str(err)
    text = body.splitlines()[line - 1]
    if "foo:" in query:
        assert text[column - 1:].startswith("foo:"), (text, column)


@pytest.mark.parametrize(("body", "needle"), [
    ("name: x\nall: [Kim]\nfeeds: []\nnotify: [console]\n", "empty list matches no feed"),
    ("name: '  '\nall: [Kim]\nnotify: [console]\n", "name is blank"),
    ('name: "Korea\\u2028forged"\nall: [Kim]\nnotify: [console]\n', "control characters"),
])
def test_a_watchlist_that_could_never_alert_is_refused(tmp_path: Path, body: str,
                                                       needle: str) -> None:
    p = write(tmp_path, "destinations: {console: {type: console}}\n", {"q.yaml": body})
    [err] = cfg.load(p, env={}).watchlist_errors
    assert needle in str(err) and str(err).startswith(f"{tmp_path}/watchlists/q.yaml:1:")


def test_an_unknown_state_url_never_shows_its_password(tmp_path: Path) -> None:
    p = write(tmp_path, "state: mysql://mon:S3cret@db/x\n")
    with pytest.raises(ConfigError) as e:
        cfg.load(p, env={})
    assert "S3cret" not in str(e.value)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_secret_file_is_named(tmp_path: Path, content: str) -> None:
    (tmp_path / "pw").write_text(content)
    p = write(tmp_path, "destinations:\n  m: {type: email, from: a@b, to: [c@d], "
                        f"username: u, password_file: '{tmp_path}/pw'}}\n")
    with pytest.raises(ConfigError, match=f"password_file {tmp_path}/pw is empty"):
        cfg.load(p, env={})


def test_hidden_files_in_the_watchlist_folder_are_not_watchlists(tmp_path: Path) -> None:
    """Editors' lock files (.#x.yaml, a dangling link), macOS's ._x.yaml copies and a
    hidden copy of a watchlist (which sorted first and took its name) are left out."""
    p = write(tmp_path, "destinations: {console: {type: console}}\n",
              {"nk.yaml": WATCHLIST, ".nk.yaml": WATCHLIST, "._nk.yaml": "\x00\udcff"
               .encode("utf-8", "surrogateescape").decode("latin-1")})
    (tmp_path / "watchlists" / ".#nk.yaml").symlink_to("root@host.1234:1700000000")
    c = cfg.load(p, env={})
    assert [Path(w.path).name for w in c.watchlists] == ["nk.yaml"]
    assert c.watchlist_errors == ()


def test_a_watchlist_that_is_not_a_regular_file_is_reported_not_read(tmp_path: Path) -> None:
    """A FIFO named x.yaml blocked start-up (and the reload thread) for good."""
    import os

    p = write(tmp_path, "destinations: {console: {type: console}}\n")
    os.mkfifo(tmp_path / "watchlists" / "pipe.yaml")
    (tmp_path / "watchlists" / "zero.yaml").symlink_to("/dev/zero")
    c = cfg.load(p, env={})
    assert [Path(w.path).name for w in c.watchlists] == ["nk.yaml"]
    errs = sorted(str(e) for e in c.watchlist_errors)
    assert errs == [f"{tmp_path}/watchlists/pipe.yaml: cannot read: not a regular file",
                    f"{tmp_path}/watchlists/zero.yaml: cannot read: not a regular file"]


def test_an_oversized_config_is_refused_unread(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("feeds: []\n" + "#" * 100 + "\n")
    with pytest.raises(OSError, match="larger than"):
        cfg.read_text(p, limit=64)


def test_find_config_order() -> None:
    assert cfg.find_config("x.yaml", {"NEWS_MONITOR_CONFIG": "y.yaml"}) == Path("x.yaml")
    assert cfg.find_config(None, {"NEWS_MONITOR_CONFIG": "y.yaml"}) == Path("y.yaml")
    assert cfg.find_config(None, {}) == Path("monitor.yaml")


@pytest.mark.parametrize(("raw", "seconds"), [
    (90, 90), ("20s", 20), ("5m", 300), ("48h", 172800), ("7d", 604800), ("0", 0),
    ("3650d", 3650 * 86400), (1.5, 1.5), (timedelta(hours=1), 3600),
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


# ------------------------------------------------------- libyaml and pure Python

LIBYAML = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
FAST_READER = cfg._CBoundedLoader  # before yaml_reader takes it away
ROOT = Path(__file__).resolve().parent.parent


class _EveryVar(dict[str, str]):
    """An environment that has every variable."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return f"<{name}>"


def _reading(text: str, loader: object) -> object:
    """What one reader makes of ``text``: the value with every part's marks (and each
    scalar's node), or the error as printed, or "unlike" when the libyaml reader
    hands the document to the reference."""
    try:
        raw, located = cfg._read(text, Path("x.yaml"), _EveryVar(), loader)  # type: ignore[arg-type]
    except ConfigError as exc:
        return str(exc)
    except cfg._Unlike:
        return "unlike"
    nodes = {loc: (n.tag, n.value, n.style, n.start_mark.line, n.start_mark.column,
                   n.end_mark.line, n.end_mark.column) for loc, n in located.scalars.items()}
    return repr(raw), located.marks, nodes


def _parsed(text: str) -> object:
    """What loading ``text`` gives, whichever reader read it."""
    try:
        raw, located = cfg._parse(text, Path("x.yaml"), _EveryVar())
    except ConfigError as exc:
        return str(exc)
    nodes = {loc: (n.tag, n.value, n.style, n.start_mark.line, n.start_mark.column,
                   n.end_mark.line, n.end_mark.column) for loc, n in located.scalars.items()}
    return repr(raw), located.marks, nodes


SAME = [
    pytest.param((ROOT / "monitor.yaml").read_text(), id="monitor.yaml"),
    pytest.param((ROOT / "deploy" / "monitor.example.yaml").read_text(), id="example"),
    *[pytest.param(p.read_text(), id=p.name) for p in sorted((ROOT / "watchlists").glob("*"))],
    pytest.param("a: |\n  x\n  y\nb: >-\n  folded\n   more\n\n  last\nc: |+2\n   k\n\n", id="block"),
    pytest.param('q: "a\\tb\\u00e9\\x41\\N\\_ \\\n  cont"\nr: \'it\'\'s\n  two\n\n  lines\'\n',
                 id="quoted"),
    pytest.param("k: plain\n  continued\n   more\n# note\nl: x # c\n", id="plain-lines"),
    pytest.param("? key\n: value\nx: &a [1, {b: 2}]\n", id="explicit-key"),
    pytest.param("a: &x {b: [1, 2.5, yes, ~, 0x1F, 2001-12-14]}\nc: *x\nd: ${A}\n", id="anchors"),
    pytest.param("- a\n- b: c\n  d: e\n- - x\n  - y\n", id="sequences"),
    pytest.param("a: b\r\nc: d\r\n", id="crlf"),
    pytest.param("a: é中😀 x\nb: x\u2028c: d\x85e: f\n", id="unicode-breaks"),
    pytest.param("%YAML 1.1\n---\na: 'https://x.org/?a=b#c'\n...\n", id="document"),
]


@LIBYAML
@pytest.mark.parametrize("text", SAME)
def test_libyaml_reads_as_pure_python(text: str) -> None:
    """The same values, and the same line and column for every part (what every
    error message quotes), from libyaml's events as from PyYAML's."""
    fast = _reading(text, FAST_READER)
    assert isinstance(fast, tuple), fast
    assert fast == _reading(text, cfg._BoundedLoader)


PARTING = [
    pytest.param("a: \tb\n", id="tab-as-space"),
    pytest.param("a: [b?c]\n", id="question-mark-in-flow"),
    pytest.param("a: {b: }\n", id="empty-value-mark"),
    pytest.param("a: b\n? c", id="empty-value-at-the-end"),
    pytest.param("!\n", id="lone-tag"),
    pytest.param("a: !?!map {b: c}\n", id="tag-handle"),
    pytest.param("a: |# comment\n  x\n", id="header-comment"),
    pytest.param("a: \ufeffb\n", id="byte-order-mark"),
]


@LIBYAML
@pytest.mark.parametrize("text", PARTING)
def test_where_libyaml_parts_pure_python_reads(text: str) -> None:
    """Where libyaml would read a document otherwise (accept what PyYAML refuses, read
    another value, mark another column), PyYAML reads it, as it did before."""
    reference = _reading(text, cfg._BoundedLoader)
    assert not cfg._libyaml_agrees(text) or _reading(text, FAST_READER) in (
        "unlike", reference)
    assert _parsed(text) == reference


_YAMLISH = st.lists(st.sampled_from([
    "a", "b c", ":", ": ", "-", "- ", " ", "  ", "\t", "\n", "\n  ", "#", "&a ", "*a", "!", "!!str ",
    '"', "'", "|", ">", "|-", ">+", "[", "]", "{", "}", ",", "?", "? ", "%", "@", "\\", "é",
    "\r\n", "\x85", "\u2028", "\ufeff", "---", "...", "\x07", "${A}", "<<", "~", "0x1F", "1e3",
]), max_size=40).map("".join)


@LIBYAML
@settings(max_examples=300, deadline=None)
@given(text=_YAMLISH)
def test_any_text_loads_as_pure_python_loads_it(text: str) -> None:
    assert _parsed(text) == _reading(text, cfg._BoundedLoader)
