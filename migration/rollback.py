"""`pharmgpt migrate rollback --run-id ID`: remove exactly what one run wrote.

Only items of that run in state pending or done are considered: their target
ids did not exist when the run claimed them, so those rows and chunks are the
run's own. Nothing the run found already there (`skipped`) is touched. A row
the run wrote that something newer now depends on (a message a user added in
a migrated conversation, a document uploaded since) is kept, with the reason
in the report, rather than removed with that newer data. Re-running a
rollback that was interrupted finishes it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import ids
from .migrator import LIVE_AFTER_S, store_for
from .state import Target, chunks, expand

LIVE_AFTER = timedelta(seconds=LIVE_AFTER_S)


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
    beat = datetime.fromisoformat(run["heartbeat_at"].replace("Z", "+00:00"))
    if run["state"] == "running" and datetime.now(UTC) - beat < LIVE_AFTER and not force:
        raise RollbackError(
            f"run {run_id} is running (last heartbeat {run['heartbeat_at']}); stop it first "
            "or pass --force if it was killed"
        )
    items: dict[str, list[dict]] = {}
    async for it in target.run_items(run_id, states=("pending", "done")):
        items.setdefault(it["kind"], []).append(it)
    removed: dict[str, int] = {}
    kept: list[dict] = []

    async def mark(rows: list[dict], note: str | None = None) -> None:
        for part in chunks([r["id"] for r in rows], 200):
            patch = {"state": "rolled_back"} if note is None else {"error": note}
            await target.ex(
                target.db.table("migration_items")
                .update(patch, returning="minimal")
                .in_("id", part),
                what="migration items",
            )

    # uploads
    ups = items.get("upload", [])
    removed["uploads"] = await target.delete_ids(
        "uploads", [i["target_ids"]["upload_id"] for i in ups]
    )
    await mark(ups)

    # documents, their chunks, the users' BM25 indexes
    docs = items.get("document", [])
    by_user: dict[str, list[str]] = {}
    for i in docs:
        by_user.setdefault(i["target_ids"]["user_id"], []).append(i["target_ids"]["document_id"])
    touched_users = set(by_user)
    for uid, doc_ids in by_user.items():
        await asyncio.to_thread(store.delete_documents, uid, doc_ids)
    removed["documents"] = await target.delete_ids(
        "documents", [d for v in by_user.values() for d in v]
    )
    removed["chunk_documents"] = sum(len(v) for v in by_user.values())
    await mark(docs + items.get("chunk_batch", []))

    # messages and conversations
    conv_items = items.get("conversation", [])
    ours = {i["target_ids"]["conversation_id"] for i in conv_items}
    batch_ids: dict[str, list[str]] = {}
    for b in items.get("message_batch", []):
        tid = b["target_ids"]
        batch_ids.setdefault(tid["conversation_id"], []).extend(
            ids.message_id(tid["conversation_id"], i) for i in expand(tid.get("indexes", []))
        )
    counts = await target.existing("conversations", list(ours | set(batch_ids)), "id,message_count")
    delete_convs, delete_msgs = [], []
    for cid in ours:
        row = counts.get(cid)
        if row is None:
            continue
        mine = len(batch_ids.get(cid, []))
        if (
            row["message_count"] > mine
        ):  # someone wrote in it since: keep it, take only our messages
            kept.append(
                {
                    "kind": "conversation",
                    "id": cid,
                    "reason": f"{row['message_count'] - mine} message(s) were added after the "
                    "migration",
                }
            )
            delete_msgs += batch_ids.get(cid, [])
        else:
            delete_convs.append(cid)
    for cid, mids in batch_ids.items():
        if cid not in ours:  # messages this run added to a conversation it did not create
            delete_msgs += mids
    removed["messages"] = 0
    for cid_part in chunks(sorted(set(delete_msgs)), 200):
        removed["messages"] += await target.delete_ids("messages", cid_part)
    if delete_convs:
        removed["messages"] += sum(counts[c]["message_count"] for c in delete_convs)
    removed["conversations"] = await target.delete_ids("conversations", delete_convs)
    kept_ids = {k["id"] for k in kept}
    await mark([i for i in conv_items if i["target_ids"]["conversation_id"] not in kept_ids])
    await mark(
        [i for i in conv_items if i["target_ids"]["conversation_id"] in kept_ids],
        "kept at rollback: newer messages depend on it",
    )
    await mark(items.get("message_batch", []))

    # users: removed unless something newer hangs off them
    user_items = items.get("user", [])
    uids = [i["target_ids"]["user_id"] for i in user_items]
    busy: dict[str, str] = {}
    for table in ("conversations", "documents", "uploads"):
        for row in await target.select_in(table, "id,user_id", "user_id", uids):
            busy.setdefault(row["user_id"], f"has {table} created after the migration")
    gone = [u for u in uids if u not in busy]
    removed["users"] = await target.delete_ids("users", gone)
    for uid in gone:
        await asyncio.to_thread(store.drop_user, uid)
        if lexical is not None:
            await asyncio.to_thread(lexical.forget, uid)
    for uid in touched_users - set(gone):
        if lexical is not None:
            await asyncio.to_thread(lexical.rebuild, uid)
    for uid, why in busy.items():
        kept.append({"kind": "user", "id": uid, "reason": why})
    await mark([i for i in user_items if i["target_ids"]["user_id"] not in busy])
    await mark(
        [i for i in user_items if i["target_ids"]["user_id"] in busy],
        "kept at rollback: newer data",
    )

    now = datetime.now(UTC).isoformat()
    await target.update_run(
        run_id, {"state": "rolled_back", "rolled_back_at": now, "heartbeat_at": now}
    )
    report = {
        "run_id": run_id,
        "state": "rolled_back",
        "removed": removed,
        "kept": kept,
        "seconds": round(time.monotonic() - t0, 2),
    }
    await services.audit.record(
        "migration.rollback",
        target_type="migration_run",
        target_id=run_id,
        details={"removed": removed, "kept": len(kept)},
    )
    return report
