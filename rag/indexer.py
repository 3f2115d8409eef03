"""The document indexer (`services.ports.DocumentIndexer`): parse, chunk, embed, store one file.

Against hostile files (issue 12, docs/security.md) the parse + chunk step runs in a fresh
bounded child process per document (rag/sandbox.py: memory, CPU and wall-clock limits,
page/character/chunk caps). The job around it (claim, retry, done) is services/ingestion.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pharmgpt.services.errors import IngestionError, PharmGPTError
from pharmgpt.services.ports import IndexingCancelled, IndexResult, Progress

from .index import INDEX_FORMAT, RagIndex, chunk_id, embedding_text
from .loaders import Limits
from .owner_scope import OwnerScope
from .sandbox import SandboxLimits, parse_in_sandbox

log = logging.getLogger(__name__)
EMBED_BATCH = 64


@dataclass(frozen=True)
class IndexerLimits:
    """What bounds one file: the loaders' caps, the chunk size and the sandbox."""

    limits: Limits
    chunk_size: int
    chunk_overlap: int
    sandbox: SandboxLimits

    @classmethod
    def from_settings(cls, s) -> IndexerLimits:
        return cls(
            Limits.from_settings(s),
            s.chunk_size,
            s.chunk_overlap,
            SandboxLimits(
                timeout_s=s.ingest_timeout_s,
                memory_mb=s.ingest_memory_mb,
                ocr_page_s=s.ocr_page_timeout_s,
            ),
        )


class RagIndexer:
    def __init__(self, index: RagIndex, limits: IndexerLimits):
        self.rag_index = index
        self.limits = limits
        self._embed_lock = asyncio.Lock()  # one embedding batch at a time: the model is CPU-bound

    async def discard(
        self, user_id: str, document_ids: list[str], *, pharmacy_id: str | None = None
    ) -> None:
        await self.rag_index.drop_documents(user_id, document_ids, pharmacy_id=pharmacy_id)

    async def index(
        self,
        document: dict[str, Any],
        data: bytes,
        *,
        progress: Progress,
        cancelled: Callable[[], bool],
    ) -> IndexResult:
        doc = dict(document)
        lim = self.limits
        loop = asyncio.get_running_loop()
        reports: list = []

        def on_progress(
            p: dict,
        ) -> None:  # from the parsing thread: "OCR page 3 of 10" on the job row
            reports.append(asyncio.run_coroutine_threadsafe(progress({"stage": "ocr", **p}), loop))

        parsed = await asyncio.to_thread(
            parse_in_sandbox,
            doc["filename"],
            data,
            doc["file_type"],
            limits=lim.limits,
            chunk_size=lim.chunk_size,
            chunk_overlap=lim.chunk_overlap,
            sandbox=lim.sandbox,
            on_progress=on_progress,
        )
        for report in reports:  # every OCR report lands before the embedding progress replaces it
            try:
                await asyncio.wrap_future(report)
            except PharmGPTError as e:
                log.warning("progress of %s: %s", doc["id"], e.message)
        chunks = parsed.chunks
        if not chunks:
            raise IngestionError(f"{doc['filename']} contains no extractable text.")
        identity = await asyncio.to_thread(self.rag_index.identify, parsed.subjects, parsed.sample)
        doc["metadata"] = {**(doc.get("metadata") or {}), **identity}  # on every chunk, and the row
        if cancelled():
            raise IndexingCancelled
        owner = OwnerScope.of_document(doc)  # its pharmacy's library, else the uploader's
        await asyncio.to_thread(
            self.rag_index.store.delete_documents, owner, [doc["id"]]
        )  # a rerun starts clean
        total = len(chunks)
        base = {"pages": parsed.page_count, "chunks": total}
        if parsed.ocr_pages:
            base["ocr_pages"] = parsed.ocr_pages
        await progress({**base, "chunks_done": 0})
        for start in range(0, total, EMBED_BATCH * 4):
            if cancelled():
                raise IndexingCancelled
            batch = chunks[start : start + EMBED_BATCH * 4]
            async with self._embed_lock:
                vectors = await asyncio.to_thread(
                    self.rag_index.embedder.embed, [embedding_text(c) for c in batch]
                )
                await asyncio.to_thread(self.rag_index.write_chunks, owner, doc, batch, vectors)
            await progress({**base, "chunks_done": start + len(batch)})
        await asyncio.to_thread(
            self.rag_index.lexical.add_document,
            owner,
            doc["id"],  # this document only
            [(chunk_id(doc["id"], c.index), c.text) for c in chunks],
        )
        return IndexResult(
            total, parsed.page_count, parsed.warnings, parsed.ocr_pages, identity, INDEX_FORMAT
        )
