"""BM25 over each user's chunks (bm25s), so exact drug names and doses are found.

One index per user, rebuilt from that user's chunks in the vector store (the
source of truth) whenever a document is added or removed, saved under
`<root>/<user_id>/`, and loaded back lazily after a restart. A user's corpus
is small (thousands of chunks), so a rebuild costs milliseconds to a second.

The worker usually runs in another process than the app (services/launcher.py):
rebuilds of one user's index take a file lock, so two processes never swap it at
once, and a search reloads the index when the file on disk changed under it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localbase.files import open_private, private_dir, secure_tree

from .store import ChunkStore


@dataclass
class _UserIndex:
    retriever: object | None  # bm25s.BM25, None for an empty corpus
    ids: list[str]
    doc_ids: np.ndarray
    stamp: tuple[int, int] | None = None  # (inode, mtime) of the ids file it was loaded from


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _stemmer():
    import Stemmer
    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], stemmer=None) -> list[list[str]]:
    import bm25s
    return bm25s.tokenize(texts, stopwords="en_plus", stemmer=stemmer or _stemmer(), show_progress=False,
                          return_ids=False)


class LexicalIndex:
    def __init__(self, root: Path, store: ChunkStore):
        self.root = root
        self.store = store
        self._cache: dict[str, _UserIndex] = {}
        self._lock = threading.Lock()
        self._stemmer = None

    @property
    def stemmer(self):
        if self._stemmer is None:
            self._stemmer = _stemmer()
        return self._stemmer

    def _dir(self, user_id: str) -> Path:
        return self.root / uuid.UUID(str(user_id)).hex

    @contextmanager
    def _locked(self, user_id: str) -> Iterator[None]:
        """One rebuild of a user's index at a time across processes (the app deletes, a worker adds)."""
        private_dir(self.root)
        with open_private(self.root / f".{uuid.UUID(str(user_id)).hex}.lock") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def rebuild(self, user_id: str) -> int:
        """Re-index the user's chunks from the store; returns the corpus size."""
        with self._locked(user_id):
            return self._rebuild(user_id)

    def _rebuild(self, user_id: str) -> int:
        import bm25s
        corpus = self.store.all_chunks(user_id)
        ids = [c[0] for c in corpus]
        docs = np.array([c[1] for c in corpus], dtype=object)
        retriever = None
        target = self._dir(user_id)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        private_dir(tmp)
        if corpus:
            retriever = bm25s.BM25()
            retriever.index(tokenize([c[2] for c in corpus], self.stemmer), show_progress=False)
            retriever.save(str(tmp))
        (tmp / "pharmgpt_ids.json").write_text(json.dumps({"ids": ids, "doc_ids": docs.tolist()}))
        secure_tree(tmp)  # the index files name no user, but hold their words: 0600
        with self._lock:
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            self._cache[str(user_id)] = _UserIndex(retriever, ids, docs, _stamp(target / "pharmgpt_ids.json"))
        return len(ids)

    def _load(self, user_id: str) -> _UserIndex:
        d = self._dir(user_id)
        with self._lock:
            idx = self._cache.get(str(user_id))
        stamp = _stamp(d / "pharmgpt_ids.json")
        if idx is not None and (stamp is None or idx.stamp == stamp):
            return idx  # unchanged on disk (or removed: the cached copy is kept until rebuilt)
        try:
            meta = json.loads((d / "pharmgpt_ids.json").read_text())
            retriever = None
            if meta["ids"]:
                import bm25s
                retriever = bm25s.BM25.load(str(d))
            idx = _UserIndex(retriever, meta["ids"], np.array(meta["doc_ids"], dtype=object), stamp)
        except (OSError, ValueError, KeyError):
            self.rebuild(user_id)  # missing or damaged on disk: the store has the truth
            with self._lock:
                return self._cache[str(user_id)]
        with self._lock:
            self._cache[str(user_id)] = idx
        return idx

    def search(self, user_id: str, query: str, k: int,
               document_ids: list[str] | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, score) of the best `k` matches with a positive score."""
        if document_ids is not None and not document_ids:
            return []
        idx = self._load(user_id)
        if idx.retriever is None:
            return []
        vocab = idx.retriever.vocab_dict
        tokens = [t for t in tokenize([query], self.stemmer)[0] if t in vocab]
        if not tokens:
            return []
        scores = np.asarray(idx.retriever.get_scores(tokens), dtype=np.float32)
        if document_ids is not None:
            scores = np.where(np.isin(idx.doc_ids, list(map(str, document_ids))), scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(idx.ids[i], str(idx.doc_ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def indexed_ids(self, user_id: str) -> set[str] | None:
        """The chunk ids the user's index on disk holds; None when it is missing or unreadable."""
        try:
            meta = json.loads((self._dir(user_id) / "pharmgpt_ids.json").read_text())
            return set(meta["ids"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_current(self, user_id: str) -> bool:
        """Whether the index on disk holds exactly the user's chunks in the store (no chunks and
        no index count as current). A writer that was killed before rebuilding leaves it not."""
        have = self.indexed_ids(user_id)
        want = set(self.store.get(user_id)["ids"])
        return have == want or (have is None and not want)

    def evict(self, user_id: str) -> None:
        """Drop the in-memory index (it is loaded from disk again on the next search)."""
        with self._lock:
            self._cache.pop(str(user_id), None)

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._cache.pop(str(user_id), None)
        shutil.rmtree(self._dir(user_id), ignore_errors=True)
