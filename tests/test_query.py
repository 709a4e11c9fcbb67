"""monitor.query: the watchlist query language, as tables plus a round-trip property.

The tree strategies at the bottom are shared with tests/test_match.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import ConfigError, QueryError
from monitor.query import (
    And,
    Near,
    Node,
    Not,
    Or,
    Term,
    condition,
    from_lists,
    parse,
    render,
    terms,
    validate,
)
from monitor.text import normalize, tokenize


def t(source: str, field: str | None = None) -> Term:
    """The Term the parser makes of ``source`` (as written, without quotes)."""
    if field == "link":
        host_path = re.sub(r"^[a-z]+://", "", normalize(source))
        return Term(words=(host_path,), field="link", source_text=source)
    prefix = source.endswith("*")
    words = tuple(tokenize(source[:-1] if prefix else source))
    return Term(words=words, prefix=prefix, field=field, source_text=source)


A, B, C, D = t("a"), t("b"), t("c"), t("d")
ISSUE_QUERY = '("North Korea*" OR Pyongyang OR DPRK) AND (Ukraine OR Kursk) NOT "South Korea"'


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("Ukraine", t("Ukraine"), id="word"),
        pytest.param('"North Korea"', t("North Korea"), id="phrase"),
        pytest.param('  "North   Korea"  ', t("North   Korea"), id="phrase-keeps-spacing"),
        pytest.param("Korea*", t("Korea*"), id="prefix"),
        pytest.param('"North Korea*"', t("North Korea*"), id="phrase-prefix"),
        # pasted from a word processor or Slack: curly quotes are quotes too
        pytest.param("\u201cNorth Korea\u201d", t("North Korea"), id="phrase-curly"),
        pytest.param("\u201eNordkorea\u201c", t("Nordkorea"), id="phrase-german-quotes"),
        pytest.param("North-Korean", t("North-Korean"), id="hyphen-is-a-phrase"),
        pytest.param("Zelenskyý", Term(words=("zelenskyy",), source_text="Zelenskyý"), id="accent"),
        pytest.param("朝鲜", Term(words=("朝", "鲜"), source_text="朝鲜"), id="cjk"),
        pytest.param("朝*", Term(words=("朝",), prefix=True, source_text="朝*"), id="cjk-prefix"),
        pytest.param("Зеленский", t("Зеленский"), id="cyrillic"),
        pytest.param("a b", And((A, B)), id="adjacent-and"),
        pytest.param("a AND b AND c", And((A, B, C)), id="and-chain-is-flat"),
        pytest.param("a AND b OR c", Or((And((A, B)), C)), id="and-binds-tighter"),
        pytest.param("a OR b AND c", Or((A, And((B, C)))), id="and-binds-tighter-right"),
        pytest.param("a OR b c", Or((A, And((B, C)))), id="adjacent-binds-tighter"),
        pytest.param("NOT a b", And((Not(A), B)), id="not-binds-tightest"),
        pytest.param("a NOT b", And((A, Not(B))), id="a-not-b"),
        pytest.param("a AND NOT b", And((A, Not(B))), id="a-and-not-b"),
        pytest.param("a -b", And((A, Not(B))), id="minus"),
        pytest.param('a -"b c"', And((A, Not(t("b c")))), id="minus-phrase"),
        pytest.param("a -(b OR c)", And((A, Not(Or((B, C))))), id="minus-group"),
        pytest.param("NOT NOT a", Not(Not(A)), id="double-not"),
        pytest.param("NOT (a OR b) c", And((Not(Or((A, B))), C)), id="not-group"),
        pytest.param("(a OR b) (c OR d)", And((Or((A, B)), Or((C, D)))), id="groups"),
        pytest.param("a AND (b AND c)", And((A, And((B, C)))), id="group-not-flattened"),
        pytest.param("a or and", And((A, t("or"), t("and"))), id="lowercase-operators-are-words"),
        pytest.param('"AND" "NOT"', And((t("AND"), t("NOT"))), id="quoted-operators"),
        pytest.param("NEARBY", t("NEARBY"), id="nearby-is-a-word"),
        pytest.param(
            'troops NEAR/5 "North Korea*"',
            Near(left=t("troops"), right=t("North Korea*"), distance=5),
            id="near",
        ),
        pytest.param(
            "a NEAR/0 b c",
            And((Near(left=A, right=B, distance=0), C)),
            id="near-binds-tightest",
        ),
        pytest.param("NOT a NEAR/2 b", Not(Near(left=A, right=B, distance=2)), id="not-near"),
        pytest.param(
            "title:(Kim OR Putin)",
            Or((t("Kim", "title"), t("Putin", "title"))),
            id="field-group",
        ),
        pytest.param(
            "TITLE:Kim summary:Putin source:kcna",
            And((t("Kim", "title"), t("Putin", "summary"), t("kcna", "source"))),
            id="fields",
        ),
        pytest.param("title: Kim", t("Kim", "title"), id="field-space"),
        pytest.param('title:"North Korea*"', t("North Korea*", "title"), id="field-phrase"),
        pytest.param(
            "title:(troops NEAR/3 Kim)",
            Near(left=t("troops", "title"), right=t("Kim", "title"), distance=3),
            id="field-near",
        ),
        pytest.param(
            "title:troops NEAR/3 Kim",
            Near(left=t("troops", "title"), right=t("Kim"), distance=3),
            id="near-scoped-and-unscoped",
        ),
        pytest.param(
            "link:bbc.co.uk/News",
            Term(words=("bbc.co.uk/news",), field="link", source_text="bbc.co.uk/News"),
            id="link",
        ),
        pytest.param(
            "(link:https://www.bbc.co.uk/news)",
            Term(
                words=("www.bbc.co.uk/news",),
                field="link",
                source_text="https://www.bbc.co.uk/news",
            ),
            id="link-drops-scheme",
        ),
        pytest.param("10:30", t("10:30"), id="colon-in-a-word"),
        pytest.param(
            ISSUE_QUERY,
            And(
                (
                    Or((t("North Korea*"), t("Pyongyang"), t("DPRK"))),
                    Or((t("Ukraine"), t("Kursk"))),
                    Not(t("South Korea")),
                )
            ),
            id="issue-example",
        ),
    ],
)
def test_parse(query: str, expected: Node) -> None:
    assert parse(query) == expected


@pytest.mark.parametrize(
    ("query", "message", "offset"),
    [
        pytest.param("", "empty query", 0, id="empty"),
        pytest.param("   ", "empty query", 0, id="blank"),
        pytest.param("(a OR b", "unbalanced parenthesis", 0, id="open-paren"),
        pytest.param("a (b (c)", "unbalanced parenthesis", 2, id="inner-open-paren"),
        pytest.param("a OR b)", "unbalanced parenthesis", 6, id="close-paren"),
        pytest.param(")", "unbalanced parenthesis", 0, id="lone-close-paren"),
        pytest.param("a ()", "empty parentheses", 2, id="empty-parens"),
        pytest.param('a "b c', 'unterminated phrase: missing closing "', 2, id="open-quote"),
        pytest.param("a AND", "operator AND needs a term on its right", 2, id="and-at-end"),
        pytest.param("a AND )", "operator AND needs a term on its right", 2, id="and-before-paren"),
        pytest.param("AND a", "operator AND needs a term on its left", 0, id="and-at-start"),
        pytest.param("(OR a)", "operator OR needs a term on its left", 1, id="or-after-paren"),
        pytest.param("a OR OR b", "operator OR needs a term on its right", 2, id="or-or"),
        pytest.param("a NOT", "operator NOT needs a term on its right", 2, id="not-at-end"),
        pytest.param("a -", "- needs a term right after it", 2, id="lone-minus"),
        pytest.param("a - b", "- needs a term right after it", 2, id="spaced-minus"),
        pytest.param("a NEAR b", "NEAR/n needs a number", 2, id="near-no-number"),
        pytest.param("a NEAR/ b", "NEAR/n needs a number", 2, id="near-empty-number"),
        pytest.param("a NEAR/x b", "NEAR/n needs a number", 2, id="near-not-a-number"),
        pytest.param("a \u201cNorth Korea", "unterminated phrase", 2, id="curly-unterminated"),
        # Past 2**31 the matcher's core could not hold it: every watchlist stopped.
        pytest.param("a NEAR/2147483648 b", "NEAR/n takes n up to 10000", 2, id="near-too-far"),
        pytest.param("a NEAR/10001 b", "NEAR/n takes n up to 10000", 2, id="near-past-max"),
        pytest.param("a NEAR/" + "9" * 5000 + " b", "NEAR/n takes n up to", 2,
                     id="near-digits-beyond-int-parsing"),
        pytest.param("a NEAR/3", "operator NEAR/3 needs a term on its right", 2, id="near-at-end"),
        pytest.param("NEAR/3 a", "operator NEAR/3 needs a term on its left", 0, id="near-at-start"),
        pytest.param(
            "(a OR b) NEAR/3 c",
            "NEAR/n needs a single term or phrase on each side",
            9,
            id="near-group-left",
        ),
        pytest.param(
            "a NEAR/3 (b OR c)",
            "NEAR/n needs a single term or phrase on each side",
            2,
            id="near-group-right",
        ),
        pytest.param(
            "a NEAR/3 NOT b",
            "NEAR/n needs a single term or phrase on each side",
            2,
            id="near-not",
        ),
        pytest.param("a NEAR/3 b NEAR/3 c", "NEAR/n cannot be chained", 11, id="near-chained"),
        pytest.param(
            "title:a NEAR/3 summary:b",
            "NEAR/n needs both sides in the same field",
            8,
            id="near-across-fields",
        ),
        pytest.param("a NEAR/3 link:b.com", "NEAR/n does not work on link:", 2, id="near-link"),
        pytest.param(
            "Kor*ea", "wildcard * is only allowed at the end of a term", 3, id="inner-star"
        ),
        pytest.param(
            '"North* Korea"', "wildcard * is only allowed at the end", 6, id="phrase-star"
        ),
        pytest.param(
            '"North Korea *"', "wildcard * must follow a word directly", 13, id="loose-star"
        ),
        pytest.param("x OR K*", "wildcard * needs at least two letters", 6, id="short-prefix"),
        pytest.param("a OR *", "wildcard * must follow a word directly", 5, id="bare-star"),
        pytest.param(
            '"North Korea"*', "wildcard * must follow a word directly", 13, id="star-after-quote"
        ),
        pytest.param("a && b", "term '&&' has no letters or digits", 2, id="no-letters"),
        pytest.param("titel:Kim", "unknown field 'titel'", 0, id="unknown-field"),
        pytest.param("a title:", "title: needs a term, phrase or (group)", 2, id="field-at-end"),
        pytest.param("title:-Kim", "title: needs a term, phrase or (group)", 0, id="field-not"),
        pytest.param(
            "title:(a summary:b)",
            "summary: cannot be used inside title:(...)",
            9,
            id="nested-fields",
        ),
        pytest.param("link:https://", "link: needs some text", 5, id="empty-link"),
        pytest.param("link:b.com/x)", "unbalanced parenthesis", 12, id="link-stops-at-paren"),
        pytest.param("(" * 40 + "a" + ")" * 40, "query nests too deeply", 32, id="too-deep"),
        pytest.param("NOT " * 40 + "a", "query nests too deeply", 128, id="too-many-nots"),
    ],
)
def test_parse_errors(query: str, message: str, offset: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert caught.value.message.startswith(message)
    assert caught.value.offset == offset
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        pytest.param(([], [], []), None, id="nothing"),
        pytest.param((["Ukraine"], [], []), t("Ukraine"), id="one-all"),
        pytest.param(
            (["North Korea*", "Ukraine"], [], []),
            And((t("North Korea*"), t("Ukraine"))),
            id="all",
        ),
        pytest.param(([], ["a", "b"], []), Or((A, B)), id="any"),
        pytest.param(([], ["a"], []), A, id="one-any"),
        pytest.param(
            (["a"], ["b", "c"], ["d", "South Korea"]),
            And((A, Or((B, C)), Not(D), Not(t("South Korea")))),
            id="all-any-none",
        ),
        pytest.param(
            (["AND", "(x)", "title:y", "-z"], [], []),
            And(
                (
                    t("AND"),
                    Term(words=("x",), source_text="(x)"),
                    Term(words=("title", "y"), source_text="title:y"),
                    Term(words=("z",), source_text="-z"),
                )
            ),
            id="items-are-literal",
        ),
        pytest.param(
            (["Korea *", "  spaced  "], [], []),
            And(
                (
                    Term(words=("korea",), prefix=True, source_text="Korea *"),
                    Term(words=("spaced",), source_text="spaced"),
                )
            ),
            id="lenient-star-and-strip",
        ),
    ],
)
def test_from_lists(lists: tuple[list[str], list[str], list[str]], expected: Node | None) -> None:
    all_, any_, none = lists
    assert from_lists(all_, any_, none) == expected


@pytest.mark.parametrize(
    "lists",
    [
        pytest.param((["--"], [], []), id="no-letters"),
        pytest.param(([], [""], []), id="empty-item"),
    ],
)
def test_from_lists_errors(lists: tuple[list[str], list[str], list[str]]) -> None:
    with pytest.raises(QueryError):
        from_lists(*lists)


@pytest.mark.parametrize(
    ("query", "valid"),
    [
        pytest.param("a", True, id="term"),
        pytest.param("a NOT b", True, id="and-not"),
        pytest.param("a NEAR/2 b", True, id="near"),
        pytest.param("NOT a", False, id="not-only"),
        pytest.param("NOT a NOT b", False, id="nots-only"),
        pytest.param("a OR NOT b", False, id="or-not"),
        pytest.param("NOT (NOT a)", True, id="double-not"),
        pytest.param("NOT (NOT a OR NOT b)", True, id="de-morgan-and"),
        pytest.param("NOT (a AND NOT b)", False, id="de-morgan-or-not"),
        pytest.param("NOT a NEAR/3 b", False, id="not-near"),
        pytest.param("(a OR NOT b) (c OR b)", True, id="mixed"),
    ],
)
def test_validate(query: str, valid: bool) -> None:
    node = parse(query)
    if valid:
        validate(node)
    else:
        with pytest.raises(QueryError, match="none of its terms"):
            validate(node)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({"query": "a"}, A, id="query-only"),
        pytest.param({"all": ["a"]}, A, id="lists-only"),
        pytest.param({"all": ["a"], "query": "b OR c"}, And((A, Or((B, C)))), id="anded"),
        pytest.param(
            {"query": "NOT x", "any": ["a", "b"]},
            And((Or((A, B)), Not(t("x")))),
            id="not-query-with-lists",
        ),
    ],
)
def test_condition(kwargs: dict[str, Any], expected: Node | None) -> None:
    assert condition(**kwargs) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"none": ["South Korea"]}, id="none-only"),
        pytest.param({"query": "NOT a"}, id="not-query"),
        pytest.param({"all": ["a"], "query": "(b"}, id="bad-query"),
    ],
)
def test_condition_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(QueryError):
        condition(**kwargs)


def test_terms_are_distinct_and_in_order() -> None:
    node = parse('(b OR a) NOT c a NEAR/2 "d e"')
    assert terms(node) == [B, A, C, t("d e")]


@pytest.mark.parametrize(
    ("node", "text"),
    [
        pytest.param(
            parse(ISSUE_QUERY),
            '("North Korea*" OR Pyongyang OR DPRK) AND (Ukraine OR Kursk) AND NOT "South Korea"',
            id="issue-example",
        ),
        pytest.param(And((A, And((B, C)))), "a AND (b AND c)", id="nested-and"),
        pytest.param(Or((And((A, B)), C)), "a AND b OR c", id="and-in-or"),
        pytest.param(Not(Or((A, B))), "NOT (a OR b)", id="not-group"),
        pytest.param(t("AND"), '"AND"', id="operator-word"),
        pytest.param(t("NEAR/2"), '"NEAR/2"', id="near-word"),
        pytest.param(
            from_lists(["title:x", 'say "hi"', "Korea *"], [], []),
            '"title:x" AND "say hi" AND korea*',
            id="literal-items",
        ),
        pytest.param(t("https://bbc.co.uk", "link"), 'link:"https://bbc.co.uk"', id="link"),
        pytest.param(t("bbc.co.uk/news", "link"), "link:bbc.co.uk/news", id="plain-link"),
    ],
)
def test_render(node: Node, text: str) -> None:
    assert render(node) == text
    assert [term.words for term in terms(parse(text))] == [term.words for term in terms(node)]


# --- Random trees, shared with test_match.py ------------------------------------------

# Written forms of a small vocabulary, so that random queries and random texts meet.
WRITTEN = {
    "north": ["North", "north", "NORTH"],
    "korea": ["Korea", "korea"],
    "korean": ["Korean", "KOREAN"],
    "south": ["South"],
    "troops": ["troops", "Troops"],
    "ukraine": ["Ukraine", "ukraine"],
    "kyiv": ["Kyiv"],
    "kiev": ["Kiev"],
    "zelenskyy": ["Zelenskyy", "Zelenskyý", "ZELENSKYY"],
    "朝鲜": ["朝鲜"],
    "путин": ["Путин", "путин"],
    "news": ["news", "News"],
}
LINK_TEXTS = ["bbc.co.uk", "bbc.co.uk/news", "example.com/world", "/news/", "korea"]
TEXT_FIELDS: list[str | None] = [None, None, None, "title", "summary", "source"]


@st.composite
def word_terms(draw: st.DrawFn, field: str | None = None) -> Term:
    keys = draw(st.lists(st.sampled_from(sorted(WRITTEN)), min_size=1, max_size=3))
    written = [draw(st.sampled_from(WRITTEN[key])) for key in keys]
    prefix = draw(st.booleans())
    if prefix and not written[-1].startswith("朝"):
        # Cut the last word to a prefix of at least two letters.
        last = written[-1]
        written[-1] = last[: draw(st.integers(min_value=2, max_value=len(last)))]
    source_text = " ".join(written) + ("*" if prefix else "")
    return t(source_text, field)


@st.composite
def leaf_terms(draw: st.DrawFn) -> Term:
    if draw(st.integers(0, 9)) == 0:
        return t(draw(st.sampled_from(LINK_TEXTS)), "link")
    return draw(word_terms(draw(st.sampled_from(TEXT_FIELDS))))


@st.composite
def nears(draw: st.DrawFn) -> Near:
    field = draw(st.sampled_from(TEXT_FIELDS))
    # Either both sides share a field, or one is unscoped and the other is title/summary.
    other = field if field not in ("title", "summary") else draw(st.sampled_from([field, None]))
    left, right = draw(word_terms(field)), draw(word_terms(other))
    if draw(st.booleans()):
        left, right = right, left
    return Near(left=left, right=right, distance=draw(st.integers(0, 4)))


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(Not, children),
        st.builds(lambda c: And(tuple(c)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda c: Or(tuple(c)), st.lists(children, min_size=2, max_size=3)),
    )


trees: st.SearchStrategy[Node] = st.recursive(
    st.one_of(leaf_terms(), leaf_terms(), nears()), _extend, max_leaves=8
)


@given(trees)
def test_render_round_trips(node: Node) -> None:
    assert parse(render(node)) == node


@pytest.mark.parametrize(("text", "found"), [
    ("Kim and Putin", [("and", 4)]),
    ("Kim And Putin", [("And", 4)]),
    ("Kim Or Seoul", [("Or", 4)]),
    ("Kim near/5 Putin", [("near/5", 4)]),
    ("Kim Near/5 Putin", [("Near/5", 4)]),
    ("Kim AND Putin", []),  # the operator
    ('"rock and roll"', []),  # a phrase
    ("and Kim", []),  # not between two terms: a word, as written
    ("Kim NOT (Seoul or Tokyo)", [("or", 15)]),
])
def test_lowercase_operators(text: str, found: list[tuple[str, int]]) -> None:
    from monitor.query import lowercase_operators

    assert lowercase_operators(text) == found
