"""Benchmark one feed body through monitor.parse.parse_document (a script, not a test).

    .venv/bin/python bench/parse.py [--data ../shared/data/real-feeds] [--repeat 7]

Per body, two calls, each timed in-process over many repetitions in CPU time (on
a shared machine, time spent waiting for a core is not the call's), the median
of --repeat runs printed (compare runs made together):

- fresh: a first parse, every item made into an entry;
- memo: the next poll's body, one new item on top of all the old ones but the
  last, parsed with the first parse's ``seen`` (the common case of a changed
  body: most items are recognised).

The bodies: the poll bench's feed (bench/poll.py's Farm: 46 KB of RSS 2.0, 50
items), then every feed in tests/data and in --data (by name, once). A real feed's next body is
made by copying its first item with the title, link and id edited, so that it
reads as a new item, and dropping its last one.
"""

# ruff: noqa: T201  (a script: printing its table is the point)
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import poll  # noqa: E402

from monitor.errors import ParseError  # noqa: E402
from monitor.parse import parse_document  # noqa: E402
from monitor.urls import canonical_url  # noqa: E402

_ITEM = re.compile(rb"<(item|entry)[\s>].*?</\1\s*>", re.S)
_EDITS = ((rb"</title>", b" (update)</title>"), (rb"</guid>", b"-2</guid>"),
          (rb"</link>", b"?v=2</link>"), (rb"</id>", b"-2</id>"), (rb"href=\"", b"href=\"/2"))


def next_body(body: bytes) -> bytes | None:
    """``body`` with a new item on top (the first one edited) and its last one gone."""
    items = list(_ITEM.finditer(body))
    if len(items) < 2:
        return None
    new = items[0].group()
    for old, edited in _EDITS:
        new = new.replace(old, edited, 1)
    first, last = items[0], items[-1]
    return body[:first.start()] + new + body[first.start():last.start()] + body[last.end():]


def median_us(call: Callable[[], object], repeat: int, budget: float = 0.05) -> float:
    """CPU microseconds a call, the median of ``repeat`` runs of about ``budget`` seconds."""
    start = time.process_time()
    call()
    n = max(1, int(budget / max(time.process_time() - start, 1e-6)))
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(n):
            call()
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


def row(name: str, body: bytes, body2: bytes | None, repeat: int) -> None:
    def parse(b: bytes, seen: bytes = b"") -> object:
        return parse_document(b, "f", canonicalize=canonical_url, seen=seen)

    try:
        first = parse_document(body, "f", canonicalize=canonical_url)
    except ParseError as exc:
        print(f"{name[:40]:40s} {exc}")
        return
    fresh = median_us(lambda: parse(body), repeat)
    memo = "-"
    if body2 is not None:
        memo = f"{median_us(lambda: parse(body2, first.seen), repeat):9.0f}"
    path = "fast" if first.fast else "feedparser"
    print(f"{name[:40]:40s} {len(body) / 1000:6.0f} {len(first.entries):5d} {path:>10s} "
          f"{fresh:9.0f} {memo:>9s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/real-feeds")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"{'body':40s} {'KB':>6s} {'items':>5s} {'path':>10s} {'fresh us':>9s} "
          f"{'memo us':>9s}")
    farm = poll.Farm(10, 0)
    body = farm.body(7)
    farm.round = 2
    row("bench/poll.py Farm feed", body, farm.body(7), args.repeat)
    paths: dict[str, Path] = {}  # by name: tests/data holds copies of some of --data
    for d in (args.data, ROOT / "tests/data"):
        if d.is_dir():
            paths.update((p.name, p) for p in d.iterdir() if p.suffix in (".xml", ".rss", ".atom"))
    for name, p in sorted(paths.items()):
        body = p.read_bytes()
        row(name, body, next_body(body), args.repeat)


if __name__ == "__main__":
    main()
