"""monitor.text: folding and word splitting, the ground both matching and dedupe stand on."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from monitor.text import is_cjk, normalize, token_string, tokenize


def reference_normalize(text: str) -> str:
    """The first, obviously correct version of normalize (one character at a time)."""
    text = unicodedata.normalize("NFKC", text).casefold()
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
    st.sampled_from(list("’“”–—«»…\u00a0éÉýß\u0301\u0308朝鲜한かЁжй𝐀𝔘\U0001d165ﬁ")),
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
