"""Administration: accounts, usage, the ingestion queue, the audit trail.

Runs with the service-role client (DESIGN D2), so every method that acts for
a signed-in admin first checks, in the database, that the acting user is an
active admin; nobody else gets `Forbidden`. Every change is written to the
audit log with the admin as the actor. `promote` also serves the command line
(`pharmgpt admin promote USERNAME`, pharmgpt/admin_command.py), which has no acting user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .audit import AuditService
from .backend import Backend
from .cache import TTLCache
from .errors import Forbidden, NotFound, ValidationError
from .ids import parse_id
from .ingestion import IngestionService
from .metrics import Metrics, timed
from .models import AuditEntry, Document, JobStatus, PharmacyMember, User, ts
from .users import normalize_username, username_key


@dataclass(frozen=True)
class AdminUser:
    id: str
    username: str
    email: str | None
    is_admin: bool
    is_active: bool
    failed_logins: int
    locked_until: datetime | None
    last_login: datetime | None
    created_at: datetime
    conversations: int
    messages: int
    documents: int
    active_sessions: int

    @property
    def locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > datetime.now(UTC)

    @classmethod
    def from_row(cls, r: dict) -> AdminUser:
        return cls(
            r["id"],
            r["username"],
            r.get("email"),
            bool(r["is_admin"]),
            bool(r["is_active"]),
            int(r.get("failed_logins") or 0),
            ts(r.get("locked_until")),
            ts(r.get("last_login")),
            ts(r["created_at"]),
            int(r.get("conversations") or 0),
            int(r.get("messages") or 0),
            int(r.get("documents") or 0),
            int(r.get("active_sessions") or 0),
        )


@dataclass(frozen=True)
class AdminPharmacy:
    id: str
    name: str
    created_by: str | None
    created_by_username: str | None
    created_at: datetime
    members: int
    owners: int
    documents: int

    @classmethod
    def from_row(cls, r: dict) -> AdminPharmacy:
        return cls(
            r["id"],
            r["name"],
            r.get("created_by"),
            r.get("created_by_username"),
            ts(r["created_at"]),
            int(r.get("members") or 0),
            int(r.get("owners") or 0),
            int(r.get("documents") or 0),
        )


@dataclass(frozen=True)
class UsageDay:
    day: date
    users: int
    conversations: int
    messages: int
    documents: int


@dataclass(frozen=True)
class QueueItem:
    job_id: str
    document_id: str
    filename: str | None
    document_status: str | None
    processing_error: str | None
    user_id: str
    username: str | None
    status: str
    attempts: int
    max_attempts: int
    progress: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    locked_by: str | None = None
    run_after: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


_QUEUE_SELECT = (
    "id,document_id,user_id,status,attempts,max_attempts,progress,last_error,locked_by,"
    "run_after,created_at,updated_at,documents(filename,status,processing_error),users(username)"
)


class AdminService:
    def __init__(
        self,
        backend: Backend,
        cache: TTLCache,
        metrics: Metrics,
        audit: AuditService,
        sessions=None,
        ingestion: IngestionService | None = None,
    ):
        self.backend = backend
        self.ingestion = ingestion or IngestionService(backend)
        self.cache = cache
        self.metrics = metrics
        self.audit = audit
        self.sessions = sessions  # SessionService: deactivating an account ends its sessions

    @property
    def _users(self):
        return self.backend.service.table("users")

    async def require_admin(self, actor_id: str) -> User:
        """The acting user, read fresh from the database; Forbidden unless an active admin."""
        try:
            actor_id = parse_id(actor_id, "account")
        except NotFound:
            raise Forbidden("Only administrators can do that.") from None
        r = await self.backend.execute(
            self._users.select(User.COLUMNS).eq("id", actor_id).limit(1), what="account"
        )
        user = User.from_row(r.data[0]) if r.data else None
        if user is None or not user.is_admin or not user.is_active:
            raise Forbidden("Only administrators can do that.")
        return user

    async def _target(self, user_id: str) -> dict:
        user_id = parse_id(user_id, "account")
        r = await self.backend.execute(
            self._users.select("id,username,is_admin,is_active,locked_until")
            .eq("id", user_id)
            .limit(1),
            what="account",
        )
        if not r.data:
            raise NotFound("The account was not found.")
        return r.data[0]

    # ------------------------------------------------------------------ accounts
    @timed("admin.list_users")
    async def list_users(
        self, actor_id: str, *, search: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[AdminUser]:
        await self.require_admin(actor_id)
        if search is not None and len(search) > 128:
            raise ValidationError("Search for at most 128 characters.")
        r = await self.backend.execute(
            self.backend.service.rpc(
                "admin_user_overview",
                {
                    "p_search": (search or "").strip() or None,
                    "p_limit": max(1, min(limit, 1000)),
                    "p_offset": max(0, offset),
                },
            ),
            what="account list",
        )
        return [AdminUser.from_row(x) for x in r.data]

    @timed("admin.set_active")
    async def set_active(self, actor_id: str, user_id: str, active: bool) -> None:
        """Activate or deactivate an account; deactivating also ends its sessions."""
        actor = await self.require_admin(actor_id)
        target = await self._target(user_id)
        if not active and target["id"] == actor.id:
            raise ValidationError("You cannot deactivate your own account.")
        await self.backend.execute(
            self._users.update({"is_active": bool(active)}, returning="minimal").eq(
                "id", target["id"]
            ),
            what="account",
        )
        self.cache.invalidate("user", target["id"])
        revoked = 0
        if not active and self.sessions is not None:
            revoked = await self.sessions.logout_all(target["id"])
        await self.audit.record(
            "admin.user_activated" if active else "admin.user_deactivated",
            user_id=target["id"],
            actor_id=actor.id,
            target_type="user",
            target_id=target["id"],
            details={"username": target["username"], "sessions_revoked": revoked},
        )

    @timed("admin.unlock")
    async def unlock(self, actor_id: str, user_id: str) -> None:
        """Clear a sign-in lockout and the failure counter behind it."""
        actor = await self.require_admin(actor_id)
        target = await self._target(user_id)
        await self.backend.execute(
            self._users.update(
                {"failed_logins": 0, "locked_until": None, "first_failed_at": None},
                returning="minimal",
            ).eq("id", target["id"]),
            what="account",
        )
        self.cache.invalidate("user", target["id"])
        await self.audit.record(
            "admin.user_unlocked",
            user_id=target["id"],
            actor_id=actor.id,
            target_type="user",
            target_id=target["id"],
            details={
                "username": target["username"],
                "was_locked_until": target.get("locked_until"),
            },
        )

    @timed("admin.promote")
    async def promote(self, username: str, *, actor_id: str | None = None) -> User:
        """Make an existing account an admin. `actor_id` None: the command line (trusted)."""
        actor = await self.require_admin(actor_id) if actor_id is not None else None
        name = normalize_username(username)
        if not name:
            raise ValidationError("Give the username to promote.")
        r = await self.backend.execute(
            self.backend.service.rpc("login_lookup", {"p_username": username_key(name)}),
            what="account",
        )
        if not r.data:
            raise NotFound(f"There is no account named {name!r}.")
        row = r.data[0]
        u = await self.backend.execute(
            self._users.update({"is_admin": True}).eq("id", row["id"]).select(User.COLUMNS),
            what="account",
        )
        self.cache.invalidate("user", row["id"])
        await self.audit.record(
            "admin.user_promoted",
            user_id=row["id"],
            actor_id=actor.id if actor else None,
            no_account=actor is None,
            target_type="user",
            target_id=row["id"],
            details={
                "username": row["username"],
                "via": "app" if actor else "cli",
                "already_admin": bool(row.get("is_admin")),
            },
        )
        return User.from_row(u.data[0])

    # ------------------------------------------------------------------ usage and queue
    @timed("admin.usage")
    async def usage(self, actor_id: str, days: int = 30) -> list[UsageDay]:
        await self.require_admin(actor_id)
        if not 1 <= days <= 366:
            raise ValidationError("Show between 1 and 366 days.")
        r = await self.backend.execute(
            self.backend.service.rpc("admin_usage", {"p_days": days}), what="usage"
        )
        return [
            UsageDay(
                date.fromisoformat(x["day"]) if isinstance(x["day"], str) else x["day"],
                int(x["users"]),
                int(x["conversations"]),
                int(x["messages"]),
                int(x["documents"]),
            )
            for x in r.data
        ]

    @timed("admin.ingestion_queue")
    async def ingestion_queue(
        self, actor_id: str, *, statuses: tuple[str, ...] | None = None, limit: int = 200
    ) -> list[QueueItem]:
        """Ingest jobs, newest first, with the document's name and status and the owner's name."""
        await self.require_admin(actor_id)
        bad = [s for s in statuses or () if s not in list(JobStatus)]
        if bad:
            raise ValidationError(f"Unknown job status {bad[0]!r}.")
        rows = await self.ingestion.queue_rows(_QUEUE_SELECT, list(statuses or ()), limit)
        out = []
        for x in rows:
            doc = x.get("documents") or {}
            out.append(
                QueueItem(
                    x["id"],
                    x["document_id"],
                    doc.get("filename"),
                    doc.get("status"),
                    doc.get("processing_error"),
                    x["user_id"],
                    (x.get("users") or {}).get("username"),
                    x["status"],
                    x["attempts"],
                    x["max_attempts"],
                    x.get("progress") or {},
                    x.get("last_error"),
                    x.get("locked_by"),
                    ts(x.get("run_after")),
                    ts(x.get("created_at")),
                    ts(x.get("updated_at")),
                )
            )
        return out

    # ------------------------------------------------------------------ pharmacies
    @timed("admin.pharmacies")
    async def pharmacies(
        self, actor_id: str, *, limit: int = 200, offset: int = 0
    ) -> list[AdminPharmacy]:
        """Every pharmacy, newest first, with its member, owner and shared-document counts."""
        await self.require_admin(actor_id)
        r = await self.backend.execute(
            self.backend.service.rpc(
                "admin_pharmacy_overview",
                {"p_limit": max(1, min(limit, 1000)), "p_offset": max(0, offset)},
            ),
            what="pharmacy list",
        )
        return [AdminPharmacy.from_row(x) for x in r.data]

    @timed("admin.pharmacy_members")
    async def pharmacy_members(self, actor_id: str, pharmacy_id: str) -> list[PharmacyMember]:
        await self.require_admin(actor_id)
        r = await self.backend.execute(
            self.backend.service.rpc(
                "admin_pharmacy_members", {"p_pharmacy_id": parse_id(pharmacy_id, "pharmacy")}
            ),
            what="member list",
        )
        return [PharmacyMember.from_row(x) for x in r.data]

    @timed("admin.pharmacy_documents")
    async def pharmacy_documents(
        self, actor_id: str, pharmacy_id: str, *, limit: int = 500
    ) -> list[Document]:
        """A pharmacy's shared documents, newest first (each with its uploader's id)."""
        await self.require_admin(actor_id)
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        rows = await self.backend.fetch_rows(
            lambda: (
                self.backend.service.table("documents")
                .select(Document.COLUMNS)
                .eq("pharmacy_id", pharmacy_id)
                .order("added_at", desc=True)
                .order("id")
            ),
            limit=max(1, min(limit, 5000)),
            what="document list",
        )
        return [Document.from_row(x) for x in rows]

    @timed("admin.audit_log")
    async def audit_log(
        self,
        actor_id: str,
        *,
        action: str | None = None,
        user_id: str | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        await self.require_admin(actor_id)
        return await self.audit.list(user_id=user_id, action=action or None, limit=limit)
