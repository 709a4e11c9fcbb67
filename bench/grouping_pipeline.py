"""Story grouping through the real pipeline, black-box, the way the service is checked.

    .venv/bin/python bench/grouping_pipeline.py [--data CSV] [--watchlists CSV]
        [--groups g1,g2] [--method tfidf|semantic] [--together] [--jobs N]

What it measures: for each topic group of ../shared/data/hard-negatives-dev.csv
(10 distinct real events per group, 2-4 outlets each, every headline matching the
group's watchlist), how many alerts the team gets per event, and how many events
are *hidden*: no alert headed by one of the event's own entries, because every
entry of that event joined a story opened by another event.

How, per group (each in a fresh temporary state directory, nothing in-process):

1. Times. The rows are sorted by ``published``; gaps over 60 hours are shortened
   to 60 hours, and the whole group is shifted so that its latest headline is 5
   minutes before now. The order and the other gaps are kept.
2. Feeds. The group's publishers (sorted) go onto 6 outlet feeds, publisher i
   on feed i mod 6, each feed named after the publishers it carries. A small
   aiohttp server started by this script serves them from 127.0.0.1 as RSS 2.0
   (title, description = summary, a unique link and guid per row, RFC 822
   pubDate with the shifted time; ETag / If-None-Match -> 304), newest first,
   at most 50 items a feed.
3. Config. ``state: sqlite:///...`` in the temp dir, the 6 feeds, one watchlist
   (the group's query from the watchlists CSV, mode immediate) and one Slack
   destination (bot token, a channel id, ``thread_updates: true``) whose
   ``base_url`` points at the same local server, which speaks enough of Slack's
   Web API (chat.postMessage, chat.update, conversations.history/list). Slack
   rather than the console because each alert is then one countable record
   carrying its alert id and story id in message metadata, and story updates
   (chat.update "Also reported by", thread replies) are visible too.
   ``backfill: 0``, as in production: a first ``run --once`` with every feed
   empty records each feed's first poll (checked in its log), so that no item
   is later swallowed as "already there on the first poll".
4. Steps. From the earliest shifted time, in 12-hour steps until the step that
   reaches the latest: every feed shows the items published at or before the
   step's time (feeds accumulate), then the real CLI runs as a subprocess,
   ``news-monitor run --once --config <cfg>`` from this interpreter's bin
   directory (so the installed, editable ``monitor/`` as it is now). If the
   outbox reports alerts left queued, it runs again on unchanged feeds.
5. Counting. Each top-level Slack message is one alert; it is attributed to the
   event of the row whose title heads it (titles are unique in the set), else of
   the first row link it carries (the "Read on" link; later links can be other
   members of the story). chat.update calls and thread replies are counted
   separately, and a reply that names a headline of another event than the
   alert's is counted as a cross-event join (it only shows the latest source per
   update, so it is a lower bound on merges, not a count of them).

``--together`` runs every selected group in ONE monitor instead (one state dir,
the same 6 feeds carrying all the groups' publishers, one watchlist per group,
each group's timeline still shifted to end just before now, so the groups
overlap in time), and counts each group's events from its own watchlist's
alerts (the watchlist is read from the message). The README's wording ("alerts
counted per event for the group's own watchlist") fits this layout too; the
two layouts differ in what the dedupe holds in its window (the other entries
it weighs words against and the stories an entry can join), so both are worth
a look.

The table gives, per group and in total: events, alerts, hidden events, alerts
per event, updates, replies, cross-event replies, and then by event id which
events were hidden and which got more than one alert. Targets (printed with the
total): at most 1 event in 20 hidden, at most 1.5 alerts per event.

``--method semantic`` writes ``dedupe: {method: semantic}``; without the
optional ``semantic`` extra the CLI refuses to start, and the script says so
and exits 0. A missing data file exits 2.
"""

# ruff: noqa: T201  (a benchmark script: printing its table is its job)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hard-negatives-dev.csv"
WATCHLISTS = REPO.parent / "shared" / "data" / "hard-negatives-dev-watchlists.csv"
CLI = Path(sys.executable).parent / "news-monitor"

HOST = "127.0.0.1"
N_FEEDS = 6
STEP = timedelta(hours=12)
MAX_GAP = timedelta(hours=60)
LATEST_BEFORE_NOW = timedelta(minutes=5)
FEED_CAP = 50
TOKEN = "xoxb-bench-token"
CHANNEL = "C0BENCH01"  # an id, so the sender never has to look the channel up by name
DEST = "slack"
TARGET_HIDDEN = 1 / 20
TARGET_ALERTS_PER_EVENT = 1.5
RUN_TIMEOUT = 300.0  # seconds for one `run --once`
MAX_DRAIN_RUNS = 5
#: log lines of a run that the report repeats (counted, with the run that logged each first)
PROBLEMS = ("feed.error", "feed.crash", "alert.failed", "alert.retry", "alert.update_",
            "alert.reply_failed", "watchlist.invalid", "digest.")


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class Row:
    n: int  # row number in the group, after sorting by published
    group: str
    event: str
    title: str
    summary: str
    publisher: str
    published: datetime  # as in the file
    at: datetime  # shifted: when the benchmark publishes it
    link: str
    guid: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def shifted_times(published: Sequence[datetime], now: datetime) -> list[datetime]:
    """Keep order and spacing, shorten gaps over MAX_GAP, put the latest just before now.

    ``published`` must be sorted.
    """
    offsets = [timedelta(0)]
    for before, after in itertools.pairwise(published):
        offsets.append(offsets[-1] + min(after - before, MAX_GAP))
    latest = (now - LATEST_BEFORE_NOW).replace(microsecond=0)
    return [latest - (offsets[-1] - off) for off in offsets]


def load_groups(path: Path, now: datetime) -> dict[str, list[Row]]:
    raw: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            raw[rec["group"]].append(rec)
    groups: dict[str, list[Row]] = {}
    for group, recs in raw.items():
        recs = sorted(recs, key=lambda r: _parse_time(r["published"]))  # stable: file order ties
        times = [_parse_time(r["published"]) for r in recs]
        rows = []
        for n, (rec, pub, at) in enumerate(zip(recs, times, shifted_times(times, now),
                                               strict=True)):
            link = f"https://{_slug(rec['publisher'])}.example/{_slug(rec['event'])}/{n}"
            rows.append(Row(n=n, group=group, event=rec["event"], title=rec["title"],
                            summary=rec["summary"], publisher=rec["publisher"], published=pub,
                            at=at, link=link, guid=f"hn:{group}:{n}"))
        groups[group] = rows
    return groups


def load_queries(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {rec["group"]: rec["query"] for rec in csv.DictReader(fh)}


def outlet_feeds(rows: Sequence[Row]) -> list[tuple[str, list[str]]]:
    """(feed name, publishers) for the N_FEEDS feeds: publisher i (sorted) on feed i mod 6."""
    carried: list[list[str]] = [[] for _ in range(N_FEEDS)]
    for i, pub in enumerate(sorted({r.publisher for r in rows})):
        carried[i % N_FEEDS].append(pub)
    return [(" + ".join(pubs) if pubs else f"outlet {k + 1} (empty)", pubs)
            for k, pubs in enumerate(carried)]


def render_rss(name: str, items: Sequence[Row]) -> bytes:
    parts = ["<?xml version='1.0' encoding='utf-8'?>\n<rss version='2.0'><channel>",
             f"<title>{escape(name)}</title><link>https://outlets.example/</link>",
             "<description>grouping benchmark feed</description>"]
    for it in sorted(items, key=lambda r: (r.at, r.n), reverse=True)[:FEED_CAP]:
        parts.append(
            f"<item><title>{escape(it.title)}</title><link>{escape(it.link)}</link>"
            f"<guid isPermaLink='false'>{escape(it.guid)}</guid>"
            f"<description>{escape(it.summary)}</description>"
            f"<pubDate>{format_datetime(it.at, usegmt=True)}</pubDate></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


# ------------------------------------------------------------------- the local server


@dataclass(slots=True)
class Posted:
    ts: str
    params: dict[str, Any]  # as chat.postMessage received them

    @property
    def thread_ts(self) -> str | None:
        t = self.params.get("thread_ts")
        return str(t) if t else None


@dataclass(slots=True)
class Namespace:
    """One group's feeds and Slack channel on the shared server."""

    feeds: dict[str, bytes] = field(default_factory=dict)  # path -> body
    posts: list[Posted] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)


class LocalServer:
    """Feeds and a Slack Web API imitation on 127.0.0.1, one namespace per group.

    ``/g/<group>/feeds/<k>.rss`` serves a feed body set with :meth:`set_feed`;
    ``/g/<group>/api/<method>`` is that group's Slack. Runs in a thread with its
    own event loop, so it answers while the CLI subprocesses talk to it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[str, Namespace] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._ts = itertools.count(1)
        self._ts_base = int(time.time())
        self.port = 0

    # -- the benchmark's side

    def origin(self, group: str) -> str:
        return f"http://{HOST}:{self.port}/g/{group}"

    def set_feed(self, group: str, path: str, body: bytes) -> None:
        with self._lock:
            self._spaces.setdefault(group, Namespace()).feeds[path] = body

    def snapshot(self, group: str) -> tuple[list[Posted], list[dict[str, Any]]]:
        with self._lock:
            space = self._spaces.setdefault(group, Namespace())
            return list(space.posts), list(space.updates)

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self._run, name="bench-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"local server did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    # -- the server's side

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/g/{group}/feeds/{name}", self._feed)
        app.router.add_route("*", "/g/{group}/api/{method}", self._api)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _feed(self, request: web.Request) -> web.Response:
        group, name = request.match_info["group"], request.match_info["name"]
        with self._lock:
            body = self._spaces.get(group, Namespace()).feeds.get(name)
        if body is None:
            return web.Response(status=404, text="not found")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/rss+xml", charset="utf-8",
                            headers={"ETag": etag})

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                params.update({k: str(v) for k, v in form.items()})
                for key in ("blocks", "metadata"):
                    if isinstance(params.get(key), str):
                        with contextlib.suppress(ValueError):
                            params[key] = json.loads(params[key])
        return params

    def _next_ts(self) -> str:
        return f"{self._ts_base}.{next(self._ts):06d}"

    async def _api(self, request: web.Request) -> web.Response:
        group, method = request.match_info["group"], request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if (auth or params.get("token")) != TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        with self._lock:
            space = self._spaces.setdefault(group, Namespace())
            if method == "chat.postMessage":
                if params.get("channel") not in (CHANNEL, "#alerts", "alerts"):
                    return web.json_response({"ok": False, "error": "channel_not_found"})
                post = Posted(self._next_ts(), params)
                space.posts.append(post)
                return web.json_response({"ok": True, "channel": CHANNEL, "ts": post.ts,
                                          "message": _event(post)})
            if method == "chat.update":
                ts = str(params.get("ts", ""))
                if not any(p.ts == ts for p in space.posts):
                    return web.json_response({"ok": False, "error": "message_not_found"})
                space.updates.append(params)
                return web.json_response({"ok": True, "channel": CHANNEL, "ts": ts})
            if method == "conversations.history":
                oldest = float(params.get("oldest") or 0)
                found = [_event(p) for p in reversed(space.posts)
                         if p.thread_ts is None and float(p.ts) > oldest]
                return web.json_response({"ok": True, "messages": found, "has_more": False,
                                          "response_metadata": {"next_cursor": ""}})
            if method == "conversations.list":
                return web.json_response({"ok": True,
                                          "channels": [{"id": CHANNEL, "name": "alerts"}],
                                          "response_metadata": {"next_cursor": ""}})
        return web.json_response({"ok": False, "error": "unknown_method"})


def _event(post: Posted) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "ts": post.ts, "bot_id": "B0BENCH",
                             "text": post.params.get("text") or ""}
    meta = post.params.get("metadata")
    if isinstance(meta, dict):
        event["metadata"] = meta
    if post.thread_ts:
        event["thread_ts"] = post.thread_ts
    return event


# -------------------------------------------------------------------- one monitor's run


class SemanticUnavailable(Exception):
    """The CLI refused ``dedupe: {method: semantic}`` (the optional extra is missing)."""


@dataclass(slots=True)
class GroupResult:
    group: str
    events: list[str]  # in order of first publication
    alerts_by_event: Counter[str]  # alerts of the group's watchlist, by the heading entry's event
    unattributed: int  # alerts of the group's watchlist headed by no row of the group
    updates: int  # chat.update calls on the group's alerts
    replies: int  # thread replies under the group's alerts
    cross_event_replies: int
    runs: int  # of the monitor instance this group ran in
    seconds: float  # of that instance
    problems: list[str]
    feed_crashes: int  # feed.crash lines the CLI logged: the pipeline itself broke

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_event.values()) + self.unattributed

    @property
    def hidden(self) -> list[str]:
        return [e for e in self.events if not self.alerts_by_event.get(e)]

    @property
    def repeated(self) -> list[tuple[str, int]]:
        return [(e, self.alerts_by_event[e]) for e in self.events
                if self.alerts_by_event.get(e, 0) > 1]


def _child_env() -> dict[str, str]:
    """The environment for the CLI: no proxy (everything is on 127.0.0.1), no other config."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and k != "NEWS_MONITOR_CONFIG"}
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_config(tmp: Path, server: LocalServer, space: str, queries: dict[str, str],
                 feeds: Sequence[tuple[str, list[str]]], method: str) -> Path:
    """monitor.yaml (and one watchlist per group, named after it) in ``tmp``."""
    wl_dir = tmp / "watchlists"
    wl_dir.mkdir()
    for group, query in queries.items():
        (wl_dir / f"{group}.yaml").write_text(yaml.safe_dump(
            {"name": group, "query": query, "notify": [DEST]}, sort_keys=False),
            encoding="utf-8")
    config: dict[str, Any] = {
        "state": f"sqlite:///{tmp / 'state' / 'monitor.db'}",
        "poll": {"timeout": "20s"},
        "backfill": 0,
        "dedupe": {"method": method},
        "feeds": [{"name": name, "url": f"{server.origin(space)}/feeds/{k}.rss"}
                  for k, (name, _pubs) in enumerate(feeds)],
        "watchlists": str(wl_dir),
        "destinations": {DEST: {"type": "slack", "channel": CHANNEL, "token": TOKEN,
                                "base_url": f"{server.origin(space)}/api/",
                                "thread_updates": True}},
    }
    (tmp / "state").mkdir()
    path = tmp / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def code_under_test() -> tuple[Path, str]:
    """The ``monitor`` package the CLI will import, and a hash of its source files.

    Others may edit the checkout while this runs; comparing the hash before and
    after tells whether every run saw the same code.
    """
    proc = subprocess.run([sys.executable, "-P", "-c", "import monitor; print(monitor.__file__)"],
                          capture_output=True, text=True, env=_child_env(), check=True)
    package = Path(proc.stdout.strip()).parent
    digest = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.c")]):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return package, digest.hexdigest()[:12]


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "run", "--once", "--config", str(config)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          env=_child_env(), cwd=config.parent, check=False)


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _traceback_tail(lines: Sequence[str]) -> str:
    """The last line of the traceback that follows a log line (up to the next log line)."""
    block = list(itertools.takewhile(lambda ln: not _LOG_LINE.match(ln), lines))
    return next((ln.strip() for ln in reversed(block) if ln.strip()), "?")


def _post_text(post: Posted) -> str:
    """Everything a posted message says: fallback text and block texts."""
    parts = [str(post.params.get("text") or "")]
    for block in post.params.get("blocks") or ():
        if not isinstance(block, dict):
            continue
        obj = block.get("text")
        if isinstance(obj, dict):
            parts.append(str(obj.get("text", "")))
        for el in block.get("elements") or ():
            if isinstance(el, dict):
                parts.append(str(el.get("text", "")))
    return "\n".join(parts)


def _header(post: Posted) -> str:
    for block in post.params.get("blocks") or ():
        if isinstance(block, dict) and block.get("type") == "header":
            return str((block.get("text") or {}).get("text", ""))
    return ""


def _unescape(text: str) -> str:
    """Undo Slack escaping (possibly applied twice)."""
    while True:
        plain = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        if plain == text:
            return plain
        text = plain


def _norm(text: str) -> str:
    return " ".join(_unescape(text).split()).casefold()


class Attributor:
    """Which row headed an alert, and which watchlist sent it."""

    def __init__(self, rows: Sequence[Row], groups: Sequence[str]) -> None:
        self.rows = list(rows)
        self.groups = list(groups)
        self.by_title = {_norm(r.title): r for r in rows}  # titles are unique in the set
        self.by_link = {r.link: r for r in rows}

    def heading_row(self, post: Posted) -> Row | None:
        """The header is the heading entry's title (possibly cut with an ellipsis); the
        message's first known link (the "Read on" one) is the fallback. Other links
        in it may be other members of the story, so the title comes first."""
        header = _norm(_header(post))
        if header in self.by_title:
            return self.by_title[header]
        cut = header.rstrip("….").rstrip()
        found = [r for t, r in self.by_title.items() if cut and t.startswith(cut)]
        if len(found) == 1:
            return found[0]
        text = _post_text(post)
        return next((self.by_link[link] for link in re.findall(r"https://[^\s|>]+", text)
                     if link in self.by_link), None)

    def watchlist(self, post: Posted) -> str | None:
        if len(self.groups) == 1:
            return self.groups[0]
        fallback = str(post.params.get("text") or "")  # "[watchlist] title (source)"
        for group in self.groups:
            if fallback.startswith(f"[{group}] ") or f"watchlist: {group}" in _post_text(post):
                return group
        return None

    def events_named(self, text: str) -> set[str]:
        said = _norm(text)
        return {r.event for t, r in self.by_title.items() if t in said}


def run_instance(server: LocalServer, space: str, groups: dict[str, list[Row]],
                 queries: dict[str, str], method: str) -> list[GroupResult]:
    """One monitor (one state dir, 6 feeds, one watchlist per group) through every step."""
    started = time.monotonic()
    rows = sorted((r for rs in groups.values() for r in rs), key=lambda r: (r.at, r.group, r.n))
    feeds = outlet_feeds(rows)
    feed_of = {pub: k for k, (_name, pubs) in enumerate(feeds) for pub in pubs}
    problems: Counter[str] = Counter()  # log line -> how many times
    first_seen: dict[str, str] = {}  # log line -> the run that logged it first
    runs = 0

    def publish(upto: datetime | None) -> None:
        for k, (name, _pubs) in enumerate(feeds):
            items = [r for r in rows if feed_of[r.publisher] == k
                     and upto is not None and r.at <= upto]
            server.set_feed(space, f"{k}.rss", render_rss(name, items))

    def check(proc: subprocess.CompletedProcess[str], label: str) -> None:
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            if method == "semantic":
                raise SemanticUnavailable(" | ".join(tail) or f"exit status {proc.returncode}")
            raise RuntimeError(f"{space}: {label}: news-monitor exited {proc.returncode}: "
                               + " | ".join(tail))
        lines = proc.stderr.splitlines()
        for i, line in enumerate(lines):
            if any(w in line for w in PROBLEMS):
                # "2024-05-01 12:00:00,123 WARNING monitor.x: feed.error ..." -> "feed.error ..."
                what = line.split(": ", 1)[-1].strip()
                if "feed.crash" in line:  # name the exception: the traceback's last line
                    what += ": " + _traceback_tail(lines[i + 1:])
                problems[what[:240]] += 1
                first_seen.setdefault(what[:240], label)

    with tempfile.TemporaryDirectory(prefix=f"grouping-{space}-") as tmpdir:
        config = write_config(Path(tmpdir), server, space,
                              {g: queries[g] for g in groups}, feeds, method)
        # The priming run: every feed empty, so each one's first poll records nothing.
        publish(None)
        proc = run_once(config)
        runs += 1
        check(proc, "priming run")
        first_polls = proc.stderr.count("first_poll=1")
        if first_polls != len(feeds):
            problems[f"priming run: {first_polls} of {len(feeds)} feeds recorded "
                     "their first poll"] += 1

        step_at, latest = rows[0].at, max(r.at for r in rows)
        step = 0
        while True:
            step += 1
            publish(step_at)
            for attempt in range(MAX_DRAIN_RUNS):
                proc = run_once(config)
                runs += 1
                check(proc, f"step {step}" + (f" (drain {attempt})" if attempt else ""))
                if "outbox.left" not in proc.stderr:
                    break
            else:
                problems[f"step {step}: alerts still queued after {MAX_DRAIN_RUNS} runs"] += 1
            if step_at >= latest:
                break
            step_at += STEP

    seconds = time.monotonic() - started
    posts, updates = server.snapshot(space)
    who = Attributor(rows, list(groups))
    by_event: dict[str, Counter[str]] = {g: Counter() for g in groups}
    unattributed: Counter[str] = Counter()
    group_of_ts: dict[str, str | None] = {}
    event_of_ts: dict[str, str | None] = {}
    for post in posts:
        if post.thread_ts is not None:
            continue
        group, row = who.watchlist(post), who.heading_row(post)
        group_of_ts[post.ts] = group
        event_of_ts[post.ts] = row.event if row is not None else None
        if group is None:
            problems[f"alert of an unknown watchlist: {_header(post)[:80]!r}"] += 1
        elif row is None or row.group != group:
            unattributed[group] += 1
            problems[f"{group} alert not headed by one of its rows: {_header(post)[:80]!r}"] += 1
        else:
            by_event[group][row.event] += 1
    n_updates: Counter[str] = Counter()
    for upd in updates:
        owner = group_of_ts.get(str(upd.get("ts", "")))
        if owner is not None:
            n_updates[owner] += 1
    replies: Counter[str] = Counter()
    cross: Counter[str] = Counter()
    for post in posts:
        if post.thread_ts is None or (owner := group_of_ts.get(post.thread_ts)) is None:
            continue
        replies[owner] += 1
        joined, own = who.events_named(str(post.params.get("text") or "")), \
            event_of_ts.get(post.thread_ts)
        if own is not None and joined and own not in joined:
            cross[owner] += 1
    notes = [f"{what} (x{n}, first in {first_seen.get(what, 'the count')})"
             for what, n in problems.items()]
    crashes = sum(n for what, n in problems.items() if "feed.crash" in what)
    results = []
    for group, grows in groups.items():
        first_at: dict[str, datetime] = {}
        for r in grows:
            first_at.setdefault(r.event, r.at)
        results.append(GroupResult(
            group=group, events=sorted(first_at, key=lambda e: first_at[e]),
            alerts_by_event=by_event[group], unattributed=unattributed[group],
            updates=n_updates[group], replies=replies[group], cross_event_replies=cross[group],
            runs=runs, seconds=seconds, problems=notes, feed_crashes=crashes))
    return results


# ------------------------------------------------------------------------------ report


def print_table(results: Sequence[GroupResult], *, together: bool) -> None:
    head = (f"{'group':<24}{'events':>7}{'alerts':>7}{'hidden':>7}{'alerts/ev':>10}"
            f"{'updates':>8}{'replies':>8}{'x-event':>8}{'runs':>6}{'secs':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        cost = "" if together else f"{r.runs:>6}{r.seconds:>7.0f}"
        print(f"{r.group:<24}{len(r.events):>7}{r.alerts:>7}{len(r.hidden):>7}"
              f"{r.alerts / len(r.events):>10.2f}{r.updates:>8}{r.replies:>8}"
              f"{r.cross_event_replies:>8}{cost}")
    events = sum(len(r.events) for r in results)
    alerts = sum(r.alerts for r in results)
    hidden = sum(len(r.hidden) for r in results)
    runs = results[0].runs if together else sum(r.runs for r in results)
    print("-" * len(head))
    print(f"{'total':<24}{events:>7}{alerts:>7}{hidden:>7}{alerts / events:>10.2f}"
          f"{sum(r.updates for r in results):>8}{sum(r.replies for r in results):>8}"
          f"{sum(r.cross_event_replies for r in results):>8}{runs:>6}"
          + (f"{results[0].seconds:>7.0f}" if together else ""))
    ok_hidden = hidden / events <= TARGET_HIDDEN
    ok_alerts = alerts / events <= TARGET_ALERTS_PER_EVENT
    print(f"\nevents hidden: {hidden}/{events} = {hidden / events:.1%} "
          f"(target <= {TARGET_HIDDEN:.0%}: {'met' if ok_hidden else 'NOT met'})")
    print(f"alerts per event: {alerts / events:.2f} "
          f"(target <= {TARGET_ALERTS_PER_EVENT}: {'met' if ok_alerts else 'NOT met'})")
    crashes = results[0].feed_crashes if together else sum(r.feed_crashes for r in results)
    if crashes:
        print(f"WARNING: the CLI logged {crashes} feed crashes (see the problems below): "
              "entries were lost, so these figures do not measure grouping alone")
    unattributed = sum(r.unattributed for r in results)
    if unattributed:
        print(f"alerts not headed by a row of their watchlist's group: {unattributed}")
    print("\nx-event: thread replies naming a headline of another event than the alert's "
          "(a lower bound on merges)")
    for r in results:
        print(f"\n{r.group}:")
        print("  hidden: " + (", ".join(r.hidden) or "none"))
        print("  more than one alert: "
              + (", ".join(f"{e} ({n})" for e, n in r.repeated) or "none"))
        if not together:
            _print_problems(r.problems)
    if together and results[0].problems:
        print("\nthe shared monitor:")
        _print_problems(results[0].problems)


def _print_problems(problems: Sequence[str], limit: int = 10) -> None:
    for p in problems[:limit]:
        print(f"  problem: {p}")
    if len(problems) > limit:
        print(f"  ... and {len(problems) - limit} more problems")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help=f"headlines CSV (default {DATA})")
    ap.add_argument("--watchlists", type=Path, default=WATCHLISTS,
                    help=f"group,query CSV (default {WATCHLISTS})")
    ap.add_argument("--groups", help="comma-separated groups to run (default: all)")
    ap.add_argument("--method", choices=["tfidf", "semantic"], default="tfidf")
    ap.add_argument("--together", action="store_true",
                    help="run all the groups in one monitor (one watchlist each, each group's "
                         "timeline still ending just before now) instead of one monitor a group")
    ap.add_argument("--jobs", type=int, default=2,
                    help="monitors (groups) run at once, without --together (default 2)")
    args = ap.parse_args(argv)

    for path, what in ((args.data, "data file"), (args.watchlists, "watchlists file")):
        if not path.is_file():
            print(f"grouping_pipeline: {what} not found: {path}", file=sys.stderr)
            return 2
    if not CLI.exists():
        print(f"grouping_pipeline: the news-monitor CLI is not installed at {CLI} "
              "(run this with the virtualenv's python)", file=sys.stderr)
        return 2

    started = time.monotonic()
    package, code_before = code_under_test()
    groups = load_groups(args.data, datetime.now(UTC))
    queries = load_queries(args.watchlists)
    wanted = args.groups.split(",") if args.groups else list(groups)
    unknown = [g for g in wanted if g not in groups or g not in queries]
    if unknown:
        print(f"grouping_pipeline: unknown group(s) {', '.join(unknown)} "
              f"(known: {', '.join(g for g in groups if g in queries)})", file=sys.stderr)
        return 2

    layout = "all groups in one monitor" if args.together else "one monitor per group"
    print(f"grouping through the real pipeline: {args.data.name}, {len(wanted)} groups, "
          f"{layout}, method {args.method}, {N_FEEDS} feeds, "
          f"{STEP.total_seconds() / 3600:.0f} h steps, "
          f"gaps capped at {MAX_GAP.total_seconds() / 3600:.0f} h")
    print(f"CLI {CLI}, code {package} (source hash {code_before})")
    instances = ([("all", wanted)] if args.together else [(g, [g]) for g in wanted])
    server = LocalServer().start()
    results: list[GroupResult] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_instance, server, space, {g: groups[g] for g in members},
                                   queries, args.method)
                       for space, members in instances]
            for future in futures:
                try:
                    done = future.result()
                except SemanticUnavailable as exc:
                    for f in futures:
                        f.cancel()
                    print(f"method semantic is not available (install the optional extra: "
                          f"pip install -e '.[semantic]'); the CLI said: {exc}")
                    return 0
                for res in done:
                    print(f"  {res.group}: {res.alerts} alerts for {len(res.events)} events, "
                          f"{len(res.hidden)} hidden", file=sys.stderr, flush=True)
                results.extend(done)
    finally:
        server.stop()
    print()
    print_table(results, together=args.together)
    _, code_after = code_under_test()
    if code_after != code_before:
        print(f"\nWARNING: {package} changed during the run (source hash {code_before} -> "
              f"{code_after}): the runs did not all test the same code")
    print(f"\nwall time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
