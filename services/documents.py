"""Documents a user uploads: registration (dedup by the bytes' SHA-256 per
scope), listing, processing status (the worker's), deletion, upload history.

A document's scope is the uploader's library, one of their conversations, or
a pharmacy's shared library (issue 15: members read it, editors and owners
upload and delete; RLS decides, sql/0070)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import PurePath
from typing import Any

from . import file_types
from .audit import AuditService
from .backend import Backend
from .blobs import BlobStore
from .cache import TTLCache
from .config import Settings
from .conversations import ChunkDropHook
from .errors import Conflict, Forbidden, IngestionError, NotFound, PharmGPTError, ValidationError
from .ids import parse_id
from .ingestion import IngestionService
from .metrics import Metrics, timed
from .models import ACTIVE_STATUSES, Document, DocumentStatus, Upload
from .ports import DocumentIndexer

FILE_FAULT = "file"  # metadata["failure"] of a document that failed because of its contents


def is_file_fault(doc: Document) -> bool:
    """Failed because the file itself can't be read (not a passing outage): a retry can't help."""
    return doc.status == DocumentStatus.FAILED and (doc.metadata or {}).get("failure") == FILE_FAULT


def size_text(n_bytes: int) -> str:
    """A byte count as the uploader and the limit messages say it ("25 MB", "1 KB")."""
    if n_bytes >= 2**20:
        mb = n_bytes / 2**20
        return f"{mb:.0f} MB" if mb == int(mb) else f"{mb:.1f} MB"
    return f"{max(1, round(n_bytes / 1024))} KB"


def clean_filename(name: str) -> str:
    base = PurePath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if not base:
        raise ValidationError("The file needs a name.")
    return base[-255:]


def detect_type(filename: str, data: bytes) -> str:
    """The MIME type to record for an upload, after checking its first bytes (file_types)."""
    ft = file_types.by_extension(filename)
    if ft is None:
        allowed = ", ".join(sorted(e.lstrip(".").upper() for e in file_types.EXTENSIONS))
        raise ValidationError(
            f"{filename}: this file type is not supported. Upload one of: {allowed}."
        )
    if not file_types.content_matches(ft, data):
        if ft.text and (file_types.looks_binary(data) or file_types.sniff(data) is not None):
            raise ValidationError(f"{filename}: this looks like a binary file, not text.")
        ext = file_types.extension(filename)
        raise ValidationError(
            f"{filename}: the contents are not a valid {ext.lstrip('.').upper()} file."
        )
    return ft.mime


class DocumentService:
    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        cache: TTLCache,
        metrics: Metrics,
        audit: AuditService,
        blobs: BlobStore,
        ingestion: IngestionService | None = None,
    ):
        self.backend = backend
        self.ingestion = ingestion or IngestionService(backend, settings)
        self.settings = settings
        self.cache = cache
        self.metrics = metrics
        self.audit = audit
        self.blobs = blobs
        self.on_documents_deleted: ChunkDropHook | None = None

    def use_indexer(self, indexer: DocumentIndexer) -> None:
        """Deleting a document drops its chunks through the indexer."""
        self.on_documents_deleted = indexer.discard

    @timed("documents.register_upload")
    async def register_upload(
        self,
        user_id: str,
        filename: str,
        data: bytes,
        *,
        conversation_id: str | None = None,
        metadata: dict | None = None,
        pharmacy_id: str | None = None,
    ) -> Document:
        """Validate, store the bytes and queue ingestion; the same bytes in the same scope
        give back the existing document with `duplicate=True`. `pharmacy_id`: into that
        pharmacy's shared library (an editor's or owner's upload)."""
        filename = clean_filename(filename)
        if conversation_id is not None:
            conversation_id = parse_id(conversation_id, "conversation")
        if pharmacy_id is not None:
            if conversation_id is not None:
                raise ValidationError(
                    "A document goes into a conversation or a pharmacy, not both."
                )
            pharmacy_id = await self.require_pharmacy_editor(user_id, pharmacy_id)
        try:
            if not data:
                raise ValidationError(f"{filename} is empty.")
            if len(data) > self.settings.max_upload_bytes:
                raise ValidationError(
                    f"{filename} is {size_text(len(data))}; the limit is "
                    f"{size_text(self.settings.max_upload_bytes)} per file."
                )
            mime = detect_type(filename, data)
        except ValidationError:
            await self._record_rejected(user_id, filename, data, conversation_id)
            raise
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.put(sha, data)  # before the row, so the worker never finds a job without bytes
        # the server's proof that this user stored these bytes: register_document takes the
        # hash from it, never from the caller, so a hash alone reaches nobody else's file
        proof = await self.backend.execute(
            self.backend.service.table("upload_proofs").upsert(
                {"user_id": user_id, "sha256": sha, "file_size": len(data)},
                on_conflict="user_id,sha256",
            ),
            what="document",
        )
        db = await self.backend.for_user(user_id)
        scope = (
            {"p_pharmacy_id": pharmacy_id}
            if pharmacy_id is not None
            else {"p_conversation_id": conversation_id}
        )
        r = await self.backend.execute(
            db.rpc(
                "register_pharmacy_document" if pharmacy_id is not None else "register_document",
                {
                    "p_id": str(uuid.uuid4()),
                    **scope,
                    "p_upload_id": proof.data[0]["id"],
                    "p_filename": filename,
                    "p_file_type": mime,
                    "p_metadata": metadata or {},
                },
            ),
            what="document",
            idempotent=False,
        )
        row = r.data[0]
        self.cache.invalidate("docs", user_id)
        doc = Document.from_row(row["document"], duplicate=row["duplicate"])
        if pharmacy_id is not None and not doc.duplicate:
            await self.audit.record(
                "pharmacy.document_added",
                user_id=user_id,
                target_type="document",
                target_id=doc.id,
                details={"pharmacy_id": pharmacy_id, "filename": doc.filename},
            )
        return doc

    async def _record_rejected(
        self, user_id: str, filename: str, data: bytes, conversation_id: str | None
    ) -> None:
        """A refused file still appears in the upload history (as the user: RLS; never fatal)."""
        ft = file_types.by_extension(filename)
        mime = ft.mime if ft else None
        row = {
            "user_id": user_id,
            "conversation_id": conversation_id,
            "filename": filename,
            "file_type": mime,
            "file_size": len(data or b""),
            "outcome": "rejected",
        }
        try:
            db = await self.backend.for_user(user_id)
            await self.backend.execute(
                db.table("uploads").insert(row, returning="minimal"),
                what="upload history",
                idempotent=False,
            )
        except PharmGPTError:
            if conversation_id is None:
                return
            try:  # a conversation that is not (or no longer) theirs: keep the entry without it
                await self.backend.execute(
                    db.table("uploads").insert(
                        {**row, "conversation_id": None}, returning="minimal"
                    ),
                    what="upload history",
                    idempotent=False,
                )
            except PharmGPTError:
                pass

    @timed("documents.find_by_hash")
    async def find_by_hash(self, user_id: str, sha256: str) -> list[Document]:
        """The user's documents with these exact bytes, in any scope (as the user: RLS)."""
        if not sha256:
            return []
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("documents")
            .select(Document.COLUMNS)
            .eq("sha256", sha256)
            .is_("pharmacy_id", None)
            .order("added_at")
            .limit(100),
            what="documents",
        )
        return [Document.from_row(x) for x in r.data]

    async def _list(self, user_id: str, key: tuple, build) -> list[Document]:
        cached = self.cache.get(key)
        if not self.cache.missing(cached):
            return cached
        db = await self.backend.for_user(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                build(db.table("documents").select(Document.COLUMNS))
                .order("added_at", desc=True)
                .order("id")
            ),
            limit=500,
            what="document list",
        )
        out = [Document.from_row(x) for x in rows]
        in_flight = any(d.status in ACTIVE_STATUSES for d in out)
        self.cache.set(key, out, ttl=self.settings.cache_ttl_in_flight_s if in_flight else None)
        return out

    @timed("documents.conversation")
    async def get_conversation_documents(self, user_id: str, conv_id: str) -> list[Document]:
        conv_id = parse_id(conv_id, "conversation")
        return await self._list(
            user_id, ("docs", user_id, "conv", conv_id), lambda q: q.eq("conversation_id", conv_id)
        )

    @timed("documents.library")
    async def get_library_documents(self, user_id: str) -> list[Document]:
        return await self._list(
            user_id,
            ("docs", user_id, "library"),
            lambda q: q.is_("conversation_id", None).is_("pharmacy_id", None),
        )

    @timed("documents.pharmacy")
    async def get_pharmacy_documents(self, user_id: str, pharmacy_id: str) -> list[Document]:
        """A pharmacy's shared library as this member sees it (empty for anyone else). Not
        cached: it changes with other members' uploads, and a member who leaves loses it at once."""
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        db = await self.backend.for_user(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("documents")
                .select(Document.COLUMNS)
                .eq("pharmacy_id", pharmacy_id)
                .order("added_at", desc=True)
                .order("id")
            ),
            limit=500,
            what="document list",
        )
        return [Document.from_row(x) for x in rows]

    @timed("documents.shared")
    async def get_shared_documents(self, user_id: str) -> list[Document]:
        """Every pharmacy library document the user may read now, in one request: RLS admits
        only those of pharmacies they are a member of. Not cached, so a member who leaves or is
        removed stops seeing them with the next call (each question makes one)."""
        db = await self.backend.for_user(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("documents")
                .select(Document.COLUMNS)
                .not_.is_("pharmacy_id", None)
                .order("added_at", desc=True)
                .order("id")
            ),
            limit=2000,
            what="document list",
        )
        return [Document.from_row(x) for x in rows]

    async def pharmacy_role(self, user_id: str, pharmacy_id: str) -> str | None:
        """The user's role in a pharmacy (owner, editor, reader), or None: not a member."""
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("pharmacy_members")
            .select("role")
            .eq("pharmacy_id", pharmacy_id)
            .eq("user_id", user_id)
            .limit(1),
            what="pharmacy",
        )
        return r.data[0]["role"] if r.data else None

    async def require_pharmacy_editor(self, user_id: str, pharmacy_id: str) -> str:
        """The pharmacy's id when the user may change its documents: NotFound for a non-member,
        Forbidden for a reader (RLS refuses them anyway; this gives the reason)."""
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        role = await self.pharmacy_role(user_id, pharmacy_id)
        if role is None:
            raise NotFound("The pharmacy was not found.")
        if role not in ("owner", "editor"):
            raise Forbidden(
                "Readers can read this pharmacy's documents; ask an owner to make you an editor."
            )
        return pharmacy_id

    @timed("documents.get")
    async def get_document(self, user_id: str, doc_id: str) -> Document:
        doc_id = parse_id(doc_id, "document")
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("documents").select(Document.COLUMNS).eq("id", doc_id).limit(1),
            what="document",
        )
        if not r.data:
            raise NotFound("The document was not found.")
        return Document.from_row(r.data[0])

    @timed("documents.update_status")
    async def update_document_status(
        self,
        doc_id: str,
        status: str,
        *,
        error: str | None = None,
        chunk_count: int | None = None,
        page_count: int | None = None,
        metadata: dict | None = None,
        retry_at: datetime | None = None,
    ) -> Document:
        """The worker's report (service role): status, a readable error, counts; `retry_at`:
        a passing failure, queued again for then (any other report clears it)."""
        if status not in list(DocumentStatus):
            raise ValidationError(f"Unknown document status {status!r}.")
        doc_id = parse_id(doc_id, "document")
        patch: dict[str, Any] = {
            "status": status,
            "processing_error": (error or None) and error[:2000],
            "retry_at": retry_at.isoformat() if retry_at else None,
        }
        if chunk_count is not None:
            patch["chunk_count"] = chunk_count
        if page_count is not None:
            patch["page_count"] = page_count
        if metadata is not None:
            patch["metadata"] = metadata
        r = await self.backend.execute(
            self.backend.service.table("documents")
            .update(patch)
            .eq("id", doc_id)
            .select(Document.COLUMNS),
            what="document",
        )
        if not r.data:
            raise NotFound("The document was not found.")
        doc = Document.from_row(r.data[0])
        self.cache.invalidate("docs", doc.user_id)
        return doc

    @timed("documents.retry")
    async def retry_document(self, user_id: str, doc_id: str) -> Document:
        """Queue a failed document again: the owner check runs as the user (RLS), the
        status reset and the new ingest job as the service role (processing fields are the
        worker's)."""
        doc = await self.get_document(user_id, doc_id)  # NotFound for someone else's
        if doc.pharmacy_id is not None:
            await self.require_pharmacy_editor(user_id, doc.pharmacy_id)
        if doc.status != DocumentStatus.FAILED:
            raise Conflict(
                f"{doc.filename} is {doc.status}; only a document that failed can be retried."
            )
        if is_file_fault(doc):
            raise Conflict(
                f"{doc.filename} cannot be read as it is, so retrying would fail the same way; "
                "upload a corrected copy instead."
            )
        svc = self.backend.service
        # the status first: a worker claiming the new job moves it on to processing
        r = await self.backend.execute(
            svc.table("documents")
            .update({"status": DocumentStatus.PENDING, "processing_error": None, "retry_at": None})
            .eq("id", doc.id)
            .eq("status", DocumentStatus.FAILED)
            .select(Document.COLUMNS),
            what="document",
        )
        if not r.data:
            raise Conflict(f"{doc.filename} is already being processed again.")
        await self.ingestion.enqueue(doc.id, doc.user_id)  # False: a live job exists already
        self.cache.invalidate("docs", user_id)
        await self.audit.record(
            "document.retried",
            user_id=user_id,
            target_type="document",
            target_id=doc.id,
            details={
                "filename": doc.filename,
                "error": (doc.processing_error or "")[:200],
                **({"pharmacy_id": doc.pharmacy_id} if doc.pharmacy_id else {}),
            },
        )
        return Document.from_row(r.data[0])

    async def requeue_for_reindex(self, doc_id: str, user_id: str) -> int:
        """An admin re-index (`pharmgpt reconcile`): a ready document goes back to the queue.
        Returns 1 when queued, 0 when it was no longer ready or a live job exists already."""
        svc = self.backend.service
        r = await self.backend.execute(
            svc.table("documents")
            .update({"status": DocumentStatus.PENDING, "processing_error": None, "retry_at": None})
            .eq("id", doc_id)
            .eq("status", DocumentStatus.READY)
            .select("id"),
            what="document",
        )
        if not r.data:
            return 0
        if not await self.ingestion.enqueue(doc_id, user_id):
            return 0
        self.cache.invalidate("docs", user_id)
        await self.audit.record(
            "document.reindexed",
            target_type="document",
            target_id=doc_id,
            details={"user_id": user_id},
        )
        return 1

    @timed("documents.job_progress")
    async def job_progress(self, user_id: str, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The latest ingest job of each document (as the user: RLS): its status, attempts and
        progress (pages, chunks, chunks_done) plus `percent` when the chunk count is known."""
        ids = []
        for d in doc_ids:
            try:
                ids.append(parse_id(d, "document"))
            except NotFound:
                continue
        return await self.ingestion.progress(user_id, ids)

    async def all_rows(self, columns: str) -> AsyncIterator[dict[str, Any]]:
        """Every document row, a page at a time, for admin commands (reconcile, re-index):
        the service role."""
        svc = self.backend.service
        page = max(1, self.backend.settings.db_max_rows)  # pages no larger than the max-rows
        offset = 0
        while True:
            r = await self.backend.execute(
                svc.table("documents").select(columns).order("id").range(offset, offset + page - 1),
                what="documents",
            )
            for row in r.data:
                yield row
            if len(r.data) < page:
                break
            offset += page

    async def row_for_processing(self, doc_id: str) -> dict[str, Any] | None:
        """The document row the worker indexes (service role), None when it was deleted."""
        r = await self.backend.execute(
            self.backend.service.table("documents").select("*").eq("id", doc_id).limit(1),
            what="document",
        )
        return r.data[0] if r.data else None

    async def stored_bytes(self, doc: dict[str, Any]) -> bytes:
        """The uploaded bytes of a document row; IngestionError (the file's fault: final) when
        they are gone."""
        try:
            data = (
                await asyncio.to_thread(self.blobs.get, doc["sha256"])
                if doc.get("sha256")
                else None
            )
        except FileNotFoundError:
            data = None
        if data is None:
            raise IngestionError(
                f"{doc['filename']}: the uploaded file is missing on the server; upload it again."
            )
        return data

    async def mark_file_fault(self, doc: dict[str, Any], error: str) -> Document:
        """Failed because of the file itself: retrying is refused (`is_file_fault`)."""
        return await self.update_document_status(
            doc["id"],
            "failed",
            error=error,
            metadata={**(doc.get("metadata") or {}), "failure": FILE_FAULT},
        )

    @timed("documents.delete")
    async def delete_document(self, user_id: str, doc_id: str) -> None:
        doc = await self.get_document(user_id, doc_id)  # NotFound for someone else's
        if doc.pharmacy_id is not None:  # a reader sees it but may not delete it
            await self.require_pharmacy_editor(user_id, doc.pharmacy_id)
        if self.on_documents_deleted is not None:
            shared = {"pharmacy_id": doc.pharmacy_id} if doc.pharmacy_id else {}
            await self.on_documents_deleted(doc.user_id, [doc.id], **shared)  # where its chunks are
        db = await self.backend.for_user(user_id)
        await self.backend.execute(db.table("documents").delete().eq("id", doc.id), what="document")
        self.cache.invalidate("docs", user_id)
        await self.release_blobs([doc.sha256] if doc.sha256 else [])
        if doc.pharmacy_id is not None:
            await self.audit.record(
                "pharmacy.document_deleted",
                user_id=user_id,
                target_type="document",
                target_id=doc.id,
                details={
                    "pharmacy_id": doc.pharmacy_id,
                    "filename": doc.filename,
                    "uploader": doc.user_id,
                },
            )
        else:
            await self.audit.record(
                "document.deleted",
                user_id=user_id,
                target_type="document",
                target_id=doc.id,
                details={"filename": doc.filename},
            )

    async def release_blobs(self, shas: list[str]) -> None:
        """Delete the stored bytes of these hashes that no document uses any more."""
        for sha in sorted(set(shas)):
            still = await self.backend.execute(
                self.backend.service.table("documents").select("id").eq("sha256", sha).limit(1),
                what="document",
            )
            if not still.data:
                self.blobs.delete(sha)

    @timed("documents.uploads")
    async def get_upload_history(self, user_id: str, limit: int = 100) -> list[Upload]:
        """Newest first, each with what became of its document (ready, failed and why, …)."""
        db = await self.backend.for_user(user_id)
        rows = await self.backend.fetch_rows(
            lambda: db.table("uploads").select("*").order("uploaded_at", desc=True).order("id"),
            limit=max(1, min(limit, 1000)),
            what="upload history",
        )
        ids = sorted({x["document_id"] for x in rows if x.get("document_id")})
        docs: dict[str, dict] = {}
        for start in range(0, len(ids), 200):  # bounded IN lists
            d = await self.backend.execute(
                db.table("documents")
                .select("id,status,processing_error")
                .in_("id", ids[start : start + 200]),
                what="documents",
            )
            docs.update({x["id"]: x for x in d.data})
        return [Upload.from_row(x, docs.get(x.get("document_id") or "")) for x in rows]
