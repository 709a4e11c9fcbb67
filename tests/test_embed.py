"""monitor.embed: the MiniLM embedder of the optional ``semantic`` extra.

The tests of the model itself are marked ``semantic``: skipped where the extra
is not installed (make test), run by make test-semantic. The others run
everywhere."""

from __future__ import annotations

import sys

import pytest

from monitor.embed import MISSING_EXTRA, Embedder
from monitor.errors import ConfigError

needs_extra = pytest.mark.semantic  # skipped without the extra: see tests/conftest.py


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    embed = Embedder()
    embed.load()  # the model is loaded once per process; later Embedders share it
    return embed


@needs_extra
def test_unit_float32_vectors_one_per_text_in_order(embedder: Embedder) -> None:
    import numpy as np

    texts = ["North Korea to send thousands of troops to Ukraine front, ISW says",
             "Thousands of North Korean soldiers training in Russia for Ukraine war",
             "Ukraine says Russian drones hit Kyiv power grid overnight"]
    vectors = embedder(texts)
    assert len(vectors) == 3
    for v in vectors:
        assert v.dtype == np.float32
        assert v.shape == (384,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
    same_event = float(vectors[0] @ vectors[1])
    other_event = float(vectors[0] @ vectors[2])
    assert same_event > 0.6 > 0.4 > other_event
    # Batching does not change a vector.
    [alone] = embedder(texts[2:])
    assert float(alone @ vectors[2]) > 0.9999


@needs_extra
def test_no_texts_no_work(embedder: Embedder) -> None:
    assert embedder([]) == []


def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'news-monitor\[semantic\]'") as info:
        Embedder()(["anything"])
    assert str(info.value) == MISSING_EXTRA


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Embedder(batch_size=0)
