"""Near-duplicate story clustering across outlets (pure).

Issue #4: the team wants one alert per *story*, not one per outlet. Two things
decide that an entry belongs to a story already alerted on, and a third keeps
different events apart:

1. **Identity.** Two entries with the same canonical URL
   (:func:`monitor.urls.canonical_url`) are the same story, full stop.
2. **Similarity.** Different outlets write different headlines for one event.
   :class:`StoryIndex` keeps the story clusters of the last ``window`` and
   scores a new entry against them lexically: TF-IDF cosine to each story's
   centroid, plus a count of the separate rare *concepts* (a name, a place,
   an event noun; "North Korea" is one concept, not two words) the entry
   shares with the story.
3. **What happened, not who is named** (issue #11). Every match of a
   "North Korea AND Ukraine" watchlist shares those names, so they are no
   evidence that two matches report one event: the entry's *subject* (its
   matched terms, and words most of its watchlists' matches hold) is taken
   out of the comparison. Distinctive content on both sides (different
   numbers; an entry lacking what a story's headlines agree on) raises the
   bar, and so does the gap in publication time: reports of one event come
   within hours, and entries published ``window`` apart never join.

A false merge hides a story from the team, which is worse than a second alert
for the same story, so every choice below leans towards *not* merging when
in doubt.

Nothing here reads the clock, the environment or the disk: ``now`` and
``seen_at`` are arguments, so the service decides and this module computes.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import heapq
import itertools
import math
import re
import struct
import sys
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Union

from monitor.text import token_string
from monitor.types import Entry
from monitor.urls import canonical_url

try:  # the feature table in C (monitor/_storycore.c); _PyTable is the fallback
    from monitor import _storycore  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the install could not compile it
    _storycore = None

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector = NDArray[np.float32]
else:
    Vector = Any

#: Texts -> one unit vector each (numpy float32), e.g. :class:`monitor.embed.Embedder`.
EmbedFunction = Callable[[Sequence[str]], Sequence[Vector]]

__all__ = [
    "EmbedFunction",
    "Method",
    "DedupeSettings",
    "Join",
    "StoryIndex",
    "event_time",
    "story_id_for",
]

# --------------------------------------------------------------------------
# Story clustering
# --------------------------------------------------------------------------


class Method(enum.StrEnum):
    """How :class:`StoryIndex` decides that two entries tell the same story."""

    #: Canonical URL (and feed GUID) identity only: the baseline, about 60
    #: alerts per story on the benchmark.
    URL = "url"
    #: URL identity, then TF-IDF cosine between the entry and each story's
    #: centroid over word-prefix unigrams and bigrams (see :class:`StoryIndex`).
    TFIDF = "tfidf"
    #: URL identity, then the average sentence-embedding cosine to each story's
    #: members combined with the lexical score, then the ``tfidf`` rule. Needs an
    #: ``embed`` function (the ``semantic`` extra, :mod:`monitor.embed`).
    SEMANTIC = "semantic"


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupeSettings:
    """How stories are clustered.

    ``window``: how long a story stays open to new members after its latest
    member was seen, and how far apart in publication time two members may
    be; the bar for a join rises with that gap (see ``StoryIndex._time_bar``)
    and reaches 1 at ``window``.

    Method ``tfidf``, on the entry's TF-IDF cosine to a story's centroid once
    the entry's watchlists' subject is taken out of both (see
    :meth:`StoryIndex.decide`): ``threshold`` when the two agree on two
    separate concepts (:func:`_concepts`), ``one_concept_threshold`` on one.
    Different numbers raise the bar, and so does lacking most of what the
    story's headlines agree on, for an entry that joins on one concept
    beyond its watchlist's subject. An entry that no watchlist matched
    alerts no one, so no event can hide behind its join: it is grouped only
    to fold duplicates, without that check. Raise the
    bars for fewer false merges, lower them for fewer duplicate alerts. The
    two cases from tests/test_dedupe.py stand for the two sides: another
    outlet's report of the troops story joins; "North Korea fires ballistic
    missile" stays out of it.

    Method ``semantic`` (see :class:`StoryIndex`): an entry's score for a
    story is the average embedding cosine between the entry and the story's
    members, plus half the lexical cosine when the two share two concepts,
    less ``semantic_conflict_penalty`` when each holds a rare word the other
    lacks (``StoryIndex._conflicts``; off by default). It must reach the
    story's bar: ``semantic_threshold``, rising with the story's *tightness*
    (the average cosine between its members) to ``tightness -
    semantic_tightness_margin``, at most ``semantic_single_threshold``, which
    a one-member story asks of the average alone; higher when the two share
    nothing beyond the watchlist's subject, and with the time gap.
    ``semantic_concept_threshold``, when set lower, is the bar that is
    enough with two shared concepts. A team that would rather get a second
    alert than a wrong merge sets ``semantic_conflict_penalty: 0.08`` and
    ``semantic_threshold: 0.36``. ``bench/dedupe.py`` prints what each
    setting gives on the labelled dev sets.
    """

    window: timedelta = timedelta(hours=48)
    threshold: float = 0.06
    one_concept_threshold: float = 0.12
    semantic_threshold: float = 0.35
    semantic_concept_threshold: float | None = None
    semantic_single_threshold: float = 0.45
    semantic_tightness_margin: float = 0.30
    semantic_conflict_penalty: float = 0.0
    method: Method = Method.TFIDF

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")
        for name in ("threshold", "one_concept_threshold", "semantic_threshold",
                     "semantic_concept_threshold", "semantic_single_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        for name in ("semantic_conflict_penalty", "semantic_tightness_margin"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        # Accept the plain string from a config file; Method() raises ValueError on a typo.
        object.__setattr__(self, "method", Method(self.method))


def story_id_for(entry: Entry) -> str:
    """A fresh, deterministic id for a story that ``entry`` opens.

    A hash of the entry's canonical URL (else its feed and key), so running
    the same input twice names the same stories, and an article that comes
    back after its story expired gets its old id back (and so no new alert).
    """
    identity = entry.canonical_url or f"{entry.feed}\0{entry.key}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# Function words and headline boilerplate that say nothing about which story
# an entry tells. Online IDF would learn most of these on a long stream; the
# list keeps the first minutes after a start (and small feeds) from treating
# "what" or "update" as evidence.
_STOPWORDS = frozenset(
    """
    a about above after again against all also am among an and any are as at be because been
    before being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only onto or other our
    ours out over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up upon very was we were what when where
    which while who whom why will with would you your yours yet via vs amid
    s t ll re ve d m
    says said say tells told report reports reported according
    new update updated updates breaking live video videos photo photos watch exclusive
    """.split()
)

_PREFIX = 5  # words are compared by their first five letters: troops~troop, korean~korea
_SUMMARY_WEIGHT = 0.5  # a summary word is weaker evidence than a headline word
# A word pair at full weight counts a two-word name three times ("north", "korea",
# "north korea"), enough to merge any two stories about North Korea; at half weight
# it still tells "american eagle" from "american airlines".
_PAIR_WEIGHT = 0.5
_SUMMARY_SENTENCES = 2
_SUMMARY_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_IDF_PRIOR = 50  # pseudo-documents: keeps IDF flat (uninformative) while the index is nearly empty
_POSTING_LIMIT = 64  # a feature in more stories than this is too common to propose candidates
_CANDIDATES = 128  # rarest features first, until this many stories are proposed
_SHORTLIST = 16  # candidates that also get the common features' share of the score
_RARE = 0.02  # a word held by more of the window's entries is no concept (see _concepts)
# ...but a word in so few entries is no evidence that it is everywhere: in a small
# index (a quiet day, a handful of feeds) 2% is less than one entry.
_RARE_MIN = 4
_GATED = 4  # best candidates above the threshold that are checked for shared concepts
# A word in at least this share of a watchlist's matches in the window (counted
# with _TOPIC_PRIOR pseudo-matches that lack it, so a watchlist's first few
# matches discount nothing but their own matched terms) is the watchlist's
# subject, not evidence of which event a match reports.
_TOPIC_SHARE = 0.5
_TOPIC_PRIOR = 4
# A join whose score clears its bar by less than this share of the bar is weak:
# it is shown to the team as "possibly the same story" rather than folded silently.
_WEAK_MARGIN = 0.35
# Method semantic: a join on words alone, once the model found no story, needs this
# TF-IDF cosine (near-copies the model reads differently, not a shared name).
_FALLBACK = 0.3
# ...and for an entry no watchlist matched (it alerts no one, see _most_similar),
# this: chosen on the UCI dev set (bench/dedupe.py), where 0.3 keeps a story's
# side angles apart.
_FALLBACK_UNWATCHED = 0.15
_STRONG = 3  # ...and so is one resting on fewer shared words than this
# Different numbers on both sides ("1,500 troops" vs "3,000 troops") raise the
# bar this share of the way to 1: two counts of one event rarely disagree.
_CONFLICT = 0.3
# Method semantic: the bar rises by this when the entry and the story share no
# concept beyond the watchlist's subject (the embedding reads the names too).
_SUBJECT_ONLY = 0.1
# How the bar rises with the time gap g between an entry and a story, as
# (g / window) ** _GAP_POWER of the way to 1: slowly for the hours in which
# one event is reported, steeply towards the window's end.
_GAP_POWER = 1.5
# Publication times before this, or more than _FUTURE after the entry was seen,
# are not believed: the entry is dated when it was seen.
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_FUTURE = timedelta(days=1)
_SEMANTIC_CANDIDATES = 6  # stories with the best average embedding cosine that are scored
_SEMANTIC_CONCEPTS = 2.0  # concepts an entry needs to join at semantic_concept_threshold
# Weight of the lexical TF-IDF cosine in method semantic's score: names shared
# in rare words add to the embedding's sense of the topic.
_LEXICAL_WEIGHT = 0.5
_CORE = 0.5  # a word held by this share of a story's members is part of its core (_conflicts)
_CORE_MIN = 3  # members a story needs before it has a core
_EMBED_CACHE = 1024  # embeddings of entries not (yet) added, kept for add() and prepare()
# Wire boilerplate that moves a headline's embedding without saying anything
# about the story: "UPDATE 2-...", a title cut short with "...".
_EMBED_PREFIX = re.compile(r"^(?:update|refile|corrected)\s*\d*\s*[-:]\s*", re.IGNORECASE)
_EMBED_SUFFIX = re.compile(r"\s*(?:\.\.\.|\u2026)\s*$")


def _words(text: str) -> list[str]:
    """Content words of ``text``; ASCII words cut to their first ``_PREFIX`` letters,
    a crude stemmer that needs no dictionary and no language detection."""
    # token_string is tokenize's words joined by spaces (tests/test_text.py), faster.
    core = _storycore
    if core is None:
        return _filter_words(token_string(text).split())
    words: list[str] | None = core.ascii_words(text, _STOPWORDS, _PREFIX)
    if words is None:  # not ASCII: Python's Unicode tables tokenize it
        words = core.words(token_string(text).split(), _STOPWORDS, _PREFIX)
    return words


def _filter_words(tokens: list[str]) -> list[str]:
    """:func:`_words` of a text's tokens (monitor/_storycore.c's ``words`` in C)."""
    out = []
    for token in tokens:
        if token in _STOPWORDS:
            continue
        if len(token) == 1 and not token.isalnum():
            continue
        if len(token) == 1 and token.isascii():
            continue  # stray letters and digits: "jos. a. bank", "update 2-"
        if token.isalpha() and token.isascii():
            token = token[:_PREFIX]
        out.append(token)
    return out


def _features(entry: Entry) -> tuple[dict[str, float], tuple[tuple[str, ...], ...]]:
    """Weighted lexical features of an entry: words and adjacent word pairs.

    Pairs ("north korea", "jc penney", "american eagle") are what tell two
    stories sharing a common word apart. The summary's first sentences count
    at half weight: they add the names a short headline leaves out, but
    outlets that only repeat the headline must not outweigh it.
    """
    texts = _texts(entry)
    return _grams(texts), texts


def _texts(entry: Entry) -> tuple[tuple[str, ...], ...]:
    """:func:`_features`' words of an entry: its title's, then its summary's."""
    summary = entry.summary.strip()
    if not summary:
        return (tuple(_words(entry.title)),)
    return tuple(_words(entry.title)), tuple(_words(_summary_head(summary)))


def _summary_head(summary: str) -> str:
    """What :func:`_features` reads of a summary: its first ``_SUMMARY_SENTENCES``
    sentences, cut to ``_SUMMARY_CHARS``."""
    head = summary[:_SUMMARY_CHARS]
    # Where no sentence ends in what is kept (CJK, a long first sentence), splitting
    # would only scan the rest of the summary for one.
    if "." in head or "!" in head or "?" in head:
        sentences = _SENTENCE_END.split(summary, maxsplit=_SUMMARY_SENTENCES)
        head = " ".join(sentences[:_SUMMARY_SENTENCES])[:_SUMMARY_CHARS]
    return head


_TEXT_WEIGHTS = (1.0, _SUMMARY_WEIGHT)  # of a title's words, a summary's


def _grams(texts: Sequence[Sequence[str]], weights: Sequence[float] = _TEXT_WEIGHTS,
           pair_weight: float = _PAIR_WEIGHT) -> dict[str, float]:
    """:func:`_features`' weighted words and pairs of an entry's words (its title's,
    then its summary's): each at the highest weight it has."""
    feats: dict[str, float] = {}
    get = feats.get
    for words, weight in zip(texts, weights, strict=False):
        for word in words:
            if get(word, 0.0) < weight:
                feats[word] = weight
        weight_of_pair = weight * pair_weight
        for a, b in zip(words, words[1:], strict=False):
            pair = f"{a} {b}"
            if get(pair, 0.0) < weight_of_pair:
                feats[pair] = weight_of_pair
    return feats


def _grams_fast(texts: Sequence[Sequence[str]]) -> dict[str, float]:
    """:func:`_grams`, in C where it is built (monitor/_storycore.c's ``grams``)."""
    if _storycore is None:
        return _grams(texts)
    grams: dict[str, float] = _storycore.grams(texts, _TEXT_WEIGHTS, _PAIR_WEIGHT)
    return grams


def _held_features(title: Sequence[str], grams: Iterable[str]) -> tuple[str, ...]:
    """The features a member holds, in the order of its weights: its headline's
    distinct words first (every one is a feature), then the rest of ``grams``
    (:func:`_grams`' keys) in their order."""
    return tuple(dict.fromkeys(itertools.chain(title, grams)))


def _concepts(
    texts: tuple[tuple[str, ...], ...], held: Container[str], common: Container[str] = (),
    titled: Container[str] | None = None,
) -> float:
    """How many separate things an entry (title first, then summary) and a story agree on.

    A word the story also holds is a shared word; two shared words next to
    each other whose pair the story also holds ("north korea") are one
    concept, not two. So "North Korea fires ballistic missile" and "North
    Korean troops to Ukraine" agree on one concept; "Men's Wearhouse to buy
    Jos. A. Bank" and "Jos A. Bank, Men's Wearhouse cut a deal" on two. A
    concept only the entry's summary shares counts half: summaries run
    longer and wander (the missile report's "South Korea's military said"
    meets the troops report's "military training"). Words in ``common`` (held
    by too many entries this week to say which event) are not shared words.
    With ``titled`` (the words in the story's headlines), a concept counts in
    full only where it is in a headline on both sides.
    """
    parent: dict[str, str] = {}

    def find(word: str) -> str:
        while parent[word] != word:
            parent[word] = parent[parent[word]]
            word = parent[word]
        return word

    for words in texts:
        prev = None
        for word in words:
            if word not in held or word in common:
                prev = None
                continue
            parent.setdefault(word, word)
            if prev is not None and f"{prev} {word}" in held:
                parent[find(word)] = find(prev)
            prev = word
    roots = {find(word) for word in parent}
    in_title = {find(word) for word in (texts[0] if texts else ())
                if word in parent and (titled is None or word in titled)}
    return len(in_title) + 0.5 * len(roots - in_title)


def _without(vector: dict[str, float], subject: frozenset[str]) -> dict[str, float]:
    """``vector`` without the features that hold a ``subject`` word, unit length again."""
    if _storycore is not None:  # the same in C
        unit: dict[str, float] = _storycore.without(vector, subject)
        return unit
    kept = {f: w for f, w in vector.items()
            if f not in subject and (" " not in f or subject.isdisjoint(f.split(" ")))}
    norm = math.sqrt(sum(w * w for w in kept.values()))
    return {f: w / norm for f, w in kept.items()} if norm > 0.0 else {}


def _numbers(texts: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """The numbers in an entry's headline ("1,500" -> 500; "000" and one digit say little)."""
    return frozenset(_headline_numbers(texts[0] if texts else ()))


def _headline_numbers(title: Iterable[str]) -> list[str]:
    """The words of ``title`` that are numbers worth comparing (see :func:`_numbers`)."""
    return [w for w in filter(str.isdigit, title) if w.strip("0")]


def _numbers_conflict(numbers: frozenset[str], story: _Story, held: Container[str]) -> bool:
    """Whether the entry's headline has a number the story lacks (not in ``held``, its
    features) while at least half the story's members share one the entry lacks."""
    if all(n in held for n in numbers):  # also: no numbers at all
        return False
    return any(n not in numbers for n in story.agreed_numbers())


def _misses_core(texts: tuple[tuple[str, ...], ...], story: _Story,
                 common: Container[str]) -> bool:
    """Whether the entry lacks most of what a story's members agree on: the headline
    words (not ``common``) that more than half of its members hold, for a story of two
    or more. Sharing "North Korea" with three troops headlines, and none of
    "thousands", "troops" or "frontline", is a different event about the same name."""
    if story.size < 2:
        return False
    core = [f for f in story.core() if f not in common]
    if not core:
        return False
    have = {w for words in texts for w in words}
    return 2 * sum(1 for f in core if f in have) < len(core)


def _shared_words(texts: tuple[tuple[str, ...], ...], held: Container[str],
                  common: Container[str]) -> tuple[str, ...]:
    """The words the entry shares with a story that count as evidence, in order."""
    return tuple(dict.fromkeys(
        w for words in texts for w in words if w in held and w not in common))


def _embed_text(entry: Entry) -> str:
    """What is embedded for an entry: its headline without wire boilerplate.

    The summary is left out on purpose: summaries run longer and wander, and
    an entry with one would score lower against a story of bare headlines
    than the same headline without. It still counts through the lexical
    concepts and the ``tfidf`` rule that back the embedding up.
    """
    title = _EMBED_SUFFIX.sub("", _EMBED_PREFIX.sub("", entry.title.strip()))
    return title or entry.title.strip()


_Prepared = tuple[dict[str, float], tuple[tuple[str, ...], ...]]  # unit vector, words per text


def event_time(entry: Entry, seen_at: datetime) -> datetime:
    """When the event an entry reports happened, as far as grouping can tell:
    its publication time, or ``seen_at`` when the feed gives none or one that
    cannot be right (before 1990, or more than a day after it was seen)."""
    published = entry.published
    if published is None or published < _EARLIEST or published > seen_at + _FUTURE:
        return seen_at
    return published


def term_words(terms: Iterable[str]) -> frozenset[str]:
    """The words of matched watchlist terms as grouping compares them
    (``"North Korea*"`` -> north, korea; ``Ukrain*`` -> ukrai; ``title:Kim`` -> kim)."""
    out: set[str] = set()
    for term in terms:
        field_name, colon, rest = term.partition(":")
        text = rest if colon and " " not in field_name else term
        out.update(_words(text.replace("*", " ")))
    return frozenset(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Join:
    """What :meth:`StoryIndex.decide` found for an entry.

    ``story_id`` is None for a new story. ``score`` is the best score seen
    (that of the story joined, if any) and ``bar`` what that story asked of
    it, after the time gap raised it. ``evidence`` is the words the entry and
    the story share that counted (watchlist subjects and words that are
    everywhere do not). ``weak`` marks a join that cleared its bar narrowly:
    the team is shown it as "possibly the same story". ``how`` says which
    rule decided: "url", "entry", "tfidf", "semantic" or "" for a new story.
    """

    story_id: str | None
    score: float = 0.0
    bar: float = 0.0
    evidence: tuple[str, ...] = ()
    weak: bool = False
    how: str = ""


# What the index holds per entry is what bounds its memory (bench/dedupe.py measures
# it), so a member keeps numbers where it can. Identities are the process's own
# 64-bit hashes of (feed, key) and of the canonical URL: the index lives and dies
# with the process, and two of the window's entries sharing a hash by chance is
# about as likely as a cosmic-ray bit flip.
_TIMES = struct.Struct("=dd")


@dataclass(slots=True, kw_only=True, eq=False)
class _Member:
    ident: int  # _ident(entry)
    story_id: str
    url: int  # hash of the canonical URL, 0 without one
    # When it was seen and its event_time(), as POSIX timestamps (_TIMES), then its
    # unit vector's weights as float32, IDF as it was when the member was added, in
    # the order of its features: the same rounded weights go in and come out of the
    # centroids, so expiry leaves no drift. One bytes object, a third the size of
    # two floats and an array.
    packed: bytes
    # Its words (interned): the headline's, then the summary's, as _features read them.
    # Its features (words and pairs) are made from them again when needed, rather than
    # held: the pairs are most of the window's distinct strings.
    words: tuple[str, ...]
    n_title: int  # words[:n_title] are the headline's
    topics: tuple[str, ...] = ()  # watchlists it matched
    embedding: Vector | None = None  # method semantic: unit sentence embedding

    @property
    def seen(self) -> float:
        return float(_TIMES.unpack_from(self.packed)[0])

    @property
    def at(self) -> float:
        return float(_TIMES.unpack_from(self.packed)[1])

    @property
    def weights(self) -> memoryview[float]:
        return memoryview(self.packed)[_TIMES.size :].cast("f")

    @property
    def features(self) -> tuple[str, ...]:
        if len(self.packed) == _TIMES.size:  # no weights: no features
            return ()
        title = self.words[: self.n_title]
        return _held_features(title, _grams_fast((title, self.words[self.n_title :])))

    @property
    def title(self) -> tuple[str, ...]:
        """Its headline's distinct words."""
        return tuple(dict.fromkeys(self.words[: self.n_title]))


def _ident(entry: Entry) -> int:
    return hash((entry.feed, entry.key))


# float32s: an array, or a memoryview cast to "f"
_Weights = Union["array[float]", "memoryview[float]"]  # noqa: UP007 - array is not subscriptable


class _FeatureTable(Protocol):
    """What the index holds per feature: how many members hold it (its document
    count) and, per story holding it (by story number), how many of the story's
    members do and its weight in the story's centroid; and the questions asked of
    it about one entry (its vector, what it shares with a story), each one call.
    monitor/_storycore.c's ``Table`` packs it (the index's memory is mostly this);
    :class:`_PyTable` is the same in Python, step for step."""

    def __len__(self) -> int: ...
    def accumulate(self, story: int, features: tuple[str, ...],
                   weights: _Weights) -> tuple[float, float]: ...
    def withdraw(self, story: int, features: tuple[str, ...],
                 weights: _Weights) -> tuple[float, float]: ...
    def df(self, feature: str) -> int: ...
    def vector(self, texts: tuple[tuple[str, ...], ...], weights: Sequence[float],
               pair_weight: float, total: int) -> dict[str, float]: ...
    def concepts(self, story: int, texts: tuple[tuple[str, ...], ...], common: Container[str],
                 titled: Container[str] | None) -> float: ...
    def shared(self, story: int, texts: tuple[tuple[str, ...], ...],
               common: Container[str]) -> tuple[str, ...]: ...
    def holding(self, story: int, features: Iterable[str]) -> set[str]: ...
    def frequent(self, texts: tuple[tuple[str, ...], ...], limit: float) -> set[str]: ...
    def size(self, feature: str) -> int: ...
    def count(self, feature: str, story: int) -> int: ...
    def weight(self, feature: str, story: int) -> float: ...
    def weights(self, story: int, features: Iterable[str]) -> list[float]: ...
    def scores(self, vector: dict[str, float], norms: array[float], seen: array[float],
               horizon: float, posting_limit: int, candidates: int,
               shortlist: int) -> dict[int, float]: ...
    def nbytes(self) -> int: ...


@dataclass(slots=True)
class _Held:
    """How many of a story's members hold each word, and the words that more than
    half of them hold (``strict``) or at least half: kept up to date as members
    come and go, at the cost of the member's headline, not of the story's words.
    A story followed for days has thousands of members, and every entry that
    might join it asks what they agree on.

    As a member comes the size grows, so only its own words can enter; as one
    goes the bar drops by at most one member, so besides its own words only
    those held by exactly the new bar can enter (``by_count``)."""

    strict: bool
    counts: dict[str, int] = field(default_factory=dict)  # word -> members holding it
    by_count: dict[int, set[str]] = field(default_factory=dict)  # the reverse
    held: tuple[str, ...] = ()

    def _least(self, size: int) -> int:
        """The fewest members that must hold a word, of ``size``."""
        return size // 2 + 1 if self.strict else (size + 1) // 2

    def _count(self, words: Sequence[str], by: int) -> None:
        """Count each of ``words`` ``by`` (1 or -1) more members, in both maps."""
        counts, by_count = self.counts, self.by_count
        for w in words:
            n = counts.get(w, 0)
            if n:
                same = by_count[n]
                same.discard(w)
                if not same:
                    del by_count[n]
            n += by
            if n:
                counts[w] = n
                if (more := by_count.get(n)) is None:
                    by_count[n] = {w}
                else:
                    more.add(w)
            else:
                del counts[w]

    def came(self, words: Sequence[str], size: int) -> None:
        """A member holding ``words`` came; the story now has ``size`` members."""
        self._count(words, 1)
        least, counts = self._least(size), self.counts
        self.held = tuple(w for w in dict.fromkeys((*self.held, *words)) if counts[w] >= least)

    def went(self, words: Sequence[str], size: int) -> None:
        """A member holding ``words`` went; the story now has ``size`` members."""
        self._count(words, -1)
        least, counts = max(self._least(size), 1), self.counts
        entering = sorted(self.by_count.get(least, ())) if least < self._least(size + 1) else []
        self.held = tuple(w for w in dict.fromkeys((*self.held, *words, *entering))
                          if counts.get(w, 0) >= least)


@dataclass(slots=True)
class _Story:
    no: int  # its number in the feature table
    members: list[_Member] = field(default_factory=list)  # in the order added
    # |centroid|², kept up to date incrementally (its root, and when a member was last
    # seen, are in StoryIndex's arrays by story number, for the candidate loop)
    norm2: float = 0.0
    times: list[float] = field(default_factory=list)  # members' event times, sorted
    # Headline words (more than half the members hold them: the core) and headline
    # numbers (at least half): see _Held.
    titles: _Held = field(default_factory=lambda: _Held(strict=True))
    numbers: _Held = field(default_factory=lambda: _Held(strict=False))

    def came(self, title: tuple[str, ...]) -> None:
        """A member with headline words ``title`` was appended to ``members``."""
        size = self.size
        self.titles.came(title, size)
        self.numbers.came(_headline_numbers(title), size)

    def went(self, title: tuple[str, ...]) -> None:
        """A member with headline words ``title`` was taken from ``members``."""
        size = self.size
        self.titles.went(title, size)
        self.numbers.went(_headline_numbers(title), size)

    def core(self) -> tuple[str, ...]:
        """The headline words more than half the members hold."""
        return self.titles.held

    def agreed_numbers(self) -> tuple[str, ...]:
        """The headline numbers at least half the members hold."""
        return self.numbers.held

    @property
    def size(self) -> int:
        return len(self.members)

    def pairs_with(self, subject: frozenset[str]) -> list[str]:
        """Its features that are word pairs holding a ``subject`` word, in the order
        of :meth:`features`, made from its members' words alone (:func:`_grams`)."""
        if _storycore is not None:  # the same in C
            made: list[str] = _storycore.subject_pairs(
                [(m.words, m.n_title) for m in self.members], subject)
            return made
        pairs: dict[str, None] = {}
        for member in self.members:
            words = member.words
            if subject.isdisjoint(words):
                continue
            n = member.n_title
            for part in (words[:n], words[n:]):
                for a, b in zip(part, part[1:], strict=False):
                    if a in subject or b in subject:
                        pairs[f"{a} {b}"] = None
        return list(pairs)

    def features(self) -> dict[str, int]:
        """Feature -> members holding it, in the order the members came."""
        counts: dict[str, int] = {}
        for member in self.members:
            for feature in member.features:
                counts[feature] = counts.get(feature, 0) + 1
        return counts

    def gap(self, at: float) -> float:
        """Seconds from ``at`` to the nearest member's event time."""
        times = self.times
        i = bisect.bisect_left(times, at)
        best = math.inf
        if i < len(times):
            best = times[i] - at
        if i:
            best = min(best, at - times[i - 1])
        return best


class _Centroids:
    """Sum of the members' sentence embeddings per story, as rows of one matrix,
    and the number of members per story, so the average cosine between an
    entry and the members of every story held is one matrix-vector product
    (the dot product with the sum, divided by the count).

    Rows are float64 so that adding and removing members (expiry, edited
    titles) leaves no drift worth speaking of; a story's row is freed when
    its last member goes, so memory follows the window.
    """

    def __init__(self) -> None:
        import numpy  # the semantic extra brings it; the default install never gets here

        self._np = numpy
        self._rows: Any = None  # (capacity, dim) float64
        self._sizes: Any = None  # (capacity,) float64: members per row, 0 for a free row
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []  # slot -> story id
        self._free: list[int] = []

    def add(self, story_id: str, vector: Vector) -> None:
        np_ = self._np
        slot = self._slot.get(story_id)
        if slot is None:
            if self._rows is None:
                self._rows = np_.zeros((64, len(vector)), dtype=np_.float64)
                self._sizes = np_.zeros(64, dtype=np_.float64)
            if self._free:
                slot = heapq.heappop(self._free)
                self._ids[slot] = story_id
            else:
                slot = len(self._ids)
                self._ids.append(story_id)
                if slot >= len(self._rows):
                    grow = len(self._rows)
                    self._rows = np_.concatenate([self._rows, np_.zeros_like(self._rows[:grow])])
                    self._sizes = np_.concatenate([self._sizes, np_.zeros(grow)])
            self._slot[story_id] = slot
        self._rows[slot] += vector
        self._sizes[slot] += 1.0

    def remove(self, story_id: str, vector: Vector, *, last: bool) -> None:
        slot = self._slot[story_id]
        if last:
            del self._slot[story_id]
            self._ids[slot] = None
            self._rows[slot] = 0.0
            self._sizes[slot] = 0.0
            heapq.heappush(self._free, slot)
        else:
            self._rows[slot] -= vector
            self._sizes[slot] -= 1.0

    def tightness(self, story_id: str) -> float:
        """The average cosine between two different members of the story
        (0.0 for a story of one): from |sum|² = n + n(n-1) x that average."""
        slot = self._slot[story_id]
        n = float(self._sizes[slot])
        if n < 2.0:
            return 0.0
        row = self._rows[slot]
        return (float(row @ row) - n) / (n * (n - 1.0))

    def best(
        self, vector: Vector, limit: int, keep: Callable[[str], bool]
    ) -> list[tuple[float, str]]:
        """The ``limit`` stories ``keep`` accepts with the highest average cosine
        between ``vector`` and their members, best first (ties: smaller id):
        (average cosine, story id)."""
        if not self._slot:
            return []
        np_ = self._np
        used = len(self._ids)
        sizes = self._sizes[:used]
        dots = self._rows[:used] @ vector.astype(np_.float64)
        averages = np_.divide(dots, sizes, out=np_.full(used, -2.0), where=sizes > 0.0)
        wanted = limit * 4  # room for stories past the window that expire() has not dropped yet
        while True:
            if wanted < used:
                top = np_.argpartition(-averages, wanted)[:wanted]
            else:
                top = np_.arange(used)
            ranked = sorted(
                (-float(averages[slot]), ident)
                for slot in top
                if sizes[slot] > 0.0 and (ident := self._ids[slot]) is not None and keep(ident)
            )
            if len(ranked) >= limit or wanted >= used:
                break
            wanted *= 4
        return [(-score, ident) for score, ident in ranked[:limit]]


class StoryIndex:
    """The stories of the last ``window``, and which one a new entry joins.

    Deciding, not doing: the service asks :meth:`assign`, picks an id
    (:func:`story_id_for` for a new story) and records the entry with
    :meth:`add`; :meth:`expire` forgets what fell out of the window. Start-up
    rebuilds the index by calling :meth:`add` for the stored entries of the
    last ``window`` in the order they were seen, so memory is bounded by the
    window, not by the size of the store.

    How an entry is matched, cheapest and surest first:

    1. *Identity.* The same canonical URL, or the same ``(feed, key)`` (a
       GUID whose title was edited), as a member held: that member's story,
       score 1.0.
    2. *Similarity* (method ``tfidf``). The entry becomes a unit TF-IDF vector
       of word prefixes and word pairs (:func:`_features`), with IDF learned
       online from the entries held, so words that are everywhere this week
       ("stocks", "ukraine") weigh little and names that are rare weigh a lot.
       Each story keeps the sum of its members' vectors (its centroid); the
       score is the cosine between the entry and the centroid, so a big story
       is matched on the vocabulary its outlets share, not on one stray
       headline. Candidates come from an inverted index over features, rarest
       first, skipping features held by more than ``_POSTING_LIMIT`` stories
       (they only refine the scores of the best ``_SHORTLIST``), so a lookup
       costs the same with 100,000 entries held as with 1,000.
    3. *Agreement.* Going down the best ``_GATED`` candidates, the first
       that scores ``one_concept_threshold`` joins; else the first that scores
       ``threshold`` and shares two concepts with the entry (:func:`_concepts`:
       runs of shared words, a summary-only concept counting half, words held
       by more than ``_RARE`` of the window's entries, "stocks" or "china" in
       a week of market news, not counting). Ties go to the smaller id.

    Members expire one by one, ``window`` after they were seen; a story goes
    when its last member does. That keeps the index equal to what a rebuild
    from the store would give (up to IDF drift, below) and bounds memory by
    the window even for a story that runs for days.

    Known limits, measured in ``bench/dedupe.py``: lexical similarity cannot
    join headlines that share no words ("Both ways" with a story about eBay),
    nor a story's side angles that share only its one name ("Snowden speaks
    at South By Southwest festival"): that is most of the alerts left, and
    what a sentence-embedding model would buy. Different stories that share
    two distinctive things in one window (two Comcast deals, market wraps of
    two days) still merge. Dropping the rarity condition gives 10.6 alerts
    per story on the dev set but lets market wraps merge (precision 0.90 on
    tests/data/story-clusters-sample.csv). Time proximity is not used beyond
    the window: in the dev set each story is a one-minute burst, so a time
    signal would read the labels. A member's vector keeps the IDF of the moment it was
    added, so an index rebuilt after some expiry can score borderline entries
    slightly differently from the one it replaces.

    Method ``semantic`` (issue #4's optional extra) puts a sentence-embedding
    step between 1 and 2. The entry's headline (:func:`_embed_text`) is
    embedded by the injected ``embed`` function, once: the vector is cached
    between :meth:`assign` and :meth:`add` (by feed, key and text, bounded)
    and kept with the member so expiry can take it out again. Each story
    keeps the sum and count of its members' vectors, so the *average* cosine
    between the entry and a story's members (group-average link) is one
    matrix-vector product for all stories. The ``_SEMANTIC_CANDIDATES``
    best stories by that average get one score each: the average, plus
    ``_LEXICAL_WEIGHT`` times the ``tfidf`` cosine to the story when the two
    share two concepts (one shared name, "North Korea", is no evidence),
    less ``semantic_conflict_penalty`` when each holds a rare word the other
    lacks (:meth:`_conflicts`; off by default). Each story sets its own bar
    (:meth:`_semantic_bar`): ``semantic_threshold``, raised for a story whose
    headlines agree closely to its tightness (the average cosine between
    two of its members, also read off the sum) less
    ``semantic_tightness_margin``, at most ``semantic_single_threshold``. A
    story of one member asks an average of ``semantic_single_threshold``
    first: one headline is thin evidence of what a story is about. The story
    whose score clears its bar by the widest margin joins. When no story
    passes, the ``tfidf`` rule above decides: it still joins near-copies
    whose wording the model reads differently. The score returned is that
    of whichever step decided.

    Why the average and not the centroid (the sum's direction, used before):
    the centroid of a big loose story (a day's market wraps) points at the
    topic and attracts look-alikes no member is close to, which needed a
    member bar and a veto that also refused many right joins; the average
    is the centroid cosine times the story's tightness, so a loose story
    attracts less on its own. Why a bar per story: a new angle on a story
    told from many angles scores about what its members score against each
    other (0.3-0.4), while a different event about the same name scores the
    same against a story of three near-identical headlines: one bar for both
    either splits the first or merges the second ("North Korea fires
    missile" into the troops story). Known limit: two days' market wraps
    carry word-for-word the same headlines under two story ids in the dev
    set, so no content signal tells them apart (most of the false pairs, on
    the dev set and the look-alike sample).
    :meth:`prepare` embeds a batch of entries in one call (a poll's new
    entries, a rebuild from the store): much faster than one at a time.
    """

    def __init__(self, settings: DedupeSettings, embed: EmbedFunction | None = None) -> None:
        if settings.method is Method.SEMANTIC and embed is None:
            raise ValueError("dedupe method 'semantic' needs an embed function")
        self.settings = settings
        self._window = settings.window.total_seconds()
        self._embed = embed if settings.method is Method.SEMANTIC else None
        self._centroids = _Centroids() if self._embed is not None else None
        # (feed, key, embedded text) -> vector, for entries assigned or prepared, not yet added
        self._embedded: OrderedDict[tuple[str, str, str], Vector] = OrderedDict()
        self._members: dict[int, _Member] = {}  # _ident(entry) -> member
        self._stories: dict[str, _Story] = {}
        # hash of a canonical url -> the story id of the one member with it, or
        # story id -> members with it when several have it
        self._by_url: dict[int, str | dict[str, int]] = {}
        self._table: _FeatureTable = _storycore.Table() if _storycore is not None else _PyTable()
        # By story number: its id ("": free), |centroid| and when a member was last
        # seen (POSIX time), read by the table's candidate loop.
        self._ids: list[str] = []
        self._free: list[int] = []
        self._norms = array("d")
        self._last = array("d")
        self._queue: deque[_Member] = deque()  # expiry order: by seen, as added
        self._changes = 0  # bumped by every add and removal: IDF may have moved
        self._cached: tuple[Entry | None, int, _Prepared] = (None, 0, ({}, ()))
        # watchlist -> word -> its matches in the window holding the word; and their number
        self._topic_words: dict[str, dict[str, int]] = {}
        self._topic_size: dict[str, int] = {}

    def __len__(self) -> int:
        """Entries held."""
        return len(self._members)

    def stories(self) -> int:
        """Stories held."""
        return len(self._stories)

    def holds(self, story_id: str) -> bool:
        """Whether ``story_id`` has a member held."""
        return story_id in self._stories

    # -- deciding ---------------------------------------------------------

    def assign(self, entry: Entry, seen_at: datetime, *, topics: Sequence[str] = (),
               terms: Iterable[str] = ()) -> tuple[str | None, float]:
        """:meth:`decide`'s story id and score."""
        join = self.decide(entry, seen_at, topics=topics, terms=terms)
        return join.story_id, join.score

    def decide(self, entry: Entry, seen_at: datetime, *, topics: Sequence[str] = (),
               terms: Iterable[str] = ()) -> Join:
        """The story ``entry`` belongs to (None: a new story), and why.

        ``topics`` are the watchlists the entry matched and ``terms`` the terms
        that matched: what every match of those watchlists shares is their
        subject, not evidence of one event (see :meth:`_subject`). Looks only
        at stories with a member seen within ``window`` before ``seen_at``
        and published within ``window`` of the entry (:func:`event_time`);
        the bar rises with the gap. Changes nothing: call :meth:`add` to
        record the decision.
        """
        horizon = seen_at - self.settings.window
        member = self._members.get(_ident(entry))
        if member is not None and self._is_open(member.story_id, horizon):
            return Join(story_id=member.story_id, score=1.0, bar=1.0, how="entry")
        url = entry.canonical_url or canonical_url(entry.link)
        holders = self._by_url.get(hash(url)) if url else None
        for story_id in (holders,) if isinstance(holders, str) else sorted(holders or ()):
            if self._is_open(story_id, horizon):
                return Join(story_id=story_id, score=1.0, bar=1.0, how="url")
        if self.settings.method is Method.URL:
            return Join(story_id=None)
        full, texts = self._entry_vector(entry)
        subject = self._subject(texts, topics, terms)
        vector = _without(full, subject) if subject else full
        at = event_time(entry, seen_at).timestamp()
        if self._centroids is None:
            return self._most_similar(vector, texts, horizon, at, subject)
        meaning = self._most_similar_meaning(self._embedding(entry), vector, texts, horizon, at,
                                             subject)
        if meaning.story_id is not None:
            return meaning
        lexical = self._most_similar(vector, texts, horizon, at, subject)
        if lexical.story_id is not None and lexical.score < (
                _FALLBACK if subject else _FALLBACK_UNWATCHED):
            return meaning  # what the model refused, only near-copies' words may join
        return lexical if lexical.story_id is not None else meaning

    def _subject(self, texts: tuple[tuple[str, ...], ...], topics: Sequence[str],
                 terms: Iterable[str]) -> frozenset[str]:
        """The entry's words that say which watchlist it matched, not what happened.

        The words of its matched terms, and any word held by at least
        ``_TOPIC_SHARE`` of one of its watchlists' matches in the window
        (counted with ``_TOPIC_PRIOR`` pseudo-matches that lack it). A broad
        watchlist has no such word and discounts only its matched terms;
        "North Korea AND Ukraine" discounts both names, and "Pyongyang" or
        "Kyiv" once most of its matches carry them.
        """
        if not topics and not terms:  # an entry no watchlist matched
            return frozenset()
        subject = set(term_words(terms))
        for topic in topics:
            words = self._topic_words.get(topic)
            if not words:
                continue
            limit = (self._topic_size.get(topic, 0) + _TOPIC_PRIOR) * _TOPIC_SHARE
            subject.update(w for part in texts for w in part if words.get(w, 0) >= limit)
        return frozenset(subject)

    def _time_bar(self, bar: float, gap: float) -> float:
        """``bar`` raised with the time between the entry and the story: reports of one
        event come within hours; at ``window`` apart no score is enough."""
        share: float = min(1.0, gap / self._window) ** _GAP_POWER
        return bar + (1.0 - bar) * share

    def prepare(self, entries: Iterable[Entry]) -> None:
        """Embed ``entries`` in one call of the embed function, ahead of
        :meth:`assign` and :meth:`add` (which then find them cached). Does
        nothing for other methods. Up to ``_EMBED_CACHE`` entries are kept."""
        if self._embed is None:
            return
        wanted: dict[tuple[str, str, str], str] = {}
        for entry in entries:
            text = _embed_text(entry)
            ident = (entry.feed, entry.key, text)
            if ident not in self._embedded:
                wanted[ident] = text
        if not wanted:
            return
        batch = list(wanted.items())[-_EMBED_CACHE:]
        vectors = self._embed([text for _, text in batch])
        for (ident, _), vector in zip(batch, vectors, strict=True):
            self._remember(ident, vector)

    def _embedding(self, entry: Entry) -> Vector:
        assert self._embed is not None
        text = _embed_text(entry)
        ident = (entry.feed, entry.key, text)
        vector = self._embedded.get(ident)
        if vector is None:
            [vector] = self._embed([text])
            self._remember(ident, vector)
        return vector

    def _remember(self, ident: tuple[str, str, str], vector: Vector) -> None:
        self._embedded[ident] = vector
        self._embedded.move_to_end(ident)
        while len(self._embedded) > _EMBED_CACHE:
            self._embedded.popitem(last=False)

    def _most_similar_meaning(
        self, embedding: Vector, vector: dict[str, float], texts: tuple[tuple[str, ...], ...],
        horizon: datetime, at: float, subject: frozenset[str],
    ) -> Join:
        """Best open story by one score: the average embedding cosine between
        the entry and the story's members, plus the lexical TF-IDF cosine to
        its centroid at ``_LEXICAL_WEIGHT``, less ``semantic_conflict_penalty``
        when the two each hold a rare word the other lacks; the story with
        the widest margin over its own bar (:meth:`_semantic_bar`, raised
        with the time gap, and by ``_SUBJECT_ONLY`` when the two share
        nothing beyond the watchlist's subject) wins."""
        assert self._centroids is not None
        settings = self.settings
        concept_bar = settings.semantic_concept_threshold
        window = settings.window.total_seconds()
        stories = self._stories

        def keep(story_id: str) -> bool:
            return self._is_open(story_id, horizon) and stories[story_id].gap(at) <= window

        ranked = self._centroids.best(embedding, _SEMANTIC_CANDIDATES, keep)
        everywhere = self._everywhere(texts) | subject
        best: tuple[float, Join] | None = None  # (margin over the bar, join)
        top = Join(story_id=None)
        for average, story_id in ranked:
            story = stories[story_id]
            if story.size == 1 and average < settings.semantic_single_threshold:
                continue  # one headline is thin evidence of what a story is about
            bar = self._semantic_bar(story_id, story.size)
            shared = self._table.concepts(story.no, texts, everywhere, None)
            score = average
            if shared >= _SEMANTIC_CONCEPTS:  # one shared name ("North Korea") is no evidence
                score += _LEXICAL_WEIGHT * self._cosine(vector, story_id, subject)
            if settings.semantic_conflict_penalty and self._conflicts(texts, story_id, everywhere):
                score -= settings.semantic_conflict_penalty
            score = min(score, 1.0)
            if concept_bar is not None and shared >= _SEMANTIC_CONCEPTS:
                bar = min(bar, concept_bar)
            if subject and shared < 1.0:
                bar += _SUBJECT_ONLY
            gap = story.gap(at)
            bar = self._time_bar(bar, gap)
            if score > top.score:
                top = Join(story_id=None, score=score, bar=bar)
            if score >= bar and (best is None or score - bar > best[0]):
                evidence = self._table.shared(story.no, texts, everywhere)
                weak = (score < bar * (1.0 + _WEAK_MARGIN) or shared < 1.0
                        or len(evidence) < _STRONG)
                best = (score - bar, Join(story_id=story_id, score=score, bar=bar,
                                          how="semantic", evidence=evidence, weak=weak))
        return best[1] if best is not None else top

    def _semantic_bar(self, story_id: str, size: int) -> float:
        """The score a story asks of a new member: ``semantic_threshold``,
        raised to the story's tightness less ``semantic_tightness_margin``, at
        most ``semantic_single_threshold``. A one-member story has no
        tightness: it asks ``semantic_threshold`` of the score, once the
        average alone has passed ``semantic_single_threshold``."""
        settings = self.settings
        if size < 2:
            return settings.semantic_threshold
        assert self._centroids is not None
        tight = self._centroids.tightness(story_id) - settings.semantic_tightness_margin
        return max(settings.semantic_threshold, min(tight, settings.semantic_single_threshold))

    def _cosine(self, vector: dict[str, float], story_id: str,
                subject: frozenset[str] = frozenset()) -> float:
        """TF-IDF cosine between an entry's unit vector and one story's centroid,
        both without the ``subject``'s features."""
        weight_of = self._table.weight
        no = self._stories[story_id].no
        dot = 0.0
        for feature, weight in vector.items():
            dot += weight * weight_of(feature, no)
        norm = self._norm_without(story_id, subject)
        return dot / norm if norm > 0.0 else 0.0

    def _norm_without(self, story_id: str, subject: frozenset[str]) -> float:
        """|centroid| without the features that hold a ``subject`` word."""
        story = self._stories[story_id]
        if not subject:
            return self._norms[story.no]
        weights = self._table.weights
        no = story.no
        norm2 = story.norm2
        for weight in weights(no, subject):  # in the set's order
            norm2 -= weight ** 2  # 0.0 for a word the story lacks
        if story.size <= 8:
            for weight in weights(no, story.pairs_with(subject)):
                norm2 -= weight ** 2
        return math.sqrt(norm2) if norm2 > 1e-12 else 0.0

    def _conflicts(self, texts: tuple[tuple[str, ...], ...], story_id: str,
                   everywhere: set[str]) -> bool:
        """Whether entry and story each have a rare word the other lacks.

        The story's side: a word (not a pair) held by at least ``_CORE`` of
        its members (it has ``_CORE_MIN`` or more), rare in the window, that
        the entry's title and summary lack ("time warner cable"). The entry's
        side: a title word, rare in the window, that no member holds
        ("sony"). Sharing "Comcast" does not make a Sony deal part of the
        Time Warner Cable story.
        """
        story = self._stories[story_id]
        if story.size < _CORE_MIN:
            return False
        counts = story.features()
        title = texts[0] if texts else ()
        if not any(w not in counts and w not in everywhere for w in title):
            return False
        have = {w for words in texts for w in words}
        bar = _CORE * story.size
        return any(
            n >= bar and " " not in feature and feature not in have and feature not in everywhere
            for feature, n in counts.items()
        )

    def _everywhere(self, texts: tuple[tuple[str, ...], ...]) -> set[str]:
        """Words in more than _RARE of the entries held: not evidence of one event."""
        return self._table.frequent(texts, max((len(self._members) + _IDF_PRIOR) * _RARE,
                                               _RARE_MIN))

    def _most_similar(
        self, vector: dict[str, float], texts: tuple[tuple[str, ...], ...],
        horizon: datetime, at: float, subject: frozenset[str],
    ) -> Join:
        """Best story by cosine to its centroid, accumulated along the postings.

        A feature held by at most ``_POSTING_LIMIT`` stories proposes those
        stories as candidates and adds to their dot products. A feature held
        by more (a word that is everywhere this week) proposes nothing and is
        added only to the ``_SHORTLIST`` best candidates, so one lookup costs
        at most about ``features x _POSTING_LIMIT`` steps however many stories
        the window holds. ``vector`` is the entry without its ``subject``, and
        the centroids are measured without it too.
        """
        all_stories = self._stories
        ids = self._ids
        scores = {ids[no]: score for no, score in self._table.scores(
            vector, self._norms, self._last, horizon.timestamp(), _POSTING_LIMIT, _CANDIDATES,
            _SHORTLIST).items()}
        if not scores:
            return Join(story_id=None)
        if subject:  # the C loop divided by the whole centroid's norm
            for story_id, score in scores.items():
                norm = self._norm_without(story_id, subject)
                whole = self._norms[all_stories[story_id].no]
                scores[story_id] = score * whole / norm if norm else 0.0
        settings = self.settings
        threshold = settings.threshold
        one_concept = max(settings.one_concept_threshold, threshold)
        window = self._window
        # Only stories at or above the threshold and published within the window can
        # join: most candidates are not.
        passing = sorted((-score, story_id) for story_id, score in scores.items()
                         if score >= threshold)
        top = min(max(scores.values()), 1.0)  # the score of a new story
        everywhere: set[str] | None = None
        numbers: frozenset[str] = frozenset()
        checked = 0
        # Best first; ties go to the smaller id, so the outcome never depends on dict order.
        for negative, story_id in passing:
            story = all_stories[story_id]
            gap = story.gap(at)
            if gap > window:
                continue
            if checked == _GATED:
                break
            if not checked:
                top = min(-negative, 1.0)
                everywhere = self._everywhere(texts) | subject
                numbers = _numbers(texts)
            assert everywhere is not None
            checked += 1
            score = min(-negative, 1.0)
            concepts = self._table.concepts(story.no, texts, everywhere, story.titles.counts)
            bar = threshold
            if concepts < 2:
                bar = one_concept
            if score < self._time_bar(bar, gap):
                continue
            # Different numbers weigh against a join. For a watchlist's match that joins
            # on one concept beyond the watchlist's subject, so does lacking most of what
            # the story's headlines agree on ("Kim" shared with three troops headlines,
            # none of their "thousands", "troops" or "frontline"). An entry no watchlist
            # matched alerts no one: it is grouped to fold duplicates, on one name if need be.
            if (numbers and _numbers_conflict(numbers, story,
                                              self._table.holding(story.no, numbers))) or (
                    subject and concepts < 2 and _misses_core(texts, story, everywhere)):
                bar += (1.0 - bar) * _CONFLICT
            bar = self._time_bar(bar, gap)
            if score >= bar:
                evidence = self._table.shared(story.no, texts, everywhere)
                return Join(story_id=story_id, score=score, bar=bar, how="tfidf",
                            evidence=evidence,
                            weak=score < bar * (1.0 + _WEAK_MARGIN) or len(evidence) < _STRONG)
        return Join(story_id=None, score=top, bar=threshold)

    def _entry_vector(self, entry: Entry) -> _Prepared:
        """The entry's unit vector and words, remembered while nothing changes:
        the service calls :meth:`add` right after :meth:`assign` with the same entry."""
        cached_entry, changes, prepared = self._cached
        if cached_entry is not entry or changes != self._changes:
            texts = _texts(entry)
            prepared = (self._table.vector(texts, _TEXT_WEIGHTS, _PAIR_WEIGHT,
                                           len(self._members) + _IDF_PRIOR), texts)
            self._cached = (entry, self._changes, prepared)
        return prepared

    def _is_open(self, story_id: str, horizon: datetime) -> bool:
        story = self._stories.get(story_id)
        return story is not None and self._last[story.no] >= horizon.timestamp()

    # -- recording --------------------------------------------------------

    def add(self, story_id: str, entry: Entry, seen_at: datetime, *,
            topics: Sequence[str] = ()) -> None:
        """Record ``entry`` as a member of ``story_id``, seen at ``seen_at``,
        matching the watchlists ``topics``.

        Adding an entry whose ``(feed, key)`` is already held replaces the old
        version (an edited title), so updates are not counted twice.
        """
        ident = _ident(entry)
        old = self._members.pop(ident, None)
        if old is not None:
            self._remove(old)
        vector: dict[str, float] = {}
        title: tuple[str, ...] = ()
        words: tuple[str, ...] = ()
        n_title = 0
        if self.settings.method is not Method.URL:
            vector, texts = self._entry_vector(entry)
            if vector:
                words = tuple(map(sys.intern, itertools.chain.from_iterable(texts[:2])))
                n_title = len(texts[0])
                title = tuple(dict.fromkeys(words[:n_title]))
        features = _held_features(title, vector)
        weights = array("f", map(vector.__getitem__, features))
        embedding = None
        if self._centroids is not None:
            embedding = self._embedding(entry)
            self._embedded.pop((entry.feed, entry.key, _embed_text(entry)), None)
            self._centroids.add(story_id, embedding)
        self._changes += 1
        url = entry.canonical_url or canonical_url(entry.link)
        url_key = hash(url) if url else 0
        seen = seen_at.timestamp()
        at = event_time(entry, seen_at).timestamp()
        member = _Member(ident=ident, story_id=story_id, url=url_key,
                         packed=_TIMES.pack(seen, at) + weights.tobytes(),
                         words=words, n_title=n_title,
                         topics=tuple(dict.fromkeys(topics)), embedding=embedding)
        self._members[ident] = member
        queue = self._queue
        if queue and seen < queue[-1].seen:  # rare: a clock step back, a re-added member
            queue.insert(bisect.bisect_right(queue, seen, key=_seen), member)
        else:
            queue.append(member)
        self._count_topics(member, 1)

        story = self._stories.get(story_id)
        if story is None:
            story = self._stories[story_id] = _Story(no=self._number(story_id))
        story.members.append(member)
        story.came(title)
        bisect.insort(story.times, at)
        if seen > self._last[story.no]:
            self._last[story.no] = seen
        if url_key:
            self._hold_url(url_key, story_id)
        dot, norm2 = self._table.accumulate(story.no, features, weights)
        story.norm2 += 2.0 * dot + norm2
        self._norms[story.no] = math.sqrt(max(story.norm2, 0.0))

    def _number(self, story_id: str) -> int:
        """A free story number for the feature table."""
        if self._free:
            no = self._free.pop()
            self._ids[no] = story_id
            return no
        self._ids.append(story_id)
        self._norms.append(0.0)
        self._last.append(-math.inf)
        return len(self._ids) - 1

    def _hold_url(self, url: int, story_id: str) -> None:
        holders = self._by_url.get(url)
        if holders is None:
            self._by_url[url] = story_id
        elif isinstance(holders, str):
            self._by_url[url] = {holders: 2} if holders == story_id else {holders: 1, story_id: 1}
        else:
            holders[story_id] = holders.get(story_id, 0) + 1

    def _drop_url(self, url: int, story_id: str) -> None:
        holders = self._by_url[url]
        if isinstance(holders, str):
            del self._by_url[url]
            return
        _decrement(holders, story_id)
        if len(holders) == 1:
            [(only, n)] = holders.items()
            if n == 1:
                self._by_url[url] = only

    def expire(self, now: datetime) -> None:
        """Forget members seen more than ``window`` before ``now``, and stories left empty."""
        horizon = (now - self.settings.window).timestamp()
        queue = self._queue
        members = self._members
        while queue and queue[0].seen < horizon:
            member = queue.popleft()
            if members.get(member.ident) is member:  # else replaced by a newer version
                del members[member.ident]
                self._remove(member)

    def _count_topics(self, member: _Member, step: int) -> None:
        """Add (1) or take back (-1) ``member``'s words in its watchlists' counts."""
        for topic in member.topics:
            size = self._topic_size.get(topic, 0) + step
            words = self._topic_words.setdefault(topic, {})
            for word in dict.fromkeys(member.words):  # its features that are words
                n = words.get(word, 0) + step
                if n:
                    words[word] = n
                else:
                    del words[word]
            if size:
                self._topic_size[topic] = size
            else:
                del self._topic_size[topic]
                del self._topic_words[topic]

    def _remove(self, member: _Member) -> None:
        self._changes += 1
        story_id = member.story_id
        story = self._stories[story_id]
        story.members.remove(member)  # by identity; the oldest, near the front, as a rule
        story.went(member.title)
        story.times.pop(bisect.bisect_left(story.times, member.at))
        self._count_topics(member, -1)
        if self._centroids is not None and member.embedding is not None:
            self._centroids.remove(story_id, member.embedding, last=story.size == 0)
        if member.url:
            self._drop_url(member.url, story_id)
        no = story.no
        dot, own2 = self._table.withdraw(no, member.features, member.weights)
        if story.size == 0:
            del self._stories[story_id]
            self._ids[no] = ""
            self._norms[no] = 0.0
            self._last[no] = -math.inf
            self._free.append(no)
        elif member.weights:
            norm2 = story.norm2 - 2.0 * dot + own2
            if story.size <= 8 or norm2 <= 1e-9:  # cheap to be exact; never trust a tiny one
                norm2 = sum(w ** 2 for w in self._table.weights(no, story.features()))
            story.norm2 = norm2
            self._norms[no] = math.sqrt(max(norm2, 0.0))


def _seen(member: _Member) -> float:
    return member.seen


class _PyTable:
    """monitor/_storycore.c's ``Table`` in Python: the fallback where the C core
    could not be built, and the reference the tests hold it to (the same float
    operations in the same order, so the same scores to the last bit)."""

    def __init__(self) -> None:
        self._df: dict[str, int] = {}
        # feature -> story number -> [members of the story holding it, centroid weight]
        self._posts: dict[str, dict[int, list[Any]]] = {}

    def __len__(self) -> int:
        return len(self._posts)

    def accumulate(self, story: int, features: tuple[str, ...],
                   weights: _Weights) -> tuple[float, float]:
        """A member into its story: (the dot product of the member with the
        centroid before, its |vector|²)."""
        dot = 0.0
        norm2 = 0.0
        for feature, weight in zip(features, weights, strict=True):
            norm2 += weight * weight
            self._df[feature] = self._df.get(feature, 0) + 1
            posts = self._posts.setdefault(feature, {})
            post = posts.get(story)
            if post is None:
                posts[story] = [1, weight]
            else:
                dot += post[1] * weight
                post[1] = post[1] + weight
                post[0] += 1
        return dot, norm2

    def withdraw(self, story: int, features: tuple[str, ...],
                 weights: _Weights) -> tuple[float, float]:
        """A member out of its story: (the dot product with the centroid it leaves, its
        |vector|²). A feature no member of the story holds any more leaves, rounding
        error and all."""
        for feature in features:
            if story not in self._posts.get(feature, ()):
                raise KeyError(feature)
        dot = 0.0
        norm2 = 0.0
        for feature, weight in zip(features, weights, strict=True):
            norm2 += weight * weight
            posts = self._posts[feature]
            post = posts.get(story)
            if post is None:
                continue
            dot += post[1] * weight
            _decrement(self._df, feature)
            post[0] -= 1
            if post[0]:
                post[1] = post[1] - weight
            else:
                del posts[story]
                if not posts:
                    del self._posts[feature]
        return dot, norm2

    def df(self, feature: str) -> int:
        return self._df.get(feature, 0)

    def vector(self, texts: tuple[tuple[str, ...], ...], weights: Sequence[float],
               pair_weight: float, total: int) -> dict[str, float]:
        """An entry's unit TF-IDF vector over its features (:func:`_grams` of its
        ``texts``), with IDF smoothed to ``total`` documents (the members held and
        ``_IDF_PRIOR`` pseudo-documents)."""
        features = _grams(texts, weights, pair_weight)
        df = self._df.get
        weighted = {f: w * math.log(total / (df(f, 0) + 1)) for f, w in features.items()}
        norm = math.sqrt(sum(w * w for w in weighted.values()))
        if norm == 0.0:
            return {}
        return {f: w / norm for f, w in weighted.items()}

    def concepts(self, story: int, texts: tuple[tuple[str, ...], ...], common: Container[str],
                 titled: Container[str] | None) -> float:
        """:func:`_concepts` of ``texts`` and what ``story`` holds."""
        return _concepts(texts, _HeldBy(self._posts, story), common, titled)

    def shared(self, story: int, texts: tuple[tuple[str, ...], ...],
               common: Container[str]) -> tuple[str, ...]:
        """:func:`_shared_words` of ``texts`` and what ``story`` holds."""
        return _shared_words(texts, _HeldBy(self._posts, story), common)

    def holding(self, story: int, features: Iterable[str]) -> set[str]:
        """Those of ``features`` that a member of ``story`` holds."""
        held = _HeldBy(self._posts, story)
        return {f for f in features if f in held}

    def frequent(self, texts: tuple[tuple[str, ...], ...], limit: float) -> set[str]:
        """The words of ``texts`` that at least ``limit`` members hold."""
        df = self._df.get
        return {word for words in texts for word in words if df(word, 0) >= limit}

    def size(self, feature: str) -> int:
        return len(self._posts.get(feature, ()))

    def count(self, feature: str, story: int) -> int:
        post = self._posts.get(feature, {}).get(story)
        return 0 if post is None else int(post[0])

    def weight(self, feature: str, story: int) -> float:
        post = self._posts.get(feature, {}).get(story)
        return 0.0 if post is None else float(post[1])

    def weights(self, story: int, features: Iterable[str]) -> list[float]:
        """:meth:`weight` of each of ``features``, in their order."""
        return [self.weight(f, story) for f in features]

    def nbytes(self) -> int:
        return 0  # not measured: bench/dedupe.py measures resident memory

    def scores(self, vector: dict[str, float], norms: array[float], seen: array[float],
               horizon: float, posting_limit: int, candidates: int,
               shortlist: int) -> dict[int, float]:
        """The candidates' cosines for :meth:`StoryIndex._most_similar`.

        The features a story holds, rarest first (fewest stories; ties in
        the vector's order). One held by at most ``posting_limit`` stories,
        while fewer than ``candidates`` are proposed, adds to the dot
        products of its stories (in story-number order); the others are
        common. Each proposed story with ``norms[n] > 0`` and
        ``seen[n] >= horizon`` scores dot / norm; with common features, only
        the ``shortlist`` best get them added and are returned.
        """
        held = sorted(((len(posts), weight, posts) for feature, weight in vector.items()
                       if (posts := self._posts.get(feature))), key=lambda item: item[0])
        dots: dict[int, float] = {}
        common: list[tuple[float, dict[int, list[Any]]]] = []
        for size, weight, posts in held:
            if size > posting_limit or len(dots) >= candidates:
                common.append((weight, posts))
                continue
            for story in sorted(posts):
                value = weight * posts[story][1]
                dots[story] = dots[story] + value if story in dots else value
        scores: dict[int, float] = {}
        for story, dot in dots.items():
            norm = norms[story]
            if norm > 0.0 and seen[story] >= horizon:
                scores[story] = dot / norm
        if common and scores:
            # Sorting is stable, so ties keep the order they were proposed in.
            best = sorted(scores, key=scores.__getitem__, reverse=True)[:shortlist]
            scores = {}
            for story in best:
                dot = dots[story]
                for weight, posts in common:
                    post = posts.get(story)
                    if post is not None:
                        dot += weight * post[1]
                scores[story] = dot / norms[story]
        return scores


class _HeldBy:
    """What a story holds, as a container: ``feature in held`` (for _PyTable)."""

    __slots__ = ("_posts", "_story")

    def __init__(self, posts: dict[str, dict[int, list[Any]]], story: int) -> None:
        self._posts = posts
        self._story = story

    def __contains__(self, feature: object) -> bool:
        return isinstance(feature, str) and self._story in self._posts.get(feature, ())


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
