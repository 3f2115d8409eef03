"""The user's searchable knowledge: vectors (Chroma) and words (BM25), kept in step."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .drugs import DrugLexicon, document_drugs, shared_lexicon
from .embeddings import Embedder
from .lexical import LexicalIndex
from .store import ChunkStore

log = logging.getLogger(__name__)


# What an index built today holds per chunk. Documents ingested under an older format are
# re-ingested by `pharmgpt reconcile`: 2 = chunks carry the document's drugs and their section code.
INDEX_FORMAT = 2


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
        self, user_id: str, document: dict, chunks: list[Chunk], embeddings: np.ndarray
    ) -> None:
        self.store.upsert(
            user_id,
            [chunk_id(document["id"], c.index) for c in chunks],
            embeddings,
            [c.text for c in chunks],
            [chunk_metadata(c, document) for c in chunks],
        )

    async def drop_documents(self, user_id: str, document_ids: list[str]) -> None:
        """The services' deletion hook: chunks and lexical entries go with the rows."""

        def _drop():
            self.store.delete_documents(user_id, document_ids)
            self.lexical.remove_documents(user_id, document_ids)

        await asyncio.to_thread(_drop)

    async def reconcile(self, live_documents: dict[str, set[str]]) -> dict[str, int]:
        """Remove chunks whose document row is gone. `live_documents`: user id -> document ids."""
        removed: dict[str, int] = {}

        def _run():
            for user_id in self.store.users():
                stored = self.store.document_ids(user_id)
                orphans = sorted(stored - live_documents.get(user_id, set()))
                if not live_documents.get(user_id) and not (stored - set(orphans)):
                    if stored:
                        removed[user_id] = len(orphans)
                    self.store.drop_user(user_id)
                    self.lexical.forget(user_id)
                    continue
                if orphans:
                    self.store.delete_documents(user_id, orphans)
                    self.lexical.remove_documents(user_id, orphans)
                    removed[user_id] = len(orphans)

        await asyncio.to_thread(_run)
        return removed
