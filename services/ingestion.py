"""The ingestion job lifecycle (DESIGN D7): queue, claim, progress, retry, done. The use-case.

`IngestionService` alone reads and writes the `ingest_jobs` table (the documents service
queues through it, the admin queue lists through it). `IngestWorker` runs the jobs: it claims
one, hands the document's bytes to the `DocumentIndexer` port (rag parses, chunks, embeds and
stores) and reports the outcome on the job and the document.

Jobs are claimed through `claim_ingest_job` (FOR UPDATE SKIP LOCKED), so any
number of workers share one queue; the claim takes turns between users, so one
user's queue cannot starve another's, and a worker runs `ingest_concurrency`
jobs at once, so one slow file cannot hold everyone else's. Status moves
pending → processing → ready | failed with progress in the job row.

A file problem (IngestionError, including a passed sandbox limit) fails at once with its
reason, leaves no chunks and is never retried; anything else (the store, the disk) is retried
with backoff up to the job's max_attempts, the document showing when (`documents.retry_at`).
A running job renews its lock every `ingest_heartbeat_s`; a worker killed mid-job leaves a
lock that goes stale after `ingest_stale_after_s` (a minute) and is claimed again, each claim
counting an attempt; chunk ids are deterministic, so a rerun overwrites.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .backend import Backend
from .config import Settings
from .errors import Conflict, IngestionError, PharmGPTError
from .ports import DocumentIndexer, IndexingCancelled

if TYPE_CHECKING:  # documents.py imports this module
    from .documents import DocumentService

log = logging.getLogger(__name__)

JOB_COLUMNS = "document_id,status,attempts,progress,last_error,created_at"


class IngestionService:
    """The `ingest_jobs` table: queue a document, claim and report jobs (service role for the
    worker's side; a user's progress view reads as the user, RLS)."""

    def __init__(self, backend: Backend, settings: Settings | None = None):
        self.backend = backend
        self.settings = settings or backend.settings

    async def _exec(self, q, idempotent: bool = True, what: str = "ingest job"):
        return await self.backend.execute(q, what=what, idempotent=idempotent)

    async def enqueue(self, document_id: str, user_id: str) -> bool:
        """Queue a job for the document; False when a live job for it exists already (at most
        one per document)."""
        try:
            await self._exec(
                self.backend.service.table("ingest_jobs").insert(
                    {"document_id": document_id, "user_id": user_id}, returning="minimal"
                ),
                idempotent=False,
            )
        except Conflict:
            return False
        return True

    async def claim(self, worker_id: str) -> dict | None:
        """The next job for this worker (a stale lock counts as free), or None."""
        r = await self._exec(
            self.backend.service.rpc(
                "claim_ingest_job",
                {
                    "worker": worker_id,
                    "stale_after": f"{self.settings.ingest_stale_after_s} seconds",
                },
            ),
            idempotent=False,
        )
        return r.data[0] if r.data else None

    async def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Renew the worker's lock; False when another worker has taken the job over."""
        r = await self._exec(
            self.backend.service.rpc(
                "ingest_heartbeat", {"p_job_id": job_id, "p_worker": worker_id}
            )
        )
        return r.data is not False

    async def report(self, job_id: str, worker_id: str, **patch: Any) -> None:
        """Update the job while this worker holds it (progress, the outcome)."""
        await self._exec(
            self.backend.service.table("ingest_jobs")
            .update(patch, returning="minimal")
            .eq("id", job_id)
            .eq("locked_by", worker_id)
        )

    async def done(self, job_id: str, worker_id: str, *, progress=None, note=None) -> None:
        patch: dict[str, Any] = {"status": "done", "last_error": note}
        if progress is not None:
            patch["progress"] = progress
        await self.report(job_id, worker_id, **patch)

    async def failed(self, job_id: str, worker_id: str, error: str) -> None:
        await self.report(job_id, worker_id, status="failed", last_error=error[:2000])

    async def retry_later(self, job_id: str, worker_id: str, error: str, at: datetime) -> None:
        """Back to the queue, unlocked, not to be claimed before `at`."""
        await self.report(
            job_id,
            worker_id,
            status="queued",
            last_error=error,
            locked_by=None,
            locked_at=None,
            run_after=at.isoformat(),
        )

    async def progress(self, user_id: str, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The latest job of each document (as the user: RLS): its status, attempts and progress
        (pages, chunks, chunks_done) plus `percent` when the chunk count is known."""
        if not doc_ids:
            return {}
        db = await self.backend.for_user(user_id)
        wanted = sorted(set(doc_ids))
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("ingest_jobs")
                .select(JOB_COLUMNS)
                .in_("document_id", wanted)
                .order("created_at", desc=True)
                .order("id")
            ),
            limit=1000,
            what="ingestion progress",
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["document_id"] in out:
                continue  # an older job of the same document
            progress = dict(row.get("progress") or {})
            chunks, done = progress.get("chunks"), progress.get("chunks_done")
            percent = None
            if isinstance(chunks, int) and chunks > 0 and isinstance(done, int):
                percent = max(0, min(100, round(100 * done / chunks)))
            out[row["document_id"]] = {
                **progress,
                "status": row["status"],
                "attempts": row["attempts"],
                "last_error": row.get("last_error"),
                "percent": percent,
            }
        return out

    async def queue_rows(
        self, columns: str, statuses: list[str] | None = None, limit: int = 200
    ) -> list[dict]:
        """Jobs, newest first, with `columns` (embeddings allowed): the admin's queue view. The
        caller checks the actor is an admin (service role here)."""
        q = self.backend.service.table("ingest_jobs").select(columns)
        if statuses:
            q = q.in_("status", list(statuses))
        r = await self._exec(
            q.order("created_at", desc=True).limit(max(1, min(limit, 1000))),
            what="ingestion queue",
        )
        return r.data


class IngestWorker:
    def __init__(
        self,
        ingestion: IngestionService,
        documents: DocumentService,
        indexer: DocumentIndexer,
        *,
        worker_id: str | None = None,
        poll_s: float = 1.0,
    ):
        self.ingestion = ingestion
        self.documents = documents
        self.indexer = indexer
        self.settings = ingestion.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Upload just queued a job: look now rather than at the next poll."""
        self._wake.set()

    async def claim(self) -> dict | None:
        return await self.ingestion.claim(self.worker_id)

    async def run_once(self) -> bool:
        job = await self.claim()
        if job is None:
            return False
        await self.process(job)
        return True

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
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
        await self.ingestion.report(job_id, self.worker_id, **patch)

    async def _heartbeat(self, job_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest_heartbeat_s)
            try:
                alive = await self.ingestion.heartbeat(job_id, self.worker_id)
            except PharmGPTError as e:
                log.warning("heartbeat of job %s: %s", job_id, e.message)
                continue
            if not alive:
                lost.set()
                return

    async def process(self, job: dict) -> None:
        lost = asyncio.Event()
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job["id"], lost))
        work = asyncio.get_running_loop().create_task(self._process(job, lost))
        taken = asyncio.ensure_future(lost.wait())
        try:
            done, _ = await asyncio.wait([work, taken], return_when=asyncio.FIRST_COMPLETED)
            if work not in done:  # reclaimed by another worker: let it finish the job
                work.cancel()
                log.warning("worker %s lost job %s to another worker", self.worker_id, job["id"])
            else:
                work.result()
        finally:
            beat.cancel()
            taken.cancel()

    async def _process(self, job: dict, lost: asyncio.Event) -> None:
        docs = self.documents
        doc = await docs.row_for_processing(job["document_id"])
        if doc is None:  # deleted while queued
            await self.ingestion.done(
                job["id"], self.worker_id, note="document deleted before ingestion"
            )
            return
        user_id = doc["user_id"]
        await docs.update_document_status(doc["id"], "processing")
        try:
            data = await docs.stored_bytes(doc)
            result = await self.indexer.index(
                doc,
                data,
                progress=lambda p: self._job(job["id"], progress=p),
                cancelled=lost.is_set,
            )
        except IngestionError as e:  # the file's fault (a passed limit included): final, no chunks
            await self.indexer.discard(user_id, [doc["id"]], pharmacy_id=doc.get("pharmacy_id"))
            await docs.mark_file_fault(doc, e.message)
            await self.ingestion.failed(job["id"], self.worker_id, e.message)
            log.info("document %s failed: %s", doc["id"], e.message)
            return
        except IndexingCancelled:
            return
        except Exception as e:  # transient (store, disk, model): retry later, up to max_attempts
            msg = f"{type(e).__name__}: {e}"[:500]
            if job["attempts"] >= job.get("max_attempts", self.settings.ingest_attempts):
                await docs.update_document_status(
                    doc["id"],
                    "failed",
                    error=f"Processing failed after {job['attempts']} attempts: {msg}",
                )
                await self.ingestion.failed(job["id"], self.worker_id, msg)
            else:
                at = datetime.now(UTC) + timedelta(seconds=5 * 2 ** (job["attempts"] - 1))
                await docs.update_document_status(
                    doc["id"], "pending", error=f"Retrying shortly: {msg}", retry_at=at
                )
                await self.ingestion.retry_later(job["id"], self.worker_id, msg, at)
            log.warning(
                "document %s: transient failure (attempt %s): %s", doc["id"], job["attempts"], msg
            )
            return
        meta = {**(doc.get("metadata") or {}), **result.identity, "index_format": result.format}
        meta.pop("failure", None)
        if result.warnings:
            meta["warnings"] = result.warnings[:50]
        if result.ocr_pages:
            meta["ocr_pages"] = result.ocr_pages  # the documents page says "read by OCR"
        await docs.update_document_status(
            doc["id"], "ready", chunk_count=result.chunks, page_count=result.pages, metadata=meta
        )
        done = {"pages": result.pages, "chunks": result.chunks, "chunks_done": result.chunks}
        await self.ingestion.done(
            job["id"],
            self.worker_id,
            progress={**done, "ocr_pages": result.ocr_pages} if result.ocr_pages else done,
        )
