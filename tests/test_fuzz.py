"""Random bytes, random XML and random Unicode in every field, through parse,
match, group, store and render (issue #12): no exception escapes but the ones
we mean (ParseError for a body that is no feed), no field is over its cap and
no control character comes out the other end."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import sanitize
from monitor.dedupe import DedupeSettings, StoryIndex, story_id_for
from monitor.deliver.email import EmailSender
from monitor.errors import ParseError
from monitor.match import Matcher
from monitor.parse import parse_feed
from monitor.render import Renderer
from monitor.store import SqlStore, StoredEntry, alert_id, open_store
from monitor.store.sql import PollRecord
from monitor.types import Alert, Entry, Watchlist
from monitor.urls import canonical_url

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# FUZZ_EXAMPLES=1000 for a longer hunt; make test runs the default, a few seconds.
FAST = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WATCHLISTS = [Watchlist(name="any", any=("a", "the", "news", "é"), notify=("d",)),
              Watchlist(name="q", query='"north korea" OR ukraine', notify=("d",))]
MATCHER = Matcher.compile(WATCHLISTS)
RENDERER = Renderer(TEMPLATES)
MAILER = EmailSender("mail", host="127.0.0.1", sender="a@example.org", to=["b@example.org"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/state.db")
    yield s
    s.close()


# Text that is hard on every stage: controls, surrogates, bidi, markup, entities.
_chars = st.one_of(st.characters(codec=None),
                   st.sampled_from("\x00\x1b\x07\x9b\ud800\udcff\u202e&<>\n\r\t"))
nasty = st.text(_chars, max_size=300)


def _ref(c: str) -> str:
    """A character as XML may carry it: raw where allowed, else a numeric reference
    (which XML forbids for controls: exactly what a hostile feed sends)."""
    code = ord(c)
    if code < 0x20 and c not in "\t\n\r" or 0xd800 <= code <= 0xdfff or code in (0xfffe, 0xffff):
        return f"&#{code};"
    return escape(c)


# XML text: escaped characters, numeric references and raw markup soup. No
# surrogate references here: feedparser gives up on the whole document for one
# (a ParseError, tested below), which would leave nothing for the later stages.
_xml_chars = st.one_of(st.characters(codec=None, exclude_categories=("Cs",)),
                       st.sampled_from("\x00\x1b\x07\x9b\u202e&<>\n\r\t"))
xml_text = st.lists(st.one_of(
    _xml_chars.map(_ref), _xml_chars.map(_ref), _xml_chars.map(_ref),
    st.sampled_from(["]]>", "&#0;", "&#27;", "&#x9b;", "&amp;amp;", "<b>", "</b>", "<script>",
                     "<![CDATA[\x1b]0;x\x07]]>", "&lt;!channel&gt;", "&nosuch;"]),
), max_size=60).map("".join)


@st.composite
def feeds(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        fields = {
            "title": draw(xml_text), "link": draw(xml_text), "guid": draw(xml_text),
            "description": draw(xml_text),
            "pubDate": draw(st.one_of(xml_text, st.sampled_from(
                ["0999-06-01T00:00:00Z", "Sat, 01 Jan 2300 00:00:00 GMT", "", "99999-01-01",
                 "Mon, 25 Nov 2026 11:00:00 GMT", "1970-01-01T00:00:00Z"]))),
        }
        items.append("<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
                     + "</item>")
    doc = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>F</title>"
           + "".join(items) + "</channel></rss>")
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    data = doc.encode(encoding, "surrogatepass" if encoding != "latin-1" else "replace")
    if encoding == "utf-16":
        data = data.replace(b"u\x00t\x00f\x00-\x008\x00", b"u\x00t\x00f\x00-\x001\x006\x00")
    return data


def _check(e: Entry) -> None:
    assert len(e.title) <= sanitize.TITLE_MAX
    assert len(e.summary) <= sanitize.SUMMARY_MAX
    assert len(e.link) <= sanitize.LINK_MAX
    assert len(e.key.encode()) <= sanitize.KEY_MAX_BYTES
    assert e.guid is None or len(e.guid.encode()) <= sanitize.KEY_MAX_BYTES
    for text in (e.title, e.link, e.key, e.guid or "", e.canonical_url):
        assert not CONTROL.search(text), repr(text)
    assert not CONTROL.search(e.summary.replace("\n", "").replace("\t", ""))
    assert e.published is None or sanitize.EARLIEST <= e.published <= NOW + timedelta(days=1)


def _strings(value: object) -> Iterator[str]:
    """Every string inside a JSON-like value (Slack blocks)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _through_everything(body: bytes, store: SqlStore, name: str) -> None:
    try:
        entries = parse_feed(body, name, canonicalize=canonical_url, now=NOW)
    except ParseError:
        return
    index = StoryIndex(DedupeSettings())
    index.prepare(entries)
    stored, alerts = [], []
    for e in entries:
        _check(e)
        found = MATCHER.match(e)
        topics = [m.watchlist for m in found]
        join = index.decide(e, NOW, topics=topics, terms=[t for m in found for t in m.terms])
        story = join.story_id or story_id_for(e)
        index.add(story, e, NOW, topics=topics)
        stored.append(StoredEntry(entry=e, story_id=story, seen_at=NOW, join=join))
        for m in found:
            alerts.append(Alert(id=alert_id(m.watchlist, "d", story), watchlist=m.watchlist,
                                destination="d", story_id=story, entry=e, terms=m.terms,
                                created_at=NOW))
    queued = store.ingest(PollRecord(feed=name, at=NOW), stored, alerts)
    for a in queued:
        story = store.story(a.story_id)
        for kind in ("slack", "email", "console"):
            rendered = RENDERER.alert(kind, a, story)
            if kind == "slack":
                for text in _strings([rendered.text, list(rendered.blocks)]):
                    assert not CONTROL.search(text.replace("\n", "").replace("\t", ""))
            if kind == "email":
                msg = MAILER.build(a, rendered, now=NOW)
                assert not CONTROL.search(str(msg["Subject"]))
                msg.as_bytes()
            if kind == "console":
                assert not CONTROL.search(
                    sanitize.escape_control(rendered.text).replace("\n", "").replace("\t", ""))
    for se in store.entries_since(NOW - timedelta(minutes=1)):
        if se.entry.feed == name:
            _check(se.entry)


COUNTER = iter(range(10**9))


@FAST
@given(body=st.binary(max_size=2000))
def test_random_bytes(store: SqlStore, body: bytes) -> None:
    _through_everything(body, store, f"bytes{next(COUNTER)}")


@FAST
@given(body=feeds())
def test_random_xml_with_random_unicode_in_every_field(store: SqlStore, body: bytes) -> None:
    _through_everything(body, store, f"xml{next(COUNTER)}")


@FAST
@given(title=nasty, summary=nasty, link=nasty, guid=nasty)
def test_random_unicode_entries_clean(title: str, summary: str, link: str, guid: str) -> None:
    """What a faster parser (#13) hands over goes through the same door."""
    raw = Entry(feed="f", key=guid or link or "k", guid=guid or None, link=link,
                canonical_url=link, title=title * 50, summary=summary * 50,
                published=datetime(999, 6, 1, tzinfo=UTC))
    [e] = sanitize.clean_entries([raw], now=NOW).entries or [sanitize.clean_entry(raw, NOW)]
    _check(e)
    assert sanitize.clean_entry(e, NOW) == e  # idempotent


def test_a_surrogate_reference_costs_one_character_not_the_feed(store: SqlStore) -> None:
    """An emoji written as two UTF-16 surrogate references reads as the emoji; a lone
    surrogate as U+FFFD: feedparser would raise on either and lose every item."""
    body = (b"<?xml version='1.0'?><rss version='2.0'><channel><title>F</title><item>"
            b"<title>a &#xD800; b</title><link>https://x.example/</link></item><item>"
            b"<title>Zebra party &#55357;&#56832; tonight</title>"
            b"<link>https://x.example/2</link></item></channel></rss>")
    for fast in (True, False):
        titles = [e.title for e in parse_feed(body, "f", fast=fast)]
        assert titles == ["a \ufffd b", "Zebra party \U0001f600 tonight"]
    _through_everything(body, store, "surrogate")
