"""Chunk vectors in ChromaDB, one collection per owner scope (DESIGN D5, issue 15).

Chroma has no row security, so isolation is structural: every call names the
owner scope (rag/owner_scope.py: a user's private library, or a pharmacy's
shared one; a bare user id means that user's library), and a scope's chunks
live in its own collection (`u_<hex>` or `p_<hex>`), so no filter mistake can
reach another owner's data. Each chunk carries its scope in its metadata,
checked on every hit. (Why one collection per user and not
one shared collection with a `user_id` filter: see docs/rag.md; measured in
bench/retrieval.py.) Chunk ids are `<document_id>:<n>`, so re-ingesting a
document overwrites instead of duplicating. Embeddings are always supplied;
Chroma's own embedding function (which downloads a model) is never used.

Each collection records the embedder its vectors came from (metadata
`embedder`; none recorded means the torch MiniLM, the only one before). A store
serves one embedder: vectors of another are never queried nor written to. While
a scope's collection `u_<hex>` holds another embedder's vectors, new vectors go
to a staging collection `s_<hex>` (`q_<hex>` for a pharmacy's `p_<hex>`) that
the re-indexer (rag/reindex.py) fills from the stored chunk text and then
renames to `u_<hex>`; texts are read from both meanwhile, and dense search sees
only the staging one.

Against a Chroma server, a call whose connection is refused is repeated a few
times over ~8 s: the server `pharmgpt run` supervises comes back on the same port
within that after a crash (pharmgpt/supervisor.py). A refused connection never
reached the server, and the repeated calls are upserts by id and reads, so
repeating is safe. The HTTP client itself reconnects on the next request.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pharmgpt.localbase.files import private_dir, secure_tree

from .embeddings import TORCH_NAME
from .owner_scope import USER, OwnerScope, scope_of_collection

Owner = OwnerScope | str  # a bare user id is that user's private library

log = logging.getLogger(__name__)

RETRY_WAITS_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # a supervised server's backoff plus its start
F = TypeVar("F", bound=Callable[..., Any])
_in_call = threading.local()  # a retried method calling another one retries once, at the top


def _refused(exc: Exception) -> bool:
    try:
        import httpx
    except ImportError:  # no HTTP client: the embedded store only
        return False
    return isinstance(exc, httpx.ConnectError)


def _retried(method: F) -> F:
    """Repeat `method` while the Chroma server refuses connections (a restart), bounded."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not self.host or getattr(_in_call, "active", False):
            return method(self, *args, **kwargs)
        _in_call.active = True
        try:
            for wait in (*RETRY_WAITS_S, None):
                try:
                    return method(self, *args, **kwargs)
                except Exception as exc:
                    if wait is None or not _refused(exc):
                        raise
                    log.warning("chroma server at %s:%s refused: retrying", self.host, self.port)
                    time.sleep(wait)
        finally:
            _in_call.active = False

    return call  # type: ignore[return-value]


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float  # cosine similarity, 1 is identical


def collection_name(owner: Owner) -> str:
    return OwnerScope.of(owner).collection


def staging_name(owner: Owner) -> str:
    """Where a scope's chunks are re-embedded with a new embedder before replacing its
    collection."""
    return OwnerScope.of(owner).staging


def recorded_embedder(collection) -> str:
    return (collection.metadata or {}).get("embedder") or TORCH_NAME


class ChunkStore:
    def __init__(
        self,
        path: Path | None = None,
        host: str | None = None,
        port: int = 8000,
        embedder: str = TORCH_NAME,
    ):
        self.path = path
        self.host = host
        self.port = port
        self.embedder = embedder
        self._client = None
        self._collections: dict[str, Any] = {}
        self._secured: set[str] = set()
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
                if self.host:
                    self._client = chromadb.HttpClient(
                        host=self.host, port=self.port, settings=settings
                    )
                else:
                    if self.path is None:
                        raise ValueError("ChunkStore needs a path or a host")
                    private_dir(self.path)
                    self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                    secure_tree(self.path)  # chroma.sqlite3 and segments made under a looser umask
            return self._client

    def user_lock(self, owner: Owner) -> threading.Lock:
        """Held around writes and the staging swap: a re-index never resurrects a deleted chunk."""
        scope = OwnerScope.of(owner)
        with self._lock:
            return self._user_locks.setdefault(scope, threading.Lock())

    def _open(self, name: str, owner: OwnerScope, create: bool):
        col = self._collections.get(name)
        if col is not None:
            return col
        if create:
            col = self.client.get_or_create_collection(
                name,
                embedding_function=None,
                metadata={
                    "hnsw:space": "cosine",
                    "owner": owner.id,
                    "scope": owner.kind,
                    "embedder": self.embedder,
                },
            )
        else:
            try:
                col = self.client.get_collection(name, embedding_function=None)
            except Exception:  # chromadb raises NotFoundError/ValueError by version
                return None
        self._collections[name] = col
        return col

    def _forget(self, *names: str) -> None:
        for name in names:
            self._collections.pop(name, None)

    def _collection(self, owner: Owner, create: bool = True):
        """The scope's collection for this store's embedder: active, or staging while stale."""
        scope = OwnerScope.of(owner)
        active = self._open(scope.collection, scope, create=False)
        if active is None:
            return self._open(scope.collection, scope, create) if create else None
        if recorded_embedder(active) == self.embedder:
            return active
        return self._open(scope.staging, scope, create)

    @_retried
    def target_collection(self, owner: Owner):
        """Where this store's embedder writes the scope's vectors (created if missing): the live
        collection, or the staging one while a re-index to this embedder runs (rag/reindex.py)."""
        return self._collection(owner, create=True)

    @_retried
    def existing_collection(self, owner: Owner):
        """The scope's collection for this store's embedder, or None if it holds nothing yet
        (rag/scoped_dense.py reads its vectors directly)."""
        return self._collection(owner, create=False)

    def _text_collections(self, owner: Owner) -> list:
        """Every collection holding the scope's chunk texts, the current embedder's last (wins)."""
        scope = OwnerScope.of(owner)
        cols = [
            self._open(scope.collection, scope, False),
            self._open(scope.staging, scope, False),
        ]
        cols = [c for c in cols if c is not None]
        return sorted(cols, key=lambda c: recorded_embedder(c) == self.embedder)

    @_retried
    def is_stale(self, owner: Owner) -> bool:
        """The scope's collection holds another embedder's vectors (a re-index due or running)."""
        scope = OwnerScope.of(owner)
        active = self._open(scope.collection, scope, create=False)
        return active is not None and recorded_embedder(active) != self.embedder

    @_retried
    def upsert(
        self,
        owner: Owner,
        ids: list[str],
        embeddings: np.ndarray,
        texts: list[str],
        metadatas: list[dict[str, Any]],
        batch: int = 1000,
    ) -> None:
        scope = OwnerScope.of(owner)
        for m in metadatas:
            scope.stamp(m)
        with self.user_lock(scope):
            col = self._collection(scope)
            for i in range(0, len(ids), batch):
                col.upsert(
                    ids=ids[i : i + batch],
                    embeddings=embeddings[i : i + batch],
                    documents=texts[i : i + batch],
                    metadatas=metadatas[i : i + batch],
                )
            if self.path is not None and not self.host and col.name not in self._secured:
                secure_tree(self.path)  # the collection's segment files appear on its first write
                self._secured.add(col.name)

    @_retried
    def query(
        self, owner: Owner, embedding: np.ndarray, k: int, document_ids: list[str] | None = None
    ) -> list[Hit]:
        """Nearest chunks of this scope's, optionally only from `document_ids` (an empty list
        finds nothing)."""
        if document_ids is not None and not document_ids:
            return []
        scope = OwnerScope.of(owner)
        col = self._collection(scope, create=False)
        if col is None:
            return []
        # No scope where-filter: the collection is the scope's own, and every hit's scope is
        # checked below. In Chroma a where-filter that matches the whole collection costs ~20x the
        # search itself (190 vs 8.5 ms p50 at 14,000 chunks, BENCHMARKS.md, issues #14 and #15).
        where = (
            {"document_id": {"$in": [str(d) for d in document_ids]}}
            if document_ids is not None
            else None
        )
        res = col.query(
            query_embeddings=[embedding],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for cid, text, meta, dist in zip(
            res["ids"][0],
            res["documents"][0],
            res["metadatas"][0],
            res["distances"][0],
            strict=True,
        ):
            if not scope.owns(meta):  # belt and braces: never hand out a foreign chunk
                continue
            hits.append(Hit(cid, meta["document_id"], text, meta, 1.0 - float(dist)))
        return hits

    @_retried
    def get(
        self,
        owner: Owner,
        *,
        ids: list[str] | None = None,
        document_id: str | None = None,
        embeddings: bool = False,
    ) -> dict[str, list]:
        """Raw records of the scope's own collection (ids, documents, metadatas[, embeddings]).

        Embeddings come only from the current embedder's collection; texts from both while
        re-indexing.
        """
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        where = {"document_id": str(document_id)} if document_id is not None else None
        if embeddings:
            col = self._collection(owner, create=False)
            cols = [] if col is None else [col]
        else:
            cols = self._text_collections(owner)
        if not cols:
            return {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
        if len(cols) == 1:
            return cols[0].get(ids=ids, where=where, include=include)
        merged: dict[str, tuple] = {}
        for col in cols:
            res = col.get(ids=ids, where=where, include=include)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True):
                merged[i] = (t, m)
        return {
            "ids": list(merged),
            "documents": [t for t, _ in merged.values()],
            "metadatas": [m for _, m in merged.values()],
            "embeddings": [],
        }

    def close(self) -> None:
        """Let go of the client and cached collections (each holds memory); reopened on next use."""
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
        if client is not None and hasattr(client, "close"):
            client.close()

    @_retried
    def get_document_chunks(self, owner: Owner, document_id: str) -> list[Hit]:
        res = self.get(owner, document_id=document_id)
        hits = [
            Hit(i, m["document_id"], t, m, 1.0)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        ]
        return sorted(hits, key=lambda h: h.metadata.get("chunk_index", 0))

    @_retried
    def all_chunks(self, owner: Owner) -> list[tuple[str, str, str]]:
        """(chunk_id, document_id, text) of every chunk of the scope: the lexical index's corpus."""
        res = self.get(owner)
        return [
            (i, m["document_id"], t)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        ]

    @_retried
    def delete_documents(self, owner: Owner, document_ids: list[str]) -> None:
        if not document_ids:
            return
        with self.user_lock(owner):
            for col in self._text_collections(owner):
                col.delete(where={"document_id": {"$in": [str(d) for d in document_ids]}})

    @_retried
    def document_ids(self, owner: Owner) -> set[str]:
        return {
            m["document_id"]
            for col in self._text_collections(owner)
            for m in col.get(include=["metadatas"])["metadatas"]
        }

    @_retried
    def scopes(self) -> list[OwnerScope]:
        """Owner scopes of every collection in the store (for reconcile)."""
        out: list[OwnerScope] = []
        for col in self.client.list_collections():
            scope = scope_of_collection(col if isinstance(col, str) else col.name)
            if scope is not None and scope not in out:
                out.append(scope)
        return out

    def users(self) -> list[str]:
        """Users with a private library in the store."""
        return [s.id for s in self.scopes() if s.kind == USER]

    @_retried
    def stale_scopes(self) -> list[OwnerScope]:
        """Scopes whose active collection holds another embedder's vectors."""
        out = []
        for col in self.client.list_collections():
            if isinstance(col, str):
                col = self.client.get_collection(col, embedding_function=None)
            scope = scope_of_collection(col.name)
            if (
                scope is not None
                and col.name == scope.collection
                and recorded_embedder(col) != self.embedder
            ):
                out.append(scope)
        return out

    def stale_users(self) -> list[str]:
        """Users whose `u_<hex>` collection holds another embedder's vectors."""
        return [s.id for s in self.stale_scopes() if s.kind == USER]

    def promote_staging(self, owner: Owner) -> None:
        """End of a re-index: the staging collection replaces the stale one (call with the lock
        held)."""
        scope = OwnerScope.of(owner)
        active, staging = scope.collection, scope.staging
        col = self._open(staging, scope, create=True)
        self._forget(active, staging)
        try:
            self.client.delete_collection(active)
        except Exception:  # already gone
            pass
        col.modify(name=active)
        self._collections[active] = self.client.get_collection(active, embedding_function=None)

    def drop_user(self, owner: Owner) -> None:
        """Delete a scope's collections whole (a user's, or a deleted pharmacy's)."""
        scope = OwnerScope.of(owner)
        for name in (scope.collection, scope.staging):
            self._forget(name)
            try:
                self.client.delete_collection(name)
            except Exception:
                pass

    drop_scope = drop_user

    @_retried
    def count(self, owner: Owner) -> int:
        if self.is_stale(owner):  # texts in two collections while re-indexing
            return len(self.get(owner)["ids"])
        col = self._collection(owner, create=False)
        return 0 if col is None else col.count()
