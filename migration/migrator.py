"""`pharmgpt migrate run`: legacy tree -> Supabase rows + the Chroma store.

Order per batch of users: users -> conversations + messages -> documents +
chunks (+ the user's BM25 index) -> upload history, one module per step under
migration/steps/. Every write goes through the service-role client in bulk,
with deterministic ids, as an insert that ignores rows already there; every
item is recorded in `migration_items` before (pending) and after (done) its
rows (the ledger, migration/ledger.py), so a run killed at any point resumes
to the same end state, and rollback knows exactly what the run wrote.

This module owns the run itself: its row in `migration_runs`, the guard
against two live runs, the background heartbeat, and the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .ledger import DEFAULT_BATCH, NullProgress, RunLedger
from .legacy import LegacySource, LegacyUser, Problems
from .planner import detect
from .state import HEARTBEAT_S, STALE_AFTER_S, Target, chunks, is_alive
from .steps.conversations import ConversationStep
from .steps.documents import DocumentStep
from .steps.uploads import UploadStep
from .steps.users import migrate_users
from .stores import store_for

log = logging.getLogger(__name__)

KINDS = ("users", "conversations", "documents", "uploads")
LIVE_AFTER_S = STALE_AFTER_S  # kept for callers: a run is alive while its heartbeat is this young


class MigrationError(RuntimeError):
    pass


class Migrator:
    def __init__(
        self,
        services,
        source: Path | str,
        *,
        batch_size: int = DEFAULT_BATCH,
        only: tuple[str, ...] | list[str] | None = None,
        timezone: str | None = None,
        store=None,
        lexical=None,
        embedder=None,
        progress=None,
    ):
        self.services = services
        self.root = Path(source).resolve()
        self.batch = max(1, int(batch_size))
        self.only = tuple(only or KINDS)
        bad = set(self.only) - set(KINDS)
        if bad:
            raise ValueError(f"--only takes {', '.join(KINDS)}; not {', '.join(sorted(bad))}")
        self.timezone = timezone
        self.target = Target(services)
        if store is None:
            store, default_lexical = store_for(services.settings)
            lexical = lexical or default_lexical
        self.store, self.lexical = store, lexical
        self._embedder = embedder
        self.progress = progress or NullProgress()
        self.counts: Counter = Counter()
        self.run_id: str | None = None
        self.resuming = False
        self.prior_runs: list[dict] = []

    @property
    def embedder(self):
        if self._embedder is None:
            from pharmgpt.rag.embeddings import shared_embedder

            s = self.services.settings
            self._embedder = shared_embedder(s.embedder, s.data_dir, s.embedder_threads)
        return self._embedder

    # ------------------------------------------------------------ the run
    async def run(
        self, resume: str | None = None, *, allow_changed_source: bool = False, force: bool = False
    ) -> dict[str, Any]:
        """Migrate (or, with `resume`, continue run `resume`). `force`: even though another run
        (or the one to resume) looks alive: its heartbeat is recent, but its process was killed."""
        t0 = time.monotonic()
        target = self.target
        run = None
        if resume:
            run = await target.get_run(resume)
            if run is None:
                raise MigrationError(f"no migration run {resume}")
            if run["state"] == "rolled_back":
                raise MigrationError(f"run {resume} was rolled back; start a new run instead")
            opts = run["options"] or {}
            self.batch = int(opts.get("batch_size", self.batch))
            self.only = tuple(opts.get("only", self.only))
            self.timezone = opts.get("timezone", self.timezone)
            if Path(run["source"]) != self.root:
                raise MigrationError(f"run {resume} read {run['source']}, not {self.root}")
        if not force:
            for other in await target.runs(limit=1000):
                if is_alive(other):
                    raise MigrationError(
                        f"run {other['id']} is running (heartbeat {other['heartbeat_at']}); wait "
                        "for it to finish, or, if its process is gone, pass --force"
                    )
        source = LegacySource(self.root, self.timezone)
        self.source = source
        fingerprint = await asyncio.to_thread(source.fingerprint)
        inventory = await asyncio.to_thread(detect, source)
        options = {"batch_size": self.batch, "only": list(self.only), "timezone": source.tz_name}
        if run is not None:
            if run["source_fingerprint"] != fingerprint and not allow_changed_source:
                raise MigrationError(
                    "the source changed since the run started (files added, removed or "
                    "touched); pass --allow-changed-source to resume anyway"
                )
            self.run_id, self.resuming = run["id"], True
            await target.update_run(
                self.run_id,
                {"state": "running", "error": None, "finished_at": None, "heartbeat_at": _now()},
            )
        else:
            run = await target.create_run(
                {
                    "source": str(self.root),
                    "source_fingerprint": fingerprint,
                    "options": options,
                    "state": "running",
                }
            )
            self.run_id = run["id"]
        self.prior_runs = [
            r
            for r in await target.runs(limit=1000)
            if r["id"] != self.run_id and r["state"] != "rolled_back"
        ]
        ledger = RunLedger(
            target,
            source,
            self.run_id,
            self.batch,
            self.only,
            self.progress,
            self.counts,
            self.resuming,
            self.prior_runs,
        )
        totals = inventory["counts"]
        for name, total in (
            ("users", totals["users"]),
            ("conversations", totals["conversations"]),
            ("messages", totals["messages"]),
            ("documents", totals["documents"]),
            ("chunks", totals["chunks_declared"]),
            ("uploads", totals["uploads"]),
        ):
            self.progress.start(name, total)
        state, error = "failed", None
        beat = asyncio.create_task(self._heartbeat())
        try:
            await self._migrate(ledger, source.users())
            state = "completed"
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"[:4000]
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            self.progress.stop()
            self.counts["sessions_not_migrated"] = totals.get("sessions", 0)
            elapsed = time.monotonic() - t0
            report = self.report(state, elapsed, inventory)
            await self._record_end(state, error, elapsed)
            self.last_report = report
        return report

    async def _migrate(self, ledger: RunLedger, users: list[LegacyUser]) -> None:
        conversations = ConversationStep(ledger)
        documents = DocumentStep(ledger, self.store, self.lexical, lambda: self.embedder)
        uploads = UploadStep(ledger)
        for part in chunks(users, self.batch):
            usable = await migrate_users(ledger, part)
            for u in part:
                uid = usable.get(u.legacy_id)
                if uid is None:
                    self._skip_user_data(u)
                    continue
                convs = (
                    await conversations.migrate(u, uid) if "conversations" in self.only else None
                )
                if "documents" in self.only:
                    await documents.migrate(u, uid, *(convs or (None, None)))
                if "uploads" in self.only:
                    await uploads.migrate(u, uid)

    async def _heartbeat(self) -> None:
        """Beat every HEARTBEAT_S from a task of its own, so a long step (a big store being
        re-embedded) never looks dead, and only a stopped process stops the beat."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.target.update_run(
                    self.run_id, {"heartbeat_at": _now(), "counts": dict(self.counts)}
                )
            except Exception as e:  # a missed beat is not worth failing the run for
                log.warning("heartbeat of run %s failed: %s", self.run_id, e)

    async def _record_end(self, state: str, error: str | None, elapsed: float) -> None:
        source = self.source
        try:
            await self.target.update_run(
                self.run_id,
                {
                    "state": state,
                    "error": error,
                    "finished_at": _now(),
                    "heartbeat_at": _now(),
                    "counts": dict(self.counts),
                    "problems": source.problems.as_list(limit=2000),
                },
            )
            await self.services.audit.record(
                "migration.run",
                target_type="migration_run",
                target_id=self.run_id,
                details={
                    "state": state,
                    "source": str(self.root),
                    "resumed": self.resuming,
                    "counts": dict(self.counts),
                    "problems": dict(source.problems.by_severity),
                    "renamed": len(source.renames()),
                    "error": error,
                    "seconds": round(elapsed, 1),
                },
            )
        except Exception as e2:  # the run's own outcome matters more than this bookkeeping
            log.error("could not record the end of run %s: %s", self.run_id, e2)

    def report(self, state: str, elapsed: float, inventory: dict | None = None) -> dict[str, Any]:
        c = self.counts
        rates = {
            k: round(c.get(f"{k}_written", 0) / elapsed, 1) if elapsed > 0 else None
            for k in ("users", "conversations", "messages", "documents", "chunks", "uploads")
        }
        source = getattr(self, "source", None)
        return {
            "run_id": self.run_id,
            "state": state,
            "source": str(self.root),
            "resumed": self.resuming,
            "options": {
                "batch_size": self.batch,
                "only": list(self.only),
                "timezone": getattr(source, "tz_name", self.timezone),
            },
            "source_counts": (inventory or {}).get("counts", {}),
            "counts": dict(sorted(c.items())),
            "seconds": round(elapsed, 2),
            "rates_per_s": rates,
            "peak_rss_mb": peak_rss_mb(),
            "renamed": source.renames() if source else [],
            "damaged_files": source.damaged_files() if source else [],
            "problem_counts": dict(source.problems.by_severity) if source else {},
            "problems": source.problems.as_list() if source else [],
        }

    def _skip_user_data(self, u: LegacyUser) -> None:
        """The user was not migrated: neither is anything of theirs (the reason is reported)."""
        n = sum(1 for _ in self.source.conversations(u)) if "conversations" in self.only else 0
        if n:
            self.counts["conversations_skipped"] += n
        self.progress.advance("conversations", n)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


__all__ = [
    "Migrator",
    "MigrationError",
    "KINDS",
    "DEFAULT_BATCH",
    "LIVE_AFTER_S",
    "NullProgress",
    "store_for",
    "Problems",
]
