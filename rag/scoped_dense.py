"""Dense search within a few documents of a large scope, without Chroma's where-filter.

A drug-scoped question searches a handful of a library's documents. Chroma serves
that with a `document_id` where-filter, which resolves the allowed ids through its
metadata store on every query: 20-35 ms p50 on a 20,000-chunk pharmacy library
(BENCHMARKS.md, issue 15), more than the search itself. Those documents' vectors
are few, so they are kept here per document (fetched once from the store by chunk
id) and scored exactly with one matrix product; only the winners' texts are read.

A cached entry is keyed by the document's BM25 segment file (a fresh name on every
re-index of the document, rag/lexical.py) and the collection it came from (a
re-embedding moves it), so a stale vector is never scored; the cache is a bounded
LRU over vectors. Every hit's scope is checked like the store's own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .owner_scope import OwnerScope
from .store import ChunkStore, Hit

MAX_VECTORS = 60_000  # ~90 MB of float32 MiniLM vectors at most


class DocumentVectors:
    def __init__(self, store: ChunkStore, max_vectors: int = MAX_VECTORS):
        self.store = store
        self.max_vectors = max_vectors
        self._lru: OrderedDict[tuple, tuple[list[str], np.ndarray]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def _get(self, key: tuple):
        with self._lock:
            got = self._lru.get(key)
            if got is not None:
                self._lru.move_to_end(key)
            return got

    def _put(self, key: tuple, ids: list[str], matrix: np.ndarray) -> None:
        with self._lock:
            if key in self._lru:
                return
            self._lru[key] = (ids, matrix)
            self._size += len(ids)
            while self._size > self.max_vectors and len(self._lru) > 1:
                _, (old, _) = self._lru.popitem(last=False)
                self._size -= len(old)

    def search(
        self,
        scope: OwnerScope,
        embedding: np.ndarray,
        segments: dict[str, tuple[str, list[str]]],
        n: int,
    ) -> list[Hit]:
        """The `n` nearest chunks of these documents; `segments`: document id -> (its BM25
        segment file, its chunk ids)."""
        col = self.store.existing_collection(scope)
        if col is None or not segments:
            return []
        ids: list[str] = []
        mats: list[np.ndarray] = []
        missing: dict[str, tuple] = {}
        for doc, (file, _) in segments.items():
            key = (scope, doc, file, col.name)
            got = self._get(key)
            if got is None:
                missing[doc] = key
            else:
                ids += got[0]
                mats.append(got[1])
        if missing:
            wanted = [c for doc in missing for c in segments[doc][1]]
            res = self.store.get(scope, ids=wanted, embeddings=True)
            by_doc: dict[str, tuple[list[str], list]] = {}
            for cid, meta, vec in zip(res["ids"], res["metadatas"], res["embeddings"], strict=True):
                doc = str(meta.get("document_id"))
                if doc in missing and scope.owns(meta):
                    by_doc.setdefault(doc, ([], []))
                    by_doc[doc][0].append(cid)
                    by_doc[doc][1].append(vec)
            for doc, (cids, vecs) in by_doc.items():
                m = np.asarray(vecs, dtype=np.float32)
                m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
                self._put(missing[doc], cids, m)
                ids += cids
                mats.append(m)
        if not ids:
            return []
        q = np.asarray(embedding, dtype=np.float32)
        sims = np.vstack(mats) @ (q / max(float(np.linalg.norm(q)), 1e-12))
        k = min(n, len(ids))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        chosen = [ids[i] for i in top]
        res = self.store.get(scope, ids=chosen)
        found = {
            i: (t, m)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        }
        hits = []
        for i in top:
            cid = ids[i]
            if cid in found and scope.owns(found[cid][1]):
                text, meta = found[cid]
                hits.append(Hit(cid, meta["document_id"], text, meta, float(sims[i])))
        return hits
