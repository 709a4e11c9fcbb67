"""Story grouping never hides a different event (issue #11): the watchlist's own
names are no evidence, publication time bounds a join, and the CLI shows and
undoes merges. Table tests on StoryIndex, then whole runs of the real CLI."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feeds import RSS, seed_story
from servers import FeedServer, SlackServer, SMTPServer
from test_end_to_end import NK_WATCHLIST, cli, make_config

from monitor import config as cfg
from monitor.dedupe import DedupeSettings, StoryIndex, event_time, story_id_for
from monitor.match import Matcher
from monitor.parse import parse_feed
from monitor.service import Service, decide
from monitor.types import Entry, Watchlist
from monitor.urls import canonical_url

DATA = Path(__file__).parent / "data"
NOW = datetime(2024, 11, 5, 12, 0, tzinfo=UTC)
NK_UA = Watchlist(name="nk-ua", query='("North Korea*" OR Pyongyang) AND (Ukrain* OR Kyiv)')


def entry(title: str, *, feed: str = "Wire", summary: str = "",
          published: datetime | None = NOW, n: int = 0) -> Entry:
    link = f"https://{feed.lower().replace(' ', '')}.example/{abs(hash(title))}/{n}"
    return Entry(feed=feed, key=link, guid=None, link=link, canonical_url=canonical_url(link),
                 title=title, summary=summary, published=published)


def background() -> list[Entry]:
    """Real headlines from four outlets' feeds (2017, 2021): the rest of the news."""
    out: list[Entry] = []
    for name in ("headlines-2021-10-17_cnn.xml", "headlines-2021-10-17_fox.xml",
                 "headlines-2021-10-17_latimes.xml", "node-feedparser_tpm.atom"):
        out += parse_feed((DATA / name).read_bytes(), name, canonicalize=canonical_url)
    return out


def group(index: StoryIndex, matcher: Matcher, entries: list[Entry], seen: datetime) -> list[str]:
    """Drive the index as the service does: match, decide with the watchlists, add."""
    out = []
    for e in entries:
        found = matcher.match(e)
        topics = [m.watchlist for m in found]
        join = index.decide(e, seen, topics=topics, terms=[t for m in found for t in m.terms])
        story = join.story_id or story_id_for(e)
        index.add(story, e, seen, topics=topics)
        out.append(story)
    return out


def test_only_a_watchlist_match_is_kept_from_joining_on_one_name() -> None:
    """An entry no watchlist matched alerts no one, so it may join a story it shares
    one rare name with; the same entry matched by a watchlist on that name has
    nothing left to share and opens its own story."""
    index = StoryIndex(DedupeSettings())
    for e in background():
        index.add(story_id_for(e), e, NOW - timedelta(hours=1))
    first = entry("Edward Snowden says NSA mass surveillance put Americans at risk", feed="A")
    index.add(story_id_for(first), first, NOW)
    angle = entry("Snowden to speak by video at South by Southwest festival", feed="B", n=1)
    unwatched = index.decide(angle, NOW)
    assert unwatched.story_id == story_id_for(first)
    assert unwatched.weak  # one shared word: shown as "possibly the same story"
    watched = index.decide(angle, NOW, topics=["snowden"], terms=["Snowden"])
    assert watched.story_id is None


# Twelve distinct real events of 2024, each naming North Korea and Ukraine.
TWELVE = [
    ("North Korea sends thousands of troops to Russia's Kursk region to fight Ukraine",
     "Seoul's spy agency says North Korean soldiers have been moved to the Kursk border area."),
    ("Ukraine says many North Korean artillery shells fail on the battlefield",
     "Ukrainian officers say up to half of the shells shipped from Pyongyang misfire or explode."),
    ("North Korea and Russia start building a road bridge over the Tumen river as Ukraine "
     "war drags on", "The bridge would be the first road link between the two countries."),
    ("Kim Jong Un hosts Russian defence minister Belousov in Pyongyang amid Ukraine war",
     "The visit follows the signing of a mutual defence treaty in June."),
    ("UN Security Council meets on North Korean arms transfers to Russia for Ukraine war",
     "Western members accuse Moscow of violating sanctions it voted for."),
    ("North Korea fires ballistic missile into the sea as the world watches Ukraine",
     "Japan's coast guard says the missile fell outside its exclusive economic zone."),
    ("Ukraine captures two North Korean soldiers, Zelensky says",
     "The wounded men were taken to Kyiv and are being questioned by the SBU."),
    ("EU adopts new sanctions over North Korea's military support for Russia's war in Ukraine",
     "The package lists generals and shipping firms."),
    ("North Korean hackers behind $1.5bn crypto exchange heist, FBI says, as Ukraine war "
     "funding fears grow", "The Lazarus group laundered the stolen ether within days."),
    ("North Korean ballet troupe performs in Moscow as Kremlin courts Pyongyang over Ukraine",
     "The Bolshoi stage hosted the dancers for three nights."),
    ("Ukrainian drone strike hits Russian depot storing North Korean missiles",
     "Satellite images show a crater where the ammunition warehouse stood."),
    ("Seoul weighs sending weapons to Ukraine after North Korea deploys soldiers",
     "President Yoon says South Korea could supply defensive arms."),
]


@pytest.mark.parametrize("published", [NOW, None], ids=["same-time", "undated"])
def test_twelve_north_korea_ukraine_events_are_twelve_stories(
        published: datetime | None) -> None:
    """All published at once (or undated): only what happened tells them apart."""
    index = StoryIndex(DedupeSettings())
    matcher = Matcher.compile([NK_UA])
    group(index, matcher, background(), NOW - timedelta(hours=1))
    events = [entry(t, summary=s, published=published, feed=f"Outlet {i}")
              for i, (t, s) in enumerate(TWELVE)]
    assert all(matcher.match(e) for e in events)
    joins = []
    for e in events:
        found = matcher.match(e)
        topics = [m.watchlist for m in found]
        joins.append(index.decide(e, NOW, topics=topics, terms=[t for m in found for t in m.terms]))
        index.add(joins[-1].story_id or story_id_for(e), e, NOW, topics=topics)
    stories = [j.story_id or story_id_for(e) for j, e in zip(joins, events, strict=True)]
    # At most one merge, on thin evidence ("Un" of Kim Jong Un and "war" against the UN
    # Council's "war"), and shown to the team as "possibly the same story".
    assert len(set(stories)) >= 11, [t for t, _ in TWELVE]
    merged = [j for j in joins if j.story_id in {story_id_for(e) for e in events}]
    assert all(j.weak for j in merged), merged
    # Another outlet's report of one of them still joins it: the grouping works at all.
    second = entry("Thousands of North Korean soldiers moved to Kursk region, "
                   "Seoul's spy agency says", feed="Second Wire", published=published,
                   summary="North Korea has moved thousands of troops to Russia's Kursk border "
                   "area to fight Ukraine, South Korea's intelligence service says.")
    assert group(index, matcher, [second], NOW)[0] == stories[0]


def test_an_item_published_years_before_its_look_alike_stays_apart() -> None:
    index = StoryIndex(DedupeSettings())
    old = entry("China sends warning to US in military training propaganda video",
                feed="CNN", published=datetime(2021, 10, 16, 23, 0, tzinfo=UTC))
    index.add(story_id_for(old), old, NOW - timedelta(hours=1))  # seen recently, published 2021
    new = entry("China sends record 56 warplanes toward Taiwan", feed="Reuters")
    assert index.decide(new, NOW).story_id is None
    # The same headline months ago is no more the same story than years ago.
    copy = replace(old, feed="Fox", key="https://fox.example/1", link="https://fox.example/1",
                   canonical_url="https://fox.example/1", published=NOW - timedelta(days=90))
    assert index.decide(copy, NOW).story_id is None
    # Published within hours of each other, the same headline is the same story.
    twin = replace(copy, published=old.published + timedelta(hours=2))  # type: ignore[operator]
    assert index.decide(twin, NOW).story_id == story_id_for(old)


def test_the_evidence_needed_rises_with_the_time_gap() -> None:
    index = StoryIndex(DedupeSettings())
    start = NOW - timedelta(hours=50)
    first = entry("Boeing halts 737 MAX deliveries after FAA finds wiring flaw", feed="AP",
                  published=start)
    index.add(story_id_for(first), first, NOW)
    later = entry("FAA wiring flaw finding halts Boeing 737 MAX deliveries", feed="Reuters")
    bars = [index.decide(replace(later, published=start + timedelta(hours=h)), NOW).bar
            for h in (0, 6, 24)]
    assert bars[0] < bars[1] < bars[2] < 1.0
    late = replace(later, published=start + timedelta(hours=49))
    assert index.decide(late, NOW).story_id is None


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        pytest.param(NOW - timedelta(days=900), NOW - timedelta(days=900), id="old-but-real"),
        pytest.param(None, NOW, id="missing"),
        pytest.param(datetime(999, 6, 1, tzinfo=UTC), NOW, id="year-999"),
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), NOW, id="epoch"),
        pytest.param(NOW + timedelta(hours=20), NOW + timedelta(hours=20), id="clock-skew"),
        pytest.param(NOW + timedelta(days=3), NOW, id="far-future"),
    ],
)
def test_event_time_falls_back_to_first_seen(published: datetime | None,
                                             expected: datetime) -> None:
    assert event_time(entry("x", published=published), NOW) == expected


def test_a_watchlist_subject_is_what_its_matches_share() -> None:
    """North Korea AND Ukraine discounts both names; a broad watchlist only its matched
    terms; and a word most of a watchlist's matches carry becomes its subject too."""
    index = StoryIndex(DedupeSettings())
    matcher = Matcher.compile([NK_UA, Watchlist(name="world", any=("troops", "election"))])
    e = entry("North Korea sends troops to Ukraine via Vladivostok")
    texts = index._entry_vector(e)[1]
    [nk, world] = sorted(matcher.match(e), key=lambda m: m.watchlist)
    assert index._subject(texts, ["nk-ua"], nk.terms) == {"north", "korea", "ukrai"}
    assert index._subject(texts, ["world"], world.terms) == {"troop"}
    for i in range(8):
        other = entry(f"Pyongyang Kyiv Vladivostok story {i} about event{i}", n=i)
        index.add(story_id_for(other), other, NOW, topics=["nk-ua"])
    assert "vladi" in index._subject(texts, ["nk-ua"], nk.terms)
    assert "vladi" not in index._subject(texts, ["world"], world.terms)


# --------------------------------------------------------------------------- whole runs


def _feeds(feed_server: FeedServer, names: list[str]) -> dict[str, tuple[str, RSS]]:
    out = {}
    for i, name in enumerate(names):
        path = f"/{i}.xml"
        rss = RSS(title=name)
        feed_server.set(path, rss.render())
        out[name] = (path, rss)
    return out


def _publish(feed_server: FeedServer, feeds: dict[str, tuple[str, RSS]]) -> None:
    for path, rss in feeds.values():
        feed_server.set(path, rss.render())


def test_seed_story_on_three_outlets_and_two_other_events_in_one_poll(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    """Three posts (the seed story, the shells, the bridge) and one update naming the
    other outlets of the seed story."""
    feeds = _feeds(feed_server, ["Daily Wire", "Global Times", "Evening Herald"])
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in feeds.items()})
    assert cli(config, "run", "--once").returncode == 0  # first polls record nothing
    title, summary = seed_story()
    feeds["Daily Wire"][1].add(title, "https://dailywire.example/nk-troops", summary)
    feeds["Daily Wire"][1].add(
        "Ukraine says many North Korean artillery shells fail on the battlefield",
        "https://dailywire.example/shells",
        "Ukrainian commanders say up to half the shells sent from Pyongyang misfire.")
    feeds["Global Times"][1].add(
        "North Korea and Russia start building a road bridge as Ukraine war drags on",
        "https://globaltimes.example/bridge",
        "The bridge over the Tumen river will be the first road link between the two.")
    _publish(feed_server, feeds)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    posted = [m.text or "" for m in slack_server.messages]
    assert len(posted) == 3, posted

    feeds["Global Times"][1].add(
        "North Korea to send thousands of troops to Ukraine front, think tank ISW says",
        "https://globaltimes.example/nk-troops",
        "Several thousand North Korean soldiers are training in Russia and could be deployed "
        "to the frontline in Ukraine by the end of 2024, the Institute for the Study of War says.")
    feeds["Evening Herald"][1].add(
        "Thousands of North Korean troops training in Russia for Ukraine frontline, ISW says",
        "https://herald.example/nk-troops",
        "The Institute for the Study of War says several thousand North Korean infantry are "
        "training inside Russia ahead of deployment to the Ukraine frontline.")
    _publish(feed_server, feeds)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) - sum(1 for m in slack_server.messages if m.thread_ts) == 3
    updated = {u.ts for u in slack_server.updates}
    assert len(updated) == 1, slack_server.updates
    [seed] = [m for m in slack_server.messages if m.ts in updated]
    shown = json.dumps(seed.blocks) + str(seed.text)
    assert "Global Times" in shown and "Evening Herald" in shown
    assert "herald.example/nk-troops" in shown  # each outlet's own headline, as a link


def test_sixty_distinct_stories_sharing_only_the_watchlist_names_alert_sixty_times(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    words = ("harbour grain cyber ballet satellite orphanage uranium tunnel fishermen railway "
             "embassy vaccine lottery tanker drought pianist refinery copper monastery glacier "
             "bakery submarine passport volcano football chess parliament clinic robot library "
             "circus vineyard airport casino lighthouse bridge museum orchestra helicopter "
             "textile charity pipeline festival reactor forest telescope prison marathon "
             "cathedral spaceport hospital opera frigate quarry dolphin camera typhoon diamond "
             "bicycle kite").split()
    assert len(words) == 60
    feeds = _feeds(feed_server, ["Wire"])
    # Sixty from one feed in one poll: above the default flood guard (max_per_poll 20).
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in feeds.items()},
                         watchlists={"nk.yaml": NK_WATCHLIST + "max_per_poll: 60\n"},
                         extra="  \n")
    assert cli(config, "run", "--once").returncode == 0
    start = datetime.now(UTC) - timedelta(minutes=1)
    for i, word in enumerate(words):
        feeds["Wire"][1].add(f"North Korea and the {word} in Ukraine", f"https://wire.example/{i}",
                             published=start + timedelta(seconds=0.3 * i))
    _publish(feed_server, feeds)
    r = cli(config, "run", "--once", timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 60
    assert len(smtp_server.received) == 60


def test_explain_split_and_a_weak_join_posted_as_a_thread_reply(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer) -> None:
    feeds = _feeds(feed_server, ["Wire A", "Wire B"])
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in feeds.items()})
    assert cli(config, "run", "--once").returncode == 0
    feeds["Wire A"][1].add("North Korea sends troops to Ukraine's Kursk front",
                           "https://a.example/kursk")
    _publish(feed_server, feeds)
    assert cli(config, "run", "--once").returncode == 0
    [post] = slack_server.messages
    # Another outlet, sharing only "Kursk front" beyond the watchlist's names: a weak join.
    feeds["Wire B"][1].add("Kursk front: Ukraine reports North Korean units in combat",
                           "https://b.example/units")
    _publish(feed_server, feeds)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    replies = [m for m in slack_server.messages if m.thread_ts == post.ts]
    assert len(replies) == 1, slack_server.messages
    assert "Possibly the same story: Wire B: Kursk front" in (replies[0].text or "")
    assert "b.example/units" in (replies[0].text or "")

    r = cli(config, "stories", "--since", "1h", "--explain")
    assert r.returncode == 0, r.stderr
    assert "opened the story" in r.stdout
    assert "tfidf: score" in r.stdout and "shared: kursk front" in r.stdout, r.stdout
    assert "weak: possibly the same story" in r.stdout

    # Undo the merge: its own story, and the alert it would have caused goes out.
    r = cli(config, "stories", "split", "https://b.example/units")
    assert r.returncode == 0, r.stderr
    assert "2 alerts queued" in r.stdout, r.stdout  # Slack and email
    assert cli(config, "run", "--once").returncode == 0
    tops = [m for m in slack_server.messages if not m.thread_ts]
    assert len(tops) == 2 and "Kursk front: Ukraine reports" in (tops[1].text or "")
    r = cli(config, "stories", "--since", "1h", "--explain")
    assert r.stdout.count("opened the story") == 1 and "split" in r.stdout, r.stdout
    # Splitting again is refused: it is alone in its story now.
    assert cli(config, "stories", "split", "https://b.example/units").returncode == 1
    assert cli(config, "stories", "split", "https://nowhere.example/x").returncode == 1


async def test_a_split_reaches_a_running_service(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`stories split` from the CLI while a service runs: the service's index moves
    the entry, so a later report of the split-off event joins it, not the old story."""
    from monitor import config as cfg
    from monitor.service import Service

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    feeds = _feeds(feed_server, ["Wire A", "Wire B", "Wire C"])
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in feeds.items()})
    async with Service(cfg.load(config)) as service:
        await service.run_once(drain_timeout=10)
        feeds["Wire A"][1].add("North Korea sends troops to Ukraine's Kursk front",
                               "https://a.example/kursk")
        _publish(feed_server, feeds)
        await service.run_once(drain_timeout=10)
        feeds["Wire B"][1].add("Kursk front: Ukraine reports North Korean units in combat",
                               "https://b.example/units")
        _publish(feed_server, feeds)
        await service.run_once(drain_timeout=10)
        assert len([m for m in slack_server.messages if not m.thread_ts]) == 1

        r = await asyncio.to_thread(cli, config, "stories", "split", "https://b.example/units")
        assert r.returncode == 0, r.stderr
        feeds["Wire C"][1].add("Ukraine reports North Korean units in combat on Kursk front",
                               "https://c.example/units")
        _publish(feed_server, feeds)
        await service.run_once(drain_timeout=10)
    tops = [m for m in slack_server.messages if not m.thread_ts]
    assert len(tops) == 2, [m.text for m in tops]  # the split's own alert; C joined it
    r = cli(config, "stories", "--since", "1h", "--explain")
    [b_story] = [block for block in r.stdout.split("\n2") if "b.example/units" in block]
    assert "c.example/units" in b_story, r.stdout


def test_the_index_holds_only_what_someone_watches(
        tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer,
        smtp_server: SMTPServer, caplog: pytest.LogCaptureFixture) -> None:
    """An outlet that words a watched story so the watchlist misses it still joins the
    story (one more outlet under the alert); two retellings of a story nobody watches
    stay apart, since neither is held for the other to join, and cost no index."""
    feeds = _feeds(feed_server, ["Wire A", "Wire B", "Wire C"])
    config = make_config(tmp_path, feed_server, slack_server, smtp_server,
                         {name: path for name, (path, _) in feeds.items()})
    assert cli(config, "run", "--once").returncode == 0
    feeds["Wire A"][1].add("North Korea sends 10,000 troops to Kursk to fight Ukraine",
                           "https://a.example/kursk")
    feeds["Wire A"][1].add("Storm Bert floods the harbour town of Pontypridd",
                           "https://a.example/storm")
    feeds["Wire B"][1].add("Pyongyang sends 10,000 troops to Kursk, says Seoul",
                           "https://b.example/kursk")
    feeds["Wire C"][1].add("Storm Bert floods harbour town of Pontypridd overnight",
                           "https://c.example/storm")
    _publish(feed_server, feeds)
    r = cli(config, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert len(slack_server.messages) == 1
    r = cli(config, "stories", "--since", "1h", "--json")
    stories = [json.loads(line) for line in r.stdout.splitlines()]
    links = sorted(sorted(src["link"] for src in s["sources"]) for s in stories)
    assert links == [["https://a.example/kursk", "https://b.example/kursk"],
                     ["https://a.example/storm"], ["https://c.example/storm"]], links

    # A restart rebuilds the same index, reading the watched story's entries alone.
    async def held_after_restart() -> tuple[int, int]:
        env = {"SLACK_BOT_TOKEN": "xoxb-test-token"}
        async with Service(cfg.load(config, env), env=env, watch_files=False) as s:
            await s._owned(lambda: None)  # after the fill, which runs first on that thread
            return len(s.index), s.index.stories()

    with caplog.at_level(logging.DEBUG, logger="monitor.service"):
        assert asyncio.run(held_after_restart()) == (2, 1)
    # Of the four entries stored, the two of the watched story were read.
    assert any("index.filled entries=2 held=2" in r.getMessage() for r in caplog.records)


def test_a_poll_is_grouped_in_the_order_its_entries_happened() -> None:
    """A feed lists its newest item first; grouping (and alerting) takes a poll's new
    items oldest first, an undated one as of when it was seen, so a story's first
    report opens it."""
    older = entry("Storm reaches the coast", published=NOW - timedelta(hours=2))
    newer = entry("Storm floods the harbour", published=NOW - timedelta(hours=1), n=1)
    undated = entry("Storm: ferries cancelled", published=None, n=2)
    later = NOW + timedelta(minutes=5)
    d = decide([undated, newer, older], {}, first_poll=False, now=later,
               backfill=timedelta(0), retention=timedelta(days=30))
    assert d.new == (older, newer, undated)
    assert d.alertable == {older.key, newer.key, undated.key}
