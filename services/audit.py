"""Append-only audit trail (the table refuses UPDATE and DELETE)."""

from __future__ import annotations

import logging
from typing import Any

from .backend import Backend
from .errors import PharmGPTError
from .metrics import Metrics, timed
from .models import AuditEntry

log = logging.getLogger(__name__)


class AuditService:
    def __init__(self, backend: Backend, metrics: Metrics):
        self.backend = backend
        self.metrics = metrics

    @timed("audit.record")
    async def record(
        self,
        action: str,
        *,
        user_id: str | None = None,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
        ip: str | None = None,
        no_account: bool = False,
    ) -> None:
        """Never lets a failed audit write break the action it describes: it is logged instead.

        The actor is `actor_id`, else the user themself; `no_account=True` records none
        (the command line, which acts as no account: never as the user it acts on)."""
        actor = None if no_account else (actor_id or user_id)
        row = {
            "action": action,
            "user_id": user_id,
            "actor_id": actor,
            "target_type": target_type,
            "target_id": None if target_id is None else str(target_id),
            "details": details or {},
            "ip_address": ip,
        }
        try:
            await self.backend.execute(
                self.backend.service.table("audit_log").insert(row, returning="minimal"),
                what="audit entry",
                idempotent=False,
            )
        except PharmGPTError as e:
            log.error("audit entry %s for %s not written: %s", action, user_id, e.details or e)

    @timed("audit.list")
    async def list(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        q = (
            self.backend.service.table("audit_log")
            .select("*")
            .order("id", desc=True)
            .limit(min(limit, 1000))
        )
        if user_id:
            q = q.eq("user_id", user_id)
        if action:
            q = q.like("action", action) if "*" in action else q.eq("action", action)
        if before_id:
            q = q.lt("id", before_id)
        r = await self.backend.execute(q, what="audit log")
        return [AuditEntry.from_row(x) for x in r.data]
