"""Text normalisation shared by matching and dedupe (pure).

Every comparison of words in news-monitor goes through :func:`normalize` and
:func:`tokenize`, so a watchlist term and a feed title are folded the same way:
Unicode NFKC, casefold, accents removed (Zelenskyý -> zelenskyy), punctuation
and hyphens split words (North-Korean -> north, korean). CJK ideographs, kana
and hangul syllables have no spaces between words, so each such character is a
token of its own and a phrase of them matches as a run of consecutive tokens.
"""

from __future__ import annotations

import re
import unicodedata

# A run of letters/digits, or a single CJK/kana/hangul character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def normalize(text: str) -> str:
    """NFKC, casefold and strip combining marks (accents)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


def tokenize(text: str) -> list[str]:
    """Normalised words of ``text`` in order."""
    return _TOKEN.findall(normalize(text))
