"""`detect` (inventory and validation of a legacy tree, no database) and
`plan` (what a run would create, find already there, or refuse)."""

from __future__ import annotations

import time
from typing import Any

from . import ids
from .legacy import LegacySource
from .state import Target, chunks

# Throughput of a run on the reference machine (2 vCPU), from bench/migration.py
# at 1/5 scale (38 s for 200 users, 2,000 conversations, 40,000 messages, 10,000 chunks
# in 100 stores); used only for the estimate `detect` prints.
RATES = {
    "users": 33.0,
    "conversations": 330.0,
    "messages": 10_000.0,
    "chunks": 770.0,
    "stores": 11.0,
}


def estimate_seconds(counts: dict[str, int]) -> float:
    chunks_n = counts.get("chunks") or counts.get("chunks_declared", 0)
    return round(
        counts.get("users", 0) / RATES["users"]
        + counts.get("conversations", 0) / RATES["conversations"]
        + counts.get("messages", 0) / RATES["messages"]
        + chunks_n / RATES["chunks"]
        + counts.get("chroma_stores", 0) / RATES["stores"],
        1,
    )


def detect(source: LegacySource, *, deep: bool = False, progress=None) -> dict[str, Any]:
    """Counts per kind, every problem with file and reason, and a time estimate.

    Chunk counts come from documents_metadata.json; `deep` opens every Chroma
    store (slower) and counts what is really there, reporting unreadable ones.
    """
    t0 = time.monotonic()
    users = source.users()
    counts = {
        "users": len(users),
        "conversations": 0,
        "messages": 0,
        "messages_unusable": 0,
        "documents": 0,
        "chunks_declared": 0,
        "chroma_stores": 0,
        "uploads": 0,
        "sessions": source.sessions(),
    }
    if deep:
        counts["chunks"] = 0
    if progress:
        progress.start("scan", len(users))
    for u in users:
        live = set()
        for c in source.conversations(u):
            live.add(c.key)
            counts["conversations"] += 1
            counts["messages"] += len(c.messages)
            counts["messages_unusable"] += c.total_messages - len(c.messages)
        for key, folder in source.rag_folders(u):
            if key not in live:
                continue
            if (folder / "chroma_db").is_dir():
                counts["chroma_stores"] += 1
            if deep:
                for doc in source.documents(u, key, folder):
                    counts["documents"] += 1
                    counts["chunks"] += len(doc.chunks)
                    counts["chunks_declared"] += doc.declared_chunks or 0
            else:
                meta = source.document_metadata(folder)
                counts["documents"] += len(meta)
                counts["chunks_declared"] += sum(
                    e.get("chunk_count") or 0
                    for e in meta.values()
                    if isinstance(e.get("chunk_count"), int)
                )
        counts["uploads"] += len(source.uploads(u))
        if progress:
            progress.advance("scan")
    counts.update(source.scan())
    if counts["sessions"]:
        source.problems.add(
            "sessions.json",
            f"{counts['sessions']} session(s) are not migrated: users sign "
            "in again (the latest one sets the account's last sign-in)",
            "info",
        )
    return {
        "source": str(source.root),
        "timezone": source.tz_name,
        "counts": counts,
        "renamed": source.renames(),
        "damaged_files": source.damaged_files(),
        "problems": source.problems.as_list(),
        "problem_counts": dict(source.problems.by_severity),
        "estimate_s": estimate_seconds(counts),
        "scan_s": round(time.monotonic() - t0, 2),
    }


async def plan(
    source: LegacySource, services, *, batch: int = 200, progress=None
) -> dict[str, Any]:
    """What a run would do, per kind: create, already there (skip), conflict (reported, skip)."""
    target = Target(services)
    out = {
        k: {"create": 0, "exists": 0, "conflict": 0}
        for k in ("users", "conversations", "messages", "documents", "uploads")
    }
    conflicts: list[dict] = []
    users = source.users()
    if progress:
        progress.start("plan", len(users))
    for part in chunks(users, batch):
        found = await target.find_users([u.user_id for u in part], [u.username for u in part])
        by_id = {r["id"]: r for r in found}
        by_name = {r["username"].lower(): r for r in found}
        for u in part:
            row = by_id.get(u.user_id)
            other = by_name.get(u.username.lower())
            if row is not None and row.get("legacy_user_id") == u.legacy_id:
                out["users"]["exists"] += 1
            elif row is not None or (other is not None and other["id"] != u.user_id):
                out["users"]["conflict"] += 1
                conflicts.append(
                    {
                        "kind": "user",
                        "key": u.legacy_id,
                        "username": u.username,
                        "reason": "username already exists with other data",
                    }
                )
                continue
            else:
                out["users"]["create"] += 1
            convs = list(source.conversations(u))
            existing = await target.existing("conversations", [c.id for c in convs], "id,user_id")
            for c in convs:
                ex = existing.get(c.id)
                if ex is None:
                    out["conversations"]["create"] += 1
                    out["messages"]["create"] += len(c.messages)
                elif ex["user_id"] == u.user_id:
                    out["conversations"]["exists"] += 1
                    out["messages"]["exists"] += len(c.messages)
                else:
                    out["conversations"]["conflict"] += 1
                    conflicts.append(
                        {
                            "kind": "conversation",
                            "key": f"{u.legacy_id}/{c.key}",
                            "reason": "conversation id used by another account",
                        }
                    )
            live = {c.key for c in convs}
            doc_ids = []
            for key, folder in source.rag_folders(u):
                if key in live:
                    conv = ids.conversation_id(u.legacy_id, key)
                    doc_ids += [
                        ids.document_id(u.user_id, conv, h)
                        for h in source.document_metadata(folder)
                    ]
            have = await target.existing("documents", doc_ids)
            out["documents"]["exists"] += len(have)
            out["documents"]["create"] += len(doc_ids) - len(have)
            ups = [ids.upload_id(u.legacy_id, x.index) for x in source.uploads(u)]
            have = await target.existing("uploads", ups)
            out["uploads"]["exists"] += len(have)
            out["uploads"]["create"] += len(ups) - len(have)
            if progress:
                progress.advance("plan")
    return {
        "source": str(source.root),
        "timezone": source.tz_name,
        "plan": out,
        "renamed": source.renames(),
        "conflicts": conflicts[:1000],
        "problems": source.problems.as_list(),
        "problem_counts": dict(source.problems.by_severity),
    }
