"""The ingestion worker (DESIGN D7): claim a queued job, parse, chunk, embed, index.

Jobs are claimed through `claim_ingest_job` (FOR UPDATE SKIP LOCKED), so any
number of workers share one queue; the claim takes turns between users, so one
user's queue cannot starve another's, and a worker runs `ingest_concurrency`
jobs at once, so one slow file cannot hold everyone else's. Status moves
pending → processing → ready | failed with progress in the job row.

Against hostile files (issue 12, docs/security.md) the parse + chunk step runs
in a fresh bounded child process per job (rag/sandbox.py: memory, CPU and
wall-clock limits, page/character/chunk caps). A file problem (IngestionError,
including a passed limit) fails at once with its reason, leaves no chunks and
is never retried; anything else (the store, the disk) is retried with backoff
up to the job's max_attempts. A running job renews its lock every
`ingest_heartbeat_s`; a worker killed mid-job leaves a lock that goes stale
after `ingest_stale_after_s` (a minute) and is claimed again, each claim
counting an attempt; chunk ids are deterministic, so a rerun overwrites.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

from pharmgpt.services.container import Services
from pharmgpt.services.documents import FILE_FAULT
from pharmgpt.services.errors import IngestionError, PharmGPTError

from .index import INDEX_FORMAT, RagIndex, chunk_id, embedding_text
from .loaders import Limits
from .owner_scope import OwnerScope
from .sandbox import SandboxLimits, parse_in_sandbox

log = logging.getLogger(__name__)
EMBED_BATCH = 64


class JobLost(Exception):
    """This worker's lock on the job was taken over (it went stale): stop, write nothing."""


class IngestWorker:
    def __init__(
        self,
        services: Services,
        index: RagIndex,
        *,
        worker_id: str | None = None,
        poll_s: float = 1.0,
    ):
        self.services = services
        self.index = index
        self.settings = services.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._embed_lock = asyncio.Lock()  # one embedding batch at a time: the model is CPU-bound

    @property
    def _svc(self):
        return self.services.backend.service

    async def _exec(self, q, idempotent: bool = True):
        return await self.services.backend.execute(q, what="ingest job", idempotent=idempotent)

    def wake(self) -> None:
        """Upload just queued a job: look now rather than at the next poll."""
        self._wake.set()

    async def claim(self) -> dict | None:
        r = await self._exec(
            self._svc.rpc(
                "claim_ingest_job",
                {
                    "worker": self.worker_id,
                    "stale_after": f"{self.settings.ingest_stale_after_s} seconds",
                },
            ),
            idempotent=False,
        )
        return r.data[0] if r.data else None

    async def run_once(self) -> bool:
        job = await self.claim()
        if job is None:
            return False
        await self.process(job)
        return True

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Keep up to `ingest_concurrency` jobs running until `stop` is set."""
        stop = stop or asyncio.Event()
        running: set[asyncio.Task] = set()
        slots = max(1, self.settings.ingest_concurrency)
        while not stop.is_set():
            job = None
            if len(running) < slots:
                try:
                    job = await self.claim()
                except PharmGPTError as e:  # the store is away: wait and try again
                    log.warning("worker %s: %s", self.worker_id, e.message)
                except Exception:
                    log.exception("worker %s: unexpected error", self.worker_id)
            if job is not None:
                task = asyncio.get_running_loop().create_task(self._process_logged(job))
                running.add(task)
                task.add_done_callback(running.discard)
                continue
            self._wake.clear()
            waits = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(stop.wait()),
                *running,
            ]
            done, _ = await asyncio.wait(
                waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
            )
            for w in waits[:2]:
                w.cancel()
        if running:
            await asyncio.wait(running, timeout=30)

    async def _process_logged(self, job: dict) -> None:
        try:
            await self.process(job)
        except Exception:
            log.exception("worker %s: job %s", self.worker_id, job.get("id"))

    async def _job(self, job_id: str, **patch) -> None:
        await self._exec(
            self._svc.table("ingest_jobs")
            .update(patch, returning="minimal")
            .eq("id", job_id)
            .eq("locked_by", self.worker_id)
        )

    async def _heartbeat(self, job_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest_heartbeat_s)
            try:
                r = await self._exec(
                    self._svc.rpc(
                        "ingest_heartbeat", {"p_job_id": job_id, "p_worker": self.worker_id}
                    )
                )
            except PharmGPTError as e:
                log.warning("heartbeat of job %s: %s", job_id, e.message)
                continue
            if r.data is False:
                lost.set()
                return

    async def process(self, job: dict) -> None:
        lost = asyncio.Event()
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job["id"], lost))
        work = asyncio.get_running_loop().create_task(self._process(job, lost))
        try:
            done, _ = await asyncio.wait(
                [work, asyncio.ensure_future(lost.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if work not in done:  # reclaimed by another worker: let it finish the job
                work.cancel()
                log.warning("worker %s lost job %s to another worker", self.worker_id, job["id"])
            else:
                work.result()
        finally:
            beat.cancel()

    async def _process(self, job: dict, lost: asyncio.Event) -> None:
        docs = self.services.documents
        r = await self._exec(
            self._svc.table("documents").select("*").eq("id", job["document_id"]).limit(1)
        )
        if not r.data:  # deleted while queued
            await self._job(
                job["id"], status="done", last_error="document deleted before ingestion"
            )
            return
        doc = r.data[0]
        user_id = doc["user_id"]
        owner = OwnerScope.of_document(doc)  # its pharmacy's library, else the uploader's
        await docs.update_document_status(doc["id"], "processing")
        try:
            result = await self._ingest(job, doc, lost)
        except (
            IngestionError
        ) as e:  # the file's fault (a passed limit included): final, no chunks left
            await asyncio.to_thread(self.index.store.delete_documents, owner, [doc["id"]])
            await asyncio.to_thread(self.index.lexical.remove_documents, owner, [doc["id"]])
            await docs.update_document_status(
                doc["id"],
                "failed",
                error=e.message,
                metadata={**(doc.get("metadata") or {}), "failure": FILE_FAULT},
            )
            await self._job(job["id"], status="failed", last_error=e.message[:2000])
            log.info("document %s failed: %s", doc["id"], e.message)
            return
        except JobLost:
            return
        except Exception as e:  # transient (store, disk, model): retry later, up to max_attempts
            msg = f"{type(e).__name__}: {e}"[:500]
            if job["attempts"] >= job.get("max_attempts", self.settings.ingest_attempts):
                await docs.update_document_status(
                    doc["id"],
                    "failed",
                    error=f"Processing failed after {job['attempts']} attempts: {msg}",
                )
                await self._job(job["id"], status="failed", last_error=msg)
            else:
                delay = 5 * 2 ** (job["attempts"] - 1)
                await docs.update_document_status(
                    doc["id"], "pending", error=f"Retrying shortly: {msg}"
                )
                await self._job(
                    job["id"],
                    status="queued",
                    last_error=msg,
                    locked_by=None,
                    locked_at=None,
                    run_after=(datetime.now(UTC) + timedelta(seconds=delay)).isoformat(),
                )
            log.warning(
                "document %s: transient failure (attempt %s): %s", doc["id"], job["attempts"], msg
            )
            return
        chunks, pages, warnings, ocr_pages = result
        meta = {**(doc.get("metadata") or {}), "index_format": INDEX_FORMAT}
        meta.pop("failure", None)
        if warnings:
            meta["warnings"] = warnings[:50]
        if ocr_pages:
            meta["ocr_pages"] = ocr_pages  # the documents page says "read by OCR"
        await docs.update_document_status(
            doc["id"], "ready", chunk_count=chunks, page_count=pages, metadata=meta
        )
        done = {"pages": pages, "chunks": chunks, "chunks_done": chunks}
        await self._job(
            job["id"],
            status="done",
            last_error=None,
            progress={**done, "ocr_pages": ocr_pages} if ocr_pages else done,
        )
        self.services.cache.invalidate("docs", user_id)

    async def _ingest(
        self, job: dict, doc: dict, lost: asyncio.Event
    ) -> tuple[int, int | None, list[str], int]:
        try:
            data = (
                await asyncio.to_thread(self.services.blobs.get, doc["sha256"])
                if doc.get("sha256")
                else None
            )
        except FileNotFoundError:
            data = None
        if data is None:
            raise IngestionError(
                f"{doc['filename']}: the uploaded file is missing on the server; upload it again."
            )
        s = self.settings
        loop = asyncio.get_running_loop()
        reports: list = []

        def on_progress(
            p: dict,
        ) -> None:  # from the parsing thread: "OCR page 3 of 10" on the job row
            reports.append(
                asyncio.run_coroutine_threadsafe(
                    self._job(job["id"], progress={"stage": "ocr", **p}), loop
                )
            )

        parsed = await asyncio.to_thread(
            parse_in_sandbox,
            doc["filename"],
            data,
            doc["file_type"],
            limits=Limits.from_settings(s),
            chunk_size=s.chunk_size,
            chunk_overlap=s.chunk_overlap,
            sandbox=SandboxLimits(
                timeout_s=s.ingest_timeout_s,
                memory_mb=s.ingest_memory_mb,
                ocr_page_s=s.ocr_page_timeout_s,
            ),
            on_progress=on_progress,
        )
        for report in reports:  # every OCR report lands before the embedding progress replaces it
            try:
                await asyncio.wrap_future(report)
            except PharmGPTError as e:
                log.warning("progress of job %s: %s", job["id"], e.message)
        chunks = parsed.chunks
        if not chunks:
            raise IngestionError(f"{doc['filename']} contains no extractable text.")
        identity = await asyncio.to_thread(self.index.identify, parsed.subjects, parsed.sample)
        doc["metadata"] = {
            **(doc.get("metadata") or {}),
            **identity,
        }  # on every chunk, and on the row
        if lost.is_set():
            raise JobLost
        owner = OwnerScope.of_document(doc)
        await asyncio.to_thread(
            self.index.store.delete_documents, owner, [doc["id"]]
        )  # a rerun starts clean
        total = len(chunks)
        base = {"pages": parsed.page_count, "chunks": total}
        if parsed.ocr_pages:
            base["ocr_pages"] = parsed.ocr_pages
        await self._job(job["id"], progress={**base, "chunks_done": 0})
        for start in range(0, total, EMBED_BATCH * 4):
            if lost.is_set():
                raise JobLost
            batch = chunks[start : start + EMBED_BATCH * 4]
            async with self._embed_lock:
                vectors = await asyncio.to_thread(
                    self.index.embedder.embed, [embedding_text(c) for c in batch]
                )
                await asyncio.to_thread(self.index.write_chunks, owner, doc, batch, vectors)
            await self._job(job["id"], progress={**base, "chunks_done": start + len(batch)})
        await asyncio.to_thread(
            self.index.lexical.add_document,
            owner,
            doc["id"],  # this document only
            [(chunk_id(doc["id"], c.index), c.text) for c in chunks],
        )
        return total, parsed.page_count, parsed.warnings, parsed.ocr_pages
