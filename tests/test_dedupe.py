"""monitor.dedupe: canonical URLs as tables and properties, story clustering on
hand-written and real headlines."""

from __future__ import annotations

import csv
import functools
import random
import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import hypothesis
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from monitor import dedupe as dedupe_module
from monitor.dedupe import (
    DedupeSettings,
    Method,
    StoryIndex,
    _concepts,
    _features,
    story_id_for,
)
from monitor.match import Matcher
from monitor.text import tokenize
from monitor.types import Entry, Watchlist
from monitor.urls import TRACKING_PARAMS, TRACKING_PREFIXES, canonical_url

DATA = Path(__file__).parent / "data"
NOW = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)


def entry(title: str, *, feed: str = "feed", url: str | None = None, key: str | None = None,
          summary: str = "") -> Entry:
    link = url or f"https://{feed.lower().replace(' ', '')}.example/{abs(hash(title))}"
    return Entry(feed=feed, key=key or link, guid=key, link=link,
                 canonical_url=canonical_url(link), title=title, summary=summary, published=None)


# --------------------------------------------------------------------------- canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://example.com/a", "https://example.com/a", id="already-canonical"),
        pytest.param("HTTP://WWW.Example.COM/Path", "https://example.com/Path",
                     id="scheme-host-lowercased-path-kept"),
        pytest.param("http://example.com:80/a", "https://example.com/a", id="default-port-80"),
        pytest.param("https://example.com:443/a", "https://example.com/a", id="default-port-443"),
        pytest.param("https://example.com:8443/a", "https://example.com:8443/a", id="other-port"),
        pytest.param("https://example.com/a#comments", "https://example.com/a", id="fragment"),
        pytest.param("https://example.com/a/", "https://example.com/a", id="trailing-slash"),
        pytest.param("https://example.com", "https://example.com/", id="root-is-slash"),
        pytest.param("https://example.com/?", "https://example.com/", id="empty-query"),
        pytest.param("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2",
                     id="params-sorted"),
        pytest.param(
            "https://www.nytimes.com/2024/10/18/world/europe/north-korea-troops-ukraine.html"
            "?smid=nytcore-ios-share&referringSource=articleShare",
            "https://nytimes.com/2024/10/18/world/europe/north-korea-troops-ukraine.html"
            "?referringSource=articleShare",
            id="nyt-share-link",
        ),
        pytest.param(
            "https://www.theguardian.com/world/2024/oct/18/north-korea-troops"
            "?CMP=Share_iOSApp_Other",
            "https://theguardian.com/world/2024/oct/18/north-korea-troops",
            id="guardian-cmp",
        ),
        pytest.param(
            "https://www.bbc.co.uk/news/articles/c1234?at_medium=RSS&at_campaign=KARANGA",
            "https://bbc.co.uk/news/articles/c1234",
            id="bbc-rss-campaign",
        ),
        pytest.param(
            "https://www.cnn.com/2024/10/18/politics/story/index.html?utm_source=feedburner"
            "&utm_medium=feed&utm_campaign=Feed%3A+rss%2Fcnn_topstories",
            "https://cnn.com/2024/10/18/politics/story/index.html",
            id="feedburner-utm",
        ),
        pytest.param("https://example.com/a?fbclid=IwAR0xyz&id=7",
                     "https://example.com/a?id=7", id="fbclid"),
        pytest.param("https://example.com/a?gclid=1&msclkid=2&dclid=3&yclid=4&_ga=5&igshid=6",
                     "https://example.com/a", id="ad-click-ids"),
        pytest.param("https://example.com/a?mc_cid=1&mc_eid=2&ocid=3&cmpid=4&icid=5",
                     "https://example.com/a", id="mail-and-campaign-ids"),
        pytest.param("https://example.com/a?ref=hn&ref_src=twsrc&partner=rss&UTM_Source=x",
                     "https://example.com/a", id="referrers-any-case"),
        pytest.param("https://amp.theguardian.com/world/2024/oct/18/story",
                     "https://theguardian.com/world/2024/oct/18/story", id="amp-host"),
        pytest.param("https://www.example.com/news/story/amp/",
                     "https://example.com/news/story", id="amp-path-suffix"),
        pytest.param("https://www.bbc.co.uk/news/world-asia-123.amp",
                     "https://bbc.co.uk/news/world-asia-123", id="amp-dot-suffix"),
        pytest.param("https://edition.cnn.com/2021/10/17/us/index.amp.html",
                     "https://edition.cnn.com/2021/10/17/us/index.html", id="amp-html"),
        pytest.param("https://example.com/story?outputType=amp&id=3",
                     "https://example.com/story?id=3", id="output-type-amp"),
        pytest.param("https://example.com/story?amp=1", "https://example.com/story",
                     id="amp-param"),
        pytest.param("https://example.com/story?amp", "https://example.com/story",
                     id="bare-amp-param"),
        pytest.param("https://www.google.com/amp/s/www.bbc.co.uk/news/world-123.amp",
                     "https://bbc.co.uk/news/world-123", id="google-amp-cache"),
        pytest.param("https://example-com.cdn.ampproject.org/c/s/example.com/news/x?amp=1",
                     "https://example.com/news/x", id="ampproject-cache"),
        pytest.param("https://m.example.com/a", "https://example.com/a", id="mobile-host"),
        pytest.param("https://www.com/a", "https://www.com/a", id="www-is-the-domain"),
        pytest.param("https://user:secret@example.com/a", "https://example.com/a",
                     id="userinfo-dropped"),
        pytest.param("https://example.com/%7euser/%e2%82%ac", "https://example.com/~user/%E2%82%AC",
                     id="percent-escapes-normalised"),
        pytest.param("https://example.com/caf\u00e9", "https://example.com/caf%C3%A9",
                     id="non-ascii-path-quoted"),
        pytest.param("http://[::1]:8080/x", "https://[::1]:8080/x", id="ipv6"),
        pytest.param(
            "http://www.latimes.com/business/money/la-fi-mo-federal-reserve-plosser-"
            "20140310,0,1312750.story?track=rss",
            "https://latimes.com/business/money/la-fi-mo-federal-reserve-plosser-"
            "20140310,0,1312750.story?track=rss",
            id="unknown-param-kept",  # "track" also selects content elsewhere: kept
        ),
        pytest.param("  https://example.com/a \n", "https://example.com/a", id="whitespace"),
        pytest.param("mailto:desk@example.com", "mailto:desk@example.com", id="other-scheme"),
        pytest.param("tag:example.com,2024:entry-1", "tag:example.com,2024:entry-1",
                     id="tag-uri-guid"),
        pytest.param("/relative/path", "/relative/path", id="relative"),
        pytest.param(" not a url ", "not a url", id="garbage"),
        pytest.param("http://host:99999/", "http://host:99999/", id="bad-port"),
        pytest.param("http://[::1/", "http://[::1/", id="bad-ipv6"),
        pytest.param("", "", id="empty"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_http_and_https_are_one_story() -> None:
    assert canonical_url("http://example.com/a") == canonical_url("https://example.com/a")


# Property tests over URLs that look like the ones feeds carry.
_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_host = st.builds(
    lambda prefix, labels, tld: prefix + ".".join(labels) + "." + tld,
    st.sampled_from(["", "www.", "amp.", "m.", "WWW."]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "co.uk", "org", "News"]),
)
_segment = st.text("abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_.~%é ", min_size=0, max_size=10)
_path = st.builds(
    lambda segments, slash, amp: "/" + "/".join(segments) + ("/amp" if amp else "")
    + ("/" if slash else ""),
    st.lists(_segment, max_size=4),
    st.booleans(),
    st.booleans(),
)
_tracking_key = st.one_of(
    st.sampled_from(sorted(TRACKING_PARAMS)),
    st.builds(lambda p, s: p + s, st.sampled_from(TRACKING_PREFIXES), _label),
    st.sampled_from(["UTM_Source", "FBCLID", "Ref"]),
)
_plain_key = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6).filter(
    lambda k: k.casefold() not in TRACKING_PARAMS
    and not k.casefold().startswith(TRACKING_PREFIXES)
    and k not in ("amp", "_amp", "aoh", "usqp")
)
_value = st.text("abcdefghijklmnopqrstuvwxyz0123456789 +&=%/é", max_size=8)
_params = st.lists(st.tuples(st.one_of(_tracking_key, _plain_key), _value), max_size=6)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    params = draw(_params)
    query = urlencode(params)
    fragment = draw(st.sampled_from(["", "#top", "#"]))
    url = f"{scheme}://{draw(_host)}{port}{draw(_path)}" + (f"?{query}" if query else "")
    return url + fragment, params


@given(urls())
def test_canonical_url_is_idempotent(case: tuple[str, list[tuple[str, str]]]) -> None:
    once = canonical_url(case[0])
    assert canonical_url(once) == once


@given(st.text())
@example("http://[")
@example("https://\u2100.com/")  # a host NFKC would change: urlsplit refuses it
@example("http://example.com:0x50/")
def test_canonical_url_never_raises_and_is_idempotent_on_garbage(text: str) -> None:
    once = canonical_url(text)
    assert canonical_url(once) == once


@given(urls())
def test_tracking_params_never_survive(case: tuple[str, list[tuple[str, str]]]) -> None:
    query = urlsplit(canonical_url(case[0])).query
    for key, _ in parse_qsl(query, keep_blank_values=True):
        assert key.casefold() not in TRACKING_PARAMS
        assert not key.casefold().startswith(TRACKING_PREFIXES)


@given(urls(), st.randoms())
def test_parameter_order_is_irrelevant(case: tuple[str, list[tuple[str, str]]],
                                       rnd: random.Random) -> None:
    url, params = case
    if not params:
        return
    shuffled = list(params)
    rnd.shuffle(shuffled)
    base = url.split("?")[0].split("#")[0]
    assert canonical_url(f"{base}?{urlencode(shuffled)}") == canonical_url(
        f"{base}?{urlencode(params)}"
    )


# --------------------------------------------------------------------------- settings, ids


def test_settings_accept_the_method_as_written_in_config() -> None:
    assert DedupeSettings(method="url").method is Method.URL  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"method": "embeddings"}, id="unknown-method"),
        pytest.param({"threshold": 0.0}, id="zero-threshold"),
        pytest.param({"threshold": 1.5}, id="threshold-above-one"),
        pytest.param({"window": timedelta(0)}, id="empty-window"),
    ],
)
def test_settings_refuse_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DedupeSettings(**kwargs)


def test_story_id_is_deterministic_and_follows_the_canonical_url() -> None:
    a = entry("A", feed="One", url="https://www.example.com/a?utm_source=x")
    b = entry("B", feed="Two", url="http://example.com/a/")
    c = entry("C", feed="One", url="https://example.com/c")
    assert story_id_for(a) == story_id_for(b) != story_id_for(c)
    assert len(story_id_for(a)) == 16


# --------------------------------------------------------------------------- clustering


# The watchlists the service would match these tests' headlines against: a story's
# watchlist names are no evidence that two of its matches report one event.
WATCHED = Matcher.compile([Watchlist(name="north-korea", all=("North Korea*",)),
                           Watchlist(name="ukraine", all=("Ukrain*",))])


def watched(index: StoryIndex, e: Entry, when: datetime = NOW) -> tuple[str | None, float]:
    """``index.assign`` as the service calls it: with the watchlists ``e`` matches."""
    found = WATCHED.match(e)
    return index.assign(e, when, topics=[m.watchlist for m in found],
                        terms=[t for m in found for t in m.terms])


def feed(index: StoryIndex, entries: Sequence[Entry], when: datetime = NOW) -> list[str]:
    """Drive the index as the service does; the story id given to each entry."""
    out = []
    for e in entries:
        story_id, _ = watched(index, e, when)
        if story_id is None:
            story_id = story_id_for(e)
        index.add(story_id, e, when, topics=[m.watchlist for m in WATCHED.match(e)])
        out.append(story_id)
    return out


def load_sample() -> list[tuple[str, Entry, datetime]]:
    """(true story, entry, seen at) from tests/data/story-clusters-sample.csv, by time."""
    with (DATA / "story-clusters-sample.csv").open(encoding="utf-8", newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    rows = []
    for rec in csv.DictReader(lines):
        seen = datetime.fromisoformat(rec["published"].replace("Z", "+00:00"))
        e = entry(rec["title"], feed=rec["publisher"], url=rec["url"])
        rows.append((rec["story_id"], e, seen))
    rows.sort(key=lambda r: r[2])
    return rows


@pytest.fixture
def background() -> Iterator[StoryIndex]:
    """An index already holding a few hundred real, unrelated headlines (2014)."""
    index = StoryIndex(DedupeSettings())
    for _, e, _ in load_sample()[:300]:
        story_id, _ = index.assign(e, NOW - timedelta(hours=3))
        index.add(story_id or story_id_for(e), e, NOW - timedelta(hours=3))
    yield index


NK_TROOPS = [
    entry("'Several thousands' of North Korean troops set to be sent to Ukraine frontline",
          feed="Newszop"),
    entry("North Korea to send thousands of troops to Ukraine front, ISW says", feed="Reuters"),
    entry("Thousands of North Korean soldiers training in Russia for Ukraine war", feed="BBC"),
]
NK_MISSILE = entry("North Korea fires ballistic missile into sea off its east coast", feed="AP")
UKRAINE_GRID = entry("Ukraine says Russian drones hit Kyiv power grid overnight",
                     feed="Guardian")


@pytest.mark.parametrize("warm", [False, True], ids=["empty-index", "with-background"])
def test_three_outlets_one_story_and_lookalikes_stay_apart(
    warm: bool, background: StoryIndex
) -> None:
    index = background if warm else StoryIndex(DedupeSettings())
    troops = feed(index, NK_TROOPS)
    assert troops[0] == troops[1]
    # BBC's "soldiers training in Russia for Ukraine war" shares only "thousands" with
    # the story once the watchlists' names are out: a second alert, never a merge
    # that could hide an event. (Without the watchlists it joins: see below.)
    assert troops[2] != troops[0]
    missile, grid = feed(index, [NK_MISSILE, UKRAINE_GRID])
    assert missile not in troops
    assert grid not in troops
    assert missile != grid


def test_without_a_watchlist_context_three_outlets_join() -> None:
    """An entry no watchlist matches can hide nothing (it alerts no one), so its
    grouping is generous: all three outlets' headlines make one story."""
    index = StoryIndex(DedupeSettings())
    stories = []
    for e in NK_TROOPS:
        story = index.assign(e, NOW)[0] or story_id_for(e)
        index.add(story, e, NOW)
        stories.append(story)
    assert stories[0] == stories[1] == stories[2]


def test_the_summary_lends_a_terse_headline_its_names() -> None:
    index = StoryIndex(DedupeSettings())
    seed = entry(
        NK_TROOPS[0].title, feed="Newszop",
        summary="Several thousand soldiers are undergoing intense military training inside "
        "Russia, according to the Institute of the Study of War (ISW). The think tank said "
        "that North Koreans will be deployed to the frontline by the end of 2024.",
    )
    [story] = feed(index, [seed])
    terse = "Pyongyang's soldiers headed for Kursk"
    assert watched(index, entry(terse, feed="Wire"))[0] is None
    with_summary = entry(
        terse, feed="Wire",
        summary="North Korean infantry training in Russia could reach the Ukrainian frontline "
        "by the end of the year, the Institute for the Study of War says. More follows.",
    )
    assert watched(index, with_summary)[0] == story
    missile = entry(
        NK_MISSILE.title, feed="AP",
        summary="North Korea fired a ballistic missile into the sea off its east coast on "
        "Thursday, South Korea's military said.",
    )
    assert watched(index, missile)[0] is None


@pytest.mark.parametrize(
    ("title", "story", "expected"),
    [
        pytest.param(NK_MISSILE.title, [e.title for e in NK_TROOPS], 1.0,
                     id="one-subject-different-events"),
        pytest.param(NK_TROOPS[1].title, [NK_TROOPS[0].title], 4.0,
                     id="same-event-other-outlet"),  # north korea, thousands, troops, ukraine front
        pytest.param("Men's Wearhouse to Buy Jos. A. Bank",
                     ["Jos A. Bank, Men's Wearhouse cut a deal"], 2.0, id="two-names"),
        pytest.param(UKRAINE_GRID.title, [NK_TROOPS[2].title], 2.0,
                     id="two-common-words-count-unless-common"),
    ],
)
def test_concepts_are_runs_of_shared_words(title: str, story: list[str],
                                           expected: float) -> None:
    held: Counter[str] = Counter()
    for text in story:
        held.update(_features(entry(text))[0])
    assert _concepts(_features(entry(title))[1], held) == expected


def test_a_word_everywhere_this_week_is_no_concept() -> None:
    texts = _features(entry(UKRAINE_GRID.title))[1]
    held = Counter(_features(entry(NK_TROOPS[2].title))[0])
    assert _concepts(texts, held, common={"russi"}) == 1.0


def test_assign_reports_its_score_and_changes_nothing() -> None:
    index = StoryIndex(DedupeSettings())
    first = feed(index, NK_TROOPS[:1])[0]
    before = len(index)
    story_id, score = watched(index, NK_TROOPS[1])
    assert story_id == first
    assert DedupeSettings().threshold <= score <= 1.0
    assert len(index) == before
    assert watched(index, NK_MISSILE)[0] is None


def test_same_canonical_url_joins_whatever_the_headline() -> None:
    index = StoryIndex(DedupeSettings())
    [first] = feed(index, [entry("Markets rally", feed="Wire",
                                 url="https://www.example.com/s/1?utm_source=rss")])
    other = entry("Completely different words here", feed="Aggregator",
                  url="http://example.com/s/1/#comments")
    assert index.assign(other, NOW) == (first, 1.0)


def test_url_method_joins_only_identical_links() -> None:
    index = StoryIndex(DedupeSettings(method=Method.URL))
    troops = feed(index, NK_TROOPS)
    assert len(set(troops)) == 3
    again = entry("Anything", feed="Other", url=NK_TROOPS[0].link + "?utm_medium=x")
    assert index.assign(again, NOW) == (troops[0], 1.0)


def test_an_edited_title_stays_in_its_story_and_is_not_counted_twice() -> None:
    index = StoryIndex(DedupeSettings())
    original = entry("Quake hits coastal town", feed="Wire", url="https://wire.example/q",
                     key="guid-1")
    [story] = feed(index, [original])
    edited = entry("Magnitude 6.1 earthquake strikes, dozens hurt", feed="Wire",
                   url="https://wire.example/q-updated", key="guid-1")
    assert index.assign(edited, NOW + timedelta(minutes=5)) == (story, 1.0)
    index.add(story, edited, NOW + timedelta(minutes=5))
    assert len(index) == 1
    assert index.stories() == 1
    # The old link is forgotten with the old version; the new one is known.
    assert index.assign(entry("x", feed="Other", url="https://wire.example/q"), NOW)[0] is None
    assert index.assign(entry("x", feed="Other", url="https://wire.example/q-updated"),
                        NOW)[0] == story


def test_expiry_forgets_the_story_after_the_window() -> None:
    settings = DedupeSettings(window=timedelta(hours=48))
    index = StoryIndex(settings)
    troops = feed(index, NK_TROOPS[:2])
    late = NOW + settings.window + timedelta(seconds=1)
    # A report published with the story but seen late (a slow feed):
    slow = replace(NK_TROOPS[2], published=NOW)
    # outside the window the story is closed even before expire() runs...
    assert index.assign(slow, late)[0] is None
    # ...inside it, it is open.
    assert index.assign(slow, late - timedelta(seconds=2))[0] == troops[0]
    index.expire(late)
    assert len(index) == 0
    assert index.stories() == 0
    assert index.assign(NK_TROOPS[0], late) == (None, 0.0)


def test_expiry_is_per_member_so_a_long_story_keeps_only_its_window() -> None:
    index = StoryIndex(DedupeSettings(window=timedelta(hours=2)))
    story = feed(index, NK_TROOPS[:1], NOW)[0]
    index.add(story, NK_TROOPS[1], NOW + timedelta(hours=1))
    index.add(story, NK_TROOPS[2], NOW + timedelta(hours=2))
    index.expire(NOW + timedelta(hours=2, minutes=30))
    assert len(index) == 2
    assert index.stories() == 1
    # The expired member's URL no longer identifies the story.
    assert index.assign(NK_TROOPS[0], NOW + timedelta(hours=2, minutes=30))[1] < 1.0


def _table_state(index: StoryIndex, entries: list[Entry]) -> dict[object, tuple[float, ...]]:
    """What the feature table holds for the features of ``entries``, by story id:
    feature -> (document count, stories), (feature, story id) -> (members, weight)."""
    table = index._table
    out: dict[object, tuple[float, ...]] = {}
    for feature in dict.fromkeys(f for e in entries for f in _features(e)[0]):
        if table.df(feature):
            out[feature] = (table.df(feature), table.size(feature))
        for no, story_id in enumerate(index._ids):
            if story_id and table.count(feature, no):
                out[(feature, story_id)] = (table.count(feature, no), table.weight(feature, no))
    return out


def test_expiry_leaves_what_adding_only_the_survivors_gives() -> None:
    """Members leave one by one; what is left (postings, document counts, links)
    is what an index given only the survivors holds, and nothing is left over
    once all are gone, whichever way a feature was shared between stories."""
    rows = load_sample()[:300]
    settings = DedupeSettings(window=timedelta(minutes=150))
    live = StoryIndex(settings)
    added = []
    for i, (_, e, _) in enumerate(rows):
        seen = NOW + timedelta(minutes=i)
        story_id = live.assign(e, seen)[0] or story_id_for(e)
        live.add(story_id, e, seen)
        added.append((story_id, e, seen))
    live.add(added[-1][0], added[0][1], added[-1][2])  # a re-added (edited) old member
    end = added[-1][2]
    live.expire(end)
    survivors = StoryIndex(settings)
    for story_id, e, seen in added[1:]:
        if seen >= end - settings.window:
            survivors.add(story_id, e, seen)
    survivors.add(added[-1][0], added[0][1], end)
    assert len(live) == len(survivors)
    assert live._by_url == survivors._by_url
    entries = [e for _, e, _ in added]
    # The weights themselves carry the IDF of the moment each member came in.
    counts = {k: v[0] for k, v in _table_state(live, entries).items()}
    assert counts == {k: v[0] for k, v in _table_state(survivors, entries).items()}
    assert len(live._table) == len(survivors._table)
    assert {k: v.features() for k, v in live._stories.items()} == {
        k: v.features() for k, v in survivors._stories.items()}
    live.expire(end + settings.window + timedelta(minutes=1))
    assert (len(live), live.stories()) == (0, 0)
    assert not (len(live._table) or live._by_url or live._queue)
    assert not _table_state(live, entries)


def test_rebuilding_from_add_gives_the_same_assignments() -> None:
    rows = load_sample()
    history, later = rows[:400], rows[400:]
    live = StoryIndex(DedupeSettings())
    decided = []
    for _, e, seen in history:
        story_id, _ = live.assign(e, seen)
        story_id = story_id or story_id_for(e)
        live.add(story_id, e, seen)
        decided.append((story_id, e, seen))
    rebuilt = StoryIndex(DedupeSettings())
    for story_id, e, seen in decided:  # what the service reads back from the store
        rebuilt.add(story_id, e, seen)
    assert len(rebuilt) == len(live)
    for _, e, seen in later:
        assert rebuilt.assign(e, seen) == live.assign(e, seen)


def pairwise(assigned: Sequence[str], truth: Sequence[str]) -> tuple[float, float]:
    def pairs(counts: Counter[object]) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    both = pairs(Counter(zip(assigned, truth, strict=True)))
    return both / max(1, pairs(Counter(assigned))), both / max(1, pairs(Counter(truth)))


def replay_sample(
    index: StoryIndex,
    rows: list[tuple[str, Entry, datetime]] | None = None,
    *,
    at: datetime | None = None,
) -> tuple[list[str], list[str], set[str]]:
    """Runs ``rows`` (default: the look-alike sample, in published order) through
    ``index`` as the service does, a poll of 32 embedded at once (for method
    semantic), each seen at its own time or at ``at``. Returns the assigned ids,
    the true stories and the stories that opened a cluster."""
    rows = load_sample() if rows is None else rows
    assigned, openers = [], set()
    for i, (story, e, seen) in enumerate(rows):
        if i % 32 == 0:
            index.prepare(r[1] for r in rows[i : i + 32])
        seen_at = seen if at is None else at
        story_id, _ = index.assign(e, seen_at)
        if story_id is None:
            story_id = story_id_for(e)
            openers.add(story)
        index.add(story_id, e, seen_at)
        assigned.append(story_id)
    return assigned, [story for story, _, _ in rows], openers


def test_real_headlines_precision_does_not_regress() -> None:
    """12 real stories picked for look-alikes (three market wraps, two Comcast
    deals, American Eagle / JC Penney / American Airlines, two car recalls).
    Numbers at the time of writing: precision 0.93, recall 0.15, 19 alerts per
    story (exact URLs alone: 55; without the concept rarity condition
    precision falls to 0.90). A drop in precision means false merges, that
    is stories hidden from the team."""
    assigned, truth, openers = replay_sample(StoryIndex(DedupeSettings()))
    precision, recall = pairwise(assigned, truth)
    assert precision >= 0.9
    assert openers == set(truth)  # no story hidden
    assert len(set(assigned)) / len(set(truth)) <= 25  # far fewer alerts than one per link


# --------------------------------------------------------------------------- method semantic

# The real model: skipped without the semantic extra (tests/conftest.py), run by
# make test-semantic. tests/test_semantic_logic.py covers the method without it.
needs_semantic = pytest.mark.semantic
SEMANTIC = DedupeSettings(method=Method.SEMANTIC)
# Look-alike precision in shuffled order: 0.74-0.78 measured (published order 0.83;
# the README's stricter settings 0.79-0.83).
SHUFFLED_FLOOR = 0.72


class Counting:
    """The real embedder, each text encoded once per module, counting what it is asked."""

    def __init__(self) -> None:
        from monitor.embed import Embedder

        self.embed = Embedder()
        self.known: dict[str, Any] = {}
        self.asked: list[str] = []

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        self.asked.extend(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        self.known.update(zip(missing, self.embed(missing), strict=True))
        return [self.known[t] for t in texts]


@pytest.fixture(scope="module")
def embed() -> Counting:
    return Counting()


def test_semantic_needs_an_embed_function() -> None:
    with pytest.raises(ValueError, match="embed"):
        StoryIndex(SEMANTIC)
    assert DedupeSettings(method="semantic").method is Method.SEMANTIC  # type: ignore[arg-type]


@needs_semantic
@pytest.mark.parametrize("warm", [False, True], ids=["empty-index", "with-background"])
def test_semantic_three_outlets_one_story_and_lookalikes_stay_apart(
    warm: bool, embed: Counting
) -> None:
    index = StoryIndex(SEMANTIC, embed=embed)
    if warm:
        for _, e, _ in load_sample()[:300]:
            story_id, _ = index.assign(e, NOW - timedelta(hours=3))
            index.add(story_id or story_id_for(e), e, NOW - timedelta(hours=3))
    troops = feed(index, NK_TROOPS)
    assert troops[0] == troops[1] == troops[2]
    missile, grid = feed(index, [NK_MISSILE, UKRAINE_GRID])
    assert missile != troops[0]
    assert grid != troops[0]
    assert missile != grid


@needs_semantic
@pytest.mark.parametrize("after", [1, 2, 3], ids=["after-one", "after-two", "after-three"])
def test_semantic_missile_stays_apart_whatever_the_troops_story_holds(
    after: int, embed: Counting
) -> None:
    """The missile headline's average cosine to the troops story is 0.38-0.45,
    over semantic_threshold: sharing only 'North Korea' must not be enough.
    What keeps it out is the troops story's own bar: its headlines agree
    closely (0.67-0.85), so it asks more than a loose story does."""
    index = StoryIndex(SEMANTIC, embed=embed)
    troops = feed(index, NK_TROOPS[:after])
    story_id, score = watched(index, NK_MISSILE)
    assert story_id is None
    assert score < index._semantic_bar(troops[0], after)
    assert troops[0] == troops[-1]


def _average_cosine(index: StoryIndex, e: Entry, story_id: str) -> float:
    """The average embedding cosine between ``e`` and the story's members."""
    assert index._centroids is not None
    ranked = index._centroids.best(index._embedding(e), 100, lambda s: s == story_id)
    [(average, found)] = ranked
    assert found == story_id
    return average


@needs_semantic
def test_semantic_a_tight_story_asks_more_than_a_loose_one(embed: Counting) -> None:
    """With the tightness bar off (a margin of 1: every story asks only
    semantic_threshold), the missile headline's average cosine to three troops
    headlines clears the bar; with the default margin it does not."""
    loose = StoryIndex(replace(SEMANTIC, semantic_tightness_margin=1.0), embed=embed)
    troops = feed(loose, NK_TROOPS)
    strict = StoryIndex(SEMANTIC, embed=embed)
    assert feed(strict, NK_TROOPS) == troops
    average = _average_cosine(strict, NK_MISSILE, troops[0])
    assert loose._semantic_bar(troops[0], 3) <= average < SEMANTIC.semantic_single_threshold
    assert strict._semantic_bar(troops[0], 3) > average


@needs_semantic
def test_semantic_tightness_is_the_average_cosine_between_members(embed: Counting) -> None:
    """Read off the story's sum of vectors; checked against the pairs."""
    index = StoryIndex(SEMANTIC, embed=embed)
    story = story_id_for(NK_TROOPS[0])
    for e in NK_TROOPS:
        index.add(story, e, NOW)
    vectors = embed([e.title for e in NK_TROOPS])
    pairs = [float(a @ b) for i, a in enumerate(vectors) for b in vectors[i + 1 :]]
    assert index._centroids is not None
    assert index._centroids.tightness(story) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    index.add(story_id_for(NK_MISSILE), NK_MISSILE, NOW)
    assert index._centroids.tightness(story_id_for(NK_MISSILE)) == 0.0  # one member: none


@needs_semantic
def test_semantic_joins_what_shares_no_word(embed: Counting) -> None:
    """What the lexical rule cannot do: no content word in common beyond the name a
    Twitter watchlist matched them on."""
    outage = entry("Twitter suffers outage, returns after 47 minutes down", feed="Wire")
    blackout = entry("Twitter blacks out for all users", feed="Blog")
    lexical = StoryIndex(DedupeSettings())
    semantic = StoryIndex(SEMANTIC, embed=embed)
    watchlist = {"topics": ["twitter"], "terms": ["Twitter"]}
    for index in (lexical, semantic):
        index.add(story_id_for(outage), outage, NOW, topics=["twitter"])
    assert lexical.assign(blackout, NOW, **watchlist)[0] is None
    assert semantic.assign(blackout, NOW, **watchlist)[0] == story_id_for(outage)


@needs_semantic
def test_semantic_embeds_each_entry_once(embed: Counting) -> None:
    index = StoryIndex(SEMANTIC, embed=embed)
    embed.asked.clear()
    index.prepare(NK_TROOPS)
    assert len(embed.asked) == 3  # one call for the batch...
    feed(index, NK_TROOPS)
    assert len(embed.asked) == 3  # ...and assign + add reuse it
    feed(index, [NK_MISSILE])
    assert embed.asked[3:] == [NK_MISSILE.title]  # unprepared: embedded once, not twice
    assert not index._embedded  # added entries leave the cache: their member holds the vector


@needs_semantic
def test_semantic_rebuilding_from_add_gives_the_same_assignments(embed: Counting) -> None:
    rows = load_sample()
    history, later = rows[:400], rows[400:]
    live = StoryIndex(SEMANTIC, embed=embed)
    decided = []
    for _, e, seen in history:
        story_id, _ = live.assign(e, seen)
        story_id = story_id or story_id_for(e)
        live.add(story_id, e, seen)
        decided.append((story_id, e, seen))
    rebuilt = StoryIndex(SEMANTIC, embed=embed)
    rebuilt.prepare(e for _, e, _ in decided)
    for story_id, e, seen in decided:
        rebuilt.add(story_id, e, seen)
    assert len(rebuilt) == len(live)
    for _, e, seen in later:
        assert rebuilt.assign(e, seen) == live.assign(e, seen)


@needs_semantic
def test_semantic_expiry_drops_the_vectors(embed: Counting) -> None:
    index = StoryIndex(replace(SEMANTIC, window=timedelta(hours=2)), embed=embed)
    story = feed(index, NK_TROOPS[:2], NOW)[0]
    index.add(story, NK_TROOPS[2], NOW + timedelta(hours=1))
    later = NOW + timedelta(hours=2, minutes=30)
    index.expire(later)
    assert len(index) == 1
    index.expire(later + timedelta(hours=1))
    assert len(index) == 0
    assert index._centroids is not None and not index._centroids._slot
    assert index.assign(NK_TROOPS[0], later + timedelta(hours=1)) == (None, 0.0)


@needs_semantic
def test_semantic_real_headlines_precision_floor(embed: Counting) -> None:
    """The 12 look-alike stories. Numbers at the time of writing: precision
    0.85, recall 0.37, 7.9 alerts per story (the stricter settings of the
    README: 0.99, 0.28, 9.7). Publication time (issue #11) and the higher bar
    for a join on words alone cost some recall here. The
    default trades look-alike precision for issue #4's 5 alerts per story on
    the dev set; most of the false pairs are two days' market wraps that
    carry the same headlines under two story ids (a known limit, see
    StoryIndex), so this floor guards against getting worse."""
    assigned, truth, openers = replay_sample(StoryIndex(SEMANTIC, embed=embed))
    precision, recall = pairwise(assigned, truth)
    assert precision >= 0.8
    assert recall >= 0.35
    assert openers == set(truth)  # no story hidden
    assert len(set(assigned)) / len(set(truth)) <= 8


@needs_semantic
def test_semantic_stricter_settings_keep_look_alikes_apart(embed: Counting) -> None:
    """The README's stricter settings (threshold 0.36, conflict penalty 0.08)
    give back the look-alike precision for more alerts: 0.91 and 9.2."""
    stricter = replace(SEMANTIC, semantic_threshold=0.36, semantic_conflict_penalty=0.08)
    strict, truth, openers = replay_sample(StoryIndex(stricter, embed=embed))
    default, _, _ = replay_sample(StoryIndex(SEMANTIC, embed=embed))
    assert pairwise(strict, truth)[0] >= 0.9 > pairwise(default, truth)[0]
    assert len(set(strict)) > len(set(default))
    assert openers == set(truth)


@needs_semantic
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_semantic_look_alikes_hold_up_in_shuffled_order(seed: int, embed: Counting) -> None:
    """The same stories interleaved (each is a one-minute burst in the file):
    SHUFFLED_FLOOR below what was measured at the time of writing."""
    rows = load_sample()
    random.Random(seed).shuffle(rows)
    assigned, truth, openers = replay_sample(StoryIndex(SEMANTIC, embed=embed), rows, at=NOW)
    precision, _ = pairwise(assigned, truth)
    assert precision >= SHUFFLED_FLOOR
    assert openers == set(truth)


@needs_semantic
def test_semantic_a_young_story_needs_a_close_match(embed: Counting) -> None:
    """Two troops headlines average 0.42 against the missile headline: above
    semantic_threshold, under the bar of a story whose two headlines agree as
    closely as these (0.85), which semantic_single_threshold caps."""
    index = StoryIndex(SEMANTIC, embed=embed)
    troops = feed(index, NK_TROOPS[:2])
    relaxed = StoryIndex(replace(SEMANTIC, semantic_single_threshold=SEMANTIC.semantic_threshold),
                         embed=embed)
    assert feed(relaxed, NK_TROOPS[:2]) == troops
    average = _average_cosine(index, NK_MISSILE, troops[0])
    assert index._semantic_bar(troops[0], 2) > average >= relaxed._semantic_bar(troops[0], 2)
    assert watched(index, NK_MISSILE)[0] is None


# --------------------------------------------------------------------------- the C candidate loop


needs_core = pytest.mark.skipif(dedupe_module._storycore is None,
                                reason="monitor._storycore is not built")


def _without_core(monkeypatch: pytest.MonkeyPatch, make: Callable[[], StoryIndex]) -> StoryIndex:
    """``make()`` with the Python feature table (as where the C core is not built)."""
    with monkeypatch.context() as m:
        m.setattr(dedupe_module, "_storycore", None)
        index = make()
    assert isinstance(index._table, dedupe_module._PyTable)
    return index


@needs_core
@pytest.mark.parametrize(("limit", "candidates", "shortlist"),
                         [(64, 128, 16), (2, 5, 3), (1, 1, 1), (1000, 1000, 1)])
def test_c_scores_are_the_python_ones_to_the_bit(monkeypatch: pytest.MonkeyPatch, limit: int,
                                                 candidates: int, shortlist: int) -> None:
    """monitor/_storycore.c's candidate loop against _PyTable's on two indexes of
    the same real headlines, with limits small enough to send features down
    every branch (proposing, common, the shortlist, ties)."""
    rows = load_sample()

    def make() -> StoryIndex:
        index = StoryIndex(DedupeSettings())
        replay_sample(index, rows[:500])
        return index

    index, python = make(), _without_core(monkeypatch, make)
    assert index._ids == python._ids and index._norms == python._norms
    late = (rows[499][2] - timedelta(hours=1)).timestamp()  # most stories are closed by then
    found = 0
    for i, (_, e, _) in enumerate(rows[500:]):
        horizon = late if i % 2 else rows[0][2].timestamp()
        vector = index._entry_vector(e)[0]
        args = (vector, index._norms, index._last, horizon, limit, candidates, shortlist)
        expected = python._table.scores(*args)
        got = index._table.scores(*args)
        assert got == expected
        assert list(got) == list(expected)  # the same order too
        found += len(expected)
    assert found > 50  # not a comparison of empty dicts


def _fill_and_expire(index: StoryIndex) -> StoryIndex:
    """The sample replayed a minute apart with a two-hour window, so members leave
    while others join: every branch of a posting's life (one story, several, back
    to one, gone)."""
    for i, (_, e, _) in enumerate(load_sample()[:400]):
        seen = NOW + timedelta(minutes=i)
        if i % 10 == 0:
            index.expire(seen)
        index.add(index.assign(e, seen)[0] or story_id_for(e), e, seen)
    return index


@needs_core
def test_c_accumulate_and_withdraw_are_the_python_ones_to_the_bit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = DedupeSettings(window=timedelta(hours=2))
    with_core = _fill_and_expire(StoryIndex(settings))
    without = _without_core(monkeypatch, lambda: _fill_and_expire(StoryIndex(settings)))
    entries = [e for _, e, _ in load_sample()[:400]]
    state = _table_state(with_core, entries)
    assert state == _table_state(without, entries)  # float == float: to the bit
    assert len(with_core._table) == len(without._table)
    assert {k: v.norm2 for k, v in with_core._stories.items()} == {
        k: v.norm2 for k, v in without._stories.items()}
    assert any(len(v) == 2 and v[1] > 1 for v in state.values())  # shared by stories


@needs_core
def test_c_table_refuses_what_it_cannot_read() -> None:
    assert dedupe_module._storycore is not None
    table = dedupe_module._storycore.Table()
    weights = array("f", [0.5])
    with pytest.raises(TypeError):
        table.accumulate(0, ("a",), array("d", [0.5]))
    with pytest.raises(ValueError):
        table.accumulate(0, ("a", "b"), weights)
    with pytest.raises(TypeError):
        table.accumulate(0, (1,), weights)
    with pytest.raises(ValueError):
        table.accumulate(-1, ("a",), weights)
    with pytest.raises(KeyError):
        table.withdraw(0, ("a",), weights)
    assert len(table) == 0  # nothing was changed by a refused call
    assert table.accumulate(0, ("a",), weights) == (0.0, 0.25)
    assert table.accumulate(1, ("a",), weights) == (0.0, 0.25)
    assert (table.df("a"), table.size("a"), table.count("a", 1)) == (2, 2, 1)
    with pytest.raises(KeyError):  # "b" is not held: neither is withdrawn
        table.withdraw(1, ("a", "b"), array("f", [0.5, 0.5]))
    assert table.df("a") == 2
    assert table.withdraw(1, ("a",), weights) == (0.25, 0.25)
    assert (table.df("a"), table.size("a"), table.weight("a", 0)) == (1, 1, 0.5)
    norms, seen = array("d", [1.0]), array("d", [0.0])
    with pytest.raises(ValueError, match="shortlist"):
        table.scores({"a": 1.0}, norms, seen, 0.0, 64, 128, 0)
    with pytest.raises(TypeError):
        table.scores({"a": 1.0}, [1.0], seen, 0.0, 64, 128, 16)
    with pytest.raises(IndexError):  # a story the norms do not cover
        table.scores({"a": 1.0}, array("d"), array("d"), 0.0, 64, 128, 16)
    assert table.scores({"a": 1.0}, norms, seen, 0.0, 64, 128, 16) == {0: 0.5}
    assert table.scores({"a": 1.0}, norms, seen, 1.0, 64, 128, 16) == {}  # closed
    assert table.withdraw(0, ("a",), weights) == (0.25, 0.5 * 0.5)
    assert len(table) == 0 and table.df("a") == 0


@needs_core
def test_c_and_python_tables_cluster_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    with_core = replay_sample(StoryIndex(DedupeSettings()))[0]
    without = _without_core(monkeypatch, lambda: StoryIndex(DedupeSettings()))
    assert with_core == replay_sample(without)[0]


@needs_core
@pytest.mark.parametrize(("held", "other"), [
    pytest.param("al", "\u6c61", id="ascii-and-cjk"),  # U+6C61 is stored as the bytes 61 6C
    pytest.param("\ud400\x01", "\U0001d400", id="hangul-and-astral"),  # 00 D4 01 00
    pytest.param("a\x00\x01\x00", "\U00010061", id="ascii-and-astral"),  # 61 00 01 00
    pytest.param("\u6c61", "\u6c61", id="the-same-str"),
])
def test_c_table_tells_apart_strings_that_hash_alike(held: str, other: str) -> None:
    """A str hashes its characters as stored (one, two or four bytes each), so a
    CJK character and two Latin letters can hash alike under every seed; the C
    table keys a feature by its width too, as the Python one keys it by the str."""
    table = dedupe_module._storycore.Table()
    python = dedupe_module._PyTable()
    for t in (table, python):
        t.accumulate(0, (held,), array("f", [0.5]))
    assert hash(held) == hash(other)
    for t in (table, python):
        assert (t.df(other), t.count(other, 0)) == ((1, 1) if other == held else (0, 0))


# --------------------------------------------------------------------------- an entry's side in C


def _bits(values: Iterable[float]) -> list[bytes]:
    """Floats to the bit (== takes 0.0 for -0.0)."""
    return [struct.pack("<d", v) for v in values]


# The sample's headline words, stopwords, stray letters and marks, CJK and text
# that hashes alike at different widths ("al", U+6C61), and anything at all.
_SAMPLE_WORDS = sorted({w for _, e, _ in load_sample() for w in _features(e)[1][0]})
_WORD = st.one_of(
    st.sampled_from(_SAMPLE_WORDS),
    st.sampled_from(["al", "\u6c61", "朝", "鲜", "・", "a", "7", "2024", "000", "é", "the"]),
    st.text(max_size=6),
)
_TEXTS = st.lists(st.lists(_WORD, max_size=30).map(tuple), max_size=3).map(tuple)


@functools.cache
def _filled_tables() -> tuple[Any, dedupe_module._PyTable]:
    """A C and a Python table holding the same members: the sample's headlines in
    37 stories, every fifth withdrawn again."""
    assert dedupe_module._storycore is not None
    tables = (dedupe_module._storycore.Table(), dedupe_module._PyTable())
    rng = random.Random(11)
    members = []
    for i, (_, e, _) in enumerate(load_sample()[:300]):
        features = tuple(_features(e)[0])
        weights = array("f", [rng.random() for _ in features])
        members.append((i % 37, features, weights))
        for table in tables:
            table.accumulate(i % 37, features, weights)
    for story, features, weights in members[::5]:
        for table in tables:
            table.withdraw(story, features, weights)
    return tables


@needs_core
@hypothesis.settings(max_examples=300, deadline=None)
@given(texts=_TEXTS, total=st.integers(1, 5000),
       weights=st.sampled_from([(1.0, 0.5), (0.5,), (2.0, 0.3, 7.0)]),
       pair_weight=st.sampled_from([0.5, 1.0, 0.1]), limit=st.sampled_from([0, 1, 2.5, 4, 12]),
       common=st.sets(_WORD, max_size=8), titled=st.none() | st.sets(_WORD, max_size=20))
@example(texts=(("al", "troop"), ("\u6c61",)), total=1, weights=(1.0, 0.5), pair_weight=0.5,
         limit=1, common=set(), titled=None)  # total 1: new features weigh 0, no vector
def test_c_entry_side_is_the_python_one_to_the_bit(
        texts: tuple[tuple[str, ...], ...], total: int, weights: tuple[float, ...],
        pair_weight: float, limit: float, common: set[str], titled: set[str] | None) -> None:
    """An entry's vector (the same features in the same order, the same weights to the
    bit), what it shares with each story and which of its words are frequent: the C
    table's answers are the Python table's."""
    table, python = _filled_tables()
    vector = table.vector(texts, weights, pair_weight, total)
    expected = python.vector(texts, weights, pair_weight, total)
    assert list(vector) == list(expected)
    assert _bits(vector.values()) == _bits(expected.values())
    grams = dedupe_module._grams(texts, weights, pair_weight)
    made = dedupe_module._storycore.grams(texts, weights, pair_weight)
    assert list(made) == list(grams) and _bits(made.values()) == _bits(grams.values())
    features = list(grams)
    for story in (0, 5, 36, 37):
        assert table.holding(story, features) == python.holding(story, features)
        assert _bits(table.weights(story, features)) == _bits(python.weights(story, features))
        unordered = frozenset(features)  # in the set's order, whichever table reads it
        assert _bits(table.weights(story, unordered)) == _bits(python.weights(story, unordered))
        for words in (texts, texts[:1]):
            assert (table.concepts(story, words, common, titled)
                    == python.concepts(story, words, common, titled))
            assert table.shared(story, words, common) == python.shared(story, words, common)
    assert table.frequent(texts, limit) == python.frequent(texts, limit)


@needs_core
def test_c_entry_side_refuses_what_it_cannot_read() -> None:
    core = dedupe_module._storycore
    assert core is not None
    table = core.Table()
    table.accumulate(0, ("a",), array("f", [0.5]))
    weights = (1.0, 0.5)
    with pytest.raises(TypeError):
        table.vector((("a", 1),), weights, 0.5, 10)  # words are str
    with pytest.raises(TypeError):
        table.vector((("a",),), ("heavy",), 0.5, 10)
    with pytest.raises(TypeError):
        table.vector(None, weights, 0.5, 10)
    with pytest.raises(ValueError):
        table.vector((("a",),), weights, 0.5, 0)  # math.log(0) in Python
    with pytest.raises(TypeError):
        core.grams((("a", None),), weights, 0.5)
    assert core.grams((("a", "b", "a"), ("b",)), weights, 0.5) == {"a": 1.0, "b": 1.0,
                                                                  "a b": 0.5, "b a": 0.5}
    with pytest.raises(TypeError):
        table.holding(0, ("a", None))
    with pytest.raises(ValueError):
        table.holding(-1, ("a",))
    with pytest.raises(TypeError):
        table.frequent((("a", 2),), 1)
    with pytest.raises(TypeError):
        table.weights(0, (b"a",))
    with pytest.raises(TypeError):
        table.concepts(0, (("a", 1),), (), None)
    with pytest.raises(TypeError):
        table.concepts(0, (("a",),), 7, None)  # common: a container
    with pytest.raises(TypeError):
        table.shared(0, ((b"a",),), ())
    assert list(table.vector(((), ("a", "b")), weights, 0.5, 10)) == ["a", "b", "a b"]
    assert table.vector((), weights, 0.5, 10) == {}
    assert table.holding(0, ["a", "b"]) == {"a"} and table.frequent([["a", "b"]], 1) == {"a"}
    assert table.concepts(0, [["a", "b", "a"], ["a"]], set(), None) == 1.0
    assert table.concepts(0, [["b"], ["a"]], set(), None) == 0.5  # in the summary only
    assert table.concepts(0, [["a"]], {"a"}, None) == 0.0  # common
    assert table.concepts(0, [["a"]], set(), {"b"}) == 0.5  # not in the story's headlines
    assert table.shared(0, [["a", "b", "a"], ["a"]], ()) == ("a",)
    with pytest.raises(TypeError):
        core.words(("a",), dedupe_module._STOPWORDS, 5)  # tokens: a list
    with pytest.raises(TypeError):
        core.words(["troops", 7], dedupe_module._STOPWORDS, 5)
    with pytest.raises(TypeError):
        core.words(["troops"], ["the"], 5)
    with pytest.raises(ValueError):
        core.words(["troops"], dedupe_module._STOPWORDS, 0)
    with pytest.raises(TypeError):
        core.without([("a", 1.0)], frozenset())
    with pytest.raises(TypeError):
        core.without({"a": 1.0}, ["a"])
    with pytest.raises(TypeError):
        core.without({"a": 1.0}, frozenset({1}))
    with pytest.raises(TypeError):
        core.without({"a": "heavy"}, frozenset())
    with pytest.raises(TypeError):
        core.subject_pairs([("a b",)], frozenset({"a"}))
    with pytest.raises(TypeError):
        core.subject_pairs([(("a", 2), 1)], frozenset({"a"}))
    assert core.without({"a b": 3.0, "c": 4.0}, frozenset({"b"})) == {"c": 1.0}
    assert core.subject_pairs([(("a", "b", "c"), 1), (("c", "b"), 2)], frozenset({"b"})) == [
        "b c", "c b"]
    with pytest.raises(TypeError):
        core.ascii_words(b"troops", dedupe_module._STOPWORDS, 5)
    with pytest.raises(TypeError):
        core.ascii_words("troops", ("the",), 5)
    assert core.words(["the", "troops", "", "x", "朝"], dedupe_module._STOPWORDS, 5) == [
        "troop", "", "朝"]


_TOKEN = st.one_of(
    st.sampled_from(sorted(dedupe_module._STOPWORDS)),
    st.sampled_from(["a", "7", "・", "ー", "é", "朝", "troops", "ukrainian", "2024", "x1", "ǅ"]),
    st.text(max_size=8),
)


@needs_core
@given(st.lists(_TOKEN, max_size=40))
def test_c_words_are_the_python_ones(tokens: list[str]) -> None:
    assert dedupe_module._storycore is not None
    got = dedupe_module._storycore.words(tokens, dedupe_module._STOPWORDS,
                                         dedupe_module._PREFIX)
    assert got == dedupe_module._filter_words(tokens)


@needs_core
@given(st.text(st.one_of(st.sampled_from(list("aZ9 _-'.,\t")), st.characters(max_codepoint=127))))
@example("The U.S. and N. Korea: 2 a.m. talks on NATO's 'Ukraine' plan")
def test_c_words_of_ascii_text_are_the_python_ones(text: str) -> None:
    assert dedupe_module._storycore is not None
    got = dedupe_module._storycore.ascii_words(text, dedupe_module._STOPWORDS,
                                               dedupe_module._PREFIX)
    assert got == dedupe_module._filter_words(tokenize(text))
    assert dedupe_module._storycore.ascii_words(text + "é", dedupe_module._STOPWORDS,
                                                dedupe_module._PREFIX) is None


@given(st.text(st.one_of(st.sampled_from(list("aZ9 _-'.,’“—éÉß\u0301朝鲜한かЁж・𝐀")),
                         st.characters())))
@example("The U.S. and N. Korea: 2 a.m. talks")
def test_words_are_the_content_words_of_tokenize(text: str) -> None:
    """_words reads token_string's words, which are tokenize's (tests/test_text.py)."""
    assert dedupe_module._words(text) == dedupe_module._filter_words(tokenize(text))


_SUMMARY = st.one_of(
    st.text(st.sampled_from(list("ab .!?\n\t\u3002\u00a0")), max_size=900),
    st.tuples(st.integers(0, 800), st.text(st.sampled_from(list("a .!?\n")), max_size=200))
    .map(lambda t: "x" * t[0] + t[1]),
)


@given(_SUMMARY)
@example("x" * 398 + ". Next")
@example("x" * 399 + ". Next")
@example("x" * 400 + ". Next")
def test_summary_head_is_its_first_sentences_cut(summary: str) -> None:
    sentences = dedupe_module._SENTENCE_END.split(summary, maxsplit=2)
    assert dedupe_module._summary_head(summary) == " ".join(sentences[:2])[:400]


def test_a_storys_subject_pairs_are_the_pairs_among_its_features() -> None:
    """_Story.pairs_with makes from its members' words the pairs that features() holds
    with a subject word, in the same order (the order a norm subtracts them in)."""
    index = StoryIndex(DedupeSettings())
    rows = load_sample()
    for i, (_, e, seen) in enumerate(rows):
        if i % 2:
            e = replace(e, summary=f"{rows[i - 1][1].title}. {rows[i - 3][1].title}")
        index.add(index.assign(e, seen)[0] or story_id_for(e), e, seen)
    rng = random.Random(5)
    checked = 0
    for story in index._stories.values():
        words = sorted({w for m in story.members for w in m.words})
        for k in (1, 2, 4):
            subject = frozenset(rng.sample(words, min(k, len(words))) + ["absent"])
            expected = [f for f in story.features()
                        if " " in f and not subject.isdisjoint(f.split(" "))]
            assert story.pairs_with(subject) == expected
            checked += bool(expected)
    assert checked > 100


_SUBJECT = st.frozensets(st.one_of(st.sampled_from(["korea", "north", "troop", "", "a b"]),
                                   _WORD), max_size=5)


@needs_core
@given(vector=st.dictionaries(st.one_of(_WORD, st.builds(" ".join, st.lists(_WORD, max_size=3))),
                              st.floats(0.0, 1.0) | st.sampled_from([1e-200, 0.0, 1e100]),
                              max_size=40),
       subject=_SUBJECT)
@example(vector={"north korea": 0.5, "korea": 0.5, "troop": 0.7}, subject=frozenset({"korea"}))
@example(vector={"a  b": 0.5, " x": 0.5}, subject=frozenset({""}))  # empty parts
def test_c_without_is_the_python_one_to_the_bit(vector: dict[str, float],
                                                subject: frozenset[str]) -> None:
    got = dedupe_module._without(vector, subject)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(dedupe_module, "_storycore", None)
        expected = dedupe_module._without(vector, subject)
    assert list(got) == list(expected)
    assert _bits(got.values()) == _bits(expected.values())


@needs_core
@given(members=st.lists(st.tuples(st.lists(_WORD, max_size=12).map(tuple), st.integers(-3, 14)),
                        max_size=9),
       subject=_SUBJECT)
def test_c_subject_pairs_are_the_python_ones(members: list[tuple[tuple[str, ...], int]],
                                             subject: frozenset[str]) -> None:
    story = dedupe_module._Story(no=0, members=[
        dedupe_module._Member(ident=i, story_id="s", url=0, packed=b"", words=words, n_title=n)
        for i, (words, n) in enumerate(members)])
    got = story.pairs_with(subject)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(dedupe_module, "_storycore", None)
        assert got == story.pairs_with(subject)


def _decide_all(settings: DedupeSettings) -> list[str]:
    """Every decision on the sample, with summaries and expiry, and with a watchlist
    subject for half the entries, as exact reprs."""
    rows = load_sample()[:400]
    index = StoryIndex(settings)
    out = []
    for i, (_, e, _) in enumerate(rows):
        if i % 3:  # a summary of two sentences from other headlines
            e = replace(e, summary=f"{rows[i - 1][1].title}. {rows[i - 2][1].title}")
        topics, terms = (["all"], [e.title.split()[0]]) if i % 2 else ([], [])
        seen_at = NOW + timedelta(minutes=i)
        if i % 10 == 0:
            index.expire(seen_at)
        join = index.decide(e, seen_at, topics=topics, terms=terms)
        index.add(join.story_id or story_id_for(e), e, seen_at, topics=topics)
        out.append(repr(join))
    return out


@needs_core
def test_c_and_python_paths_decide_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every decision (story, score and bar to the bit, evidence, weak), with
    summaries, watchlist subjects and expiry, whether the C core is used or not."""
    settings = DedupeSettings(window=timedelta(hours=3))
    with_core = _decide_all(settings)
    with monkeypatch.context() as m:
        m.setattr(dedupe_module, "_storycore", None)
        without = _decide_all(settings)
    assert with_core == without
    assert sum("story_id=None" not in j for j in with_core) > 50  # joins, not only new stories


@given(st.lists(st.tuples(st.booleans(), st.lists(st.sampled_from("abcdef"), max_size=4)),
                max_size=40))
def test_what_members_agree_on_is_kept_as_a_recount_would_find_it(
        steps: list[tuple[bool, list[str]]]) -> None:
    """A story's core words and agreed numbers are kept up to date member by member
    (a big story must not cost its size per lookup); at every step they are what
    counting every member again finds."""
    held = {strict: dedupe_module._Held(strict=strict) for strict in (True, False)}
    members: list[list[str]] = []
    for coming, words in steps:
        if coming or not members:
            members.append(words)
            for h in held.values():
                h.came(words, len(members))
        else:
            gone = members.pop(len(words) % len(members))
            for h in held.values():
                h.went(gone, len(members))
        counts = Counter(w for m in members for w in m)
        size = len(members)
        assert set(held[True].held) == {w for w, c in counts.items() if 2 * c > size}
        assert set(held[False].held) == {w for w, c in counts.items() if 2 * c >= size}
        assert held[True].counts == dict(counts)
