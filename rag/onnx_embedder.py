"""all-MiniLM-L6-v2 as an int8 ONNX graph, with the output sentence-transformers gives.

The same tokenizer (the package's tokenizer.json), the same truncation
(max_seq_length 256, not the 128 stored in tokenizer.json), mean pooling
over the attention mask and L2 normalisation. Texts are sorted by length
before batching, as sentence-transformers does, so little time goes on padding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .embeddings import DIMENSION, ONNX_INT8, Embedder, max_seq_length, model_dir
from .onnx_build import ensure_model


def default_threads() -> int:
    """One intra-op thread per core, at most 4: more only adds contention for a model this small."""
    return max(1, min(4, os.cpu_count() or 1))


class OnnxEmbedder(Embedder):
    kind = ONNX_INT8

    def __init__(self, models_root: Path, batch_size: int = 32, threads: int = 0):
        super().__init__(batch_size=batch_size)
        self.models_root = models_root
        self.threads = threads or default_threads()
        self._session = None
        self._tokenizer = None
        self.model_path: Path | None = None

    def _load(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                src = model_dir()
                built = ensure_model(src, self.models_root)
                tok = Tokenizer.from_file(str(src / "tokenizer.json"))
                tok.enable_truncation(max_seq_length(src))
                tok.no_padding()  # padded per batch, to that batch's longest text
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                opts.add_session_config_entry(
                    "session.intra_op.allow_spinning", "0"
                )  # shared cores
                self._session = ort.InferenceSession(
                    str(built.path), opts, providers=["CPUExecutionProvider"]
                )
                self._tokenizer = tok
                self.model_path = built.path
            return self._session, self._tokenizer

    @property
    def model(self):
        return self._load()[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        session, tok = self._load()
        encodings = tok.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out
