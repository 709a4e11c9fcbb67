"""Text normalisation shared by matching and dedupe (pure).

Every comparison of words in news-monitor goes through :func:`normalize` and
:func:`tokenize`, so a watchlist term and a feed title are folded the same way:
Unicode NFKC, casefold, accents removed (Zelenskyý -> zelenskyy) and letters
with strokes spelled without (Łódź -> lodz), soft hyphens and zero-width
characters dropped (Bundes&shy;regierung -> bundesregierung), punctuation and
hyphens split words (North-Korean -> north, korean). CJK ideographs, kana
and hangul syllables have no spaces between words, so each such character is a
token of its own and a phrase of them matches as a run of consecutive tokens.

:func:`tokenize` is the definition: one regular expression, easy to check.
:func:`token_string` gives the same words joined by single spaces and is what
the matcher runs on every entry title and summary, so it takes shortcuts that
tests/test_text.py checks against :func:`tokenize`:

- ASCII text (most English news) is lower-cased and split with one
  ``bytes.translate`` that turns every non-alphanumeric character into a space,
  then runs of spaces are squeezed; that is about four times faster than the
  token regular expression.
- Typographic punctuation (curly quotes, dashes, guillemets) only ever separates
  words, so it is blanked first; text that is ASCII after that takes the fast
  path too. Anything else (accents, Cyrillic, CJK) takes the regular expression.

Accents are stripped with a regular expression over every character whose
canonical combining class is non-zero (what ``unicodedata.combining`` reports),
built on first use from the running Python's Unicode tables.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"


# The patterns whose classes span the CJK blocks are compiled at first use: `re`
# takes a few milliseconds over each such class, which every process importing
# this module paid, whether it tokenised anything or not.
@functools.cache
def _token() -> re.Pattern[str]:
    """A run of letters/digits, or a single CJK/kana/hangul character."""
    return re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


@functools.cache
def _cjk_char() -> re.Pattern[str]:
    return re.compile(rf"[{_CJK}]")


# ASCII bytes: letters to lower case, digits kept, everything else a space.
_ASCII_SPLIT = bytes(
    ord(c.lower()) if c in string.ascii_letters + string.digits else ord(" ")
    for c in map(chr, range(256))
)
_SPACES = re.compile(b"  +")
# Punctuation common in English news that NFKC leaves non-ASCII.
_TYPOGRAPHIC = (
    "\u2018\u2019\u201a\u201b\u201c\u201d\u201e"  # curly quotes
    "\u2010\u2012\u2013\u2014\u2015"  # dashes
    "\u00ab\u00bb"  # guillemets
)


@functools.cache
def _combining_marks(astral: bool) -> re.Pattern[str]:
    """A character class of every combining mark (about 900 of them).

    ``re`` tests a class of BMP characters with one table look-up but walks a
    class that reaches past U+FFFF range by range, ten times slower; so the
    astral marks get a pattern of their own, used only on text that has astral
    characters at all.
    """
    top = sys.maxunicode if astral else 0xFFFF
    ranges: list[str] = []
    start = prev = -2
    for code in range(top + 1):
        if not unicodedata.combining(chr(code)):
            continue
        if code != prev + 1:
            if start >= 0:
                ranges.append(_range(start, prev))
            start = code
        prev = code
    ranges.append(_range(start, prev))
    return re.compile("[" + "".join(ranges) + "]+")


def _range(first: int, last: int) -> str:
    return re.escape(chr(first)) + ("-" + re.escape(chr(last)) if last > first else "")


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


#: After casefolding: characters that join the letters around them and so are
#: dropped (soft hyphens in German headlines, zero-width spaces and joiners),
#: and letters with strokes or ligatures that have no decomposition, so no
#: accent to strip, spelled as the English-language press spells them
#: (Łódź -> lodz, Diyarbakır -> diyarbakir, Øresund -> oresund).
_JOINED = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_UNSTROKED = {ord(k): v for k, v in {
    "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ı": "i", "ħ": "h", "ŧ": "t",
    "æ": "ae", "œ": "oe", "þ": "th"}.items()}
_EXTRA = {**_JOINED, **_UNSTROKED}
_EXTRA_AT = re.compile("[" + "".join(map(chr, _EXTRA)) + "]")


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return folded.translate(_EXTRA) if _EXTRA_AT.search(folded) else folded


def _strip_accents(folded: str) -> str:
    decomposed = unicodedata.normalize("NFD", folded)
    marks = _combining_marks(_ASTRAL.search(decomposed) is not None)
    return unicodedata.normalize("NFC", marks.sub("", decomposed))


def normalize(text: str) -> str:
    """NFKC, casefold and strip combining marks (accents)."""
    folded = _fold(text)
    return folded if folded.isascii() else _strip_accents(folded)


def tokenize(text: str) -> list[str]:
    """Normalised words of ``text`` in order."""
    return _token().findall(normalize(text))


def token_string(text: str) -> str:
    """The words of :func:`tokenize` joined by single spaces, none at either end."""
    if not text.isascii():
        text = _fold(text)
        for mark in _TYPOGRAPHIC:
            if mark in text:
                text = text.replace(mark, " ")
        if not text.isascii():
            return " ".join(_token().findall(_strip_accents(text)))
    # ASCII is its own NFKC, and lower() is its casefold.
    spaced = text.encode("ascii").translate(_ASCII_SPLIT)
    return _SPACES.sub(b" ", spaced).strip().decode("ascii")


#: The C tokeniser (monitor/_matchcore.c) folds characters below this itself.
FOLD_LIMIT = 0x2070
_FOLD_RANGES = (range(0x80, 0x300), range(0x1E00, 0x1F00), range(0x2000, FOLD_LIMIT))
_FOLD_MAX = 8


@functools.cache
def ascii_folds() -> bytes:
    """What :func:`token_string` makes of each character below FOLD_LIMIT, for the
    C tokeniser: 9 bytes a code point, a length and that many bytes (lower-case
    ASCII letters and digits, and spaces for what separates words), or length
    255 for a character it must leave to :func:`token_string`.

    Only characters that fold on their own are given: Latin letters with
    accents (é -> e, ß -> ss, ǅ -> dz), Latin-1 symbols, typographic
    punctuation. Each is a starter that composes with nothing after it and
    decomposes to nothing that could, so folding it alone gives what folding
    the whole text does; combining marks, and letters that stay non-ASCII
    (Cyrillic, Greek, ʼ), are left to :func:`token_string`.
    tests/test_match.py holds the two to the same output on random text.

    Built at every start of the matcher, so it spares itself the two patterns
    :func:`normalize` and :func:`tokenize` would compile: the accents of one
    character are dropped one by one, and what these characters fold to holds
    no CJK, so a word character is an alphanumeric one (tests/test_text.py
    holds the table to the one those patterns give).
    """
    table = bytearray(b"\xff" + bytes(_FOLD_MAX)) * FOLD_LIMIT
    for code in range(128):
        table[code * 9 : code * 9 + 2] = bytes([1, _ASCII_SPLIT[code]])
    for code in (c for r in _FOLD_RANGES for c in r):
        char = chr(code)
        if unicodedata.combining(char) or unicodedata.category(char).startswith("M"):
            continue
        folded = "".join(
            c if c.isascii() and c.isalnum() else "\0" if c.isalnum() else " "
            for c in _normalize_char(char)
        )
        if folded and "\0" not in folded and len(folded) <= _FOLD_MAX:
            table[code * 9 : code * 9 + 1 + len(folded)] = bytes([len(folded)]) + folded.encode()
    return bytes(table)


def _normalize_char(char: str) -> str:
    """:func:`normalize` of one character, its combining marks dropped one by one."""
    folded = _fold(char)
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFD", folded)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def is_cjk(token: str) -> bool:
    """Whether ``token`` is one CJK/kana/hangul character (which is a word of its own)."""
    return _cjk_char().fullmatch(token) is not None
