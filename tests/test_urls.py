"""monitor.urls: links of the plain shape skip urlsplit and come out as the general path
makes them (the rules themselves are tables in tests/test_dedupe.py)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor import urls
from monitor.parse import parse_document
from monitor.urls import canonical_url

DATA = Path(__file__).parent / "data"


def general(url: str) -> str:
    """canonical_url through urlsplit alone, as it was before the plain shape had a path."""
    stripped = url.strip()
    try:
        return urls._canonical(stripped)
    except ValueError:
        return stripped


def plain(url: str) -> bool:
    return urls._PLAIN.fullmatch(url.strip()) is not None


_host_chars = st.sampled_from("abcXYZ019.-_:@[]%é")
_hosts = (st.sampled_from(["example.com", "www.example.com", "WWW.Example.COM.", "m.x.org",
                           "amp.www.m.news.example", "www.com", "m.", ".", "google.com",
                           "www.google.com", "a.cdn.ampproject.org", "x.org:8080", "x.org:443",
                           "u@x.org", "[::1]", "xn--bcher-kva.example", "ex_ample.com"])
          | st.text(_host_chars, min_size=1, max_size=12))
_path_chars = st.sampled_from("aZ09/_.~!$&'()*+,;=:@-%?# \t\né")
_paths = (st.sampled_from(["", "/", "/a", "/a/", "/a//", "/news/story.amp.html", "/amp",
                           "/story/amp/", "/x.amp", "/amp/s/example.com/a", "/c/s/x.org/y",
                           "/a%7eb", "/a%2fb", "/~user/(1)", "/a;b=c", "//double"])
          | st.text(_path_chars, max_size=16).map(lambda p: "/" + p))
_queries = st.sampled_from(["", "?", "?a=1", "?b=2&a=1", "?utm_source=rss&id=3", "?amp",
                            "?outputType=amp&x=1", "?a=%20b+c", "?q=a b", "?a=1&a=2&&b",
                            "?ref=x#frag", "?x=é"])
_fragments = st.sampled_from(["", "#", "#top", "#a b", "#x\ny"])


@settings(max_examples=3000, deadline=None)
@given(scheme=st.sampled_from(["http", "https", "HTTP", "ftp", "https:", ""]), host=_hosts,
       path=_paths, query=_queries, fragment=_fragments,
       space=st.sampled_from(["", " ", "\n", "\x01"]))
@example(scheme="https", host=".", path="//x", query="", fragment="", space="")
@example(scheme="https", host="m.", path="/a", query="", fragment="", space="")
def test_plain_links_come_out_as_the_general_path_makes_them(
        scheme: str, host: str, path: str, query: str, fragment: str, space: str) -> None:
    url = f"{space}{scheme}://{host}{path}{query}{fragment}{space}"
    assert canonical_url(url) == general(url), url


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=60))
def test_any_text_comes_out_as_the_general_path_makes_it(text: str) -> None:
    assert canonical_url(text) == general(text)


def test_the_links_of_the_sample_feeds_are_mostly_plain_and_agree() -> None:
    links = []
    for path in DATA.iterdir():
        if path.suffix in (".xml", ".rss", ".atom"):
            links += [e.link for e in parse_document(path.read_bytes(), "f").entries]
    links += re.findall(r"https?://[^\s\"'<>]+", (DATA / "story-clusters-sample.csv").read_text())
    assert len(links) > 500
    for link in links:
        assert canonical_url(link) == general(link), link
    assert sum(map(plain, links)) > len(links) * 3 // 4
