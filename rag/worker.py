"""The ingestion worker (DESIGN D7): claim a queued job, parse, chunk, embed, index.

Jobs are claimed through `claim_ingest_job` (FOR UPDATE SKIP LOCKED), so the
embedded app's in-process worker and any number of `pharmgpt worker`
processes share one queue. Status moves pending → processing → ready | failed
with progress in the job row. A file problem (IngestionError) fails at once
with its reason; anything else is retried with backoff up to the job's
attempts. A worker killed mid-job leaves a 'running' job whose lock goes
stale and is claimed again; chunk ids are deterministic, so the rerun
overwrites rather than duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

from services.container import Services
from services.errors import IngestionError, PharmGPTError

from .chunking import chunk_document
from .index import RagIndex, embedding_text
from .loaders import load_document

log = logging.getLogger(__name__)
EMBED_BATCH = 64


class IngestWorker:
    def __init__(self, services: Services, index: RagIndex, *, worker_id: str | None = None,
                 poll_s: float = 1.0):
        self.services = services
        self.index = index
        self.settings = services.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_s = poll_s
        self._wake = asyncio.Event()

    @property
    def _svc(self):
        return self.services.backend.service

    async def _exec(self, q, idempotent: bool = True):
        return await self.services.backend.execute(q, what="ingest job", idempotent=idempotent)

    def wake(self) -> None:
        """Upload just queued a job: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> bool:
        r = await self._exec(self._svc.rpc("claim_ingest_job", {
            "worker": self.worker_id, "stale_after": f"{self.settings.ingest_stale_after_s} seconds"}),
            idempotent=False)
        if not r.data:
            return False
        await self.process(r.data[0])
        return True

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except PharmGPTError as e:  # the store is away: wait and try again
                log.warning("worker %s: %s", self.worker_id, e.message)
                worked = False
            except Exception:
                log.exception("worker %s: unexpected error", self.worker_id)
                worked = False
            if not worked:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass

    async def _job(self, job_id: str, **patch) -> None:
        await self._exec(self._svc.table("ingest_jobs").update(patch, returning="minimal").eq("id", job_id))

    async def process(self, job: dict) -> None:
        docs = self.services.documents
        r = await self._exec(self._svc.table("documents").select("*").eq("id", job["document_id"]).limit(1))
        if not r.data:  # deleted while queued
            await self._job(job["id"], status="done", last_error="document deleted before ingestion")
            return
        doc = r.data[0]
        user_id = doc["user_id"]
        await docs.update_document_status(doc["id"], "processing")
        try:
            result = await self._ingest(job, doc)
        except IngestionError as e:
            await docs.update_document_status(doc["id"], "failed", error=e.message)
            await self._job(job["id"], status="failed", last_error=e.message[:2000])
            log.info("document %s failed: %s", doc["id"], e.message)
            return
        except Exception as e:  # transient (store, disk, model): retry later, up to max_attempts
            msg = f"{type(e).__name__}: {e}"[:500]
            if job["attempts"] >= job.get("max_attempts", self.settings.ingest_attempts):
                await docs.update_document_status(doc["id"], "failed",
                                                  error=f"Processing failed after {job['attempts']} attempts: {msg}")
                await self._job(job["id"], status="failed", last_error=msg)
            else:
                delay = 5 * 2 ** (job["attempts"] - 1)
                await docs.update_document_status(doc["id"], "pending", error=f"Retrying shortly: {msg}")
                await self._job(job["id"], status="queued", last_error=msg, locked_by=None, locked_at=None,
                                run_after=(datetime.now(UTC) + timedelta(seconds=delay)).isoformat())
            log.warning("document %s: transient failure (attempt %s): %s", doc["id"], job["attempts"], msg)
            return
        chunks, pages, warnings = result
        meta = dict(doc.get("metadata") or {})
        if warnings:
            meta["warnings"] = warnings[:50]
        await docs.update_document_status(doc["id"], "ready", chunk_count=chunks, page_count=pages, metadata=meta)
        await self._job(job["id"], status="done", last_error=None,
                        progress={"pages": pages, "chunks": chunks, "chunks_done": chunks})
        self.services.cache.invalidate("docs", user_id)

    async def _ingest(self, job: dict, doc: dict) -> tuple[int, int | None, list[str]]:
        try:
            data = await asyncio.to_thread(self.services.blobs.get, doc["sha256"]) if doc.get("sha256") else None
        except FileNotFoundError:
            data = None
        if data is None:
            raise IngestionError(f"{doc['filename']}: the uploaded file is missing on the server; upload it again.")
        loaded = await asyncio.to_thread(load_document, doc["filename"], data, doc["file_type"],
                                         max_pages=self.settings.max_pages)
        chunks = chunk_document(loaded, self.settings.chunk_size, self.settings.chunk_overlap)
        if not chunks:
            raise IngestionError(f"{doc['filename']} contains no extractable text.")
        identity = await asyncio.to_thread(self.index.identify, loaded)
        doc["metadata"] = {**(doc.get("metadata") or {}), **identity}  # on every chunk, and on the row
        user_id = doc["user_id"]
        await asyncio.to_thread(self.index.store.delete_documents, user_id, [doc["id"]])  # a rerun starts clean
        total = len(chunks)
        await self._job(job["id"], progress={"pages": loaded.page_count, "chunks": total, "chunks_done": 0})
        for start in range(0, total, EMBED_BATCH * 4):
            batch = chunks[start:start + EMBED_BATCH * 4]
            vectors = await asyncio.to_thread(self.index.embedder.embed, [embedding_text(c) for c in batch])
            await asyncio.to_thread(self.index.write_chunks, user_id, doc, batch, vectors)
            await self._job(job["id"], progress={"pages": loaded.page_count, "chunks": total,
                                                 "chunks_done": start + len(batch)})
        await asyncio.to_thread(self.index.lexical.rebuild, user_id)
        return total, loaded.page_count, loaded.warnings
