"""Benchmark the compiled matcher against a naive one (a script, not a test).

    python bench/match.py [--entries 100000] [--rules 100,1000,10000] [--seed 3]

The data is news-like, built with a seeded RNG from the real headlines in
../shared/data/story-clusters-dev.csv (the team's data folder beside the
checkout, not part of the repository; ``--data`` names another copy) plus
common English words:

- Those 2,413 headlines cover only 40 stories, far fewer than a day of real news,
  so the benchmark invents a larger world from their words: 20,000 *stories*,
  each about 2-3 named entities and 1-2 topic words ("recall", "taxes").
  A name is one or two parts ("Plosser Woodley"); parts are the headlines'
  capitalised words plus blends of them ("Plosley"), 30,000 in all, so that
  names are mostly rare, as real ones are. Stories differ in popularity (Zipf).
- An *entry* is about one story: its title is a real headline with its names
  swapped for the story's; its summary is about 80 words in sentences, three
  quarters common English, a quarter lower-case headline words, with the
  story's names and topic words mentioned once or more. Feed names and links
  are the headlines' real publishers and URLs.
- A *watchlist* is what a team would write about one story: 1-4 of its names,
  name parts, prefix wildcards and topic words, in shapes from a single term to
  ``(a OR b) AND (c OR d) NOT e``, with NOT (a name from another story), NEAR/5,
  title: and source: scopes.

So each watchlist matches few entries, yet a fair share of entries match some
watchlist; the table reports how many, and how many watchlists an entry matches
on average.

"ours" is the compiled matcher as it runs by default, on its C core
(monitor/_matchcore.c); "python" the same matcher on its pure-Python path, the
fallback when the extension is not built, on the first 20,000 entries.

The naive baseline is what one would write first: one compiled regex per term
of every watchlist, each watchlist evaluated in turn on every entry. It runs on
a subset of the entries (it is slow) and must find the same matches as ours,
as must the Python path.
"""

# ruff: noqa: T201  (a script: printing its table is the point)
from __future__ import annotations

import argparse
import bisect
import csv
import gc
import itertools
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.match import Matcher
from monitor.query import And, Near, Node, Not, Term, condition
from monitor.text import normalize, token_string
from monitor.types import Entry, Watchlist

STORIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "story-clusters-dev.csv"

COMMON = """the of and to in a is that for it as was with be by on not he this are or his from
at which but have an had they you were their one all we can her has there been if more when
will would who so no said year new also after first last two people over could than time
about into up out only other its some what them government officials report week market
company percent billion million according statement told state president city world country
police court deal plan group public since while during before expected including still
however back made may under month years day says share business political minister security
national international economy growth rate data analysts investors next early late major
former local support decision announced reported agency federal health industry workers
service services price prices sales quarter chief executive board members spokesman
department system program team season game games fans music film show series online
social media users customers product products research study studies scientists found
experts nearly around several many much most less least very well just even now then here
where why how because although though whether between against among without within across
through toward another each every both either neither few little own same such""".split()

SHAPES = (
    ("single", 15),
    ("all", 30),
    ("any", 10),
    ("and-or", 15),
    ("not", 10),
    ("near", 10),
    ("title", 5),
    ("source", 2),
    ("complex", 3),
)
STORY_COUNT = 20_000
NAME_PARTS = 30_000


@dataclass(frozen=True, slots=True)
class Headline:
    title: str
    publisher: str
    url: str


@dataclass(frozen=True, slots=True)
class Story:
    names: tuple[str, ...]  # "Plosser Woodley", "Snowden"
    topics: tuple[str, ...]  # "recall", "taxes"


@dataclass(frozen=True, slots=True)
class World:
    headlines: list[Headline]
    filler: list[str]  # headline words that are not names, as often as they occur
    stories: list[Story]
    names: frozenset[str]  # capitalised headline words that are names
    popularity: list[float]  # cumulative Zipf weights over stories
    words: list[str]  # every word a summary is made of, sorted, for prefix checks

    def story(self, rng: random.Random) -> Story:
        return self.stories[bisect.bisect(self.popularity, rng.random() * self.popularity[-1])]


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")
_STOP = set(COMMON) | {"new", "says", "with", "from", "after", "over", "into", "more"}


def make_world(rng: random.Random, stories: Path = STORIES) -> World:
    with stories.open(encoding="utf-8", newline="") as f:
        headlines = [Headline(r["title"], r["publisher"], r["url"]) for r in csv.DictReader(f)]
    words = [w for h in headlines for w in _WORD.findall(h.title)]
    lower = {w for w in words if w.islower()}
    content = [w for w in words if len(w) >= 3 and w.lower() not in _STOP and "'" not in w]
    # Names: capitalised and never seen in lower case (so not "Report", "Police").
    capitals = sorted({w for w in content if w[0].isupper() and w.lower() not in lower})
    topics = sorted({w for w in content if w.islower() and len(w) >= 6})
    # Real names are many and mostly rare; 1,500 capitalised words recombined
    # would make every name part common. So blend them into more: Plosser +
    # Woodley -> Plosley.
    vocabulary = {w.lower() for w in words} | set(COMMON)
    parts = set(capitals)
    while len(parts) < NAME_PARTS:
        first, second = rng.choice(capitals), rng.choice(capitals)
        blend = first[: rng.randint(2, 4)] + second[-rng.randint(3, 5) :].lower()
        if blend.isalpha() and blend.lower() not in vocabulary:
            parts.add(blend)
    name_parts = sorted(parts)
    stories = []
    for _ in range(STORY_COUNT):
        names = tuple(
            rng.choice(name_parts)
            if rng.random() < 0.2
            else f"{rng.choice(name_parts)} {rng.choice(name_parts)}"
            for _ in range(rng.randint(2, 3))
        )
        stories.append(Story(names, tuple(rng.sample(topics, rng.randint(1, 2)))))
    popularity = list(itertools.accumulate(1 / (rank + 100) for rank in range(STORY_COUNT)))
    filler = [w for w in words if w.islower()]
    summary_words = sorted(set(filler) | set(COMMON))
    return World(headlines, filler, stories, frozenset(capitals), popularity, summary_words)


# --- Entries -------------------------------------------------------------------------


def make_entries(rng: random.Random, world: World, count: int) -> list[Entry]:
    entries = []
    for i in range(count):
        source = rng.choice(world.headlines)
        story = world.story(rng)
        # The headline's own names would tie every entry to its 40 real stories:
        # swap them for this story's.
        parts = [part for name in story.names for part in name.split()]
        title = [
            rng.choice(parts) if word.strip(".,:;'\"?!") in world.names else word
            for word in source.title.split()
        ]
        title.insert(rng.randint(0, len(title)), rng.choice(story.names))
        words = [
            rng.choice(world.filler) if rng.random() < 0.25 else rng.choice(COMMON)
            for _ in range(rng.randint(65, 80))
        ]
        for mention in story.names * rng.randint(1, 2) + story.topics:
            words.insert(rng.randint(0, len(words)), mention)
        sentences = []
        while words:
            size = rng.randint(8, 20)
            sentence, words = words[:size], words[size:]
            if len(sentence) > 4 and rng.random() < 0.5:
                sentence[3] += ","
            sentences.append(" ".join(sentence).capitalize() + ".")
        entries.append(
            Entry(
                feed=source.publisher,
                key=f"{source.url}#{i}",
                guid=None,
                link=source.url,
                canonical_url=source.url,
                title=" ".join(title),
                summary=" ".join(sentences),
                published=None,
            )
        )
    return entries


# --- Watchlists ----------------------------------------------------------------------


def make_watchlists(rng: random.Random, world: World, count: int) -> list[Watchlist]:
    shapes = [s for s, _ in SHAPES]
    weights = [w for _, w in SHAPES]
    out: list[Watchlist] = []
    while len(out) < count:
        # Some teams watch what is popular, most something of their own.
        story = world.story(rng) if rng.random() < 0.1 else rng.choice(world.stories)
        shape = rng.choices(shapes, weights)[0]
        n1, n2 = name_term(rng, world, story), name_term(rng, world, story)
        t1, t2 = any_term(rng, world, story), any_term(rng, world, story)
        if len({n1, n2, t1, t2}) < 4:
            continue
        other = rng.choice(rng.choice(world.stories).names)
        name = f"w{len(out)}-{shape}"
        if shape == "single":
            wl = Watchlist(name=name, any=(n1,))
        elif shape == "all":
            wl = Watchlist(name=name, all=(n1, t1))
        elif shape == "any":
            wl = Watchlist(name=name, any=(n1, n2, name_term(rng, world, story)))
        elif shape == "and-or":
            wl = Watchlist(name=name, query=f"{q(n1)} AND ({q(t1)} OR {q(t2)})")
        elif shape == "not":
            wl = Watchlist(name=name, all=(n1,), none=(other,))
        elif shape == "near":
            wl = Watchlist(name=name, query=f"{q(n1)} NEAR/5 {q(t1)}")
        elif shape == "title":
            wl = Watchlist(name=name, query=f"title:({q(n1)} OR {q(n2)}) {q(t1)}")
        elif shape == "source":
            publisher = _WORD.findall(rng.choice(world.headlines).publisher) or ["news"]
            wl = Watchlist(name=name, query=f"source:{q(publisher[0])} AND {q(n1)}")
        else:
            wl = Watchlist(
                name=name, query=f"({q(n1)} OR {q(n2)}) AND ({q(t1)} OR {q(t2)}) NOT {q(other)}"
            )
        out.append(wl)
    return out


def name_term(rng: random.Random, world: World, story: Story) -> str:
    """One of a story's names, a part of it, or a part as a prefix (Snowden*)."""
    name = rng.choice(story.names)
    roll = rng.random()
    if roll < 0.7:
        return name
    part = rng.choice(name.split())
    if roll < 0.85 and len(part) >= 6 and part.isalpha():
        stem = part[: max(5, len(part) - 1)]
        if not starts_a_word(world, stem.lower()):
            return stem + "*"
    return part


def starts_a_word(world: World, stem: str) -> bool:
    """Whether ``stem`` starts a filler word (Natio* would hit "national")."""
    i = bisect.bisect_left(world.words, stem)
    return i < len(world.words) and world.words[i].startswith(stem)


def any_term(rng: random.Random, world: World, story: Story) -> str:
    """A name term or one of the story's topic words."""
    return rng.choice(story.topics) if rng.random() < 0.4 else name_term(rng, world, story)


def q(text: str) -> str:
    """``text`` as a query term: quoted, so punctuation in headlines is not syntax."""
    return '"' + text.replace('"', "") + '"'


# --- The naive baseline ----------------------------------------------------------------


class Naive:
    """One regex per term, every watchlist evaluated in turn."""

    def __init__(self, watchlists: Sequence[Watchlist]) -> None:
        self.rules: list[tuple[str, frozenset[str] | None, Callable[[dict[str, str]], bool]]] = []
        for wl in watchlists:
            node = condition(all=wl.all, any=wl.any, none=wl.none, query=wl.query)
            assert node is not None
            self.rules.append((wl.name, wl.feeds, self.compile(node)))

    def compile(self, node: Node) -> Callable[[dict[str, str]], bool]:
        if isinstance(node, Term):
            regex = term_regex(node)
            fields = field_names(node)
            return lambda doc: any(regex.search(doc[f]) for f in fields)
        if isinstance(node, Near):
            left, right = term_regex(node.left), term_regex(node.right)
            fields = [f for f in field_names(node.left) if f in field_names(node.right)]
            n_left, n_right, distance = len(node.left.words), len(node.right.words), node.distance

            def near(doc: dict[str, str]) -> bool:
                for f in fields:
                    text = doc[f]
                    lefts = [text.count(" ", 0, m.start()) for m in left.finditer(text)]
                    rights = [text.count(" ", 0, m.start()) for m in right.finditer(text)]
                    for i in lefts:
                        for j in rights:
                            if max(j - (i + n_left), i - (j + n_right)) <= distance:
                                return True
                return False

            return near
        if isinstance(node, Not):
            child = self.compile(node.child)
            return lambda doc: not child(doc)
        children = [self.compile(c) for c in node.children]
        if isinstance(node, And):
            return lambda doc: all(c(doc) for c in children)
        return lambda doc: any(c(doc) for c in children)

    def match(self, entry: Entry) -> list[str]:
        doc = {
            "title": token_string(entry.title),
            "summary": token_string(entry.summary),
            "source": token_string(entry.feed),
            "link": link_text(entry.link),
        }
        return [
            name
            for name, feeds, test in self.rules
            if (feeds is None or entry.feed in feeds) and test(doc)
        ]


def term_regex(term: Term) -> re.Pattern[str]:
    if term.field == "link":
        return re.compile(re.escape(term.words[0]))
    tail = "" if term.prefix else r"(?!\S)"
    return re.compile(r"(?<!\S)" + re.escape(" ".join(term.words)) + tail)


def field_names(term: Term) -> list[str]:
    return ["title", "summary"] if term.field is None else [term.field]


def link_text(link: str) -> str:
    m = re.match(
        r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?(?://(?:[^@/?#]*@)?([^/?#:]*)(?::\d*)?)?([^?#]*)", link
    )
    return normalize((m.group(1) or "") + (m.group(2) or "")) if m else ""


# --- Running ---------------------------------------------------------------------------


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rules", default="100,1000,10000")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="RULES",
        help="profile our matcher at this many rules and print the top functions",
    )
    parser.add_argument("--data", type=Path, default=STORIES,
                        help=f"the labelled headlines (default: {STORIES})")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"bench/match.py: {args.data} is missing. The benchmark builds its data from "
              "story-clusters-dev.csv, which lives in the team's shared data folder beside "
              "the checkout (../shared/data/), not in the repository: put a copy there or "
              "pass --data PATH.", file=sys.stderr)
        return 2

    rng = random.Random(args.seed)
    world = make_world(rng, args.data)
    started = time.process_time()
    entries = make_entries(rng, world, args.entries)
    print(
        f"{len(entries):,} entries made in {time.process_time() - started:.1f} s "
        f"(mean summary {sum(len(e.summary) for e in entries) / len(entries):.0f} chars)"
    )

    if args.profile:
        profile(Matcher.compile(make_watchlists(rng, world, args.profile)), entries)
        return 0

    # Setup objects are long-lived: keep the garbage collector from re-scanning them.
    gc.freeze()
    header = (
        f"{'rules':>6} {'compile s':>9} {'ours/s':>9} {'us/entry':>8} {'python/s':>8} "
        f"{'naive/s':>8} {'naive n':>7} {'ratio':>6} {'matched':>7} {'matches':>7}"
    )
    print(header)
    print("-" * len(header))
    rates: dict[int, float] = {}
    compile_times: dict[int, float] = {}
    for count in (int(n) for n in args.rules.split(",")):
        watchlists = make_watchlists(random.Random(args.seed + count), world, count)
        started = time.process_time()
        matcher = Matcher.compile(watchlists)
        compile_times[count] = time.process_time() - started
        assert len(matcher) == count
        if not matcher.native:
            print("(the C core is not built: 'ours' is the Python path)")

        subset = entries[: min(len(entries), 2_000, 400_000 // count)]
        match = matcher.match
        matched = hits = 0
        started = time.process_time()
        for entry in entries:
            found = match(entry)
            if found:
                matched += 1
                hits += len(found)
        ours_s = time.process_time() - started
        ours = [[m.watchlist for m in match(e)] for e in subset]

        python = Matcher.compile(watchlists, native=False)
        sample = entries[:20_000]
        started = time.process_time()
        for entry in sample:
            python.match(entry)
        python_rate = len(sample) / (time.process_time() - started)
        first = sample[: len(subset) * 5]
        assert [[(m.watchlist, m.terms) for m in python.match(e)] for e in first] == [
            [(m.watchlist, m.terms) for m in match(e)] for e in first
        ], "the Python path disagrees"

        naive = Naive(watchlists)
        started = time.process_time()
        expected = [naive.match(e) for e in subset]
        naive_s = time.process_time() - started
        assert ours == expected, "the naive matcher disagrees"

        rates[count] = len(entries) / ours_s
        base = len(subset) / naive_s
        print(
            f"{count:>6,} {compile_times[count]:>9.2f} {rates[count]:>9,.0f} "
            f"{1e6 / rates[count]:>8.1f} {python_rate:>8,.0f} {base:>8,.0f} {len(subset):>7,} "
            f"{rates[count] / base:>5,.0f}x {matched / len(entries):>6.0%} "
            f"{hits / len(entries):>7.2f}"
        )
    print(
        "ours/s, python/s, naive/s: entries per second on one core (CPU time) of the C core,\n"
        "the pure-Python path and the naive baseline; naive n: entries the baseline ran on,\n"
        "with the same matches as ours; ratio: ours/naive; matched: share of entries that hit\n"
        "some watchlist; matches: watchlists hit per entry."
    )
    if 100 in rates and 10_000 in rates:
        print(
            f"targets: 10,000 rules >= 50,000/s: {rates[10_000]:,.0f}; "
            f"slowdown 100 -> 10,000 rules <= 2x: {rates[100] / rates[10_000]:.1f}x; "
            f"compile 10,000 < 2 s: {compile_times[10_000]:.2f} s"
        )
    return 0


def profile(matcher: Matcher, entries: list[Entry]) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(lambda: [matcher.match(e) for e in entries])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    sys.exit(main())
