"""What every step of one run shares: the claim -> write -> done ledger.

Each step (users, conversations, documents, uploads: one module each under
migration/steps/) follows the same protocol over `migration_items`:

1. look up this run's own items for the keys (`mine`: only a resumed run has
   any) and earlier runs' done items (`prior_done`: a row they wrote that is
   gone now was deleted since, and is not brought back);
2. claim what is new (`item(..., "pending")`), record what is already there
   as `skipped`;
3. write the rows (`insert_rows`: in bulk, row by row when a batch is
   refused, so one bad row fails alone);
4. mark the claims `done`.

A run killed anywhere in between resumes from its items to the same end state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pharmgpt.services.errors import BackendUnavailable, PharmGPTError

from . import ids
from .legacy import LegacySource
from .state import Target

DEFAULT_BATCH = 500  # rows per request, and legacy messages/chunks per recorded item


class NullProgress:
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, name: str, n: int = 1) -> None: ...
    def stop(self) -> None: ...


@dataclass
class RunLedger:
    target: Target
    source: LegacySource
    run_id: str
    batch: int
    only: tuple[str, ...]
    progress: object = field(default_factory=NullProgress)
    counts: Counter = field(default_factory=Counter)
    resuming: bool = False
    prior_runs: list[dict] = field(default_factory=list)

    @property
    def problems(self):
        return self.source.problems

    def item(
        self,
        kind: str,
        key: str,
        target: dict,
        state: str,
        checksum: str | None = None,
        error: str | None = None,
    ) -> dict:
        return Target.item(self.run_id, kind, key, target, state, checksum, error)

    async def put(self, items: list[dict]) -> None:
        await self.target.put_items(items)

    async def mine(self, kind: str, keys: list[str]) -> dict[str, dict]:
        """This run's items for these keys (only a resumed run has any)."""
        if not self.resuming or not keys:
            return {}
        idmap = {ids.item_id(self.run_id, kind, k): k for k in keys}
        found = await self.target.items_by_ids(idmap)
        return {idmap[i]: row for i, row in found.items()}

    async def prior_done(self, kind: str, keys: list[str]) -> dict[str, dict]:
        """Items of earlier runs (not rolled back) that wrote these keys: the row is gone now only
        if someone deleted it after the migration, and it is not brought back."""
        if not self.prior_runs or not keys:
            return {}
        idmap = {ids.item_id(r["id"], kind, k): k for r in self.prior_runs for k in keys}
        found = await self.target.items_by_ids(idmap, states=("done",))
        return {idmap[i]: row for i, row in found.items()}

    def fallback_time(self) -> datetime:
        """Deterministic stand-in for a missing legacy time: the users.json file time."""
        p = self.source.root / "users.json"
        try:
            return datetime.fromtimestamp(p.stat().st_mtime, UTC)
        except OSError:
            return datetime(2000, 1, 1, tzinfo=UTC)

    async def insert_rows(self, table: str, rows: list[dict], items: list[dict]) -> set[str]:
        """Bulk insert; when a batch is refused, row by row, so one bad row fails alone
        (its item becomes failed and is reported). Returns the failed items' keys."""
        if not rows:
            return set()
        try:
            await self.target.insert(table, rows, self.batch)
            return set()
        except BackendUnavailable:
            raise
        except PharmGPTError:
            pass
        failed: set[str] = set()
        for row, item in zip(rows, items, strict=True):
            try:
                await self.target.insert(table, [row], 1)
            except BackendUnavailable:
                raise
            except PharmGPTError as e:
                why = f"refused by the database: {e.message} {e.details or ''}"[:1000]
                self.problems.add(table, f"{item['legacy_key']}: {why}", key=item["legacy_key"])
                failed.add(item["legacy_key"])
                await self.target.put_items([dict(item, state="failed", error=why)])
                self.counts[f"{table}_failed"] += 1
        return failed

    async def mark_done(self, items: list[dict], failed: set[str] = frozenset()) -> list[dict]:
        """Step 4: the claims whose rows were written become done; returns them."""
        done = [dict(i, state="done") for i in items if i["legacy_key"] not in failed]
        await self.target.put_items(done)
        return done
