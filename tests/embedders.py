"""Embed functions for tests of dedupe method ``semantic`` without the model.

:class:`monitor.dedupe.StoryIndex` takes its embed function as an argument
(texts -> unit float32 vectors), so the method's own logic (scores, bars,
tightness, the conflict veto, caching, expiry) can be tested with a small
deterministic embedder: :class:`TrigramEmbedder` hashes each word's character
trigrams into a fixed number of dimensions. Headlines that share words or
stems ("troops"/"troop", "Korea"/"Korean") come out close, headlines with no
letters in common come out near orthogonal: the shape of a sentence
embedding's similarities, without its sense of meaning. The real MiniLM model
is tested in the tests marked ``semantic``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]

_WORD = re.compile(r"\w+")


class TrigramEmbedder:
    """Texts -> unit float32 vectors of ``dim`` dimensions: each word's
    character trigrams (with the word's edges, so "<tr", "tro"... "ps>") and
    the whole word, feature-hashed with a sign so that collisions cancel out
    rather than add up. Deterministic across runs and machines (BLAKE2, not
    ``hash()``). Records each call's texts in ``calls``."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> list[Vector]:
        self.calls.append(list(texts))
        return [self.vector(text) for text in texts]

    @property
    def embedded(self) -> list[str]:
        """Every text asked for, in order, over all calls."""
        return [text for call in self.calls for text in call]

    def vector(self, text: str) -> Vector:
        v = np.zeros(self.dim, dtype=np.float64)
        for word in _WORD.findall(text.casefold()):
            marked = f"<{word}>"
            grams = [marked[i : i + 3] for i in range(len(marked) - 2)] + [marked]
            for gram in grams:
                digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                v[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:  # no word at all: some fixed unit vector, as a model would give
            v[0], norm = 1.0, 1.0
        return (v / norm).astype(np.float32)

    def cosine(self, a: str, b: str) -> float:
        return float(self.vector(a) @ self.vector(b))

    def average(self, text: str, members: Sequence[str]) -> float:
        """The average cosine between ``text`` and each of ``members``."""
        return sum(self.cosine(text, m) for m in members) / len(members)

    def tightness(self, members: Sequence[str]) -> float:
        """The average cosine over the pairs of ``members``."""
        pairs = [self.cosine(a, b) for a, b in combinations(members, 2)]
        return sum(pairs) / len(pairs)
