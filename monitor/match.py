"""Compiled matcher: entries x watchlists -> matches (pure).

Matching one entry against 10,000 watchlists one by one would cost 10,000
evaluations per entry; almost all of them fail. So the work is split into a
part that grows little with the number of watchlists and a part that only
touches the few watchlists that could match.

At compile time (:meth:`Matcher.compile`):

1. Each watchlist's condition (``query.condition``: its lists AND its query) is
   parsed and validated. A watchlist that fails is logged and skipped; it never
   stops the others.
2. Every term becomes a *pattern* over the token string of a field: ``" korea "``
   for a word, ``" north korea "`` for a phrase, ``" north kor"`` for a prefix.
   The spaces make a match land on word boundaries. A ``link:`` term's pattern
   is its plain substring. Equal patterns of different watchlists share one id.
3. Each watchlist picks *trigger* patterns: a set one of which must occur
   whenever the watchlist matches (for ``a AND (b OR c)``: ``{a}`` or ``{b, c}``;
   a term under NOT never qualifies). Of the possible sets it takes the one whose
   patterns are shared by the fewest watchlists, a stand-in for "rare", so a
   common word does not make every watchlist that mentions it a candidate.
   ``query.validate`` guarantees that every watchlist has such a set. The
   trigger patterns of all watchlists, and only those, are what an entry is
   scanned for (one Aho-Corasick automaton in Python, one hash table in C):
   that finds candidates, and a pattern that makes no watchlist a candidate
   would only make the scan bigger and hit more often.
4. For the Python path, each condition becomes one Python expression, compiled
   with all the others in one go: a trigger is looked up among the automaton's
   hits (``7 in u``), any other term searched for in the entry's token string
   (``P[9] in h``: the pattern's sentinel spaces give the word boundaries, and a
   hit of the automaton is exactly an occurrence of the pattern in that
   string). The generated source holds only integers, operators and the helper
   names below, never text from a query. For the C core, :meth:`_Compiler.core`
   makes flat tables instead (below).

Per entry (:meth:`Matcher.match`) there are two implementations of the same
steps, held to the same answers by tests/test_match.py (every test runs on
both, and both against a reference evaluator):

**The C core** (monitor/_matchcore.c, built by ``pip install``; the default).
:meth:`_Compiler.core` hands it flat tables: the patterns, which are traced,
the trigger index, and each condition in postfix (TERM field pattern, NEAR k,
NOT, AND n, OR n). Per entry it

1. tokenises title and summary into ``" title words | summary words "``: ASCII
   and the characters of ``text.ascii_folds`` (accented Latin letters,
   typographic punctuation) in C, anything else through ``text.token_string``;
2. looks every word up, once, in a hash table of the trigger patterns keyed by
   their first word (a prefix ``" sanction"`` by its first bytes), behind a
   32 KB bit filter that answers "not here" for most words without touching
   the table; ``link:`` texts are found by a trie walk over the link;
3. turns the hits into candidate watchlists, sorted;
4. evaluates each candidate's program: a trigger term reads the hit records
   (first and last position), any other term is compared at the words whose
   key is its first word's (keys the look-ups left behind), NEAR counts words;
5. orders the matched terms by first occurrence and builds the Match by
   filling its slots.

bench/match.py, one core: about 1.9 us an entry with 100 watchlists, 3.6 us
with 10,000 (64% of entries match one, 1.2 matches an entry): tokenising
~0.9 us, look-ups ~1.1 us (1.8 us with 10,000, where about 26 words an entry
hit the table), evaluating ~2.4 candidates ~0.7 us, building matches ~0.2 us.
Tried on the way: a trie of all patterns walked from every word start (a
double array: 6.4 us with 10,000, the walk ~4.5 steps a word, each a likely
cache miss), all patterns in the table (more look-ups that hit, 4.2 us), a
4-byte key for words and prefixes alike (verification of every pattern
sharing a prefix, 6 us), memmem for untraced terms (as slow as the look-ups
it saved).

**The Python path** (``native=False``, and the fallback when the extension is
not built; ``matcher_pure_python`` is logged):

1. Title and summary are tokenised once (``text.token_string``) into the same
   ``" title words | summary words "``; the ``|`` stops a phrase from running
   from the title into the summary.
2. One pyahocorasick pass gives the set of trigger ids that occur (``u``). An
   entry with no hit at all (most of them, when watchlists are few) and no
   ``source:``/``link:`` trigger is done here.
3. The trigger index turns those into candidate watchlists.
4. Only candidates are evaluated, each by one Python expression compiled with
   all the others in one go. Field scopes, NEAR distances and the order of
   the matched terms need positions; ``str.find`` on the same string gives
   them, only for the candidate that asks. For the usual watchlist, whose
   terms all look in title and summary, the order is one C-level
   ``map(hay.find, ...)`` and a sort, and the Match is built by filling its
   slots (``_new_match``).

Where its time goes (10,000 watchlists, per entry, about 23 us in all):
tokenising ~4.3 us; the automaton pass ~7.3 us over ~11,400 trigger patterns
and ~2.4 hits (it was ~11 us over all ~17,300 patterns, ~13 hits, most of them
topic words that are never triggers); trigger look-ups ~1.2 us (was ~2); ~2.4
candidates evaluated and ~1.2 matches built ~5.5 us, each term that is not a
trigger costing one ``str.find`` (~0.45 us for 500 characters). With 100
watchlists an entry costs ~9 us, nearly all of it tokenising and the walk of a
small automaton (~4 us for ~600 characters whatever its size).

Tried in Python and not faster (measured, then dropped):

- Whole-word dict look-ups on the split tokens (~7.6 us before prefixes and
  phrases); likewise a frozenset of the ~3,500 single-word triggers intersected
  with the entry's tokens: splitting the hay alone costs ~5 us, a per-entry
  token set ~15 us, against ~7 us for the whole automaton pass.
- A string of token ids for the automaton (~11 us to build); inserting
  patterns sorted (alphabetically, by letter frequency, at random) or
  unpickling the automaton for locality; STORE_ANY with the candidate tuples
  as values instead of STORE_INTS and a dict (within noise).
- Also putting non-trigger patterns used by a single watchlist into the
  automaton, so that their test is a set look-up instead of a ``str.find``:
  +4,800 patterns, +2 hits, +1.2 us per entry for the pass.
- Triggers cut to their first 6 or 8 characters (a smaller trie): more hits,
  slower (8.9 and 7.8 us against 7.4).
- ``text.token_string`` alternatives: one ``lower()`` and one
  ``re.sub("[^a-z0-9]+", " ")`` is ~3x slower (14.7 us a title and summary
  against 4.5: a replacement at nearly every space); translating title and
  summary in one ``bytes`` object saves ~0.2 us. Most of the 4.3 us is squeezing
  the runs of spaces that punctuation leaves (~2.7 us for a summary), and
  ``bytes.replace``, ``split``/``join`` and other patterns are no faster.

``source:`` triggers run over the feed's name (once per feed, then cached) and
``link:`` triggers over the link's host and path, through the same automaton;
their other terms are searched for in those strings.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import chain, islice
from operator import itemgetter
from typing import NamedTuple, Protocol

import ahocorasick  # pyahocorasick ships no stubs: see [tool.mypy] overrides

from monitor.errors import QueryError
from monitor.query import MAX_DEPTH, And, Near, Node, Not, Term, condition, terms
from monitor.text import ascii_folds, normalize, token_string
from monitor.types import Entry, Match, Watchlist

try:
    from monitor import _matchcore  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the wheel or `pip install -e .` builds it
    _matchcore = None

__all__ = ["NATIVE", "Matcher"]

#: Whether the C half of the matcher (monitor/_matchcore.c) is built and in use.
NATIVE: bool = _matchcore is not None

logger = logging.getLogger(__name__)

# Which set of hits a term is looked up in. Unscoped terms (None) look in title and summary.
_CHANNEL = {None: "text", "title": "text", "summary": "text", "source": "source", "link": "link"}
_NEAR_FIELDS = {
    None: ("title", "summary"),
    "title": ("title",),
    "summary": ("summary",),
    "source": ("source",),
}
_EMPTY: frozenset[int] = frozenset()
# The C core's codes (monitor/_matchcore.c): opcodes, fields, NEAR field bits.
_OP_TERM, _OP_NEAR, _OP_NOT, _OP_AND, _OP_OR = range(5)
_FIELD_CODE = {None: 0, "title": 1, "summary": 2, "source": 3, "link": 4}
_NEAR_FIELD_BIT = {"title": 1, "summary": 2, "source": 4}
_first = itemgetter(0)
_second = itemgetter(1)
_third = itemgetter(2)
_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?(?://(?:[^@/?#]*@)?([^/?#:]*)(?::\d*)?)?([^?#]*)")


@dataclass(frozen=True, slots=True)
class _Feed:
    """What a feed's name contributes; worked out once per feed."""

    hits: frozenset[int]  # trigger ids found in the name
    hay: str
    candidates: frozenset[int]  # watchlists triggered by a source: term


_NO_FEED = _Feed(_EMPTY, "", _EMPTY)

# One entry as a test sees it: (hay, index of the "|" in hay, feed, link hits, link hay).
# A plain tuple because building it is on the hot path.
_View = tuple[str, int, _Feed, frozenset[int], str]
Test = Callable[[set[int], str, _View], bool]


class _Shown(NamedTuple):
    """A positive term of a watchlist, reported in Match.terms when present.
    A tuple, because ``_present`` unpacks it on the hot path."""

    field: str | None
    pattern: str
    text: str


class _Compiled(NamedTuple):
    """A compiled watchlist; a tuple, because ``match`` unpacks it per candidate.

    ``texts`` is set when every positive term looks in title and summary and no
    two of them are written alike (most watchlists): then the terms to report
    are ``texts`` ordered by ``hay.find`` of ``patterns``, with no per-term
    Python code. Otherwise ``texts`` is None and ``_present`` walks ``shown``.
    """

    name: str
    feeds: frozenset[str] | None
    test: Test
    shown: tuple[_Shown, ...]
    patterns: tuple[str, ...]
    texts: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class _NearSpec:
    left: str  # pattern
    left_words: int
    right: str
    right_words: int
    distance: int
    fields: tuple[str, ...]  # "title", "summary" or "source"


class Matcher:
    """Matches entries against a fixed set of watchlists. Build with :meth:`compile`."""

    __slots__ = (
        "_compiled",
        "_core",
        "_feed_cache",
        "_has_link",
        "_has_source",
        "_iter",
        "_link_keys",
        "_link_triggers",
        "_source_keys",
        "_source_triggers",
        "_text_keys",
        "_text_triggers",
    )

    def __init__(
        self,
        *,
        compiled: tuple[_Compiled, ...],
        patterns: dict[int, str],
        triggers: dict[str, dict[int, tuple[int, ...]]],
        channels: frozenset[str],
        core: object = None,
    ) -> None:
        self._compiled = compiled
        # The C core when built (monitor/_matchcore.c), else None: match() runs in Python.
        self._core: Callable[[Entry], list[Match]] | None = getattr(core, "match", None)
        self._text_triggers = triggers["text"]
        self._source_triggers = triggers["source"]
        self._link_triggers = triggers["link"]
        self._text_keys = frozenset(self._text_triggers)
        self._source_keys = frozenset(self._source_triggers)
        self._link_keys = frozenset(self._link_triggers)
        # Feed names and links are only looked at if some term is scoped to them.
        self._has_source = "source" in channels
        self._has_link = "link" in channels
        self._feed_cache: dict[str, _Feed] = {}  # feeds are few
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for pattern_id, pattern in patterns.items():
            automaton.add_word(pattern, pattern_id)
        if patterns:
            automaton.make_automaton()
            self._iter: Callable[[str], Iterator[tuple[int, int]]] = automaton.iter
        else:
            self._iter = _no_hits

    @classmethod
    def compile(cls, watchlists: Iterable[Watchlist], *, native: bool | None = None) -> Matcher:
        """Compile ``watchlists``; those whose condition is invalid or empty are
        logged and skipped.

        ``native``: run on the C core (True; an error if it is not built), on
        the Python path (False), or on the C core when it is built (None).
        """
        if native and _matchcore is None:
            raise RuntimeError("monitor._matchcore is not built: reinstall news-monitor")
        if native is None and _matchcore is None:
            _warn_pure_python()
        return _Compiler().build(cls, watchlists, native=NATIVE if native is None else native)

    def __len__(self) -> int:
        return len(self._compiled)

    @property
    def native(self) -> bool:
        """Whether this matcher runs on the C core."""
        return self._core is not None

    def match(self, entry: Entry) -> list[Match]:
        """The watchlists ``entry`` satisfies, in compile order."""
        if self._core is not None:
            return self._core(entry)
        return self._match(entry)

    def _match(self, entry: Entry) -> list[Match]:
        # The hot path: C-level set and map calls only, until a candidate shows up.
        title = token_string(entry.title)
        hay = f" {title} | {token_string(entry.summary)} "
        hits = set(map(_second, self._iter(hay)))
        feed = _NO_FEED
        link_hits, link_hay = _EMPTY, ""
        if self._has_source:
            feed = self._feed_cache.get(entry.feed) or self._feed(entry.feed)
        if self._has_link:
            link_hay = _link_text(entry.link)
            link_hits = frozenset(map(_second, self._iter(link_hay)))
        if not (hits or feed.candidates or link_hits):
            return []  # most entries, when watchlists are few
        triggers = self._text_triggers
        candidates = set(chain.from_iterable(map(triggers.__getitem__, hits & self._text_keys)))
        candidates |= feed.candidates
        if link_hits:
            triggers = self._link_triggers
            candidates.update(*map(triggers.__getitem__, link_hits & self._link_keys))
        if not candidates:
            return []

        view = (hay, len(title) + 2, feed, link_hits, link_hay)
        compiled = self._compiled
        find = hay.find
        matches = []
        for index in sorted(candidates):
            name, feeds, test, shown, patterns, texts = compiled[index]
            if feeds is not None and entry.feed not in feeds:
                continue
            if not test(hits, hay, view):
                continue
            if texts is None:
                terms = _present(view, shown)
            elif len(texts) == 1:
                terms = texts  # the test held, so its one positive term is present
            else:
                # Order of first occurrence, query order on ties. Absent terms
                # (at -1) sort first: skip as many as there are.
                at = list(map(find, patterns))
                found = sorted(zip(at, _INDEXES, texts, strict=False))
                terms = tuple(map(_third, islice(found, at.count(-1), None)))
            matches.append(_new_match(name, entry, terms))
        return matches

    def _feed(self, name: str) -> _Feed:
        hay = f" {token_string(name)} "
        hits = frozenset(map(_second, self._iter(hay)))
        triggers = self._source_triggers
        candidates = frozenset(
            chain.from_iterable(map(triggers.__getitem__, hits & self._source_keys))
        )
        feed = self._feed_cache[name] = _Feed(hits, hay, candidates)
        return feed


_INDEXES = range(1 << 30)


@functools.cache
def _warn_pure_python() -> None:
    logger.warning(
        "matcher.pure_python reason=%s",
        "monitor._matchcore is not built (no C compiler at install?): matching runs in Python,"
        " several times slower",
    )


class _Slot(Protocol):
    """A slot's member descriptor: what ``__set__`` fills."""

    def __set__(self, instance: Match, value: object) -> None: ...


def _match_slots() -> tuple[_Slot, _Slot, _Slot] | None:
    """Match's slot descriptors (watchlist, entry, terms), if filling them is
    all that building a Match takes: exactly these three fields, no
    ``__post_init__``. Else None, and Matches are built by their ``__init__``."""
    names = [f.name for f in fields(Match)]
    if names != ["watchlist", "entry", "terms"] or hasattr(Match, "__post_init__"):
        return None
    watchlist, entry, terms = (Match.__dict__[n] for n in names)
    return watchlist, entry, terms


def _match_maker() -> Callable[[str, Entry, tuple[str, ...]], Match]:
    """``Match(watchlist=, entry=, terms=)``, three times cheaper.

    The frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; filling the slots directly skips that (the C core
    does the same). tests/test_match.py checks that it builds an equal Match.
    """
    slots = _match_slots()
    if slots is None:
        return lambda name, entry, terms: Match(watchlist=name, entry=entry, terms=terms)
    new = object.__new__
    set_name, set_entry, set_terms = (slot.__set__ for slot in slots)

    def make(name: str, entry: Entry, terms: tuple[str, ...]) -> Match:
        match = new(Match)
        set_name(match, name)
        set_entry(match, entry)
        set_terms(match, terms)
        return match

    return make


_new_match = _match_maker()


def _no_hits(text: str) -> Iterator[tuple[int, int]]:
    return iter(())


def _link_text(link: str) -> str:
    """The host and path of ``link``, normalised, for ``link:`` substrings."""
    m = _URL.match(link.strip())
    host, path = (m.group(1) or "", m.group(2) or "") if m else ("", link)
    return "".join(normalize(host + path).split())


def _present(view: _View, shown: tuple[_Shown, ...]) -> tuple[str, ...]:
    """Source texts of the terms in ``shown`` that occur, in order of first
    occurrence (title, summary, feed name, link), each once."""
    if len(shown) == 1:
        return (shown[0].text,)  # the test held, so its one positive term is present
    hay, cut, feed, link_hits, link_hay = view
    found = []
    for field, pattern, text in shown:
        if field == "source":
            at = feed.hay.find(pattern)
            position = len(hay) + at if at >= 0 else -1
        elif field == "link":
            at = link_hay.find(pattern)
            position = len(hay) + len(feed.hay) + at if at >= 0 else -1
        elif field is None:
            position = hay.find(pattern)
        elif field == "title":
            position = hay.find(pattern, 0, cut)
        else:
            position = hay.find(pattern, cut)
        if position >= 0:
            found.append((position, text))
    if len(found) == 1:
        return (found[0][1],)
    found.sort(key=_first)  # stable: terms found at one place keep their query order
    return tuple(dict.fromkeys([text for _, text in found]))


def _word_positions(hay: str, pattern: str, start: int, end: int) -> list[int]:
    """Token indexes (within the region starting at ``start``) where ``pattern`` occurs."""
    positions = []
    at = hay.find(pattern, start, end)
    while at >= 0:
        positions.append(hay.count(" ", start, at))
        at = hay.find(pattern, at + 1, end)
    return positions


# --- Compiling ---------------------------------------------------------------------


def _pattern(term: Term) -> str:
    if term.field == "link":
        return term.words[0]
    return " " + " ".join(term.words) + ("" if term.prefix else " ")


class _Compiler:
    """Turns watchlists into the tables a Matcher runs on."""

    def __init__(self) -> None:
        self.pattern_ids: dict[str, int] = {}
        self.patterns: list[str] = []
        self.triggers: set[int] = set()  # ids of the patterns that go into the automaton
        self.nears: list[_NearSpec] = []
        self.near_ids: dict[_NearSpec, int] = {}

    def build(
        self, cls: type[Matcher], watchlists: Iterable[Watchlist], *, native: bool
    ) -> Matcher:
        accepted: list[tuple[Watchlist, Node]] = []
        for watchlist in watchlists:
            node = _condition(watchlist)
            if node is not None:
                accepted.append((watchlist, node))
        # How many watchlists use each pattern: the cost of making it a trigger.
        usage: dict[tuple[str, int], int] = {}
        for _, node in accepted:
            for key in {self.key(term) for term in _positive_terms(node)}:
                usage[key] = usage.get(key, 0) + 1
        triggers: dict[str, dict[int, list[int]]] = {"text": {}, "source": {}, "link": {}}
        for index, (_, node) in enumerate(accepted):
            cover = _cover(node, True, lambda term: self.cost(term, usage))
            assert cover is not None, "query.validate lets no trigger-less condition through"
            for channel, pattern_id in {self.key(term) for term in cover[1]}:
                triggers[channel].setdefault(pattern_id, []).append(index)
                self.triggers.add(pattern_id)
        if native:  # the C core runs its own programs: no Python to compile
            tests: list[Test] = [_evaluated_in_c] * len(accepted)
        else:
            sources = [f"lambda u, h, e: {self.expression(node)}" for _, node in accepted]
            tests = _compile_lambdas(sources, self.helpers())
        compiled = []
        for (watchlist, node), test in zip(accepted, tests, strict=True):
            shown = tuple(
                _Shown(term.field, _pattern(term), term.source_text)
                for term in dict.fromkeys(_positive_terms(node))
            )
            written = tuple(s.text for s in shown)
            plain = all(s.field is None for s in shown) and len(set(written)) == len(shown)
            patterns = tuple(s.pattern for s in shown)
            texts = written if plain else None
            compiled.append(
                _Compiled(watchlist.name, watchlist.feeds, test, shown, patterns, texts)
            )
        channels = frozenset(_CHANNEL[term.field] for _, node in accepted for term in terms(node))
        logger.debug(
            "matcher.compiled watchlists=%d patterns=%d triggers=%d native=%s",
            len(compiled),
            len(self.patterns),
            len(self.triggers),
            native,
        )
        frozen = {
            channel: {p: tuple(ids) for p, ids in table.items()}
            for channel, table in triggers.items()
        }
        return cls(
            compiled=tuple(compiled),
            patterns={} if native else {p: self.patterns[p] for p in sorted(self.triggers)},
            triggers=frozen,
            channels=channels,
            core=self.core(accepted, compiled, frozen, channels) if native else None,
        )

    def core(
        self,
        accepted: list[tuple[Watchlist, Node]],
        compiled: list[_Compiled],
        triggers: dict[str, dict[int, tuple[int, ...]]],
        channels: frozenset[str],
    ) -> object:
        """The same watchlists as flat tables for the C core (monitor/_matchcore.c)."""
        assert _matchcore is not None
        programs = [self.program(node) for _, node in accepted]  # may add patterns and NEARs
        shown: list[list[int]] = []
        texts: list[tuple[str, ...]] = []
        for watchlist in compiled:
            at = {text: i for i, text in enumerate(dict.fromkeys(s.text for s in watchlist.shown))}
            shown.append([
                number
                for s in watchlist.shown
                for number in (_FIELD_CODE[s.field], self.pattern_ids[s.pattern], at[s.text])
            ])
            texts.append(tuple(at))
        nears = [
            (
                self.pattern_ids[spec.left],
                spec.left_words,
                self.pattern_ids[spec.right],
                spec.right_words,
                spec.distance,
                sum(_NEAR_FIELD_BIT[f] for f in spec.fields),
            )
            for spec in self.nears
        ]
        slots = _match_slots()
        return _matchcore.Core(
            patterns=[p.encode("utf-8", "surrogatepass") for p in self.patterns],
            traced=sorted(self.triggers),
            triggers=[sorted(triggers[channel].items()) for channel in ("text", "source", "link")],
            programs=programs,
            shown=shown,
            texts=tuple(texts),
            names=tuple(w.name for w in compiled),
            feeds=tuple(w.feeds for w in compiled),
            nears=nears,
            tokenize=token_string,
            fold=ascii_folds(),
            link_text=_link_text if "link" in channels else None,
            make=(Match, *slots) if slots is not None else _new_match,
            has_source="source" in channels,
        )

    def program(self, node: Node) -> list[int]:
        """``node`` in postfix for the C core: TERM field pattern, NEAR k, NOT,
        AND n, OR n (the opcodes of monitor/_matchcore.c)."""
        if isinstance(node, Term):
            return [_OP_TERM, _FIELD_CODE[node.field], self.key(node)[1]]
        if isinstance(node, Near):
            return [_OP_NEAR, self.near_index(node)]
        if isinstance(node, Not):
            return [*self.program(node.child), _OP_NOT]
        out = [op for child in node.children for op in self.program(child)]
        return [*out, _OP_AND if isinstance(node, And) else _OP_OR, len(node.children)]

    def key(self, term: Term) -> tuple[str, int]:
        pattern = _pattern(term)
        pattern_id = self.pattern_ids.get(pattern)
        if pattern_id is None:
            pattern_id = self.pattern_ids[pattern] = len(self.patterns)
            self.patterns.append(pattern)
        return _CHANNEL[term.field], pattern_id

    def cost(self, term: Term, usage: dict[tuple[str, int], int]) -> float:
        """How bad a trigger ``term`` would be. A pattern that many watchlists
        share is probably a common word; prefixes hit more often than words,
        phrases less often. A feed name or a site hits every entry of its feed,
        so source: and link: terms are a last resort."""
        count = usage.get(self.key(term), 1)
        if term.field in ("source", "link"):
            return count * 1000.0
        return count * (2.0 if term.prefix else 1.0) / len(term.words)

    def expression(self, node: Node) -> str:
        """Python source for ``node`` over ``u`` (the pattern ids found in title
        and summary) and ``e`` (a _View), using the helpers T, S and N."""
        if isinstance(node, Term):
            return self.term_expression(node)
        if isinstance(node, Near):
            index = self.near_index(node)
            left, right = self.term_expression(node.left), self.term_expression(node.right)
            return f"({left} and {right} and N({index}, e))"
        if isinstance(node, Not):
            return f"not {self.expression(node.child)}"
        # Set look-ups first, then searches of the hay, helper calls (fields, NEAR) last.
        children = sorted(node.children, key=self.cost_to_test)
        operator = " and " if isinstance(node, And) else " or "
        return "(" + operator.join(self.expression(child) for child in children) + ")"

    def near_index(self, node: Near) -> int:
        """The index of ``node``'s NEAR spec in ``nears``, added if new (its
        patterns too)."""
        self.key(node.left)
        self.key(node.right)
        spec = _NearSpec(
            _pattern(node.left),
            len(node.left.words),
            _pattern(node.right),
            len(node.right.words),
            node.distance,
            tuple(f for f in _NEAR_FIELDS[node.left.field] if f in _NEAR_FIELDS[node.right.field]),
        )
        index = self.near_ids.setdefault(spec, len(self.nears))
        if index == len(self.nears):
            self.nears.append(spec)
        return index

    def cost_to_test(self, node: Node) -> int:
        if not isinstance(node, Term) or node.field is not None:
            return 2
        return 0 if self.key(node)[1] in self.triggers else 1

    def term_expression(self, term: Term) -> str:
        _, p = self.key(term)
        if term.field is None:
            # A trigger's hit is in u; any other pattern is looked for in the hay.
            return f"{p} in u" if p in self.triggers else f"P[{p}] in h"
        if term.field == "title":
            return f"T({p}, e)"
        if term.field == "summary":
            return f"S({p}, e)"
        if term.field == "source":
            return f"P[{p}] in e[2].hay"
        return f"P[{p}] in e[4]"  # link

    def helpers(self) -> dict[str, object]:
        """The functions generated tests call: is pattern ``p`` in the title (T),
        in the summary (S); does NEAR spec ``k`` hold (N)."""
        patterns, nears = self.patterns, self.nears  # complete by the time a test runs

        def in_title(p: int, e: _View) -> bool:
            return e[0].find(patterns[p], 0, e[1]) >= 0

        def in_summary(p: int, e: _View) -> bool:
            return e[0].find(patterns[p], e[1]) >= 0

        def near(k: int, e: _View) -> bool:
            spec = nears[k]
            hay, cut, feed = e[0], e[1], e[2]
            regions = {
                "title": (hay, 0, cut),
                "summary": (hay, cut + 1, len(hay)),
                "source": (feed.hay, 0, len(feed.hay)),
            }
            for field in spec.fields:
                text, start, end = regions[field]
                lefts = _word_positions(text, spec.left, start, end)
                if not lefts:
                    continue
                rights = _word_positions(text, spec.right, start, end)
                for left in lefts:
                    for right in rights:
                        gap = max(
                            right - (left + spec.left_words), left - (right + spec.right_words)
                        )
                        if 0 <= gap <= spec.distance:  # < 0: one occurrence for both sides
                            return True
            return False

        return {"P": patterns, "T": in_title, "S": in_summary, "N": near}


def _evaluated_in_c(u: set[int], h: str, e: _View) -> bool:
    raise AssertionError("a matcher on the C core has no Python tests")


def _compile_lambdas(sources: list[str], helpers: dict[str, object]) -> list[Test]:
    """Compile many lambda expressions with one call to the compiler per chunk."""
    tests: list[Test] = []
    namespace: dict[str, object] = {"__builtins__": {}, **helpers}
    for start in range(0, len(sources), 1000):
        chunk = sources[start : start + 1000]
        tests.extend(eval("(" + ",\n".join(chunk) + ",)", namespace))  # noqa: S307
    return tests


def _condition(watchlist: Watchlist) -> Node | None:
    """The watchlist's validated condition, or None (logged) if it cannot be matched."""
    try:
        node = condition(
            all=watchlist.all, any=watchlist.any, none=watchlist.none, query=watchlist.query
        )
    except QueryError as exc:
        _skip(watchlist, f"{exc.message} (at offset {exc.offset})")
        return None
    if node is None:
        _skip(watchlist, "no terms")
    elif _depth(node) > MAX_DEPTH + 4:  # only trees built by hand get this deep
        _skip(watchlist, "condition nests too deeply")
    else:
        return node
    return None


def _skip(watchlist: Watchlist, reason: str) -> None:
    logger.warning(
        "watchlist.skipped watchlist=%s path=%s line=%s error=%s",
        watchlist.name,
        watchlist.path,
        watchlist.query_line or watchlist.line,
        reason,
    )


def _depth(node: Node) -> int:
    if isinstance(node, (Term, Near)):
        return 1
    if isinstance(node, Not):
        return 1 + _depth(node.child)
    return 1 + max(_depth(child) for child in node.children)


def _positive_terms(node: Node, positive: bool = True) -> Iterator[Term]:
    """Terms whose presence can help ``node`` hold (not under an odd number of NOTs)."""
    if isinstance(node, Term):
        if positive:
            yield node
    elif isinstance(node, Near):
        if positive:
            yield node.left
            yield node.right
    elif isinstance(node, Not):
        yield from _positive_terms(node.child, not positive)
    else:
        for child in node.children:
            yield from _positive_terms(child, positive)


Cover = tuple[float, tuple[Term, ...]]


def _cover(node: Node, value: bool, cost: Callable[[Term], float]) -> Cover | None:
    """The cheapest set of terms one of which must occur whenever ``node``
    evaluates to ``value``; None if ``node`` can be ``value`` with no term present."""
    if isinstance(node, Term):
        return (cost(node), (node,)) if value else None
    if isinstance(node, Near):
        if not value:
            return None
        return min(((cost(t), (t,)) for t in (node.left, node.right)), key=_cover_cost)
    if isinstance(node, Not):
        return _cover(node.child, not value, cost)
    covers = [_cover(child, value, cost) for child in node.children]
    if isinstance(node, And) == value:
        # Every child must have this value: one child's cover will do.
        options = [c for c in covers if c is not None]
        return min(options, key=_cover_cost) if options else None
    # Some child has this value: every child's cover is needed.
    if any(c is None for c in covers):
        return None
    return (
        sum(c[0] for c in covers if c is not None),
        tuple(chain.from_iterable(c[1] for c in covers if c is not None)),
    )


def _cover_cost(cover: Cover) -> float:
    return cover[0]
