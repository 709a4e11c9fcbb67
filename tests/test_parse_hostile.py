"""Hostile XML through the parse paths: no external entities read, no entity
expansion bomb, and deep nesting refused without a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.parse import parse_document


def xxe(path: Path) -> bytes:
    return (f"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY xxe SYSTEM 'file://{path}'>]>"
            "<rss version='2.0'><channel><title>t</title><item><title>leak &xxe; here</title>"
            "<link>https://x.org/1</link></item></channel></rss>").encode()


BOMB = (b"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY a 'aaaaaaaaaa'>"
        + b"".join(f"<!ENTITY {chr(98 + i)} '{('&' + chr(97 + i) + ';') * 10}'>".encode()
                   for i in range(9))
        + b"]><rss version='2.0'><channel><title>t</title><item><title>&j;</title>"
          b"<link>https://x.org/b</link></item></channel></rss>")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "feedparser"])
def test_external_entities_are_never_read(tmp_path: Path, fast: bool) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    try:
        parsed = parse_document(xxe(secret), "f", fast=fast)
    except ParseError:
        return
    assert all("TOP-SECRET-MARKER" not in e.title + e.summary for e in parsed.entries)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "feedparser"])
def test_entity_expansion_bomb_is_bounded(fast: bool) -> None:
    start = time.perf_counter()
    try:
        parsed = parse_document(BOMB, "f", fast=fast)
    except ParseError:
        parsed = None
    assert time.perf_counter() - start < 5
    if parsed is not None:
        assert all(len(e.title) < 100_000 for e in parsed.entries)


def test_deep_nesting_is_declined_not_a_crash() -> None:
    deep = b"<x>" * 5000 + b"</x>" * 5000
    body = (b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item>"
            b"<title>deep</title><link>https://x.org/d</link><description>" + deep
            + b"</description></item></channel></rss>")
    got = parse_document(body, "f")
    assert not got.fast
    assert [e.title for e in got.entries] == ["deep"]
