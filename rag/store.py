"""Chunk vectors in ChromaDB, one collection per user (DESIGN D5).

Chroma has no row security, so isolation is structural: every call names the
owner, and a user's chunks live in that user's own collection, so no filter
mistake can reach another user's data. (Why one collection per user and not
one shared collection with a `user_id` filter: see docs/rag.md; measured in
bench/retrieval.py.) Chunk ids are `<document_id>:<n>`, so re-ingesting a
document overwrites instead of duplicating. Embeddings are always supplied;
Chroma's own embedding function (which downloads a model) is never used.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localbase.files import private_dir, secure_tree

_UUID_HEX = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float  # cosine similarity, 1 is identical


def collection_name(user_id: str) -> str:
    return "u_" + uuid.UUID(str(user_id)).hex


class ChunkStore:
    def __init__(self, path: Path | None = None, host: str | None = None, port: int = 8000):
        self.path = path
        self.host = host
        self.port = port
        self._client = None
        self._collections: dict[str, Any] = {}
        self._secured: set[str] = set()
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings
                settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
                if self.host:
                    self._client = chromadb.HttpClient(host=self.host, port=self.port, settings=settings)
                else:
                    if self.path is None:
                        raise ValueError("ChunkStore needs a path or a host")
                    private_dir(self.path)
                    self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                    secure_tree(self.path)  # chroma.sqlite3 and segments made under a looser umask
            return self._client

    def _collection(self, user_id: str, create: bool = True):
        name = collection_name(user_id)
        col = self._collections.get(name)
        if col is not None:
            return col
        if create:
            col = self.client.get_or_create_collection(name, embedding_function=None,
                                                       metadata={"hnsw:space": "cosine", "owner": str(user_id)})
        else:
            try:
                col = self.client.get_collection(name, embedding_function=None)
            except Exception:  # chromadb raises NotFoundError/ValueError by version
                return None
        self._collections[name] = col
        return col

    def upsert(self, user_id: str, ids: list[str], embeddings: np.ndarray, texts: list[str],
               metadatas: list[dict[str, Any]], batch: int = 1000) -> None:
        col = self._collection(user_id)
        for m in metadatas:
            m["user_id"] = str(user_id)
        for i in range(0, len(ids), batch):
            col.upsert(ids=ids[i:i + batch], embeddings=embeddings[i:i + batch], documents=texts[i:i + batch],
                       metadatas=metadatas[i:i + batch])
        if self.path is not None and not self.host and col.name not in self._secured:
            secure_tree(self.path)  # the collection's segment files appear on its first write
            self._secured.add(col.name)

    def query(self, user_id: str, embedding: np.ndarray, k: int, document_ids: list[str] | None = None) -> list[Hit]:
        """Nearest chunks of this user's, optionally only from `document_ids` (an empty list finds nothing)."""
        if document_ids is not None and not document_ids:
            return []
        col = self._collection(user_id, create=False)
        if col is None:
            return []
        where: dict[str, Any] = {"user_id": str(user_id)}
        if document_ids is not None:
            where = {"$and": [where, {"document_id": {"$in": [str(d) for d in document_ids]}}]}
        res = col.query(query_embeddings=[embedding], n_results=k, where=where,
                        include=["documents", "metadatas", "distances"])
        hits = []
        for cid, text, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                                         res["distances"][0], strict=True):
            if meta.get("user_id") != str(user_id):  # belt and braces: never hand out a foreign chunk
                continue
            hits.append(Hit(cid, meta["document_id"], text, meta, 1.0 - float(dist)))
        return hits

    def get(self, user_id: str, *, ids: list[str] | None = None, document_id: str | None = None,
            embeddings: bool = False) -> dict[str, list]:
        """Raw records of the user's own collection (ids, documents, metadatas[, embeddings])."""
        col = self._collection(user_id, create=False)
        if col is None:
            return {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        where = {"document_id": str(document_id)} if document_id is not None else None
        return col.get(ids=ids, where=where, include=include)

    def close(self) -> None:
        """Let go of the client and cached collections (each holds memory); reopened on next use."""
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
        if client is not None and hasattr(client, "close"):
            client.close()

    def get_document_chunks(self, user_id: str, document_id: str) -> list[Hit]:
        res = self.get(user_id, document_id=document_id)
        hits = [Hit(i, m["document_id"], t, m, 1.0) for i, t, m in zip(res["ids"], res["documents"],
                                                                       res["metadatas"], strict=True)]
        return sorted(hits, key=lambda h: h.metadata.get("chunk_index", 0))

    def all_chunks(self, user_id: str) -> list[tuple[str, str, str]]:
        """(chunk_id, document_id, text) of every chunk the user has: the lexical index's corpus."""
        col = self._collection(user_id, create=False)
        if col is None:
            return []
        res = col.get(include=["documents", "metadatas"])
        return [(i, m["document_id"], t) for i, t, m in zip(res["ids"], res["documents"], res["metadatas"],
                                                            strict=True)]

    def delete_documents(self, user_id: str, document_ids: list[str]) -> None:
        col = self._collection(user_id, create=False)
        if col is None or not document_ids:
            return
        col.delete(where={"document_id": {"$in": [str(d) for d in document_ids]}})

    def document_ids(self, user_id: str) -> set[str]:
        col = self._collection(user_id, create=False)
        if col is None:
            return set()
        return {m["document_id"] for m in col.get(include=["metadatas"])["metadatas"]}

    def users(self) -> list[str]:
        """Owners of every collection in the store (for reconcile)."""
        out = []
        for col in self.client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.startswith("u_") and _UUID_HEX.match(name[2:]):
                out.append(str(uuid.UUID(name[2:])))
        return out

    def drop_user(self, user_id: str) -> None:
        name = collection_name(user_id)
        self._collections.pop(name, None)
        try:
            self.client.delete_collection(name)
        except Exception:
            pass

    def count(self, user_id: str) -> int:
        col = self._collection(user_id, create=False)
        return 0 if col is None else col.count()
