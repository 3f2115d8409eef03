"""Browser sessions (DESIGN D3): a random token to the caller, its SHA-256 in the table.

Sliding expiry: each validation more than `session_touch_interval_s` after the
last one pushes `expires_at` out again, so a busy session stays alive and an
idle one ends; the write happens at most once a minute per session. However busy,
a session ends `session_max_age_s` (30 days) after sign-in: expiry never slides past it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from .audit import AuditService
from .backend import Backend
from .config import Settings
from .errors import ValidationError
from .metrics import Metrics, timed
from .models import SessionInfo, User, ts


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _iso(dt: datetime) -> str:
    return dt.isoformat()


class SessionService:
    def __init__(self, backend: Backend, settings: Settings, metrics: Metrics, audit: AuditService):
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.audit = audit

    def _expiry(self, now: datetime, created_at: datetime) -> datetime:
        """Sliding expiry, capped at the session's absolute lifetime."""
        return min(
            now + timedelta(seconds=self.settings.session_ttl_s),
            created_at + timedelta(seconds=self.settings.session_max_age_s),
        )

    @property
    def _table(self):
        return self.backend.service.table("sessions")

    @timed("sessions.create")
    async def create_session(
        self, user_id: str, ip: str | None = None, user_agent: str | None = None
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = {
            "token_hash": token_hash(token),
            "user_id": user_id,
            "created_at": _iso(now),
            "last_activity": _iso(now),
            "expires_at": _iso(self._expiry(now, now)),
            "ip_address": _valid_ip(ip),
            "user_agent": (user_agent or "")[:512] or None,
        }
        # the token hash is unique, so a retried insert cannot create a second row
        await self.backend.execute(
            self._table.upsert(
                row, on_conflict="token_hash", ignore_duplicates=True, returning="minimal"
            ),
            what="session",
        )
        return token

    async def _find(self, token: str) -> dict | None:
        if not token or len(token) > 256:
            return None
        r = await self.backend.execute(
            self._table.select(
                "id,user_id,created_at,expires_at,last_activity,revoked_at,"
                f"users!inner({User.COLUMNS})"
            )
            .eq("token_hash", token_hash(token))
            .limit(1),
            what="session",
        )
        return r.data[0] if r.data else None

    def _live(self, row: dict | None, now: datetime) -> bool:
        return (
            row is not None
            and row["revoked_at"] is None
            and ts(row["expires_at"]) > now
            and ts(row["created_at"]) + timedelta(seconds=self.settings.session_max_age_s) > now
        )

    @timed("sessions.validate")
    async def validate_session(self, token: str) -> User | None:
        row = await self._find(token)
        now = datetime.now(UTC)
        if not self._live(row, now):
            return None
        user = User.from_row(row["users"])
        if not user.is_active:
            return None
        if (
            now - ts(row["last_activity"])
        ).total_seconds() >= self.settings.session_touch_interval_s:
            await self._touch(row, now)
        return user

    async def _touch(self, row: dict, now: datetime) -> None:
        await self.backend.execute(
            self._table.update(
                {
                    "last_activity": _iso(now),
                    "expires_at": _iso(self._expiry(now, ts(row["created_at"]))),
                },
                returning="minimal",
            )
            .eq("id", row["id"])
            .is_("revoked_at", None),
            what="session",
        )

    @timed("sessions.refresh")
    async def refresh_session(self, token: str) -> bool:
        row = await self._find(token)
        now = datetime.now(UTC)
        if not self._live(row, now):
            return False
        await self._touch(row, now)
        return True

    @timed("sessions.logout")
    async def logout_session(self, token: str) -> None:
        r = await self.backend.execute(
            self._table.update({"revoked_at": _iso(datetime.now(UTC))})
            .eq("token_hash", token_hash(token))
            .is_("revoked_at", None)
            .select("user_id"),
            what="session",
        )
        if r.data:
            await self.audit.record("auth.logout", user_id=r.data[0]["user_id"])

    @timed("sessions.logout_all")
    async def logout_all(self, user_id: str, *, except_token: str | None = None) -> int:
        now = datetime.now(UTC)
        q = (
            self._table.update({"revoked_at": _iso(now)}, count="exact", returning="minimal")
            .eq("user_id", user_id)
            .is_("revoked_at", None)
            .gt("expires_at", _iso(now))
        )
        if except_token:
            q = q.neq("token_hash", token_hash(except_token))
        r = await self.backend.execute(q, what="session")
        n = r.count or 0
        await self.audit.record("auth.logout_all", user_id=user_id, details={"sessions": n})
        return n

    @timed("sessions.cleanup")
    async def cleanup_expired_sessions(self, *, keep_revoked_days: int = 7) -> int:
        """Delete sessions past expiry, and revoked ones after a week (kept that long for the
        audit view)."""
        now = datetime.now(UTC)
        r1 = await self.backend.execute(
            self._table.delete(count="exact", returning="minimal").lt("expires_at", _iso(now)),
            what="session",
        )
        r2 = await self.backend.execute(
            self._table.delete(count="exact", returning="minimal").lt(
                "revoked_at", _iso(now - timedelta(days=keep_revoked_days))
            ),
            what="session",
        )
        return (r1.count or 0) + (r2.count or 0)

    @timed("sessions.list")
    async def list_sessions(self, user_id: str) -> list[SessionInfo]:
        r = await self.backend.execute(
            self._table.select(
                "id,created_at,expires_at,last_activity,ip_address,user_agent,revoked_at"
            )
            .eq("user_id", user_id)
            .order("created_at", desc=True)
            .limit(100),
            what="session",
        )
        return [
            SessionInfo(
                x["id"],
                ts(x["created_at"]),
                ts(x["expires_at"]),
                ts(x["last_activity"]),
                x.get("ip_address"),
                x.get("user_agent"),
                ts(x.get("revoked_at")),
            )
            for x in r.data
        ]


def _valid_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ValidationError(f"Not an IP address: {ip!r}") from None
