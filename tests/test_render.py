"""Rendering is pure: values in, messages out. Tables plus a few whole messages."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.render import (
    HEADER_LIMIT,
    SECTION_LIMIT,
    Renderer,
    highlight_html,
    highlight_mrkdwn,
    mrkdwn_escape,
    ops_notice,
    snippet,
)
from monitor.types import Alert, Entry, Rendered, Source, Story

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
WHEN = datetime(2024, 5, 1, 14, 3, 59, tzinfo=UTC)


def make_alert(
    *,
    title: str = "Grain deal collapses",
    summary: str = "Talks over the grain corridor broke down on Monday.",
    terms: tuple[str, ...] = ("grain",),
    feed: str = "Reuters",
    link: str = "https://example.org/world/grain?id=1&src=rss",
    published: datetime | None = WHEN,
    watchlist: str = "ukraine",
    alert_id: str = "a1b2c3",
) -> Alert:
    entry = Entry(
        feed=feed,
        key=link,
        guid=None,
        link=link,
        canonical_url=link,
        title=title,
        summary=summary,
        published=published,
    )
    return Alert(
        id=alert_id,
        watchlist=watchlist,
        destination="team-slack",
        story_id="s1",
        entry=entry,
        terms=terms,
        created_at=WHEN,
    )


def make_story(*feeds: str) -> Story:
    return Story(
        id="s1",
        title="Grain deal collapses",
        first_seen=WHEN,
        sources=tuple(
            Source(feed=f, title=f"{f} title", link=f"https://{f.lower()}.example/1", seen_at=WHEN)
            for f in feeds
        ),
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def strings(value: Any) -> Iterator[str]:
    """Every string inside a Block Kit structure."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def slack_texts(rendered: Rendered) -> list[str]:
    return [rendered.text, *strings(rendered.blocks)]


def section_text(rendered: Rendered) -> str:
    return next(b["text"]["text"] for b in rendered.blocks if b["type"] == "section")


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        pytest.param("plain", "plain", id="plain"),
        pytest.param("AT&T", "AT&amp;T", id="ampersand"),
        pytest.param("<!channel>", "&lt;!channel&gt;", id="channel-ping"),
        pytest.param("<@U123>", "&lt;@U123&gt;", id="user-mention"),
        pytest.param("<https://evil|click>", "&lt;https://evil|click&gt;", id="disguised-link"),
        pytest.param("&lt;", "&amp;lt;", id="ampersand-first"),
        pytest.param(
            "\"quotes\" and 'apostrophes'", "\"quotes\" and 'apostrophes'", id="quotes-kept"
        ),
        pytest.param("*bold* _it_ ~s~", "*bold* _it_ ~s~", id="formatting-kept"),
    ],
)
def test_mrkdwn_escape(raw: str, escaped: str) -> None:
    assert mrkdwn_escape(raw) == escaped


@pytest.mark.parametrize(
    "dangerous",
    [
        pytest.param("<!channel>", id="channel"),
        pytest.param("<!here>", id="here"),
        pytest.param("<@U123>", id="user"),
        pytest.param("<https://evil.example|click>", id="disguised-link"),
    ],
)
def test_slack_alert_never_pings_or_links_from_feed_text(
    renderer: Renderer, dangerous: str
) -> None:
    alert = make_alert(
        title=f"Breaking {dangerous} now",
        summary=f"Summary {dangerous} grain",
        feed=f"Feed {dangerous}",
        watchlist="ukraine",
    )
    rendered = renderer.alert("slack", alert, make_story(f"Feed {dangerous}", f"Other {dangerous}"))
    texts = slack_texts(rendered)
    escaped = mrkdwn_escape(dangerous)
    for text in texts:
        assert dangerous not in text
        assert "<!" not in text and "<@" not in text and "<https://evil" not in text
    assert any(escaped in t for t in strings(rendered.blocks[0]))  # header
    assert escaped in section_text(rendered)  # snippet and "also reported by"
    assert escaped in rendered.text  # notification fallback


def test_custom_slack_template_cannot_forget_to_escape(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "alert.slack.j2").write_text("{{ title }} by {{ source }} *{{ watchlist }}*\n")
    rendered = Renderer(tmp_path).alert("slack", make_alert(title="<!channel> & co"))
    assert section_text(rendered) == "&lt;!channel&gt; &amp; co by Reuters *ukraine*"


def test_html_is_escaped_and_text_is_not(renderer: Renderer) -> None:
    alert = make_alert(title="<script>alert(1)</script> grain", summary="a < b & <b>grain</b>")
    rendered = renderer.alert("email", alert)
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>grain</mark>" in rendered.html
    assert "a &lt; b &amp; &lt;b&gt;<mark>grain</mark>&lt;/b&gt;" in rendered.html
    assert "<script>alert(1)</script> grain" in rendered.text


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("slack://open", id="slack-scheme"),
        pytest.param("", id="missing"),
    ],
)
def test_only_http_links_are_shown(renderer: Renderer, link: str) -> None:
    alert = make_alert(link=link)
    slack = renderer.alert("slack", alert)
    email = renderer.alert("email", alert)
    assert link == "" or link not in section_text(slack)
    assert "Read on Reuters" in section_text(slack)  # the label stays, without a link
    assert email.html is not None and "href" not in email.html


@pytest.mark.parametrize("kind", ["email", "slack", "console"])
def test_the_other_outlets_links_are_http_only_too(renderer: Renderer, kind: str) -> None:
    """A feed that joins a story must not put a javascript: or data: link under it."""
    story = Story(id="s1", title="Grain deal collapses", first_seen=WHEN, sources=(
        Source(feed="Reuters", title="Grain deal collapses",
               link="https://example.org/world/grain?id=1&src=rss", seen_at=WHEN),
        Source(feed="Evil", title="Grain deal: click", link="javascript:alert(document.domain)",
               seen_at=WHEN),
        Source(feed="Data", title="Grain deal: open", link="data:text/html,<script>x</script>",
               seen_at=WHEN),
        Source(feed="AP", title="AP on the grain deal", link="https://ap.example/1",
               seen_at=WHEN)))
    digest = renderer.digest(kind, "Digest", [("ukraine", [make_alert()])], {"s1": story})
    alert = renderer.alert(kind, make_alert(), story)
    for rendered in (digest, alert):
        out = "\n".join([rendered.subject, rendered.text, rendered.html or "",
                         *strings(rendered.blocks)])
        assert "javascript:" not in out and "data:text" not in out
    if kind == "email":
        assert digest.html is not None and '<a href="https://ap.example/1">' in digest.html
        assert "Grain deal: click" in digest.html  # the headline stays, without a link


def test_link_cannot_break_out_of_slack_link_syntax(renderer: Renderer) -> None:
    alert = make_alert(link="https://example.org/a|b>c <!channel>")
    section = section_text(renderer.alert("slack", alert))
    assert "<https://example.org/a%7Cb&gt;c%20&lt;!channel&gt;|Read on Reuters>" in section


# --------------------------------------------------------------------------- highlighting


@pytest.mark.parametrize(
    ("text", "terms", "expected"),
    [
        pytest.param("Grain and GRAIN", ["grain"], "*Grain* and *GRAIN*", id="case-insensitive"),
        pytest.param("grainy grain", ["grain"], "grainy *grain*", id="word-boundary"),
        pytest.param(
            "The North-Korean envoy",
            ["north korean"],
            "The *North-Korean* envoy",
            id="phrase-hyphen",
        ),
        pytest.param("Zelenskyý speaks", ["zelenskyy"], "*Zelenskyý* speaks", id="accents-folded"),
        pytest.param(
            "Sanctions, sanctioned", ["sanction*"], "*Sanctions*, *sanctioned*", id="wildcard"
        ),
        pytest.param("AT&T <b>", ["at&t"], "*AT&amp;T* &lt;b&gt;", id="escaped-before-bold"),
        pytest.param("&amp; amp", ["amp"], "&amp;*amp*; *amp*", id="no-broken-entities"),
        pytest.param(
            "North Korea and Korea",
            ["korea", "north korea"],
            "*North Korea* and *Korea*",
            id="longest-first",
        ),
        pytest.param("東京で地震が発生", ["地震"], "東京で*地震*が発生", id="cjk"),
        pytest.param("nothing here", ["grain"], "nothing here", id="no-match"),
        pytest.param("<!channel> grain", [], "&lt;!channel&gt; grain", id="no-terms"),
    ],
)
def test_highlight_mrkdwn(text: str, terms: list[str], expected: str) -> None:
    assert highlight_mrkdwn(text, terms) == expected


def test_highlight_html() -> None:
    assert str(highlight_html("<i>Grain</i> & more", ["grain"])) == (
        "&lt;i&gt;<mark>Grain</mark>&lt;/i&gt; &amp; more"
    )


def test_alert_highlights_terms(renderer: Renderer) -> None:
    alert = make_alert(summary="The Grain corridor closed; grainy footage.", terms=("grain",))
    assert "The *Grain* corridor closed; grainy footage." in section_text(
        renderer.alert("slack", alert)
    )
    html = renderer.alert("email", alert).html
    assert html is not None and "<mark>Grain</mark>" in html and "<mark>Grain</mark> deal" in html


# --------------------------------------------------------------------------- content and limits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("short", "short", id="short"),
        pytest.param("  lots \n of\t space ", "lots of space", id="whitespace"),
        pytest.param("word " * 100, ("word " * 60).strip() + "…", id="word-boundary"),
        pytest.param("x" * 400, "x" * 300 + "…", id="one-long-word"),
    ],
)
def test_snippet(text: str, expected: str) -> None:
    assert snippet(text) == expected


def test_slack_alert_layout(renderer: Renderer) -> None:
    rendered = renderer.alert("slack", make_alert())
    header, section, context = rendered.blocks
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Grain deal collapses", "emoji": False},
    }
    assert section["text"]["type"] == "mrkdwn"
    # Slack parses no mention or channel name of a feed's text by itself.
    assert section["text"]["verbatim"] is True
    assert all(e["verbatim"] is True for e in context["elements"])
    assert section["text"]["text"] == (
        "Talks over the *grain* corridor broke down on Monday.\n"
        "<https://example.org/world/grain?id=1&amp;src=rss|Read on Reuters>\n"
        "Matched: *grain*"
    )
    assert [e["text"] for e in context["elements"]] == [
        "*Reuters*",
        "2024-05-01 14:03 UTC",
        "watchlist: ukraine",
    ]
    assert rendered.text == "[ukraine] Grain deal collapses (Reuters)"
    assert rendered.subject == "[news-monitor] ukraine: Grain deal collapses"
    json.dumps(rendered.blocks)  # plain JSON, ready for the API


@pytest.mark.parametrize(
    "title",
    [
        pytest.param("word " * 100, id="long-words"),
        pytest.param("&" * 400, id="expanding-entities"),
        pytest.param("<" * 149, id="just-over-after-escaping"),
    ],
)
def test_slack_header_fits_after_escaping(renderer: Renderer, title: str) -> None:
    header = renderer.alert("slack", make_alert(title=title)).blocks[0]["text"]["text"]
    assert len(header) <= HEADER_LIMIT
    assert header.endswith("…")
    assert header.rstrip("…").endswith((";", "word", "d"))  # no half "&amp;"


def test_long_summary_and_link_stay_within_slack_limits(renderer: Renderer) -> None:
    alert = make_alert(summary="grain " * 2000, link="https://example.org/" + "a" * 5000)
    rendered = renderer.alert("slack", alert)
    section = section_text(rendered)
    assert len(section) <= SECTION_LIMIT
    assert section.count("*grain*") < 60  # the snippet, not the whole summary


def test_published_unknown_shows_found_time(renderer: Renderer) -> None:
    alert = make_alert(published=None)
    assert "found 2024-05-01 14:03 UTC" in str(renderer.alert("slack", alert).blocks)
    assert "found 2024-05-01 14:03 UTC" in renderer.alert("console", alert).text


def test_also_reported_by(renderer: Renderer) -> None:
    story = make_story("Reuters", "AP", "BBC", "AP", "DW", "NHK")
    alert = make_alert()
    expected = "Also reported by: AP, BBC, DW, +1"
    assert expected in section_text(renderer.alert("slack", alert, story))
    email = renderer.alert("email", alert, story)
    assert expected in email.text and email.html is not None and expected in email.html
    assert "Also reported" not in renderer.alert("console", alert, make_story("Reuters")).text
    assert "Also reported" not in renderer.alert("console", alert, None).text
    # Its other members all from its own feed: no empty "Also reported by:" line.
    own = section_text(renderer.alert("slack", alert, make_story("Reuters", "Reuters")))
    assert "Also reported" not in own and "More on this story:" in own, own


def test_email_and_console(renderer: Renderer) -> None:
    alert = make_alert(title="Grain deal\ncollapses  again")
    email = renderer.alert("email", alert)
    assert email.subject == "[news-monitor] ukraine: Grain deal collapses again"
    assert email.text.splitlines()[:3] == [
        "[ukraine] Grain deal collapses again",
        "Reuters · 2024-05-01 14:03 UTC",
        "https://example.org/world/grain?id=1&src=rss",
    ]
    assert email.html is not None and email.html.startswith("<!DOCTYPE html>")
    assert 'href="https://example.org/world/grain?id=1&amp;src=rss"' in email.html
    console = renderer.alert("console", alert)
    assert console.text == email.text and console.html is None and not console.blocks


def test_unknown_kind(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="unknown destination kind"):
        renderer.alert("pager", make_alert())


# --------------------------------------------------------------------------- digests


def test_digest_groups_by_watchlist(renderer: Renderer) -> None:
    a = make_alert(title="Grain <!channel>", alert_id="a")
    b = make_alert(title="Port closed", terms=("port",), alert_id="b", feed="AP")
    groups = [("ukraine", [a, b]), ("empty", []), ("shipping", [b])]
    slack = renderer.digest("slack", "Daily digest", groups)
    assert slack.blocks[0]["text"]["text"] == "Daily digest"
    body = "\n".join(b["text"]["text"] for b in slack.blocks[1:])
    assert "*ukraine* (2)" in body and "*shipping* (1)" in body and "empty" not in body
    assert "<https://example.org/world/grain?id=1&amp;src=rss|*Grain* &lt;!channel&gt;>" in body
    assert slack.text == "Daily digest: 3 stories"

    text = renderer.digest("console", "Daily digest", groups).text
    assert text.splitlines()[0] == "Daily digest (3 stories)"
    assert "- Grain <!channel> (Reuters, 2024-05-01 14:03 UTC)" in text

    email = renderer.digest("email", "Daily digest", groups)
    assert email.subject == "[news-monitor] Daily digest"
    assert email.html is not None and "<mark>Grain</mark> &lt;!channel&gt;" in email.html


def test_big_digest_fits_slack(renderer: Renderer) -> None:
    alerts = [make_alert(title=f"Story {i} " + "x" * 100, alert_id=str(i)) for i in range(400)]
    rendered = renderer.digest("slack", "Everything", [("all", alerts)])
    assert len(rendered.blocks) <= 50
    for block in rendered.blocks[1:]:
        assert 0 < len(block["text"]["text"]) <= SECTION_LIMIT


# --------------------------------------------------------------------------- check


def test_check_bundled_templates_are_fine(renderer: Renderer) -> None:
    assert renderer.check() == []


def test_check_reports_path_and_line(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "alert.txt.j2").unlink()
    (tmp_path / "alert.html.j2").write_text("<p>\n{% if title %}\n<b>{{ title }}</b>\n")
    (tmp_path / "digest.slack.j2").write_text("line one\n{{ no_such_variable }}\n")
    problems = Renderer(tmp_path).check()
    assert f"{tmp_path / 'alert.txt.j2'}:1: template not found" in problems
    assert any(p.startswith(f"{tmp_path / 'alert.html.j2'}:") for p in problems)
    assert len(problems) == 2  # rendering is only tried once every template loads

    (tmp_path / "alert.txt.j2").write_text("ok")
    (tmp_path / "alert.html.j2").write_text("ok")
    problems = Renderer(tmp_path).check()
    assert problems == [f"{tmp_path / 'digest.slack.j2'}:2: 'no_such_variable' is undefined"]


@pytest.mark.parametrize(("kind", "text"), [
    pytest.param("slack", "Wire &lt;!channel&gt; &amp; co is back\nhttps://x.example/?a=1&amp;b=2",
                 id="slack-escaped"),
    pytest.param("email", "Wire <!channel> & co is back\nhttps://x.example/?a=1&b=2",
                 id="email-plain"),
    pytest.param("console", "Wire <!channel> & co is back\nhttps://x.example/?a=1&b=2",
                 id="console-plain"),
])
def test_an_ops_notice_escapes_for_slack_only(kind: str, text: str) -> None:
    notice = ops_notice(kind, "Wire <!channel> & co\n is back", "https://x.example/?a=1&b=2")
    assert notice.text == text
    assert notice.subject == "[news-monitor] Wire <!channel> & co is back"


def test_in_turn_by_feed() -> None:
    from monitor.render import in_turn_by_feed

    now = datetime(2026, 11, 25, tzinfo=UTC)
    alerts = [Alert(id=f"{f}{i}", watchlist="W", destination="d", story_id=f"{f}{i}",
                    entry=Entry(feed=f, key=str(i), guid=None, link="", canonical_url="",
                                title="t", summary="", published=now),
                    terms=(), created_at=now)
              for f, i in [("A", 1), ("A", 2), ("A", 3), ("B", 1), ("A", 4), ("C", 1), ("B", 2)]]
    ids = [a.id for a in in_turn_by_feed(alerts, 4)]
    assert ids == ["A1", "A2", "B1", "C1"]  # each feed's first, then A's second; in order
    assert [a.id for a in in_turn_by_feed(alerts, 10)] == [a.id for a in alerts]
    assert in_turn_by_feed(alerts, 0) == []
