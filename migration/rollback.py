"""`pharmgpt migrate rollback --run-id ID`: remove exactly what one run wrote.

Only items of that run in state pending or done are considered: their target
ids did not exist when the run claimed them, so those rows and chunks are the
run's own. Nothing the run found already there (`skipped`) is touched. A row
the run wrote that something newer now depends on (a message a user added in
a migrated conversation, a document uploaded since) is kept, with the reason
in the report, rather than removed with that newer data. Re-running a
rollback that was interrupted finishes it: items are marked rolled back only
after what they name is gone.

Memory stays flat in the number of users: items are streamed a page at a
time, only ids and index ranges are kept between passes, and the embedded
Chroma client is closed every few users (migration/stores.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from . import ids
from .state import PAGE, Target, chunks, expand, is_alive
from .stores import StoreRecycler, store_for


class RollbackError(RuntimeError):
    pass


async def rollback(
    services, run_id: str, *, store=None, lexical=None, force: bool = False
) -> dict[str, Any]:
    t0 = time.monotonic()
    target = Target(services)
    if store is None:
        store, default_lexical = store_for(services.settings)
        lexical = lexical or default_lexical
    run = await target.get_run(run_id)
    if run is None:
        raise RollbackError(f"no migration run {run_id}")
    if is_alive(run) and not force:
        raise RollbackError(
            f"run {run_id} is running (last heartbeat {run['heartbeat_at']}); stop it first "
            "or pass --force if it was killed"
        )
    r = _Rollback(target, run_id, store, lexical)
    await r.uploads()
    await r.documents()
    await r.conversations()
    await r.users()
    now = datetime.now(UTC).isoformat()
    await target.update_run(
        run_id, {"state": "rolled_back", "rolled_back_at": now, "heartbeat_at": now}
    )
    report = {
        "run_id": run_id,
        "state": "rolled_back",
        "removed": r.removed,
        "kept": r.kept,
        "seconds": round(time.monotonic() - t0, 2),
    }
    await services.audit.record(
        "migration.rollback",
        target_type="migration_run",
        target_id=run_id,
        details={"removed": r.removed, "kept": len(r.kept)},
    )
    return report


class _Rollback:
    def __init__(self, target: Target, run_id: str, store, lexical):
        self.target, self.run_id = target, run_id
        self.store, self.lexical = store, lexical
        self.recycler = StoreRecycler(store, lexical)
        self.removed: dict[str, int] = {}
        self.kept: list[dict] = []
        self.touched: set[str] = set()  # users whose chunks were removed: their BM25 index too
        self.kept_convs: dict[str, int] = Counter()  # user -> conversations kept (newer messages)

    async def pages(self, kind: str):
        """This run's pending and done items of one kind, a page at a time."""
        page: list[dict] = []
        async for it in self.target.run_items(
            self.run_id, kinds=(kind,), states=("pending", "done")
        ):
            page.append(it)
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page

    async def mark(self, item_ids: list[str], note: str | None = None) -> None:
        patch = {"state": "rolled_back"} if note is None else {"error": note}
        for part in chunks(item_ids, 200):
            await self.target.ex(
                self.target.db.table("migration_items")
                .update(patch, returning="minimal")
                .in_("id", part),
                what="migration items",
            )

    async def uploads(self) -> None:
        n = 0
        async for page in self.pages("upload"):
            n += await self.target.delete_ids(
                "uploads", [i["target_ids"]["upload_id"] for i in page]
            )
            await self.mark([i["id"] for i in page])
        self.removed["uploads"] = n

    async def documents(self) -> None:
        """Chunks first, then the rows (a row never outlives its chunks' removal)."""
        rows = chunk_docs = 0
        async for page in self.pages("document"):
            by_user: dict[str, list[str]] = {}
            for i in page:
                tid = i["target_ids"]
                by_user.setdefault(tid["user_id"], []).append(tid["document_id"])
            for uid, doc_ids in by_user.items():
                await asyncio.to_thread(self.store.delete_documents, uid, doc_ids)
                self.touched.add(uid)
                self.recycler.done(uid)
                chunk_docs += len(doc_ids)
            rows += await self.target.delete_ids(
                "documents", [d for v in by_user.values() for d in v]
            )
            await self.mark([i["id"] for i in page])
        async for page in self.pages("chunk_batch"):
            await self.mark([i["id"] for i in page])
        self.removed["documents"] = rows
        self.removed["chunk_documents"] = chunk_docs

    async def conversations(self) -> None:
        t = self.target
        ours: dict[str, tuple[str, str]] = {}  # conversation -> (its item id, its user)
        async for page in self.pages("conversation"):
            for i in page:
                tid = i["target_ids"]
                ours[tid["conversation_id"]] = (i["id"], tid.get("user_id"))
        written: dict[str, list[list[int]]] = {}  # conversation -> legacy index ranges we wrote
        async for page in self.pages("message_batch"):
            for b in page:
                tid = b["target_ids"]
                written.setdefault(tid["conversation_id"], []).extend(tid.get("indexes", []))
        counts = await t.existing(
            "conversations", list(set(ours) | set(written)), "id,message_count"
        )
        delete_convs: list[str] = []
        messages = 0

        async def delete_messages(cid: str) -> int:
            n = 0
            for part in chunks([ids.message_id(cid, i) for i in expand(written[cid])], 200):
                n += await t.delete_ids("messages", part)
            return n

        for cid, (_, uid) in ours.items():
            row = counts.get(cid)
            if row is None:
                continue
            mine = len(expand(written.get(cid, [])))
            if row["message_count"] > mine:  # someone wrote in it since: keep it, take our messages
                added = row["message_count"] - mine
                self.kept.append(
                    {
                        "kind": "conversation",
                        "id": cid,
                        "reason": f"{added} message(s) were added after the migration",
                    }
                )
                self.kept_convs[uid] += 1
                if cid in written:
                    messages += await delete_messages(cid)
            else:
                delete_convs.append(cid)
        for cid in written:
            if cid not in ours:  # messages this run added to a conversation it did not create
                messages += await delete_messages(cid)
        messages += sum(counts[c]["message_count"] for c in delete_convs)
        self.removed["messages"] = messages
        self.removed["conversations"] = await t.delete_ids("conversations", delete_convs)
        kept_ids = {k["id"] for k in self.kept}
        await self.mark([item for cid, (item, _) in ours.items() if cid not in kept_ids])
        await self.mark(
            [item for cid, (item, _) in ours.items() if cid in kept_ids],
            "kept at rollback: newer messages depend on it",
        )
        async for page in self.pages("message_batch"):
            await self.mark([i["id"] for i in page])

    async def users(self) -> None:
        """Removed unless something newer hangs off them (the reason says what)."""
        t = self.target
        items: dict[str, str] = {}  # user -> its item id
        async for page in self.pages("user"):
            for i in page:
                items[i["target_ids"]["user_id"]] = i["id"]
        uids = list(items)
        kept_convs = {k["id"] for k in self.kept if k["kind"] == "conversation"}
        newer: dict[str, Counter] = {}
        for table in ("conversations", "documents", "uploads"):
            for row in await t.select_in(table, "id,user_id", "user_id", uids):
                if table == "conversations" and row["id"] in kept_convs:
                    continue
                newer.setdefault(row["user_id"], Counter())[table] += 1
        busy = {
            uid: _why_kept(self.kept_convs.get(uid, 0), newer.get(uid, Counter()))
            for uid in set(newer) | {u for u, n in self.kept_convs.items() if n}
            if uid in items
        }
        gone = [u for u in uids if u not in busy]
        self.removed["users"] = await t.delete_ids("users", gone)
        for uid in gone:
            await asyncio.to_thread(self.store.drop_user, uid)
            if self.lexical is not None:
                await asyncio.to_thread(self.lexical.forget, uid)
            self.recycler.done(uid)
        for uid in self.touched - set(gone):
            if self.lexical is not None:
                await asyncio.to_thread(self.lexical.rebuild, uid)
            self.recycler.done(uid)
        for uid, why in busy.items():
            self.kept.append({"kind": "user", "id": uid, "reason": why})
        await self.mark([items[u] for u in uids if u not in busy])
        await self.mark([items[u] for u in busy], "kept at rollback: newer data")


def _why_kept(kept_conversations: int, newer: Counter) -> str:
    """'has 1 migrated conversation with messages added after the migration; 2 documents added
    after this run': exactly what holds the account."""
    parts = []
    if kept_conversations:
        parts.append(
            f"{kept_conversations} migrated conversation(s) with messages added after the migration"
        )
    for table in ("conversations", "documents", "uploads"):
        if newer.get(table):
            parts.append(
                f"{newer[table]} {table[:-1]}(s) created after this run (in the app, or by a "
                "later migration run)"
            )
    return "has " + "; ".join(parts)
