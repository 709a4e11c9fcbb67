"""sanitize and redact: the pure rules for untrusted text (issue #12), as tables."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor import redact, sanitize
from monitor.store.sql import dt, ts
from monitor.types import Entry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def entry(**kw: object) -> Entry:
    base: dict[str, object] = dict(feed="f", key="k", guid="g", link="https://x.example/a",
                                   canonical_url="https://x.example/a", title="T", summary="S",
                                   published=NOW)
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "keep_lines", "want"), [
    pytest.param("a\x1b]0;x\x07b", False, "a]0;xb", id="osc-title"),
    pytest.param("a\x00b\x9bc\ud800d", False, "abcd", id="nul-c1-surrogate"),
    pytest.param("one\ttwo\r\nthree", False, "one two three", id="line-breaks-to-space"),
    pytest.param("one\ttwo\r\nthree\x0b", True, "one\ttwo\nthree", id="summary-keeps-lines"),
    pytest.param("café – ok", False, "café – ok", id="printable-unicode-stays"),
])
def test_strip_control(raw: str, keep_lines: bool, want: str) -> None:
    assert sanitize.strip_control(raw, keep_lines=keep_lines) == want


@pytest.mark.parametrize("keep_lines", [False, True])
def test_strip_control_shortcut_changes_nothing_the_rules_keep(keep_lines: bool) -> None:
    """Text that is all printable skips the regexes: for every code point, the result
    is what the rules alone give (no-break space, soft hyphen and the like stay)."""
    rule = sanitize._CONTROL_KEEP_LINES if keep_lines else sanitize._CONTROL

    def by_rules(text: str) -> str:
        if keep_lines:
            return rule.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        return rule.sub("", sanitize._SPACES.sub(" ", text))

    for code in range(0x110000):
        text = f"a{chr(code)}b"
        assert sanitize.strip_control(text, keep_lines=keep_lines) == by_rules(text), hex(code)


@pytest.mark.parametrize(("field", "value", "check"), [
    pytest.param("title", "x" * 5000, lambda e: len(e.title) == 1000 and e.title.endswith("…"),
                 id="title-capped"),
    pytest.param("summary", "y " * 10000,
                 lambda e: len(e.summary) <= sanitize.SUMMARY_MAX and e.summary.endswith("…"),
                 id="summary-capped"),
    pytest.param("link", "https://x.example/" + "a" * 5000,
                 lambda e: len(e.link) == sanitize.LINK_MAX, id="link-capped"),
    pytest.param("guid", "g" * 1_000_000,
                 lambda e: e.guid is not None and len(e.guid.encode()) <= 2000 and "…" in e.guid,
                 id="guid-capped-bytes"),
    pytest.param("guid", "é" * 5000,
                 lambda e: e.guid is not None and len(e.guid.encode()) <= 2000, id="guid-multibyte"),
    pytest.param("published", datetime(999, 6, 1, tzinfo=UTC), lambda e: e.published is None,
                 id="year-999-missing"),
    pytest.param("published", datetime(1989, 12, 31, tzinfo=UTC), lambda e: e.published is None,
                 id="before-1990-missing"),
    pytest.param("published", NOW + timedelta(days=2), lambda e: e.published is None,
                 id="two-days-ahead-missing"),
    pytest.param("published", NOW + timedelta(hours=20), lambda e: e.published is not None,
                 id="hours-ahead-kept"),
    pytest.param("title", "ok title", lambda e: e.title == "ok title", id="clean-unchanged"),
])
def test_clean_entry(field: str, value: object, check: object) -> None:
    e = sanitize.clean_entry(entry(**{field: value}), NOW)
    assert callable(check) and check(e)
    assert sanitize.clean_entry(e, NOW) == e


def test_long_guids_sharing_a_prefix_stay_distinct() -> None:
    a = sanitize.cap_bytes("p" * 5000 + "a", 2000)
    b = sanitize.cap_bytes("p" * 5000 + "b", 2000)
    assert a != b and len(a.encode()) <= 2000 and len(b.encode()) <= 2000


def test_max_entries_keeps_the_first_and_counts_the_rest() -> None:
    entries = [entry(key=str(i), guid=str(i)) for i in range(1500)]
    got = sanitize.clean_entries(entries, now=NOW)
    assert len(got.entries) == 1000 and got.dropped == 500
    assert [e.key for e in got.entries[:2]] == ["0", "1"]
    assert sanitize.clean_entries(entries, now=NOW, max_entries=10).dropped == 1490


@pytest.mark.parametrize(("value", "want"), [
    pytest.param('"abc"', '"abc"', id="etag"),
    pytest.param("Mon, 01 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 GMT", id="date"),
    pytest.param('"abc\udcff"', None, id="surrogate"),
    pytest.param('"a\x00b"', None, id="nul"),
    pytest.param('"é"', None, id="non-ascii"),
    pytest.param("x" * 2000, None, id="too-long"),
    pytest.param(None, None, id="absent"),
])
def test_header_value(value: str | None, want: str | None) -> None:
    assert sanitize.header_value(value) == want


def test_escape_control_for_terminals() -> None:
    assert sanitize.escape_control("a\x1b[8mb\x07\n\tc\x9b\u202e") == \
        "a\\x1b[8mb\\x07\n\tc\\x9b\\u202e"


@pytest.mark.parametrize("year", [1, 999, 1000, 2026, 9999])
def test_timestamps_read_back(year: int) -> None:
    when = datetime(year, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert dt(ts(when)) == when
    assert ts(when) is not None and len(ts(when) or "") == 27


def test_unpadded_years_from_older_versions_read() -> None:
    assert dt("999-06-01T00:00:00.000000Z") == datetime(999, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "gone", "kept"), [
    pytest.param("invalid_auth xoxb-1234-5678-abcdEFGH", "xoxb-1234", "invalid_auth", id="slack"),
    pytest.param("Authorization: Bearer abc.def", "abc.def", "Bearer", id="bearer"),
    pytest.param("535 5.7.8 AUTH PLAIN AHVzZXIAcGFzcw== rejected", "AHVzZXIAcGFzcw", "535",
                 id="auth-plain"),
    pytest.param("535 Authentication failed AHVzZXIAcGFzcw==", "AHVzZXIAcGFzcw", "535",
                 id="bare-base64"),
    pytest.param("login failed password=hunter2 user=bob", "hunter2", "user=bob", id="password"),
    pytest.param("cannot connect postgresql://bob:hunter2@db/x", "hunter2", "bob", id="url"),
    pytest.param("HTTP 500 Internal Server Error", "", "HTTP 500 Internal Server Error",
                 id="plain-error-unchanged"),
    pytest.param("bad \x1b]0;x\x07 reply", "\x1b", "bad", id="control"),
    # a path is no secret: it names the file the error is about
    pytest.param("cannot read /var/lib/news-monitor/state/watchlists/north-korea.yaml", "",
                 "/var/lib/news-monitor/state/watchlists/north-korea.yaml", id="path-kept"),
    pytest.param("auth AbCdEf0123/xyzXYZ9876/abcdEFGH1234xyz", "AbCdEf0123/xyzXYZ9876",
                 "auth", id="base64-with-slashes-masked"),
])
def test_redact_text(raw: str, gone: str, kept: str) -> None:
    out = redact.text(raw)
    assert (gone == "" or gone not in out) and kept in out


def test_redact_text_caps_and_knows_configured_secrets() -> None:
    assert len(redact.text("e" * 10_000)) <= redact.TEXT_MAX
    assert "s3cret" not in redact.text("echo s3cret back", secrets=["s3cret"])


@pytest.mark.parametrize(("url", "want"), [
    pytest.param("https://bob:hunter2@f.example/x.xml", "https://bob:[redacted]@f.example/x.xml",
                 id="password"),
    pytest.param("https://f.example/x?api_key=abc&q=1", "https://f.example/x?api_key=[redacted]&q=1",
                 id="query-key"),
    pytest.param("https://f.example/x.xml", "https://f.example/x.xml", id="plain"),
    pytest.param("sqlite:////var/lib/m.db", "sqlite:////var/lib/m.db", id="sqlite-untouched"),
    pytest.param("postgresql://u@h/d", "postgresql://u@h/d", id="user-only"),
    # libpq reads these passwords whole, where urlsplit ends the host at # or ?
    pytest.param("postgresql://pg:Pa#ss9Word@127.0.0.1/db",
                 "postgresql://pg:[redacted]@127.0.0.1/db", id="hash-in-password"),
    pytest.param("postgresql://pg:Pa?ss9Word@127.0.0.1/db",
                 "postgresql://pg:[redacted]@127.0.0.1/db", id="question-mark-in-password"),
    pytest.param("postgresql://pg:Pa/ss9Word@127.0.0.1/db",
                 "postgresql://pg:[redacted]@127.0.0.1/db", id="slash-in-password"),
    pytest.param("postgresql://pg:p@ss@db/x", "postgresql://pg:[redacted]@db/x",
                 id="at-in-password"),
    pytest.param("https://u:p@h/f?api_key=zz", "https://u:[redacted]@h/f?api_key=[redacted]",
                 id="password-and-query"),
    pytest.param("postgresql://u:pw@h:5432/d?x=a@b", "postgresql://u:[redacted]@h:5432/d?x=a@b",
                 id="at-in-query"),
    # an @ in a path is no credential
    pytest.param("https://medium.com:443/feed/@user", "https://medium.com:443/feed/@user",
                 id="at-in-path"),
    pytest.param("http://u:p@[::1]:8080/x", "http://u:[redacted]@[::1]:8080/x", id="ipv6"),
    pytest.param("https://h/f?accessToken=S1&clientSecret=S2&apiKey=S3&monkey=ok&page=2",
                 "https://h/f?accessToken=[redacted]&clientSecret=[redacted]&apiKey=[redacted]"
                 "&monkey=ok&page=2", id="camel-case-credentials"),
])
def test_redact_url(url: str, want: str) -> None:
    assert redact.url(url) == want


@pytest.mark.parametrize(("url", "secrets"), [
    ("postgresql://pg:Pa#ss9Word@127.0.0.1/db", ["Pa#ss9Word"]),
    ("postgresql://pg:p@ss@db/x", ["p@ss", "ss"]),  # libpq calls 'ss@db' the host
    ("postgresql://pg:Pa@ss9Word@127.0.0.1/x", ["Pa@ss9Word", "ss9Word"]),
    ("https://u:p@h/f?api_key=zz", ["p", "zz"]),
    ("https://medium.com:443/feed/@user", []),
])
def test_url_secrets(url: str, secrets: list[str]) -> None:
    """What text() masks where a server echoes the URL back."""
    assert redact.url_secrets(url) == secrets


def test_log_lines_show_control_characters_escaped() -> None:
    import json
    import logging

    from monitor.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord("monitor", logging.WARNING, __file__, 1,
                               "feed.error feed=%s error=%s", ("F", "bad \x1b]0;x\x07 \x9b"), None)
    for formatter in (TextFormatter(journal=False), TextFormatter(journal=True), JsonFormatter()):
        line = formatter.format(record)
        assert not any(c in line for c in "\x1b\x07\x9b"), line
    assert "\x1b" in json.loads(JsonFormatter().format(record))["error"]  # escaped, not lost


@given(st.text(st.one_of(st.characters(max_codepoint=0x7f), st.characters()), max_size=300)
       | st.text(st.characters(max_codepoint=0x7f), min_size=81, max_size=300))
def test_printable_is_isprintable(text: str) -> None:
    assert sanitize.printable(text) == text.isprintable()


def made_the_long_way(*, feed: str, title: str, link: str, summary: str, guid: str,
                      published: datetime | None, canonicalize: Callable[[str], str],
                      now: datetime | None) -> Entry | None:
    """make_entry as the parser did it before make_entry: each field cleaned, the entry
    made of them, then cleaned whole."""
    title = sanitize.clean_text(title, sanitize.TITLE_MAX)
    link = sanitize.clean_text(link, sanitize.LINK_MAX)
    if not title and not link:
        return None
    summary = sanitize.clean_text(summary, sanitize.SUMMARY_MAX)
    canonical = canonicalize(link) if link else ""
    stripped = sanitize.strip_control(guid).strip() or None
    key = stripped or canonical or "title:" + hashlib.sha1(title.encode()).hexdigest()[:16]
    return sanitize.clean_entry(Entry(feed=feed, key=key, guid=stripped, link=link,
                                      canonical_url=canonical, title=title or link,
                                      summary=summary, published=published), now)


_nasty = st.one_of(st.characters(codec=None),
                   st.sampled_from("\x00\x1b\x07\x9b\ud800\u202e \xa0\u3000\t\n\r\u200b…"))
_field = st.text(_nasty, max_size=40) | st.builds(lambda c, n: c * n, _nasty,
                                                    st.integers(400, 2600))
_canonicalizers = st.sampled_from([lambda u: u, lambda u: " " + u + "\x00",
                                   lambda u: u * 3, lambda u: ""])


@given(title=_field, link=_field, summary=_field, guid=_field,
       published=st.none() | st.datetimes(timezones=st.just(UTC))
       | st.datetimes(), canonicalize=_canonicalizers)
def test_make_entry_is_the_long_way(title: str, link: str, summary: str, guid: str,
                                    published: datetime | None,
                                    canonicalize: Callable[[str], str]) -> None:
    fields = dict(feed="f", title=title, link=link, summary=summary, guid=guid,
                  published=published, canonicalize=canonicalize, now=NOW)
    assert sanitize.make_entry(**fields) == made_the_long_way(**fields)  # type: ignore[arg-type]
