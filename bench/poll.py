"""Benchmark: one polling cycle over a farm of feeds on 127.0.0.1 (issue #13).

A feed farm runs in a separate process: N feeds of about 40 KB (50 items).
Feed i answers by its kind, i % 10:

    0-2  (30%)  ETag and Last-Modified, never changes: 304 when polled with them
    3-6  (40%)  the same body every time, no validators (the server kind most
                common in the wild): only the body hash can tell it is unchanged
    7-9  (30%)  a new item at the top every round, with a new ETag

The same farm process is a Slack-protocol server (chat.postMessage) that notes
when each message arrives; a few of the new items (--matching) match a
watchlist, each to its own Slack destination (the outbox paces one message a
second per destination, as Slack asks), and the time from the farm serving the
body with the item to the message arriving is the alert latency.

Round 1 is the first poll (everything recorded, nothing alerts). Round 2 is
the first warm cycle, timed and printed but not the one measured: it also
pays what a process does once, at its first alerts (the Slack client
imported, the templates compiled). Rounds 3 on (--cycles of them) are warm
cycles like every cycle after them: the monitor (in this process,
Service.poll_all) polls every feed once; in round 3 its matching items (other
stories, for a second set of watchlists) alert. The cycle measured is the
median of these by wall time, and all of them are printed: on a shared host
one cycle of two seconds can run a third slower than the next. Printed for
it: feeds/s, CPU seconds (this process and the poll workers), peak RSS (the
same), the bytes the store wrote, the naive loop (sequential
``feedparser.parse(url, etag=...)``) on a --sample-feed sample scaled to N, as
a ratio, and the latency p50/p99. The floor is the same cycle's fetching,
body hashing and parsing alone (the monitor's own parse), split over the
cores in as many processes, with no store, grouping or delivery: the least
this stack's fetch and parse cost on these cores, and the ratio to the naive
loop no design on them could pass. Then the smaller whole-process check:
``news-monitor run --once`` on --small feeds, fresh state and warm, against the
naive loop on the same feeds: --runs of each (each fresh run on a new state,
each warm run on that state), the median printed with the range; and the
fresh round's floor (:func:`fresh_floor`): processes on every core that only
import the command and fetch and parse the feeds fresh, the ratio to the
naive loop no fresh run on these cores could pass.

    .venv/bin/python bench/poll.py                 # 10,000 feeds (a few minutes)
    .venv/bin/python bench/poll.py -n 2000         # while developing
    .venv/bin/python bench/poll.py --state postgresql://postgres@127.0.0.1/test --instances 2

With ``--state postgresql://... --instances K`` (issue #15) it measures scaling
out instead: the warm cycle of `news-monitor run` instances sharing one
PostgreSQL store (a fresh schema), one instance pinned to one core
(taskset, one poll worker) against K pinned to K cores, and the database's
share of the CPU spent in the cycle (all ``postgres`` processes on the host).
The K instances poll round 1 (the first poll) and one warm cycle together and
keep running; then --repeat pairs of warm cycles, the first instance alone
(the others stopped with SIGSTOP: no work, no CPU), then all K, and the
median ratio is printed. The two cycles of a pair run seconds apart, on the
same warm processes: on a shared host the speed of the machine drifts over
minutes. A resumed instance first catches up with what was stored while it
was stopped (unmeasured), and a cycle is timed from the farm's first feed
request, the wait for the instances' next scheduler tick printed apart.
Before each cycle the schema is vacuumed and analyzed, as autovacuum would
have done on a server that had been running (this machine's runs with it
off), so a cycle meets tables in their steady state, not fresh from 500,000
inserts. Each pair also prints its CPU bound: the ratio it would have shown
had the K cycle kept every core busy with the CPU it spent. PostgreSQL and the
farm run on the instances' cores here, so their CPU lowers that bound, and no
less waiting in the instances can lift the ratio above it.

Targets (issue #13, on two cores): a 10,000-feed cycle <= 10 s, >= 50x the
naive loop, peak RSS <= 300 MB, p99 <= 2 s; at 500 feeds, whole process,
>= 10x and <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import multiprocessing
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC).replace(microsecond=0)

WORDS = ("harbour council budget minister election storm court rail strike energy "
         "price market village school hospital bridge river police festival museum "
         "airport union farmers water climate vaccine border treaty summit protest "
         "bank tax housing flood fire drought mayor senate trial verdict company "
         "merger workers factory port grain exports wheat oil gas pipeline grid "
         "satellite launch football league coach transfer record heat wave").split()


# ------------------------------------------------------------------ the farm

#: The first round measured, the second warm cycle: the one whose alerts' latency
#: is measured (see the module's docstring).
MEASURED = 3
#: Per warm round, the headline of the matching items: two stories, each matched
#: by its own watchlists (w<k>: Ukraine and grain; v<k>: Odesa and wheat), so
#: that the measured round's alert whatever grouping makes of the two.
MATCHING = {2: "Ukraine grain corridor deal reached at summit",
            MEASURED: "Odesa wheat shipments resume after port talks"}


def _item(rng: random.Random, feed: int, n: int, when: datetime, title: str | None = None) -> str:
    words = title or " ".join(rng.choice(WORDS) for _ in range(8)).capitalize()
    summary = " ".join(rng.choice(WORDS) for _ in range(95))
    link = f"https://outlet{feed}.example/{n}"
    return (f"<item><title>{escape(words)} {feed}-{n}</title><link>{link}</link>"
            f"<guid isPermaLink='false'>f{feed}-{n}</guid>"
            f"<description>&lt;p&gt;{summary}&lt;/p&gt;</description>"
            f"<pubDate>{format_datetime(when, usegmt=True)}</pubDate></item>")


class Farm:
    """The feeds' bodies, built on first use and kept (about 40 KB each)."""

    def __init__(self, n: int, matching: int) -> None:
        self.n = n
        self.round = 1
        self.base: dict[int, list[str]] = {}
        self.bodies: dict[tuple[int, int], bytes] = {}
        # The first `matching` feeds of kind "new" get a matching item in rounds 2 and 3.
        self.matching = [i for i in range(n) if i % 10 >= 7][:matching]
        self.served: dict[str, float] = {}  # link of a matching item -> first served
        self.arrived: dict[str, float] = {}  # link -> first message naming it arrived
        self.asked: set[int] = set()  # feeds requested since the round began
        self.first = 0.0  # when the first of them was (time.time())

    def items(self, i: int) -> list[str]:
        if i not in self.base:
            rng = random.Random(i)
            self.base[i] = [_item(rng, i, 1000 - j, NOW - timedelta(hours=2 * j + 1))
                            for j in range(50)]
        return self.base[i]

    def body(self, i: int) -> bytes:
        kind = i % 10
        r = self.round if kind >= 7 else 1
        got = self.bodies.get((i, r))
        if got is None:
            items = self.items(i)
            if r > 1:
                rng = random.Random(i * 1000 + r)
                title = MATCHING.get(r) if i in self.matching else None
                items = [_item(rng, i, 1000 + r, NOW + timedelta(minutes=r), title), *items[:49]]
            got = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                   f"<title>Outlet {i}</title><link>https://outlet{i}.example/</link>"
                   f"<description>feed {i}</description>{''.join(items)}</channel></rss>"
                   ).encode()
            if len(self.bodies) > 4 * self.n:
                self.bodies.clear()
            self.bodies[(i, r)] = got
        return got


class _Http(asyncio.Protocol):
    """Just enough HTTP/1.1 for the bench's own clients, so that the farm, which
    shares the machine's cores with what it measures, takes little of them (it
    stands for servers on other hosts): requests one after another on a kept-alive
    connection, answers from bytes already built. An aiohttp server spent about
    twice the CPU per request."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers.get(b"content-length", b"0"))
            if len(self.buf) < end + 4 + size:
                return  # the body is still on its way
            body, self.buf = self.buf[end + 4:end + 4 + size], self.buf[end + 4 + size:]
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
            close = (headers.get(b"connection", b"").lower() == b"close"
                     or version == "HTTP/1.0")
            status, extra, payload = _answer(self.farm, method, target, headers, body)
            head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Other'}\r\n{extra}"
                    f"Content-Length: {len(payload)}\r\n"
                    f"{'Connection: close' if close else 'Keep-Alive: timeout=60'}\r\n\r\n")
            self.transport.writelines([head.encode("latin-1"), payload])
            if close:
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _json(data: Any) -> tuple[int, str, bytes]:
    return 200, "Content-Type: application/json\r\n", json.dumps(data).encode()


def _answer(farm: Farm, method: str, target: str, headers: dict[bytes, bytes],
            body: bytes) -> tuple[int, str, bytes]:
    """(status, header lines, body) for one request: a feed, the Slack Web API's
    chat.postMessage (noting which matching item it names, and when), the rest
    of that API, or the bench's own /_round and /_log."""
    if target.startswith("/f/") and target.endswith(".xml"):
        i = int(target[3:-4])
        if not 0 <= i < farm.n:
            return 404, "", b""
        if not farm.asked:
            farm.first = time.time()
        farm.asked.add(i)
        kind = i % 10
        extra = "Content-Type: application/rss+xml; charset=utf-8\r\n"
        if kind < 3:
            tag = f'"{i}-v1"'
            extra += f"ETag: {tag}\r\nLast-Modified: Mon, 23 Nov 2026 10:00:00 GMT\r\n"
            if headers.get(b"if-none-match") == tag.encode():
                return 304, extra, b""
        elif kind >= 7:
            tag = f'"{i}-r{farm.round}"'
            extra += f"ETag: {tag}\r\n"
            if headers.get(b"if-none-match") == tag.encode():
                return 304, extra, b""
        if farm.round == MEASURED and i in farm.matching:
            farm.served.setdefault(f"https://outlet{i}.example/{1000 + MEASURED}", time.time())
        return 200, extra, farm.body(i)
    if target.startswith("/_round/"):
        farm.round = int(target.rsplit("/", 1)[1])
        farm.asked.clear()
        # Built now, before the round is measured: the farm stands for servers on
        # other hosts, so what it serves costs the cores measured as little as it can.
        for i in range(farm.n):
            farm.body(i)
        return _json({"round": farm.round})
    if target == "/_asked":
        return _json({"feeds": len(farm.asked), "first": farm.first})
    if target == "/_log":
        return _json({"served": farm.served, "arrived": farm.arrived})
    if method == "POST" and target.startswith("/api/chat.postMessage"):
        now = time.time()
        if headers.get(b"content-type", b"").startswith(b"application/json"):
            text = body.decode()
        else:
            text = json.dumps(urllib.parse.parse_qs(body.decode()))
        for link in farm.served:
            if link in text:
                farm.arrived.setdefault(link, now)
        return _json({"ok": True, "channel": "C0BENCH", "ts": f"{now:.6f}"})
    if target.startswith("/api/"):
        return _json({"ok": True, "channels": [], "messages": [],
                      "response_metadata": {"next_cursor": ""}})
    return 404, "", b""


def _farm_main(n: int, matching: int, port_q: Any) -> None:
    farm = Farm(n, matching)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Http(farm), "127.0.0.1", 0, backlog=2048)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _round(base: str, r: int) -> None:
    """Start round ``r`` at the farm. It builds the round's bodies before it answers:
    a minute for a fresh farm of 10,000 feeds, hence the longer wait."""
    _get(f"{base}/_round/{r}", timeout=600)


# ------------------------------------------------------------------ measuring


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_mb(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a process's /proc status (its peak RSS by default), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _config(tmp: Path, base: str, feeds: range, matching: int, dedupe: str) -> Path:
    (tmp / "watchlists").mkdir(exist_ok=True)
    dests = "".join(f"  slack{k}: {{type: slack, channel: '#bench{k}', token: xoxb-bench, "
                    f"base_url: '{base}/api/'}}\n" for k in range(max(matching, 1)))
    for k in range(max(matching, 1)):
        (tmp / "watchlists" / f"w{k}.yaml").write_text(
            f"name: grain {k}\nall: [Ukraine, grain]\nfeeds: [feed{k}]\nnotify: [slack{k}]\n")
    for k in range(matching):
        (tmp / "watchlists" / f"v{k}.yaml").write_text(
            f"name: wheat {k}\nall: [Odesa, wheat]\nfeeds: [feed{k}]\nnotify: [slack{k}]\n")
    lines = "".join(f"  - {{name: feed{i}, url: '{base}/f/{i}.xml'}}\n" for i in feeds)
    path = tmp / "monitor.yaml"
    path.write_text(
        f"state: sqlite:///{tmp}/state/monitor.db\n"
        "poll: {interval: 5m, timeout: 30s, concurrency: 100, per_host: 100}\n"
        f"dedupe: {{method: {dedupe}}}\n"
        f"feeds:\n{lines}watchlists: watchlists/\n"
        f"templates: {ROOT / 'templates'}\ndestinations:\n{dests}")
    return path


def _name_matching(path: Path, matching: list[int]) -> None:
    """Point watchlists k at the k-th matching feed."""
    for k, i in enumerate(matching):
        for wl in (path.parent / "watchlists" / f"w{k}.yaml",
                   path.parent / "watchlists" / f"v{k}.yaml"):
            wl.write_text(wl.read_text().replace(f"feeds: [feed{k}]", f"feeds: [feed{i}]"))


def naive(base: str, sample: list[int], etags: dict[int, Any]) -> float:
    """The loop a user would write: feedparser.parse(url) one after another."""
    import feedparser

    start = time.perf_counter()
    for i in sample:
        d = feedparser.parse(f"{base}/f/{i}.xml", etag=etags.get(i, {}).get("etag"),
                             modified=etags.get(i, {}).get("modified"))
        etags[i] = {"etag": d.get("etag"), "modified": d.get("modified")}
    return time.perf_counter() - start


async def _fetch_and_parse(base: str, feeds: range, memo: dict[int, tuple[str | None, str,
                                                                         bytes]]) -> int:
    """Poll ``feeds`` once as the runtime does at its cheapest: conditional GETs
    with the monitor's own Fetcher (its concurrency), the body hash, and a parse
    (monitor.parse, with the last parse's memo) of each changed body, and no more.
    ``memo``: feed -> (ETag, body hash, ParsedFeed.seen), updated. Returns the
    entries made."""
    from monitor.fetch import Fetcher
    from monitor.parse import parse_document
    from monitor.poller import body_hash
    from monitor.urls import canonical_url

    made = 0
    async with Fetcher(timeout=30, concurrency=100, per_host=100) as fetcher:
        async def one(i: int) -> None:
            nonlocal made
            etag, digest, seen = memo.get(i, (None, "", b""))
            got = await fetcher.get(f"{base}/f/{i}.xml", etag=etag)
            if got.body is None:
                return
            new = body_hash(got.body)
            if new != digest:
                parsed = parse_document(got.body, f"feed{i}", canonicalize=canonical_url,
                                        seen=seen)
                made += len(parsed.entries)
                memo[i] = (got.etag, new, parsed.seen)

        await asyncio.gather(*(one(i) for i in feeds))
    return made


def _floor_worker(base: str, feeds: range, out: Any, go: Any) -> None:
    """:func:`_fetch_and_parse` of round 1 (its memo), then, once every worker is
    ready, of round 2: its entries made (:func:`floor` times the round)."""
    memo: dict[int, tuple[str | None, str, bytes]] = {}
    asyncio.run(_fetch_and_parse(base, feeds, memo))
    out.put(None)
    go.wait()
    out.put(asyncio.run(_fetch_and_parse(base, feeds, memo)))


def floor(base: str, n: int, procs: int) -> tuple[float, int]:
    """The measured cycle's fetching, hashing and parsing alone, split over
    ``procs`` processes (a block of feeds each), with no store, grouping, matching,
    scheduling or delivery: what the cycle costs at the least on this stack and
    these cores. Returns the wall seconds of round 2 and the entries made."""
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Barrier(procs + 1)
    _round(base, 1)
    workers = [ctx.Process(target=_floor_worker,
                           args=(base, range(k * n // procs, (k + 1) * n // procs), out, go))
               for k in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        out.get(timeout=600)
    _round(base, 2)
    start = time.perf_counter()
    go.wait()
    made = sum(out.get(timeout=600) for _ in workers)
    wall = time.perf_counter() - start
    for w in workers:
        w.join(30)
    return wall, made


#: One process of :func:`fresh_floor`: the command's own module imported (what
#: every run of it pays first), then its block of feeds fetched and parsed.
_FRESH_FLOOR = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import monitor.cli
from poll import _fetch_and_parse
asyncio.run(_fetch_and_parse(sys.argv[2], range(int(sys.argv[3]), int(sys.argv[4])), {}))
"""


def fresh_floor(base: str, n: int, procs: int) -> float:
    """The least a fresh `run --once` on ``n`` feeds could cost on this stack and
    these cores: ``procs`` whole processes started together, each importing the
    command's module and fetching and parsing (a first parse) its block of the
    feeds, with no config, store, matching, grouping or delivery. Wall seconds
    from their start to the last one's exit (the farm at round 1)."""
    _round(base, 1)
    start = time.perf_counter()
    procs_ = [subprocess.Popen([sys.executable, "-c", _FRESH_FLOOR, str(ROOT / "bench"), base,
                                str(k * n // procs), str((k + 1) * n // procs)])
              for k in range(procs)]
    for p in procs_:
        if p.wait() != 0:
            raise SystemExit(f"the fresh floor's process exited with {p.returncode}")
    return time.perf_counter() - start


class Cycle:
    """One round of polls: wall seconds, CPU seconds (this process and the poll
    workers), and of those the workers'; bytes this process wrote to storage
    (the store's WAL and checkpoints: the workers write none), or None off Linux."""

    def __init__(self, wall: float, cpu: float, worker_cpu: float,
                 written: int | None = None) -> None:
        self.wall, self.cpu, self.worker_cpu = wall, cpu, worker_cpu
        self.written = written


def _written() -> int | None:
    """Bytes this process has caused to be written to storage (/proc/self/io)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


async def _rounds(config: Path, base: str, rounds: list[int]) -> tuple[list[Cycle], float, int]:
    """Poll every feed once per round, as the running service does (the outbox
    running alongside). Returns the cycles, the peak RSS MB of this process plus
    the poll workers, and the number of workers."""
    from monitor import config as cfg
    from monitor.service import Service, settle_memory
    from monitor.workers import WorkerPool

    cycles: list[Cycle] = []
    async with Service(cfg.load(config)) as s:
        settle_memory()  # as `news-monitor run` does
        outbox = asyncio.create_task(s.outbox.run())

        def workers() -> list[int]:
            return s.poller.pids() if isinstance(s.poller, WorkerPool) else []

        for r in rounds:
            _round(base, r)
            w0 = sum(_proc_cpu(p) for p in workers())
            written0 = _written()
            cpu0 = time.process_time()
            start = time.perf_counter()
            await s.poll_all()
            wall = time.perf_counter() - start
            wcpu = sum(_proc_cpu(p) for p in workers()) - w0
            written = _written()
            cycles.append(Cycle(wall, time.process_time() - cpu0 + wcpu, wcpu,
                                None if written is None or written0 is None
                                else written - written0))
        outbox.cancel()
        await s.outbox.drain(within=60)  # whatever the running lanes had not sent yet
        pids = workers()
        worker_rss = sum(_proc_mb(p) for p in pids)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return cycles, rss + worker_rss, len(pids)


_R = TypeVar("_R")


def _middle(runs: Sequence[_R], key: Callable[[_R], float]) -> _R:
    """The median run by ``key`` (the upper middle of an even count): a run that
    happened, so that the figures printed with it are its own."""
    return sorted(runs, key=key)[len(runs) // 2]


def _rss_mb(pids: set[int]) -> float:
    """The summed RSS of ``pids`` (those still running)."""
    total = 0.0
    for pid in pids:
        try:
            total += _proc_mb(pid, "VmRSS")
        except OSError:
            continue
    return total


def _whole_process(config: Path) -> tuple[float, float]:
    """`news-monitor run --once` as a subprocess: wall seconds (to its exit, waited
    for), and the peak of the summed RSS of it and its descendants, sampled every
    20 ms from a thread. The tree is looked for in all of /proc only every 0.2 s:
    a scan costs milliseconds of the cores the run is measured on."""
    exe = Path(sys.executable).parent / "news-monitor"
    log = config.parent / "run.log"
    peak = 0.0
    with log.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(exe), "run", "--once", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)

        def sample() -> None:
            nonlocal peak
            tree, found = {proc.pid}, 0.0
            while proc.returncode is None:
                if time.monotonic() - found >= 0.2:
                    tree, found = _tree(proc.pid), time.monotonic()
                peak = max(peak, _rss_mb(tree))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - start
        sampler.join()
    if proc.returncode != 0:
        print(log.read_text()[-2000:], file=sys.stderr)  # noqa: T201
    return wall, peak


def _tree(root: int) -> set[int]:
    """A process and all its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree and p not in tree}
        tree |= more
        grew = bool(more)
    return tree


def _cpu_of(pids: set[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += _proc_cpu(pid)
        except (OSError, IndexError):
            continue
    return total


def _postgres_pids() -> set[int]:
    out = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres" or comm.read_text().startswith("postgres"):
                out.add(int(comm.parent.name))
        except OSError:
            continue
    return out


def _count(db: Any, sql: str, *params: object) -> int:
    """The one number a ``SELECT COUNT(*)`` answers, on the bench's own connection."""
    return int(db.execute(sql, params).fetchone()[0])


def _wait_until(done: Callable[[], bool], deadline: float, step: float, failed: str) -> None:
    """Look every ``step`` seconds until ``done()``; past ``deadline``
    (time.monotonic()) the bench stops, saying ``failed``."""
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(failed)
        time.sleep(step)


def _measured_cycle(db: Any, base: str, n: int, r: int, procs: list[subprocess.Popen[bytes]],
                    farm: int) -> tuple[float, float, float, float, float]:
    """One warm cycle (farm round ``r``) of the running instances ``procs``: its
    wall seconds from the first feed request to the last poll recorded, the
    seconds before that first request, the instances' CPU seconds (with their
    poll workers), the postgres processes' and the farm's (process ``farm``).

    The wait before the first request is the scheduler's: every feed comes due
    at once here, and the instances see it at their next tick (``poll.tick``,
    1 s, with jitter). It is no work, and counted in, it would weigh most on
    the shortest cycles, those of K instances."""
    from monitor.store.sql import ts

    db.execute("VACUUM ANALYZE feeds, entries, stories, seen_keys, watchlist_stories, "
               "alerts, leases")  # as autovacuum would have: see the module's docstring
    _round(base, r)
    mark = ts(datetime.now(UTC))
    trees = set().union(*(_tree(p.pid) for p in procs))
    cpu0, farm0 = _cpu_of(trees), _proc_cpu(farm)
    start, due = time.perf_counter(), time.time()
    db.execute("UPDATE feeds SET next_poll_at = NULL")  # every feed due now
    # After it: the bench's own 10,000-row update is no work of the cycle (and
    # before the first request, so outside its wall time too).
    db0 = _cpu_of(_postgres_pids())
    # Looking in the store is a scan of the feeds table, on the cores being
    # measured: ask the farm instead until every feed was fetched, then the
    # store until every poll is recorded (the timing, to within 0.05 s).
    deadline = time.monotonic() + 1800
    _wait_until(lambda: _get(f"{base}/_asked")["feeds"] >= n, deadline, 0.1,
                "the warm cycle did not finish")
    _wait_until(lambda: _count(db, "SELECT COUNT(*) FROM feeds WHERE last_polled_at >= %s",
                               mark) >= n,
                deadline, 0.05, "the warm cycle did not finish")
    wall = time.perf_counter() - start
    cpu, db_cpu = _cpu_of(trees) - cpu0, _cpu_of(_postgres_pids()) - db0
    wait = min(max(_get(f"{base}/_asked")["first"] - due, 0.0), wall)
    return wall - wait, wait, cpu, db_cpu, _proc_cpu(farm) - farm0


def _signal_tree(proc: subprocess.Popen[bytes], sig: int) -> None:
    for pid in _tree(proc.pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def _stop_idle(db: Any, procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGSTOP ``procs``, none of them holding an advisory lock (the assignment
    lock, which would stall the instance still running)."""
    held = ("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    for _ in range(100):
        for p in procs:
            _signal_tree(p, signal.SIGSTOP)
        if _count(db, held) == 0:
            return
        for p in procs:
            _signal_tree(p, signal.SIGCONT)
        time.sleep(0.2)
    raise SystemExit("the instances kept an advisory lock for 20 s")


def _catch_up(db: Any, base: str, n: int, r: int, k: int) -> int:
    """Unmeasured: each resumed instance adds what the first stored while it was
    stopped to its story index at its next assignment hold, which instances
    running together do as they go. Rounds of a few of the farm's changing
    feeds (a new item: the polls reach the hold) until all ``k`` instances
    have polled some; returns the last round."""
    names = [f"feed{i}" for i in range(n) if i % 10 >= 7][:600]
    for _ in range(5):
        r += 1
        _round(base, r)
        db.execute("UPDATE feeds SET next_poll_at = NULL WHERE name = ANY(%s)", (names,))
        _wait_until(lambda: _count(db, "SELECT COUNT(*) FROM feeds WHERE name = ANY(%s) AND "
                                       "next_poll_at IS NULL", names) == 0,
                    time.monotonic() + 300, 0.1, "the catch-up round did not finish")
        if _count(db, "SELECT COUNT(DISTINCT polled_by) FROM feeds WHERE name = ANY(%s)",
                  names) >= k:
            time.sleep(1)  # the last holds end
            return r
    raise SystemExit(f"the catch-up rounds did not reach all {k} instances")


def _shared_cycles(base: str, n: int, state: str, cores: list[int], dedupe: str,
                   farm: int, pairs: int) -> list[tuple[int, float, float, float, float, float]]:
    """``pairs`` pairs of warm cycles of `news-monitor run` instances sharing a
    fresh schema of ``state``, one instance pinned to each of ``cores``: in each
    pair one cycle with the first instance alone (the others stopped with
    SIGSTOP, so they take no work and no CPU), then one with all of them, once
    the resumed ones have caught up (:func:`_catch_up`). Per
    cycle: (instances, then :func:`_measured_cycle`'s figures).

    The instances run from round 1 (the first poll) to the end and poll one
    warm cycle together before the pairs, so every cycle measured meets warm
    processes and tables, and the two cycles of a pair run seconds apart: a
    shared host's speed drifts over minutes."""
    import uuid
    from urllib.parse import quote

    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(state, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{state}{'&' if '?' in state else '?'}options={quote(f'-csearch_path={schema}')}"
    exe = Path(sys.executable).parent / "news-monitor"
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[tuple[int, float, float, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-poll-shared-") as tmp:
            config = _config(Path(tmp), base, range(n), 0, dedupe)
            text = config.read_text().replace(f"state: sqlite:///{tmp}/state/monitor.db",
                                              f"state: '{url}'")
            config.write_text(text.replace("per_host: 100}", "per_host: 100, parse_workers: 1}"))
            _round(base, 1)
            for k, core in enumerate(cores):
                env = {**os.environ, "NEWS_MONITOR_INSTANCE": f"bench{k}"}
                with (Path(tmp) / f"i{k}.log").open("wb") as err:
                    procs.append(subprocess.Popen(
                        ["taskset", "-c", str(core), str(exe), "run", "--config", str(config)],
                        env=env, stdout=subprocess.DEVNULL, stderr=err))
            with psycopg.connect(url, autocommit=True) as db:
                unfinished = f"round 1 did not finish; see {tmp}/i*.log"

                def round_1_done() -> bool:
                    if any(p.poll() is not None for p in procs):
                        raise SystemExit(unfinished)
                    try:
                        return _count(db, "SELECT COUNT(*) FROM feeds "
                                          "WHERE first_polled_at IS NOT NULL") >= n
                    except psycopg.errors.UndefinedTable:  # not migrated yet
                        return False

                _wait_until(round_1_done, time.monotonic() + 1800, 0.5, unfinished)
                time.sleep(2)  # the last records of round 1 committed
                # Unmeasured: the first warm cycle after round 1 costs more than
                # the next ones, and a pair starting there would favour K.
                _measured_cycle(db, base, n, 2, procs, farm)
                r = 2
                for _ in range(pairs):
                    for k in (1, len(cores)):
                        if k == 1:
                            time.sleep(2)  # the last cycle's assignment holds end
                            _stop_idle(db, procs[1:])
                        else:
                            for p in procs[1:]:
                                _signal_tree(p, signal.SIGCONT)
                            time.sleep(2)  # a resumed instance's missed ticks: nothing is due
                            r = _catch_up(db, base, n, r, len(cores))
                        r += 1
                        rows.append((k, *_measured_cycle(db, base, n, r, procs[:k], farm)))
                        print(f"({k} instance{'s' if k > 1 else ''}: warm cycle "  # noqa: T201
                              f"{rows[-1][1]:.2f} s)", flush=True)
                        if any(p.poll() is not None for p in procs):
                            raise SystemExit(f"an instance stopped; see {tmp}/i*.log")
    finally:
        for p in procs:
            _signal_tree(p, signal.SIGCONT)  # a stopped process takes SIGTERM only then
            p.terminate()
        for p in procs:
            p.wait(30)
        with psycopg.connect(state, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return rows


def _cpu_bound(wall_1: float, k: int, cpu: float, other_cpu: float, machine: int) -> float:
    """The most a pair's ratio could be, given the CPU its K cycle spent: that
    cycle lasts at least as long as its instances' CPU seconds on their K cores,
    and as the CPU seconds of everything measured (instances, PostgreSQL, the
    farm) on all the machine's cores. Where PostgreSQL and the farm share the
    instances' cores, what they spend is time the instances do not get."""
    return wall_1 / max(cpu / k, (cpu + other_cpu) / machine, 1e-9)


_SPIN = "x = 0\nfor i in range(12_000_000): x += i * i % 7"


def _two_core_ceiling(cores: list[int]) -> float:
    """What two cores of this machine buy at most: a pure-Python loop run twice on
    one core against once on each of two cores at the same time (wall seconds,
    the median of five pairs). Virtual cores sharing a physical one, or its
    caches, run slower when both are busy, and no program on them scales past
    this."""
    def run(on: list[int]) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen(["taskset", "-c", str(c), sys.executable, "-c", _SPIN])
                 for c in on]
        for p in procs:
            p.wait()
        return time.perf_counter() - start

    # In adjacent pairs, like the cycles: the machine's speed drifts.
    return statistics.median(2 * run(cores[:1]) / run(cores[:2]) for _ in range(5))


def scale_out(args: argparse.Namespace, base: str, farm: int) -> None:
    """--instances K: one pinned instance, then K, against one PostgreSQL store."""
    from monitor.redact import url as redacted

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < args.instances:
        raise SystemExit(f"--instances {args.instances} needs as many cores ({len(cores)} here)")
    ceiling = _two_core_ceiling(cores) if args.instances == 2 else None
    rows = _shared_cycles(base, args.n, args.state, cores[:args.instances], args.dedupe,
                          farm, args.repeat)
    print(f"warm cycle, {args.n} feeds, state {redacted(args.state)}, each instance "  # noqa: T201
          "pinned to one core with one poll worker (the farm and PostgreSQL unpinned)")
    print("cycle: from the first feed request to the last poll recorded; before it, "  # noqa: T201
          "the wait for the instances' next scheduler tick")
    print(f"{'instances':<10}{'cycle':>10}{'tick wait':>11}{'feeds/s':>9}"  # noqa: T201
          f"{'instances CPU s':>17}{'postgres CPU s':>16}{'DB share':>10}{'farm CPU s':>12}"
          f"{'pair ratio':>12}{'CPU bound':>11}")
    machine = os.cpu_count() or len(cores)
    ratios, bounds = [], []
    for i, (k, wall, wait, cpu, db_cpu, farm_cpu) in enumerate(rows):
        pair = bound = ""
        if i % 2:
            ratios.append(rows[i - 1][1] / wall)
            bounds.append(_cpu_bound(rows[i - 1][1], k, cpu, db_cpu + farm_cpu, machine))
            pair, bound = f"{ratios[-1]:.2f}x", f"{bounds[-1]:.2f}x"
        print(f"{k:<10}{wall:>8.2f} s{wait:>9.2f} s{args.n / wall:>9.0f}{cpu:>17.1f}"  # noqa: T201
              f"{db_cpu:>16.1f}{db_cpu / max(cpu + db_cpu, 1e-9):>9.0%}{farm_cpu:>12.1f}"
              f"{pair:>12}{bound:>11}")
    ratio = statistics.median(ratios)
    spread = f" (pairs {min(ratios):.2f}x to {max(ratios):.2f}x)" if len(ratios) > 1 else ""
    print(f"speed-up with {args.instances} instances: {ratio:.2f}x, "  # noqa: T201
          f"the median of {len(ratios)} pair{'s' if len(ratios) > 1 else ''}{spread} "
          "(target >= 1.7x for 2)")
    print(f"CPU bound: the pair ratio had the {args.instances}-instance cycle kept "  # noqa: T201
          f"every one of this machine's {machine} cores busy with the CPU it spent "
          f"(instances, PostgreSQL, farm): median {statistics.median(bounds):.2f}x")
    if ceiling is not None:
        print(f"this machine's two cores, a CPU loop on one then on both at once: "  # noqa: T201
              f"{ceiling:.2f}x at most")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="feeds in the farm")
    ap.add_argument("--sample", type=int, default=300, help="feeds in the naive loop's sample")
    ap.add_argument("--matching", type=int, default=5, help="new items that alert")
    ap.add_argument("--small", type=int, default=500, help="feeds in the whole-process check")
    ap.add_argument("--cycles", type=int, default=3,
                    help="warm cycles measured (the median is the one printed)")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each round of the whole-process check (the median printed)")
    ap.add_argument("--dedupe", default="tfidf", choices=("tfidf", "url"),
                    help="story grouping method (url: by link only, to see the runtime alone)")
    ap.add_argument("--state", help="postgresql://... : measure instances sharing this store")
    ap.add_argument("--instances", type=int, default=0,
                    help="with --state: compare one pinned instance with this many")
    ap.add_argument("--repeat", type=int, default=5,
                    help="with --instances: pairs of cycles measured (the median ratio)")
    args = ap.parse_args()
    if args.instances and not (args.state or "").startswith("postgresql://"):
        ap.error("--instances needs --state postgresql://...")

    # Measured as an installed copy runs: with its bytecode (see the Makefile's bytecode).
    compileall.compile_dir(ROOT / "monitor", quiet=1)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    farm = ctx.Process(target=_farm_main, args=(args.n, args.matching, q), daemon=True)
    farm.start()
    base = f"http://127.0.0.1:{q.get(timeout=30)}"
    out: list[str] = []

    def say(line: str) -> None:
        out.append(line)
        print(line, flush=True)  # noqa: T201

    try:
        if args.instances:
            assert farm.pid is not None
            scale_out(args, base, farm.pid)
            return 0
        with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
            tmpd = Path(tmp)
            config = _config(tmpd, base, range(args.n), args.matching, args.dedupe)
            matching = [i for i in range(args.n) if i % 10 >= 7][:args.matching]
            _name_matching(config, matching)
            (first, warmup, *measured), rss, workers = asyncio.run(_rounds(
                config, base, [1, 2, *range(MEASURED, MEASURED + max(args.cycles, 1))]))
            warm = _middle(measured, lambda c: c.wall)
            wall, cpu, wcpu = warm.wall, warm.cpu, warm.worker_cpu
            say(f"dedupe method {args.dedupe}; round 1 (first poll: {args.n * 50} entries "
                f"recorded, none alerts): {first.wall:.1f} s, {first.cpu:.1f} CPU s")
            say(f"round 2 (first warm cycle, with the process's first alerts; not the "
                f"measured one): {warmup.wall:.2f} s, {warmup.cpu:.1f} CPU s")
            say(f"rounds {MEASURED}-{MEASURED + len(measured) - 1} (warm cycles, the median "
                f"measured): {', '.join(f'{c.wall:.2f} s' for c in measured)}")
            log = _get(f"{base}/_log")
            lat = sorted(log["arrived"][k] - log["served"][k] for k in log["arrived"])

            # The naive loop on a sample, same farm, same rounds (round 1 for its etags).
            # A random sample, so that it has the farm's mix of kinds.
            sample = sorted(random.Random(1).sample(range(args.n), min(args.sample, args.n)))
            etags: dict[int, Any] = {}
            _round(base, 1)
            naive(base, sample, etags)
            _round(base, 2)
            naive_s = naive(base, sample, etags) * args.n / len(sample)
            cores = len(os.sched_getaffinity(0))
            floor_s, made = floor(base, args.n, cores)
            if not made:
                raise SystemExit("the floor's round 2 made no entries: nothing was measured")

            say("")
            say(f"warm cycle, {args.n} feeds (30% 304, 40% same body without validators, "
                "30% a new item)")
            say(f"{'metric':<34}{'measured':>14}{'target':>12}")
            rows = [
                (f"cycle (median of {len(measured)})", f"{wall:.2f} s",
                 "<= 10 s" if args.n == 10_000 else "-"),
                ("feeds/s", f"{args.n / wall:.0f}", ">= 1000"),
                ("CPU s (main + poll workers)", f"{cpu:.1f} ({wcpu:.1f} in {workers})", "-"),
                ("peak RSS MB (main + workers)", f"{rss:.0f}", "<= 300"),
                ("store writes MB (WAL, checkpoints)",
                 f"{warm.written / 1e6:.0f}" if warm.written is not None else "n/a", "-"),
                (f"naive loop ({len(sample)} feeds, scaled)", f"{naive_s:.1f} s", "-"),
                ("ratio (naive / monitor)", f"{naive_s / wall:.1f}x", ">= 50x"),
                (f"floor: fetch+parse, {cores} processes", f"{floor_s:.2f} s", "-"),
                ("ratio at the floor", f"{naive_s / floor_s:.1f}x", "-"),
                ("alert latency p50",
                 f"{statistics.median(lat):.2f} s" if lat else "n/a", "-"),
                ("alert latency p99 / max", f"{lat[-1]:.2f} s ({len(lat)} alerts)"
                 if lat else "n/a (no alert arrived)", "<= 2 s"),
            ]
            for name, got, target in rows:
                say(f"{name:<34}{got:>14}{target:>12}")

        # Whole process, fresh and warm, against the naive loop on the same feeds.
        small = range(args.small)
        fresh: list[tuple[float, float]] = []
        warm_runs: list[tuple[float, float]] = []
        for _ in range(max(args.runs, 1)):
            with tempfile.TemporaryDirectory(prefix="bench-poll-small-") as tmp:
                config = _config(Path(tmp), base, small, 0, args.dedupe)
                _round(base, 1)
                fresh.append(_whole_process(config))
                _round(base, 3)
                warm_runs.append(_whole_process(config))
        cores = len(os.sched_getaffinity(0))
        floors = sorted(fresh_floor(base, args.small, cores) for _ in range(max(args.runs, 1)))
        etags = {}
        _round(base, 1)
        naive_fresh = naive(base, list(small), etags)
        _round(base, 3)
        naive_warm = naive(base, list(small), etags)
        say("")
        say(f"whole process, `news-monitor run --once`, {args.small} feeds, dedupe "
            f"{args.dedupe}, median of {len(fresh)} runs (target >= 10x, <= 150 MB)")
        say(f"{'round':<8}{'news-monitor':>14}{'(range)':>16}{'naive loop':>12}{'ratio':>8}"
            f"{'peak RSS (process tree)':>28}")
        for name, runs, naive_s in (("fresh", fresh, naive_fresh),
                                    ("warm", warm_runs, naive_warm)):
            once, _ = _middle(runs, lambda r: r[0])
            walls = sorted(w for w, _ in runs)
            spread = f"({walls[0]:.2f}-{walls[-1]:.2f})"
            peak = max(r for _, r in runs)
            say(f"{name:<8}{once:>12.2f} s{spread:>16}{naive_s:>10.2f} s"
                f"{naive_s / once:>7.1f}x{peak:>25.0f} MB")
        floor_s = floors[len(floors) // 2]
        say(f"{'floor':<8}{floor_s:>12.2f} s{f'({floors[0]:.2f}-{floors[-1]:.2f})':>16}"
            f"{naive_fresh:>10.2f} s{naive_fresh / floor_s:>7.1f}x")
        say(f"floor: {cores} processes started together, each importing monitor.cli and "
            "fetching and parsing its share of the feeds fresh (first parses), no store, "
            "matching, grouping or delivery: the fresh round's ratio on this stack and "
            "these cores cannot pass it")
    finally:
        farm.terminate()
        farm.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
