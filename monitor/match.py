"""Compiled matcher: entries x watchlists -> matches (pure).

Matching one entry against 10,000 watchlists one by one would cost 10,000
evaluations per entry; almost all of them fail. So the work is split into a
part that does not grow with the number of watchlists and a part that only
touches the few watchlists that could match.

At compile time (:meth:`Matcher.compile`):

1. Each watchlist's condition (``query.condition``: its lists AND its query) is
   parsed and validated. A watchlist that fails is logged and skipped; it never
   stops the others.
2. Every term becomes a *pattern* over the token string of a field: ``" korea "``
   for a word, ``" north korea "`` for a phrase, ``" north kor"`` for a prefix.
   The leading and trailing spaces make the match land on word boundaries. A
   ``link:`` term's pattern is its plain substring. Equal patterns of different
   watchlists share one id, and all of them go into ONE Aho-Corasick automaton.
3. Each watchlist picks a few *trigger* patterns: a set that must contain a hit
   whenever the watchlist matches (for ``a AND (b OR c)``: ``{a}`` or ``{b, c}``;
   terms under NOT never qualify). Of the possible sets it takes the one whose
   patterns are shared by the fewest watchlists, a stand-in for "rare", so a
   common word does not make every watchlist that mentions it a candidate.
   ``query.validate`` guarantees every watchlist has such a set.
4. Each condition becomes a Python expression over integers (``7 in u and not
   9 in u``), compiled with all others in one go. The generated source contains
   only pattern ids, fixed operators and method names, never query text.

Per entry (:meth:`Matcher.match`):

1. Title and summary are tokenised once (``text.token_string``) into
   ``" title words | summary words "``; the ``|`` stops a phrase from running from
   the title into the summary.
2. One Aho-Corasick pass gives the set of pattern ids that occur (``u``).
3. The trigger index turns hit patterns into candidate watchlists; usually none.
4. Only candidates are evaluated. Field scopes, NEAR distances and the order of
   matched terms need positions; those are found afterwards with ``str.find``
   on the same string, only for the candidate that asks.

``source:`` terms run over the feed name (cached per feed), ``link:`` terms over
the link's host and path; both through the same automaton.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import ahocorasick  # type: ignore[import-not-found]  # pyahocorasick ships no stubs

from monitor.errors import QueryError
from monitor.query import MAX_DEPTH, And, Near, Node, Not, Term, condition, terms
from monitor.text import normalize, token_string
from monitor.types import Entry, Match, Watchlist

__all__ = ["Matcher"]

logger = logging.getLogger(__name__)

# Where a pattern is looked for. Unscoped terms (None) look in title and summary.
_CHANNEL = {None: "text", "title": "text", "summary": "text", "source": "source", "link": "link"}
_NEAR_FIELDS = {
    None: ("title", "summary"),
    "title": ("title",),
    "summary": ("summary",),
    "source": ("source",),
}
_EMPTY: frozenset[int] = frozenset()
_second = itemgetter(1)
_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?(?://(?:[^@/?#]*@)?([^/?#:]*)(?::\d*)?)?([^?#]*)")

Test = Callable[[set[int], "_Context"], bool]


@dataclass(frozen=True, slots=True)
class _NearSpec:
    left: str  # pattern
    left_words: int
    right: str
    right_words: int
    distance: int
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Shown:
    """A term that, if present, is reported in Match.terms."""

    field: str | None
    pattern: int
    text: str


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    feeds: frozenset[str] | None
    test: Test
    shown: tuple[_Shown, ...]


class Matcher:
    """Matches entries against a fixed set of watchlists. Build with :meth:`compile`."""

    __slots__ = (
        "_compiled",
        "_feed_cache",
        "_has_link",
        "_has_source",
        "_iter",
        "_link_keys",
        "_link_triggers",
        "_nears",
        "_patterns",
        "_source_keys",
        "_source_triggers",
        "_text_keys",
        "_text_triggers",
    )

    def __init__(
        self,
        *,
        compiled: tuple[_Compiled, ...],
        patterns: tuple[str, ...],
        nears: tuple[_NearSpec, ...],
        triggers: dict[str, dict[int, tuple[int, ...]]],
        channels: frozenset[str],
    ) -> None:
        self._compiled = compiled
        self._patterns = patterns
        self._nears = nears
        self._text_triggers = triggers["text"]
        self._source_triggers = triggers["source"]
        self._link_triggers = triggers["link"]
        self._text_keys = frozenset(self._text_triggers)
        self._source_keys = frozenset(self._source_triggers)
        self._link_keys = frozenset(self._link_triggers)
        # Feed names and links are only looked at if some term is scoped to them.
        self._has_source = "source" in channels
        self._has_link = "link" in channels
        # Feed name -> (pattern ids found in it, its token string); feeds are few.
        self._feed_cache: dict[str, tuple[frozenset[int], str]] = {}
        automaton = ahocorasick.Automaton()
        for pattern_id, pattern in enumerate(patterns):
            automaton.add_word(pattern, pattern_id)
        if patterns:
            automaton.make_automaton()
            self._iter: Callable[[str], Iterator[tuple[int, int]]] = automaton.iter
        else:
            self._iter = _no_hits

    @classmethod
    def compile(cls, watchlists: Iterable[Watchlist]) -> Matcher:
        """Compile ``watchlists``; those whose condition is invalid or empty are
        logged and skipped."""
        return _Compiler().build(cls, watchlists)

    def __len__(self) -> int:
        return len(self._compiled)

    def match(self, entry: Entry) -> list[Match]:
        """The watchlists ``entry`` satisfies, in compile order."""
        title = token_string(entry.title)
        hay = f" {title} | {token_string(entry.summary)} "
        hits = set(map(_second, self._iter(hay)))
        candidates = _triggered(self._text_triggers, hits & self._text_keys)
        source_hits, source_hay = _EMPTY, ""
        if self._has_source:
            source_hits, source_hay = self._feed(entry.feed)
            candidates |= _triggered(self._source_triggers, source_hits & self._source_keys)
        link_hits, link_hay = _EMPTY, ""
        if self._has_link:
            link_hay = _link_text(entry.link)
            link_hits = frozenset(map(_second, self._iter(link_hay)))
            candidates |= _triggered(self._link_triggers, link_hits & self._link_keys)
        if not candidates:
            return []
        context = _Context(self, hay, len(title) + 2, source_hits, source_hay, link_hits, link_hay)
        matches = []
        compiled = self._compiled
        feed = entry.feed
        for index in sorted(candidates):
            watchlist = compiled[index]
            if watchlist.feeds is not None and feed not in watchlist.feeds:
                continue
            if watchlist.test(hits, context):
                terms = context.shown(watchlist.shown)
                matches.append(Match(watchlist=watchlist.name, entry=entry, terms=terms))
        return matches

    def _feed(self, feed: str) -> tuple[frozenset[int], str]:
        cached = self._feed_cache.get(feed)
        if cached is None:
            hay = f" {token_string(feed)} "
            cached = self._feed_cache[feed] = (frozenset(map(_second, self._iter(hay))), hay)
        return cached


def _triggered(triggers: dict[int, tuple[int, ...]], found: AbstractSet[int]) -> set[int]:
    return set(chain.from_iterable(map(triggers.__getitem__, found)))


def _no_hits(text: str) -> Iterator[tuple[int, int]]:
    return iter(())


def _link_text(link: str) -> str:
    """The host and path of ``link``, normalised, for ``link:`` substrings."""
    m = _URL.match(link.strip())
    host, path = (m.group(1) or "", m.group(2) or "") if m else ("", link)
    return "".join(normalize(host + path).split())


class _Context:
    """One entry, as the generated tests of candidate watchlists see it."""

    __slots__ = ("cut", "hay", "link", "link_hay", "matcher", "source", "source_hay")

    def __init__(
        self,
        matcher: Matcher,
        hay: str,
        cut: int,
        source: frozenset[int],
        source_hay: str,
        link: frozenset[int],
        link_hay: str,
    ) -> None:
        self.matcher = matcher
        self.hay = hay  # " title | summary "
        self.cut = cut  # index of the "|"
        self.source = source
        self.source_hay = source_hay
        self.link = link
        self.link_hay = link_hay

    def title(self, pattern: int) -> bool:
        return self.hay.find(self.matcher._patterns[pattern], 0, self.cut) >= 0

    def summary(self, pattern: int) -> bool:
        return self.hay.find(self.matcher._patterns[pattern], self.cut) >= 0

    def near(self, index: int) -> bool:
        spec = self.matcher._nears[index]
        for field in spec.fields:
            hay, start, end = self._region(field)
            lefts = _word_positions(hay, spec.left, start, end)
            if not lefts:
                continue
            rights = _word_positions(hay, spec.right, start, end)
            for left in lefts:
                for right in rights:
                    gap = max(right - (left + spec.left_words), left - (right + spec.right_words))
                    if gap <= spec.distance:
                        return True
        return False

    def _region(self, field: str) -> tuple[str, int, int]:
        if field == "title":
            return self.hay, 0, self.cut
        if field == "summary":
            return self.hay, self.cut + 1, len(self.hay)
        return self.source_hay, 0, len(self.source_hay)

    def shown(self, shown: tuple[_Shown, ...]) -> tuple[str, ...]:
        """Source texts of the present terms, in order of first occurrence."""
        found: list[tuple[int, int, str]] = []
        for order, term in enumerate(shown):
            position = self._position(term.field, term.pattern)
            if position >= 0:
                found.append((position, order, term.text))
        found.sort()
        return tuple(dict.fromkeys(text for _, _, text in found))

    def _position(self, field: str | None, pattern_id: int) -> int:
        pattern = self.matcher._patterns[pattern_id]
        if field is None:
            return self.hay.find(pattern)
        if field == "title":
            return self.hay.find(pattern, 0, self.cut)
        if field == "summary":
            return self.hay.find(pattern, self.cut)
        offset = len(self.hay)
        if field == "source":
            found = self.source_hay.find(pattern)
        else:
            offset += len(self.source_hay)
            found = self.link_hay.find(pattern)
        return found + offset if found >= 0 else -1


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
        self.nears: list[_NearSpec] = []
        self.near_ids: dict[_NearSpec, int] = {}

    def build(self, cls: type[Matcher], watchlists: Iterable[Watchlist]) -> Matcher:
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
        sources = [f"lambda u, e: {self.expression(node)}" for _, node in accepted]
        tests = _compile_lambdas(sources)
        triggers: dict[str, dict[int, list[int]]] = {"text": {}, "source": {}, "link": {}}
        compiled = []
        for index, ((watchlist, node), test) in enumerate(zip(accepted, tests, strict=True)):
            cover = _cover(node, True, lambda term: self.cost(term, usage))
            assert cover is not None, "query.validate lets no trigger-less condition through"
            for channel, pattern_id in {self.key(term) for term in cover[1]}:
                triggers[channel].setdefault(pattern_id, []).append(index)
            shown = tuple(
                _Shown(term.field, self.key(term)[1], term.source_text)
                for term in dict.fromkeys(_positive_terms(node))
            )
            compiled.append(_Compiled(watchlist.name, watchlist.feeds, test, shown))
        patterns = tuple(self.pattern_ids)
        channels = frozenset(_CHANNEL[term.field] for _, node in accepted for term in terms(node))
        logger.debug("matcher_compiled watchlists=%d patterns=%d", len(compiled), len(patterns))
        return cls(
            compiled=tuple(compiled),
            patterns=patterns,
            nears=tuple(self.nears),
            triggers={
                channel: {p: tuple(ids) for p, ids in table.items()}
                for channel, table in triggers.items()
            },
            channels=channels,
        )

    def key(self, term: Term) -> tuple[str, int]:
        pattern = _pattern(term)
        pattern_id = self.pattern_ids.setdefault(pattern, len(self.pattern_ids))
        return _CHANNEL[term.field], pattern_id

    def cost(self, term: Term, usage: dict[tuple[str, int], int]) -> float:
        """How bad a trigger ``term`` would be. A pattern that many watchlists
        share is probably a common word; prefixes hit more often than words,
        phrases less often."""
        count = usage.get(self.key(term), 1)
        return count * (2.0 if term.prefix else 1.0) / len(term.words)

    def expression(self, node: Node) -> str:
        """Python source for ``node`` over ``u`` (pattern ids in title or
        summary) and ``e`` (a _Context)."""
        if isinstance(node, Term):
            return self.term_expression(node)
        if isinstance(node, Near):
            spec = _NearSpec(
                _pattern(node.left),
                len(node.left.words),
                _pattern(node.right),
                len(node.right.words),
                node.distance,
                tuple(
                    f for f in _NEAR_FIELDS[node.left.field] if f in _NEAR_FIELDS[node.right.field]
                ),
            )
            index = self.near_ids.setdefault(spec, len(self.nears))
            if index == len(self.nears):
                self.nears.append(spec)
            left, right = self.term_expression(node.left), self.term_expression(node.right)
            return f"({left} and {right} and e.near({index}))"
        if isinstance(node, Not):
            return f"not {self.expression(node.child)}"
        # Cheap set look-ups first, method calls (fields, NEAR) last.
        children = sorted(node.children, key=_expensive)
        operator = " and " if isinstance(node, And) else " or "
        return "(" + operator.join(self.expression(child) for child in children) + ")"

    def term_expression(self, term: Term) -> str:
        _, p = self.key(term)
        if term.field is None:
            return f"{p} in u"
        if term.field in ("title", "summary"):
            return f"({p} in u and e.{term.field}({p}))"
        return f"{p} in e.{term.field}"


def _expensive(node: Node) -> bool:
    return not (isinstance(node, Term) and node.field is None)


def _compile_lambdas(sources: list[str]) -> list[Test]:
    """Compile many lambda expressions with one call to the compiler per chunk."""
    tests: list[Test] = []
    namespace: dict[str, object] = {"__builtins__": {}}
    for start in range(0, len(sources), 1000):
        chunk = sources[start : start + 1000]
        tests.extend(eval("(" + ",\n".join(chunk) + ",)", namespace))  # noqa: S307
    return tests


def _condition(watchlist: Watchlist) -> Node | None:
    try:
        node = condition(
            all=watchlist.all, any=watchlist.any, none=watchlist.none, query=watchlist.query
        )
    except QueryError as exc:
        logger.warning(
            "watchlist_skipped watchlist=%s path=%s line=%s offset=%d error=%s",
            watchlist.name,
            watchlist.path,
            watchlist.query_line or watchlist.line,
            exc.offset,
            exc.message,
        )
        return None
    if node is None:
        logger.warning(
            "watchlist_skipped watchlist=%s path=%s line=%s error=%s",
            watchlist.name,
            watchlist.path,
            watchlist.line,
            "no terms",
        )
        return None
    if _depth(node) > MAX_DEPTH + 4:
        logger.warning(
            "watchlist_skipped watchlist=%s path=%s line=%s error=%s",
            watchlist.name,
            watchlist.path,
            watchlist.line,
            "condition nests too deeply",
        )
        return None
    return node


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
