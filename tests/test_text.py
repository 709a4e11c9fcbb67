"""monitor.text: folding and word splitting, the ground both matching and dedupe stand on."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import monitor.match
import monitor.text
from monitor.match import Matcher
from monitor.text import ascii_folds, is_cjk, normalize, token_string, tokenize
from monitor.types import Entry, Watchlist


def reference_normalize(text: str) -> str:
    """The first, obviously correct version of normalize (one character at a time)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join("" if c in "\u00ad\u200b\u200c\u200d\u2060\ufeff" else
                   {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ı": "i", "ħ": "h", "ŧ": "t",
                    "æ": "ae", "œ": "oe", "þ": "th"}.get(c, c) for c in text)
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Zelenskyý", "zelenskyy", id="accent"),
        pytest.param("Zelenskyy", "zelenskyy", id="plain"),
        pytest.param("Ze\u0301lensky", "zelensky", id="combining-mark"),
        pytest.param("ＮＡＴＯ", "nato", id="fullwidth-nfkc"),
        pytest.param("Straße", "strasse", id="casefold-eszett"),
        pytest.param("Ёлка", "елка", id="cyrillic-yo"),
        pytest.param("朝鲜", "朝鲜", id="cjk-unchanged"),
        # German outlets hyphenate headlines with &shy;: the word is still one word.
        pytest.param("Bundes\u00adregierung", "bundesregierung", id="soft-hyphen-dropped"),
        pytest.param("Zelen\u200bskyy Ukr\u200daine", "zelenskyy ukraine", id="zero-width"),
        # No decomposition, so no accent to strip: spelled as the English press does.
        pytest.param("Łódź", "lodz", id="l-with-stroke"),
        pytest.param("Diyarbakır", "diyarbakir", id="dotless-i"),
        pytest.param("Øresund", "oresund", id="o-with-stroke"),
        pytest.param("Đà Nẵng", "da nang", id="d-with-stroke"),
        pytest.param("Þingvellir", "thingvellir", id="thorn"),
        pytest.param("İstanbul", "istanbul", id="dotted-capital-i"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("North-Korean troops", ["north", "korean", "troops"], id="hyphen-splits"),
        pytest.param(
            "'Several thousands' of North Korean troops",
            ["several", "thousands", "of", "north", "korean", "troops"],
            id="quotes",
        ),
        pytest.param("North Korea’s “army”", ["north", "korea", "s", "army"], id="typographic"),
        pytest.param("snake_case", ["snake", "case"], id="underscore-splits"),
        pytest.param("G7 in 2024", ["g7", "in", "2024"], id="digits"),
        pytest.param("Kyiv Kiev", ["kyiv", "kiev"], id="kyiv-is-not-kiev"),
        pytest.param("朝鲜军队进入乌克兰", list("朝鲜军队进入乌克兰"), id="cjk-char-tokens"),
        pytest.param("Ким Чен Ын", ["ким", "чен", "ын"], id="cyrillic"),
        pytest.param("KCNA:北朝鮮-Ukraine", ["kcna", "北", "朝", "鮮", "ukraine"], id="mixed"),
        pytest.param("", [], id="empty"),
        pytest.param(" -- ", [], id="only-punctuation"),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected
    assert token_string(text) == " ".join(expected)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("朝", True, id="han"),
        pytest.param("か", True, id="kana"),
        pytest.param("한", True, id="hangul"),
        pytest.param("a", False, id="latin"),
        pytest.param("朝鲜", False, id="two-chars"),
    ],
)
def test_is_cjk(token: str, expected: bool) -> None:
    assert is_cjk(token) is expected


# Characters that exercise every branch: ASCII punctuation, typographic marks,
# accents (precomposed and combining), CJK, Cyrillic, astral letters and marks.
_ALPHABET = st.one_of(
    st.sampled_from(list("aZ9 _-'.,\"\t\n")),
    st.sampled_from(list("’“”–—«»…\u00a0éÉýß\u0301\u0308朝鲜한かЁжй𝐀𝔘\U0001d165ﬁ"
                         "\u00ad\u200b\u200dŁłıØÆœÞĐ")),
    st.characters(),
)


@given(st.text(_ALPHABET))
@example("Zelenskyý says “North-Korean” troops’ move")
@example("\U0001d165a\u0301")
def test_token_string_is_joined_tokenize(text: str) -> None:
    joined = token_string(text)
    assert joined.split(" ") == tokenize(text) or (joined == "" and tokenize(text) == [])


@given(st.text(_ALPHABET))
def test_normalize_matches_reference(text: str) -> None:
    assert normalize(text) == reference_normalize(text)


# --- The C core's tokeniser -----------------------------------------------------------

FOLDED = [chr(c) for c in range(0x80, 0x2070) if ascii_folds()[c * 9] < 255]


def test_fold_table_is_what_normalize_and_the_word_pattern_give() -> None:
    """ascii_folds builds its table without the patterns (for start-up's sake): the
    table it would have built with them, normalize() and a word character that is
    no CJK, byte for byte."""
    word_char = re.compile(rf"[^\W_{monitor.text._CJK}]")
    table = bytearray(b"\xff" + bytes(monitor.text._FOLD_MAX)) * monitor.text.FOLD_LIMIT
    for code in range(128):
        table[code * 9 : code * 9 + 2] = bytes([1, monitor.text._ASCII_SPLIT[code]])
    for code in (c for r in monitor.text._FOLD_RANGES for c in r):
        char = chr(code)
        if unicodedata.combining(char) or unicodedata.category(char).startswith("M"):
            continue
        folded = "".join(
            c if c.isascii() and c.isalnum() else "\0" if word_char.match(c) else " "
            for c in normalize(char)
        )
        if folded and "\0" not in folded and len(folded) <= monitor.text._FOLD_MAX:
            table[code * 9 : code * 9 + 1 + len(folded)] = bytes([len(folded)]) + folded.encode()
    assert ascii_folds() == bytes(table)
NOT_FOLDED = ["ж", "Σ", "ς", "朝", "鲜", "\u0301", "\u0308", "ŉ", "µ", "ﬁ", "Å", "\U0001f600", "\ud800"]


def native_tokens(text: str) -> str:
    """The words the C core puts in its hay for ``text`` (Core.tokens, a test hook)."""
    if not monitor.match.NATIVE:
        pytest.fail("monitor._matchcore is not built: `pip install -e .` compiles it")
    matcher = Matcher.compile([Watchlist(name="w", all=("x",))], native=True)
    core = matcher._core.__self__  # type: ignore[union-attr]
    return str(core.tokens(text))


@settings(max_examples=2000, deadline=None)
@given(
    st.text(
        st.one_of(
            st.characters(max_codepoint=127),
            st.sampled_from(FOLDED),
            st.sampled_from(NOT_FOLDED),
            st.characters(),
        ),
        max_size=30,
    )
)
def test_c_tokens_are_token_string(text: str) -> None:
    """ASCII and the characters of the fold table are tokenised in C; the rest by
    token_string. Either way the words are token_string's."""
    assert native_tokens(text) == token_string(text)


@pytest.mark.parametrize(
    "char",
    [pytest.param(c, id=f"U+{ord(c):04X}") for c in "’–—“”\xa0…·«»"],
)
def test_news_punctuation_and_accents_fold_in_c(char: str) -> None:
    """The punctuation and accents real English and Spanish headlines carry are
    in the fold table, so such a headline never waits for Python's Unicode
    normalisation, and it still separates words and folds accents."""
    assert ascii_folds()[ord(char) * 9] < 255
    assert all(ascii_folds()[ord(c) * 9] < 255 for c in "ñáéíóúüçàèßǅİ½ạ")
    title = f"Peñas {char} win in Bogotá{char}"
    assert native_tokens(title) == token_string(title)
    entry = Entry(feed="f", key="k", guid=None, link="", canonical_url="", title=title,
                  summary="", published=None)
    matcher = Matcher.compile([Watchlist(name="w", all=("Penas", "Bogota"))], native=True)
    assert [m.terms for m in matcher.match(entry)] == [("Penas", "Bogota")]
