"""monitor.dedupe method ``semantic`` without the model: its scores, bars,
tightness, conflict veto, caching and expiry, driven by the deterministic
embedder of tests/embedders.py through StoryIndex's ``embed`` argument.

The trigram embedder has no sense of meaning, so nothing here says that the
method groups the right headlines (the tests marked ``semantic`` in
tests/test_dedupe.py do, with MiniLM); what is checked is that the index does
with the cosines it is given what it says it does. Each scenario first checks
the cosines it relies on, so a change to the embedder fails loudly instead of
making a test pass for the wrong reason.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from embedders import TrigramEmbedder, Vector

from monitor.dedupe import (
    _LEXICAL_WEIGHT,
    DedupeSettings,
    Method,
    StoryIndex,
    story_id_for,
)
from monitor.types import Entry
from monitor.urls import canonical_url

DATA = Path(__file__).parent / "data"
NOW = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)
SEMANTIC = DedupeSettings(method=Method.SEMANTIC)
# The tfidf fallback never joins (a cosine of 1.0 is needed): what is decided is the semantic step's.
SEMANTIC_ONLY = replace(SEMANTIC, threshold=1.0, one_concept_threshold=1.0)

# Three near-copies of one headline (tightness 0.89 with the trigram embedder)...
TIGHT = ["Comcast to buy Time Warner Cable for $45 billion",
         "Comcast to buy Time Warner Cable in $45 billion deal",
         "Comcast agrees to buy Time Warner Cable for $45 billion"]
# ...and three angles of one day's news with few words in common (0.11).
LOOSE = ["Bank of England holds rates at record low",
         "Carney says recovery needs more time",
         "Sterling slips as BoE minutes show no rush to hike"]


def entry(title: str, *, feed: str = "feed") -> Entry:
    link = f"https://{feed.lower()}.example/{hashlib.sha1(title.encode()).hexdigest()[:12]}"
    return Entry(feed=feed, key=link, guid=None, link=link, canonical_url=canonical_url(link),
                 title=title, summary="", published=None)


def feed(index: StoryIndex, titles: Sequence[str], when: datetime = NOW) -> list[str]:
    """Drive the index as the service does; the story id given to each headline."""
    out = []
    for title in titles:
        e = entry(title)
        story_id, _ = index.assign(e, when)
        story_id = story_id or story_id_for(e)
        index.add(story_id, e, when)
        out.append(story_id)
    return out


def one_story(index: StoryIndex, titles: Sequence[str], when: datetime = NOW) -> str:
    """Add ``titles`` as the members of one story, whatever the index would decide."""
    story_id = story_id_for(entry(titles[0]))
    for title in titles:
        index.add(story_id, entry(title), when)
    return story_id


def load_sample() -> list[tuple[str, Entry, datetime]]:
    """(true story, entry, seen at) from tests/data/story-clusters-sample.csv, by time."""
    with (DATA / "story-clusters-sample.csv").open(encoding="utf-8", newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    rows = []
    for rec in csv.DictReader(lines):
        seen = datetime.fromisoformat(rec["published"].replace("Z", "+00:00"))
        e = Entry(feed=rec["publisher"], key=rec["url"], guid=None, link=rec["url"],
                  canonical_url=canonical_url(rec["url"]), title=rec["title"], summary="",
                  published=None)
        rows.append((rec["story_id"], e, seen))
    rows.sort(key=lambda r: r[2])
    return rows


@pytest.fixture
def embed() -> TrigramEmbedder:
    return TrigramEmbedder()


# --------------------------------------------------------------------------- the embedder


def test_the_trigram_embedder_gives_unit_float32_vectors_and_sensible_cosines(
    embed: TrigramEmbedder,
) -> None:
    vectors = embed(TIGHT + LOOSE + [""])
    assert embed.calls == [TIGHT + LOOSE + [""]]
    for v in vectors:
        assert v.dtype == np.float32 and v.shape == (512,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-6
    assert np.array_equal(TrigramEmbedder().vector(TIGHT[0]), vectors[0])  # deterministic
    assert embed.tightness(TIGHT) > 0.85
    assert embed.tightness(LOOSE) < 0.2
    assert embed.average(LOOSE[0], TIGHT) < 0.1


# --------------------------------------------------------------------------- tightness and bars


def test_tightness_is_the_average_pairwise_cosine_of_the_members(embed: TrigramEmbedder) -> None:
    index = StoryIndex(replace(SEMANTIC, window=timedelta(hours=2)), embed=embed)
    members = [*TIGHT, "Time Warner Cable shareholders weigh Comcast offer"]
    story = one_story(index, members[:1], NOW - timedelta(hours=1))
    for title in members[1:]:
        index.add(story, entry(title), NOW)
    assert index._centroids is not None
    tightness = index._centroids.tightness(story)
    assert tightness == pytest.approx(embed.tightness(members), abs=1e-6)
    assert 0.5 < tightness < embed.tightness(TIGHT)  # the fourth one is looser
    index.expire(NOW + timedelta(hours=1, minutes=30))  # the first member goes
    assert index._centroids.tightness(story) == pytest.approx(embed.tightness(members[1:]),
                                                              abs=1e-6)
    single = one_story(index, LOOSE[:1])
    assert index._centroids.tightness(single) == 0.0  # one member: no pair


def test_a_tight_story_asks_more_than_a_loose_one(embed: TrigramEmbedder) -> None:
    """Each story's bar is semantic_threshold raised to its tightness less
    semantic_tightness_margin, at most semantic_single_threshold: the near-copies
    ask 0.45, the loose story 0.35."""
    index = StoryIndex(SEMANTIC_ONLY, embed=embed)
    tight, loose = one_story(index, TIGHT), one_story(index, LOOSE)
    tight_bar, loose_bar = index._semantic_bar(tight, 3), index._semantic_bar(loose, 3)
    s = SEMANTIC
    assert tight_bar == pytest.approx(min(embed.tightness(TIGHT) - s.semantic_tightness_margin,
                                          s.semantic_single_threshold))
    assert loose_bar == s.semantic_threshold
    assert tight_bar > loose_bar

    # One shared concept (Time Warner), no lexical share: the score is the average, 0.41.
    spin_off = entry("Time Warner to spin off Time Inc magazines")
    score = embed.average(spin_off.title, TIGHT)
    assert loose_bar <= score < tight_bar
    assert index.assign(spin_off, NOW)[0] is None
    # The same score is enough for a story that asks only semantic_threshold.
    relaxed = StoryIndex(replace(SEMANTIC_ONLY, semantic_tightness_margin=1.0), embed=embed)
    tight_relaxed = one_story(relaxed, TIGHT)
    assert relaxed.assign(spin_off, NOW) == (tight_relaxed, pytest.approx(score, abs=1e-6))
    # And the loose story takes a new angle whose score the tight story would refuse.
    angle = entry("BoE's Carney sees rates staying low")
    story_id, angle_score = index.assign(angle, NOW)
    assert story_id == loose
    assert loose_bar <= angle_score < tight_bar


def test_a_one_member_story_needs_the_single_threshold(embed: TrigramEmbedder) -> None:
    """One headline is thin evidence: a story of one asks an average cosine of
    semantic_single_threshold (0.45) before any score counts."""
    index = StoryIndex(SEMANTIC_ONLY, embed=embed)
    story = one_story(index, TIGHT[:1])
    spin_off = entry("Time Warner to spin off Time Inc magazines")
    average = embed.cosine(spin_off.title, TIGHT[0])
    assert SEMANTIC.semantic_threshold <= average < SEMANTIC.semantic_single_threshold
    assert index.assign(spin_off, NOW)[0] is None
    close = entry("Charter Communications bids for Time Warner Cable")
    assert embed.cosine(close.title, TIGHT[0]) >= SEMANTIC.semantic_single_threshold
    assert index.assign(close, NOW)[0] == story
    # With a second member the story has a tightness, and its own bar decides.
    index.add(story, entry(TIGHT[1]), NOW)
    assert index._semantic_bar(story, 2) == SEMANTIC.semantic_single_threshold
    # Lowered to semantic_threshold, the single bar lets the first one in too.
    relaxed = StoryIndex(replace(SEMANTIC_ONLY,
                                 semantic_single_threshold=SEMANTIC.semantic_threshold),
                         embed=embed)
    assert relaxed.assign(spin_off, NOW)[0] is None  # empty index
    relaxed_story = one_story(relaxed, TIGHT[:1])
    assert relaxed.assign(spin_off, NOW) == (relaxed_story, pytest.approx(average, abs=1e-6))


# --------------------------------------------------------------------------- the score


def test_the_score_is_the_average_plus_the_lexical_share_of_two_concepts(
    embed: TrigramEmbedder,
) -> None:
    """Two shared concepts add _LEXICAL_WEIGHT times the TF-IDF cosine to the
    average; one shared name adds nothing."""
    index = StoryIndex(replace(SEMANTIC_ONLY, semantic_tightness_margin=1.0), embed=embed)
    tight, loose = one_story(index, TIGHT), one_story(index, LOOSE)

    def concepts(e: Entry, story_id: str) -> float:
        texts = index._entry_vector(e)[1]
        return index._table.concepts(index._stories[story_id].no, texts,
                                     index._everywhere(texts), None)

    one = entry("Time Warner to spin off Time Inc magazines")
    assert concepts(one, tight) < 2.0
    assert index.assign(one, NOW) == (tight, pytest.approx(embed.average(one.title, TIGHT),
                                                           abs=1e-6))
    two = entry("BoE's Carney sees rates staying low")
    assert concepts(two, loose) >= 2.0
    lexical = index._cosine(index._entry_vector(two)[0], loose)
    assert lexical > 0.1
    expected = embed.average(two.title, LOOSE) + _LEXICAL_WEIGHT * lexical
    assert index.assign(two, NOW) == (loose, pytest.approx(expected, abs=1e-6))


def test_the_conflict_penalty_vetoes_a_conflicting_join(embed: TrigramEmbedder) -> None:
    """A Sony deal shares "Comcast", "buy" and "$45 billion" with the Time
    Warner Cable story, but each side has a rare word the other lacks (Sony;
    Time Warner Cable): semantic_conflict_penalty comes off its score. A
    report of the same deal, with a new word but all of the story's core,
    loses nothing."""
    sony = entry("Comcast to buy Sony streaming unit for $45 billion")
    same = entry("Comcast to buy Time Warner Cable for $45 billion, regulators to review")
    free = StoryIndex(SEMANTIC_ONLY, embed=embed)
    story = one_story(free, TIGHT)
    joined, score = free.assign(sony, NOW)
    assert joined == story
    margin = score - free._semantic_bar(story, 3)
    assert 0.0 < margin < 0.5
    penalty = round(margin + 0.05, 2)
    vetoing = StoryIndex(replace(SEMANTIC_ONLY, semantic_conflict_penalty=penalty), embed=embed)
    story = one_story(vetoing, TIGHT)
    assert vetoing.assign(sony, NOW) == (None, pytest.approx(score - penalty, abs=1e-6))
    assert vetoing.assign(same, NOW) == free.assign(same, NOW)
    assert vetoing.assign(same, NOW)[0] == story


def test_without_a_semantic_join_the_tfidf_rule_decides(embed: TrigramEmbedder) -> None:
    """An embedder that makes every headline orthogonal to every other: no story
    passes its semantic bar, and the lexical rule still joins a near-copy, with
    the tfidf score."""

    def orthogonal(texts: Sequence[str]) -> list[Vector]:
        out = []
        for text in texts:
            v = np.zeros(4096, dtype=np.float32)
            v[int(hashlib.sha1(text.encode()).hexdigest(), 16) % 4096] = 1.0
            out.append(v)
        return out

    semantic = StoryIndex(SEMANTIC, embed=orthogonal)
    lexical = StoryIndex(replace(SEMANTIC, method=Method.TFIDF))
    quake = "Magnitude 6.1 earthquake strikes coastal town, dozens hurt"
    copy = entry("Magnitude 6.1 earthquake strikes coastal town; dozens hurt, officials say")
    for index in (semantic, lexical):
        feed(index, [quake, *LOOSE])
    decided = lexical.assign(copy, NOW)
    assert decided[0] == story_id_for(entry(quake))
    assert semantic.assign(copy, NOW) == decided


# --------------------------------------------------------------------------- embedding calls


def test_prepare_embeds_each_entry_once(embed: TrigramEmbedder) -> None:
    index = StoryIndex(SEMANTIC, embed=embed)
    entries = [entry(t) for t in TIGHT]
    index.prepare(entries)
    assert embed.calls == [TIGHT]  # one call for the batch...
    index.prepare(entries)
    assert len(embed.calls) == 1  # ...not again for entries it holds...
    for e in entries:
        story_id, _ = index.assign(e, NOW)
        index.add(story_id or story_id_for(e), e, NOW)
    assert len(embed.calls) == 1  # ...and assign and add reuse it
    assert not index._embedded  # added entries leave the cache: their member holds the vector
    late = entry("UPDATE 2-Time Warner Cable shareholders weigh Comcast offer ...")
    story_id, _ = index.assign(late, NOW)
    index.add(story_id or story_id_for(late), late, NOW)
    # Unprepared: embedded once for assign and add, without the wire boilerplate.
    assert embed.calls[1:] == [["Time Warner Cable shareholders weigh Comcast offer"]]
    index.prepare([])
    assert len(embed.calls) == 2


def test_other_methods_never_embed(embed: TrigramEmbedder) -> None:
    index = StoryIndex(DedupeSettings(), embed=embed)
    index.prepare([entry(t) for t in TIGHT])
    feed(index, TIGHT)
    assert embed.calls == []


# --------------------------------------------------------------------------- expiry and rebuild


def test_expiry_removes_the_vectors(embed: TrigramEmbedder) -> None:
    index = StoryIndex(replace(SEMANTIC_ONLY, window=timedelta(hours=2)), embed=embed)
    story = one_story(index, TIGHT[:1], NOW)
    index.add(story, entry(TIGHT[1]), NOW + timedelta(hours=1))
    index.add(story, entry(LOOSE[0]), NOW + timedelta(hours=1))
    assert index._centroids is not None
    later = NOW + timedelta(hours=2, minutes=30)
    index.expire(later)  # the first member goes, its vector with it
    assert len(index) == 2
    probe = embed.vector(TIGHT[2])
    [(average, found)] = index._centroids.best(probe, 1, lambda _: True)
    assert found == story
    assert average == pytest.approx(embed.average(TIGHT[2], [TIGHT[1], LOOSE[0]]), abs=1e-6)
    assert index._centroids.tightness(story) == pytest.approx(
        embed.cosine(TIGHT[1], LOOSE[0]), abs=1e-6)
    index.expire(later + timedelta(hours=1))
    assert len(index) == 0
    assert not index._centroids._slot
    assert not index._centroids._rows.any() and not index._centroids._sizes.any()
    assert index.assign(entry(TIGHT[0]), later + timedelta(hours=1)) == (None, 0.0)
    # The freed row is used again, from zero.
    again = one_story(index, LOOSE, later + timedelta(hours=1))
    assert index._centroids.tightness(again) == pytest.approx(embed.tightness(LOOSE), abs=1e-6)


def test_rebuilding_from_add_gives_the_same_assignments(embed: TrigramEmbedder) -> None:
    """What the service does at start-up: add the stored entries of the window
    (embedded in one prepare call) and go on deciding as the live index would."""
    rows = load_sample()
    history, later = rows[:400], rows[400:700]
    live = StoryIndex(SEMANTIC, embed=embed)
    decided = []
    for _, e, seen in history:
        story_id, _ = live.assign(e, seen)
        story_id = story_id or story_id_for(e)
        live.add(story_id, e, seen)
        decided.append((story_id, e, seen))
    assert live.stories() < len(history) / 3  # the semantic step joined many: not a trivial replay
    rebuilt = StoryIndex(SEMANTIC, embed=embed)
    calls = len(embed.calls)
    rebuilt.prepare(e for _, e, _ in decided)
    assert len(embed.calls) == calls + 1
    for story_id, e, seen in decided:
        rebuilt.add(story_id, e, seen)
    assert len(embed.calls) == calls + 1
    assert len(rebuilt) == len(live) and rebuilt.stories() == live.stories()
    assert rebuilt._centroids is not None and live._centroids is not None
    for story_id in {s for s, _, _ in decided}:
        assert rebuilt._centroids.tightness(story_id) == pytest.approx(
            live._centroids.tightness(story_id), abs=1e-9)
    for _, e, seen in later:
        assert rebuilt.assign(e, seen) == live.assign(e, seen)
