"""OPML in and out: the feed list format every reader exports (pure).

:func:`read_opml` reads the feeds (outlines with an ``xmlUrl``, at any depth)
of an OPML file; :func:`to_opml` writes configured feeds as OPML 2.0.
:func:`add_feeds` adds feeds to the text of a ``monitor.yaml`` by inserting
lines under its ``feeds:`` list, so the user's comments and layout survive
(a YAML round trip would drop them).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from monitor import redact
from monitor.errors import ConfigError
from monitor.sanitize import strip_control
from monitor.types import Feed

#: A feed name longer than this is cut: it is a label in a table and a log line.
NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Outlines:
    """What an OPML document offers: its feeds as (name, url), and why each outline
    with an ``xmlUrl`` that is not among them was left out."""

    feeds: list[tuple[str, str]]
    skipped: list[str]


def read_opml(data: bytes) -> Outlines:
    """The feeds (outlines with an ``xmlUrl``, at any depth) of an OPML document, in
    order, URLs deduplicated. A name is one line of printable text; an outline
    with none is named by its URL with any credentials masked, since the name
    shows in logs and tables where the URL is masked."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ConfigError(f"not an OPML file: {exc}") from None
    if root.tag != "opml":
        raise ConfigError(f"not an OPML file: the root element is <{root.tag}>")
    feeds: list[tuple[str, str]] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for el in root.iter("outline"):
        url = (el.get("xmlUrl") or "").strip()
        if not url:
            continue
        scheme, sep, rest = url.partition("://")
        if sep and scheme.lower() in ("http", "https"):
            url = f"{scheme.lower()}://{rest}"
        shown = redact.url(url)  # which strips control characters too
        if not url.startswith(("http://", "https://")):
            skipped.append(f"{shown}: not an http(s) URL")
        elif not url.isprintable() or any(c.isspace() for c in url):
            skipped.append(f"{shown}: a URL with spaces or control characters")
        elif url not in seen:
            seen.add(url)
            name = " ".join(strip_control(el.get("title") or el.get("text") or "").split())
            feeds.append((name[:NAME_MAX].rstrip() or redact.url(url), url))
    return Outlines(feeds, skipped)


def from_opml(data: bytes) -> list[tuple[str, str]]:
    """(name, url) of each feed in an OPML document (:func:`read_opml`)."""
    return read_opml(data).feeds


def to_opml(feeds: Sequence[Feed], *, title: str, secrets: bool = False) -> str:
    """The feeds as OPML 2.0; a URL's credentials and secret parameters masked unless
    ``secrets`` (the export is printed, and may be pasted anywhere)."""
    root = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(root, "head"), "title").text = title
    body = ET.SubElement(root, "body")
    for f in feeds:
        ET.SubElement(body, "outline", type="rss", text=f.name, title=f.name,
                      xmlUrl=f.url if secrets else redact.url(f.url))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


_FEEDS_KEY = re.compile(r"^feeds:[ \t]*(#.*)?$", re.M)
_FLOW = re.compile(r"^feeds:[ \t]*\[", re.M)
_ANY_FEEDS = re.compile(r"^feeds[ \t]*:", re.M)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_feeds(text: str, found: Sequence[tuple[str, str]],
              existing: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``text`` (a monitor.yaml) with the feeds of ``found`` not yet configured (by URL)
    added, and the (name, url) pairs added. Names are made unique."""
    names = {n for n, _ in existing}
    urls = {u for _, u in existing}
    added: list[tuple[str, str]] = []
    for name, url in found:
        if url in urls:
            continue
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name} ({n})", n + 1
        names.add(unique)
        urls.add(url)
        added.append((unique, url))
    if not added:
        return text, added
    if _FLOW.search(text) and not re.search(r"^feeds:[ \t]*\[\s*\]", text, re.M):
        raise ConfigError("feeds: is written as a [flow list] in the config; write it as "
                          "a block list (one '- name: ...' per line) to import into it")
    m = _FEEDS_KEY.search(text)
    if m is None and _ANY_FEEDS.search(text) and not _FLOW.search(text):
        raise ConfigError("feeds: carries an anchor, a tag or a value on its line in the "
                          "config; write it as a plain `feeds:` line over a block list to "
                          "import into it")
    if m is None:  # no feeds yet (or `feeds: []`)
        text = re.sub(r"^feeds:[ \t]*\[\s*\][ \t]*\n?", "", text, flags=re.M)
        lines = "".join(f"  - {{name: {_quote(n)}, url: {_quote(u)}}}\n" for n, u in added)
        return text.rstrip("\n") + "\nfeeds:\n" + lines, added
    after = text[m.end():]
    first = re.search(r"^([ \t]*)- ", after, re.M)
    indent = first.group(1) if first else "  "
    lines = "".join(f"{indent}- {{name: {_quote(n)}, url: {_quote(u)}}}\n" for n, u in added)
    return text[:m.end()] + "\n" + lines + after.lstrip("\n"), added
