"""Searchable knowledge per owner scope: vectors (Chroma) and words (BM25), kept in step.

A document's chunks live in its scope (rag/owner_scope.py): its pharmacy's shared
library when it has a `pharmacy_id`, else its uploader's (conversation documents too).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .drugs import DrugLexicon, document_drugs, shared_lexicon
from .embeddings import Embedder
from .lexical import LexicalIndex
from .owner_scope import OwnerScope
from .store import ChunkStore, Owner

log = logging.getLogger(__name__)


# What an index built today holds per chunk. Documents ingested under an older format are
# re-ingested by `pharmgpt reconcile`: 2 = chunks carry the document's drugs and their section code.
INDEX_FORMAT = 2


def is_outdated(row: dict) -> bool:
    """A ready document row (status, metadata) indexed before the current INDEX_FORMAT."""
    fmt = int((row.get("metadata") or {}).get("index_format") or 0)
    return row.get("status") == "ready" and fmt < INDEX_FORMAT


def live_documents(rows) -> dict[OwnerScope, set[str]]:
    """Document rows (id, user_id, pharmacy_id) grouped by the scope their chunks live in: what
    `RagIndex.reconcile` keeps."""
    live: dict[OwnerScope, set[str]] = {}
    for row in rows:
        live.setdefault(OwnerScope.of_document(row), set()).add(row["id"])
    return live


def chunk_id(document_id: str, n: int) -> str:
    return f"{document_id}:{n}"


def chunk_metadata(chunk: Chunk, document: dict) -> dict:
    meta = {
        "document_id": document["id"],
        "chunk_index": chunk.index,
        "filename": document["filename"],
        "kind": chunk.kind,
        "position": chunk.position,
    }
    # Chroma metadata values cannot be None
    drugs = ", ".join((document.get("metadata") or {}).get("drugs") or [])
    for key, value in (
        ("page_start", chunk.page_start),
        ("page_end", chunk.page_end),
        ("pages", chunk.pages),
        ("heading", chunk.heading),
        ("conversation_id", document.get("conversation_id")),
        ("section_code", chunk.section_code),
        ("drugs", drugs),
    ):
        if value not in (None, ""):
            meta[key] = value
    if chunk.ocr:
        meta["ocr"] = True
    return meta


def embedding_text(chunk: Chunk) -> str:
    """What is embedded: the section heading gives a short chunk its context."""
    return stored_embedding_text(chunk.text, {"heading": chunk.heading})


def stored_embedding_text(text: str, metadata: dict) -> str:
    """The same text, rebuilt from a stored chunk (its text and metadata): for re-embedding."""
    heading = metadata.get("heading")
    return f"{heading}\n{text}" if heading else text


class RagIndex:
    def __init__(
        self,
        store: ChunkStore,
        lexical: LexicalIndex,
        embedder: Embedder,
        lexicon_dir: Path | None = None,
    ):
        self.store = store
        self.lexical = lexical
        self.embedder = embedder
        self.lexicon_dir = lexicon_dir

    @property
    def lexicon(self) -> DrugLexicon:
        return shared_lexicon(self.lexicon_dir)

    def identify(self, subjects: list[str], text: str) -> dict[str, list[str]]:
        """What a document is about: its drugs (declared names first, else its text) and
        the product names it declares that are not just a drug's name."""
        drugs = document_drugs(self.lexicon, subjects, text)
        products = [n for n in subjects if self.lexicon.canonical(n) not in drugs][:5]
        return {"drugs": drugs, "products": products}

    def write_chunks(
        self, owner: Owner, document: dict, chunks: list[Chunk], embeddings: np.ndarray
    ) -> None:
        self.store.upsert(
            owner,
            [chunk_id(document["id"], c.index) for c in chunks],
            embeddings,
            [c.text for c in chunks],
            [chunk_metadata(c, document) for c in chunks],
        )

    async def drop_documents(
        self, user_id: Owner, document_ids: list[str], *, pharmacy_id: str | None = None
    ) -> None:
        """The services' deletion hook: chunks and lexical entries go with the rows. `user_id`:
        the uploader; `pharmacy_id`: the documents are that pharmacy's (their chunks live there)."""
        scope = OwnerScope.pharmacy(pharmacy_id) if pharmacy_id else OwnerScope.of(user_id)

        def _drop():
            self.store.delete_documents(scope, document_ids)
            self.lexical.remove_documents(scope, document_ids)

        await asyncio.to_thread(_drop)

    async def reconcile(self, live_documents: dict[OwnerScope | str, set[str]]) -> dict[str, int]:
        """Remove chunks whose document row is gone. `live_documents`: scope (a bare id: a user's
        library) -> its document ids. Returns removed counts by scope id."""
        live = {OwnerScope.of(k): v for k, v in live_documents.items()}
        removed: dict[str, int] = {}

        def _run():
            for scope in self.store.scopes():
                stored = self.store.document_ids(scope)
                orphans = sorted(stored - live.get(scope, set()))
                if not live.get(scope) and not (stored - set(orphans)):
                    if stored:
                        removed[scope.id] = len(orphans)
                    self.store.drop_scope(scope)
                    self.lexical.forget(scope)
                    continue
                if orphans:
                    self.store.delete_documents(scope, orphans)
                    self.lexical.remove_documents(scope, orphans)
                    removed[scope.id] = len(orphans)

        await asyncio.to_thread(_run)
        return removed
