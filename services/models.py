"""Typed records the services return. Built from rows; never carry secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DocumentStatus(StrEnum):
    """A document's processing state (documents.status CHECK, sql/0002): the worker moves it
    pending → processing → ready | failed; a retry puts a failed one back to pending."""

    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


ACTIVE_STATUSES = frozenset({DocumentStatus.PENDING, DocumentStatus.PROCESSING})  # not settled


class JobStatus(StrEnum):
    """An ingest job's state (ingest_jobs.status CHECK, sql/0002), in the order admins read it."""

    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    DONE = "done"


def ts(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str | None = None
    is_admin: bool = False
    is_active: bool = True
    last_login: datetime | None = None
    created_at: datetime | None = None

    COLUMNS = "id,username,email,is_admin,is_active,last_login,created_at"

    @classmethod
    def from_row(cls, r: dict) -> User:
        return cls(
            r["id"],
            r["username"],
            r.get("email"),
            bool(r.get("is_admin")),
            r.get("is_active", True),
            ts(r.get("last_login")),
            ts(r.get("created_at")),
        )


@dataclass(frozen=True)
class Conversation:
    id: str
    user_id: str
    title: str
    model: str | None
    is_archived: bool
    is_pinned: bool
    message_count: int
    created_at: datetime
    updated_at: datetime

    COLUMNS = "id,user_id,title,model,is_archived,is_pinned,message_count,created_at,updated_at"

    @classmethod
    def from_row(cls, r: dict) -> Conversation:
        return cls(
            r["id"],
            r["user_id"],
            r["title"],
            r.get("model"),
            r["is_archived"],
            r["is_pinned"],
            r["message_count"],
            ts(r["created_at"]),
            ts(r["updated_at"]),
        )


@dataclass(frozen=True)
class SearchHit:
    """A conversation found by search: how well it matched and the best message's snippet
    (plain text; the matched words lie between HIGHLIGHT_START and HIGHLIGHT_END)."""

    conversation: Conversation
    rank: float
    snippet: str | None
    message_id: str | None

    HIGHLIGHT_START = "\ue000"
    HIGHLIGHT_END = "\ue001"

    @classmethod
    def from_row(cls, r: dict) -> SearchHit:
        return cls(
            Conversation.from_row(r),
            float(r.get("rank") or 0.0),
            r.get("snippet"),
            r.get("message_id"),
        )

    def snippet_parts(self) -> list[tuple[str, bool]]:
        """(text, highlighted) runs of the snippet, markers removed."""
        out: list[tuple[str, bool]] = []
        for i, part in enumerate((self.snippet or "").split(self.HIGHLIGHT_START)):
            if i == 0:
                out.append((part, False))
                continue
            hit, _, rest = part.partition(self.HIGHLIGHT_END)
            out += [(hit, True), (rest, False)]
        return [(t, h) for t, h in out if t]


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    role: str
    content: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    created_at: datetime | None = None
    pending: bool = False  # held in the local outbox, not yet in the database

    COLUMNS = "id,conversation_id,role,content,sources,model,created_at"

    @classmethod
    def from_row(cls, r: dict) -> Message:
        return cls(
            r["id"],
            r["conversation_id"],
            r["role"],
            r["content"],
            r.get("sources") or [],
            r.get("model"),
            ts(r.get("created_at")),
        )


@dataclass(frozen=True)
class Document:
    id: str
    user_id: str
    conversation_id: str | None
    sha256: str | None
    filename: str
    file_type: str
    file_size: int | None
    page_count: int | None
    chunk_count: int
    status: DocumentStatus
    processing_error: str | None
    metadata: dict[str, Any]
    added_at: datetime
    updated_at: datetime
    duplicate: bool = False  # register_upload found the same bytes already in this scope
    pharmacy_id: str | None = (
        None  # set: in that pharmacy's shared library (then conversation_id is None)
    )
    retry_at: datetime | None = None  # pending again after a passing failure, tried then

    COLUMNS = (
        "id,user_id,conversation_id,sha256,filename,file_type,file_size,page_count,chunk_count,"
        "status,processing_error,metadata,added_at,updated_at,pharmacy_id,retry_at"
    )

    @classmethod
    def from_row(cls, r: dict, duplicate: bool = False) -> Document:
        return cls(
            r["id"],
            r["user_id"],
            r.get("conversation_id"),
            r.get("sha256"),
            r["filename"],
            r["file_type"],
            r.get("file_size"),
            r.get("page_count"),
            r.get("chunk_count") or 0,
            DocumentStatus(r["status"]),
            r.get("processing_error"),
            r.get("metadata") or {},
            ts(r["added_at"]),
            ts(r["updated_at"]),
            duplicate,
            r.get("pharmacy_id"),
            ts(r.get("retry_at")),
        )


PHARMACY_ROLES = ("owner", "editor", "reader")  # most rights first


@dataclass(frozen=True)
class Pharmacy:
    """A pharmacy team, with the caller's role in it (None when no caller is meant: admin views)."""

    id: str
    name: str
    role: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    COLUMNS = "id,name,created_by,created_at,updated_at"

    @property
    def can_edit(self) -> bool:
        """May upload, rename and delete the shared documents."""
        return self.role in ("owner", "editor")

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    @classmethod
    def from_row(cls, r: dict, role: str | None = None) -> Pharmacy:
        return cls(
            r["id"], r["name"], role, r.get("created_by"), ts(r["created_at"]), ts(r["updated_at"])
        )


@dataclass(frozen=True)
class PharmacyMember:
    pharmacy_id: str
    user_id: str
    username: str
    role: str
    added_by: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> PharmacyMember:
        return cls(
            r["pharmacy_id"],
            r["user_id"],
            r["username"],
            r["role"],
            r.get("added_by"),
            ts(r["created_at"]),
        )


@dataclass(frozen=True)
class Upload:
    id: str
    filename: str
    file_size: int
    file_type: str | None
    outcome: str
    document_id: str | None
    conversation_id: str | None
    uploaded_at: datetime
    document_status: DocumentStatus | None = (
        None  # what became of an accepted file (None: deleted, or rejected)
    )
    document_error: str | None = None

    @classmethod
    def from_row(cls, r: dict, document: dict | None = None) -> Upload:
        document = document or {}
        return cls(
            r["id"],
            r["filename"],
            r["file_size"],
            r.get("file_type"),
            r["outcome"],
            r.get("document_id"),
            r.get("conversation_id"),
            ts(r["uploaded_at"]),
            DocumentStatus(document["status"]) if document.get("status") else None,
            document.get("processing_error"),
        )


@dataclass(frozen=True)
class AuditEntry:
    id: int
    action: str
    user_id: str | None
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    ip_address: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> AuditEntry:
        return cls(
            r["id"],
            r["action"],
            r.get("user_id"),
            r.get("actor_id"),
            r.get("target_type"),
            r.get("target_id"),
            r.get("details") or {},
            r.get("ip_address"),
            ts(r["created_at"]),
        )


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: datetime
    expires_at: datetime
    last_activity: datetime
    ip_address: str | None
    user_agent: str | None
    revoked_at: datetime | None
