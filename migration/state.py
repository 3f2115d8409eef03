"""The migration's reads and writes through the service-role client: target
rows in bulk, and its own bookkeeping (`migration_runs`, `migration_items`).

Item protocol (what makes a killed run resumable and a rollback exact): an
item is written `pending` *before* its rows, and only for targets that did
not exist when it was claimed, so whatever exists under a pending item's
target ids afterwards was written by that run; it becomes `done` after the
rows. Targets that were already there are recorded `skipped` and are never
touched, by the run or by its rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from . import ids

ID_CHUNK = 200  # ids per `in.(...)` filter: keeps URLs well under server limits
PAGE = 1000
HEARTBEAT_S = 5.0  # a running run's background task updates heartbeat_at this often ...
STALE_AFTER_S = 6 * HEARTBEAT_S  # ... so a heartbeat older than this means its process is gone


def heartbeat_age(run: dict) -> float:
    """Seconds since the run's last heartbeat."""
    beat = datetime.fromisoformat(str(run["heartbeat_at"]).replace("Z", "+00:00"))
    return (datetime.now(UTC) - beat).total_seconds()


def is_stale(run: dict) -> bool:
    """A run still marked running whose process has stopped beating (killed, or its machine
    went down): it can be resumed (or rolled back) without --force."""
    return run["state"] == "running" and heartbeat_age(run) >= STALE_AFTER_S


def is_alive(run: dict) -> bool:
    return run["state"] == "running" and heartbeat_age(run) < STALE_AFTER_S


def chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Target:
    def __init__(self, services):
        self.services = services
        self.backend = services.backend
        self.db = services.backend.service

    async def ex(self, query, what: str, idempotent: bool = True):
        return await self.backend.execute(query, what=what, idempotent=idempotent)

    # ------------------------------------------------------------ target rows
    async def existing(
        self, table: str, id_list: Iterable[str], columns: str = "id", key: str = "id"
    ) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for part in chunks(sorted(set(id_list)), ID_CHUNK):
            r = await self.ex(self.db.table(table).select(columns).in_(key, part), what=table)
            for row in r.data:
                out[row[key]] = row
        return out

    async def select_in(
        self, table: str, columns: str, key: str, values: Iterable[str], order: str = "id"
    ) -> list[dict]:
        """Every row whose `key` is one of `values`, paged."""
        out: list[dict] = []
        for part in chunks(sorted(set(values)), ID_CHUNK):
            offset = 0
            while True:
                q = (
                    self.db.table(table)
                    .select(columns)
                    .in_(key, part)
                    .order(order)
                    .range(offset, offset + PAGE - 1)
                )
                r = await self.ex(q, what=table)
                out.extend(r.data)
                if len(r.data) < PAGE:
                    break
                offset += PAGE
        return out

    async def insert(self, table: str, rows: list[dict], batch: int) -> None:
        """Insert, ignoring rows whose primary key exists (a resumed run re-sends them)."""
        for part in chunks(rows, max(1, batch)):
            await self.ex(
                self.db.table(table).upsert(part, ignore_duplicates=True, returning="minimal"),
                what=table,
            )

    async def delete_ids(self, table: str, id_list: Iterable[str], key: str = "id") -> int:
        n = 0
        for part in chunks(sorted(set(id_list)), ID_CHUNK):
            r = await self.ex(self.db.table(table).delete().in_(key, part).select("id"), what=table)
            n += len(r.data)
        return n

    async def find_users(self, user_ids: list[str], usernames: list[str]) -> list[dict]:
        r = await self.ex(
            self.db.rpc("migration_find_users", {"p_ids": user_ids, "p_usernames": usernames}),
            what="account lookup",
        )
        return r.data or []

    # ------------------------------------------------------------ runs
    async def create_run(self, row: dict) -> dict:
        r = await self.ex(
            self.db.table("migration_runs").insert(row), what="migration run", idempotent=False
        )
        return r.data[0]

    async def get_run(self, run_id: str) -> dict | None:
        r = await self.ex(
            self.db.table("migration_runs").select("*").eq("id", run_id).limit(1),
            what="migration run",
        )
        return r.data[0] if r.data else None

    async def runs(self, limit: int = 100) -> list[dict]:
        r = await self.ex(
            self.db.table("migration_runs")
            .select(
                "id,source,source_fingerprint,state,options,counts,started_at,heartbeat_at,"
                "finished_at,"
                "rolled_back_at,error"
            )
            .order("started_at", desc=True)
            .limit(limit),
            what="migration runs",
        )
        return r.data

    async def update_run(self, run_id: str, patch: dict) -> None:
        await self.ex(
            self.db.table("migration_runs").update(patch, returning="minimal").eq("id", run_id),
            what="migration run",
        )

    # ------------------------------------------------------------ items
    @staticmethod
    def item(
        run_id: str,
        kind: str,
        key: str,
        target: dict,
        state: str,
        checksum: str | None = None,
        error: str | None = None,
    ) -> dict:
        return {
            "id": ids.item_id(run_id, kind, key),
            "run_id": run_id,
            "kind": kind,
            "legacy_key": key[:1000],
            "target_ids": target,
            "checksum": checksum,
            "state": state,
            "error": None if error is None else error[:2000],
        }

    async def put_items(self, rows: list[dict], batch: int = 500) -> None:
        """Create or update items (whole rows, keyed by their deterministic id)."""
        for part in chunks(rows, batch):
            await self.ex(
                self.db.table("migration_items").upsert(
                    part, on_conflict="id", returning="minimal"
                ),
                what="migration items",
            )

    async def items_by_ids(
        self, id_list: Iterable[str], states: tuple[str, ...] | None = None
    ) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for part in chunks(sorted(set(id_list)), ID_CHUNK):
            q = (
                self.db.table("migration_items")
                .select("id,run_id,kind,legacy_key,target_ids,state,error")
                .in_("id", part)
            )
            if states:
                q = q.in_("state", list(states))
            r = await self.ex(q, what="migration items")
            for row in r.data:
                out[row["id"]] = row
        return out

    async def run_items(
        self,
        run_id: str,
        kinds: tuple[str, ...] | None = None,
        states: tuple[str, ...] | None = None,
        page: int = PAGE,
    ):
        """All items of a run (paged by id, so updates while paging do not skip rows)."""
        last = None
        while True:
            q = (
                self.db.table("migration_items")
                .select("id,kind,legacy_key,target_ids,state,error,checksum")
                .eq("run_id", run_id)
            )
            if kinds:
                q = q.in_("kind", list(kinds))
            if states:
                q = q.in_("state", list(states))
            if last is not None:
                q = q.gt("id", last)
            r = await self.ex(q.order("id").limit(page), what="migration items")
            if not r.data:
                return
            for row in r.data:
                yield row
            if len(r.data) < page:
                return
            last = r.data[-1]["id"]

    async def count_items(self, run_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        async for row in self.run_items(run_id):
            k = out.setdefault(row["kind"], {})
            k[row["state"]] = k.get(row["state"], 0) + 1
        return out


def ranges(indexes: list[int]) -> list[list[int]]:
    """[0,1,2,5,6] -> [[0,3],[5,7]] (end exclusive): compact index lists for target_ids."""
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def expand(rs: list[list[int]]) -> list[int]:
    return [i for s, e in rs for i in range(s, e)]
