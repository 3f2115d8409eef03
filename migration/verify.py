"""`pharmgpt migrate verify`: the source against the target, per user and per conversation.

Counts and content checksums: each user's account fields, each conversation's
title, model, times, message count and the digest of its messages (role,
text, time, in order), each document's row and the digest of its chunks in
the new store (text in order, and the very vectors where they were carried
over), each upload. Legacy documents stay private (issue 15): a migrated
document in a pharmacy's shared library is a mismatch. What a run
deliberately did not migrate (conflicts, deletions since, bad data) is
listed as skipped, not as a mismatch. Messages
or documents added in the app after the migration are not mismatches either.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import ids
from .legacy import (
    LegacyConversation,
    LegacyMessage,
    LegacySource,
    LegacyUser,
    digest,
    iso,
    messages_digest,
)
from .state import Target, chunks


def _t(value: str | None) -> str | None:
    return None if value is None else iso(datetime.fromisoformat(value.replace("Z", "+00:00")))


class Verifier:
    def __init__(
        self,
        services,
        source: Path | str,
        *,
        run_id: str | None = None,
        timezone: str | None = None,
        store=None,
        progress=None,
        batch: int = 200,
    ):
        from .ledger import NullProgress
        from .stores import StoreRecycler, store_for

        self.services = services
        self.root = Path(source).resolve()
        self.run_id = run_id
        self.timezone = timezone
        self.target = Target(services)
        self.store = store or store_for(services.settings)[0]
        self.recycler = StoreRecycler(self.store)  # one collection per user: memory stays flat
        self.progress = progress or NullProgress()
        self.batch = batch
        self.mismatches: list[dict] = []
        self.skipped: list[dict] = []
        self.per_user: list[dict] = []
        self.renamed: list[dict] = []  # accounts migrated under a new name (case collisions)
        self.counts: dict[str, int] = {}

    def _bad(self, where: dict, what: str, expected: Any = None, found: Any = None) -> None:
        self.mismatches.append({**where, "what": what, "expected": expected, "found": found})

    def _add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    async def _known_skips(self) -> dict[tuple[str, str], str]:
        """(kind, legacy key) -> reason, for what the run(s) chose not to write."""
        runs = [
            r
            for r in await self.target.runs(1000)
            if r["state"] != "rolled_back"
            and Path(r["source"]) == self.root
            and (self.run_id is None or r["id"] == self.run_id)
        ]
        out: dict[tuple[str, str], str] = {}
        for r in runs:
            async for it in self.target.run_items(r["id"], states=("skipped", "failed")):
                if it["error"] != "exists":
                    out[(it["kind"], it["legacy_key"])] = it["error"] or it["state"]
        return out

    async def run(self) -> dict[str, Any]:
        tz = self.timezone
        if tz is None:
            runs = [
                r
                for r in await self.target.runs(1000)
                if Path(r["source"]) == self.root
                and (self.run_id is None or r["id"] == self.run_id)
            ]
            if self.run_id and not runs:
                raise ValueError(f"no migration run {self.run_id} for {self.root}")
            if runs:
                tz = (runs[0].get("options") or {}).get("timezone")
        source = LegacySource(self.root, tz)
        self.source = source
        self.known = await self._known_skips()
        users = source.users()
        self.progress.start("verify", len(users))
        for part in chunks(users, self.batch):
            found = await self.target.find_users(
                [u.user_id for u in part], [u.username for u in part]
            )
            rows = await self.target.existing(
                "users",
                [u.user_id for u in part],
                "id,username,legacy_user_id,password_hash,password_scheme,password_salt,created_at",
            )
            by_name = {r["username"].lower(): r for r in found}
            for u in part:
                await self._user(u, rows.get(u.user_id), by_name.get(u.username.lower()))
                self.recycler.done(u.user_id)
                self.progress.advance("verify")
        self.progress.stop()
        return {
            "ok": not self.mismatches,
            "source": str(self.root),
            "timezone": source.tz_name,
            "run_id": self.run_id,
            "counts": self.counts,
            "mismatches": self.mismatches[:1000],
            "mismatch_count": len(self.mismatches),
            "skipped": self.skipped[:1000],
            "renamed": self.renamed,
            "per_user": self.per_user,
        }

    async def _user(self, u: LegacyUser, row: dict | None, by_name: dict | None) -> None:
        where = {"user": u.username, "legacy_id": u.legacy_id}
        reason = self.known.get(("user", u.legacy_id))
        if row is None:
            if reason or (by_name and by_name["id"] != u.user_id):
                self.skipped.append(
                    {**where, "reason": reason or "username exists with other data"}
                )
                self._add("users_skipped")
            else:
                self._bad(where, "user missing in the target")
            return
        self._add("users")
        n_bad = len(self.mismatches)
        if u.renamed_from is not None:
            self.renamed.append(
                {
                    "legacy_username": u.raw_username,
                    "username": u.username,
                    "legacy_id": u.legacy_id,
                    "user_id": u.user_id,
                    "ok": row["username"] == u.username,
                }
            )
        if row["username"] != u.username:
            self._bad(where, "username", u.username, row["username"])
        if row["legacy_user_id"] != u.legacy_id:
            self._bad(where, "legacy_user_id", u.legacy_id, row["legacy_user_id"])
        if u.created_at is not None and _t(row["created_at"]) != iso(u.created_at):
            self._bad(where, "created_at", iso(u.created_at), row["created_at"])
        if row["password_scheme"] == "legacy_sha256":
            if (row["password_hash"], row["password_salt"]) != (u.password_hash, u.salt):
                self._bad(where, "legacy password hash or salt differs")
        else:
            self._add("users_password_upgraded")
        convs = list(self.source.conversations(u))
        conv_results = await self._conversations(u, convs, where)
        docs = await self._documents(u, {c.key for c in convs}, where)
        ups = await self._uploads(u, where)
        self.per_user.append(
            {
                **where,
                "user_id": u.user_id,
                "renamed_from": u.raw_username if u.renamed_from is not None else None,
                "ok": len(self.mismatches) == n_bad,
                "checksum": u.checksum(),
                "conversations": conv_results,
                "documents": docs,
                "uploads": ups,
            }
        )

    async def _conversations(
        self, u: LegacyUser, convs: list[LegacyConversation], where: dict
    ) -> list[dict]:
        uid = u.user_id
        rows = await self.target.existing(
            "conversations",
            [c.id for c in convs],
            "id,user_id,title,model,created_at,updated_at,message_count",
        )
        msgs = await self.target.select_in(
            "messages", "id,conversation_id,role,content,created_at", "user_id", [uid]
        )
        by_conv: dict[str, dict[str, dict]] = {}
        for m in msgs:
            by_conv.setdefault(m["conversation_id"], {})[m["id"]] = m
        out = []
        for c in convs:
            w = {**where, "conversation": c.key}
            key = f"{u.legacy_id}/{c.key}"
            row = rows.get(c.id)
            reason = self.known.get(("conversation", key))
            if row is None or row["user_id"] != uid:
                if reason:
                    self.skipped.append({**w, "reason": reason})
                    self._add("conversations_skipped")
                else:
                    self._bad(w, "conversation missing in the target")
                continue
            self._add("conversations")
            n_bad = len(self.mismatches)
            for field, want, have in (
                ("title", c.title, row["title"]),
                ("model", c.model, row["model"]),
                ("created_at", iso(c.created_at), _t(row["created_at"])),
            ):
                if want != have:
                    self._bad(w, field, want, have)
            got = by_conv.get(c.id, {})
            mine = [got.get(ids.message_id(c.id, m.index)) for m in c.messages]
            missing = sum(1 for x in mine if x is None)
            if missing:
                self._bad(w, "messages missing", len(c.messages), len(c.messages) - missing)
            else:
                found = [
                    LegacyMessage(
                        m.index,
                        x["role"],
                        x["content"],
                        datetime.fromisoformat(x["created_at"].replace("Z", "+00:00")),
                    )
                    for m, x in zip(c.messages, mine, strict=True)
                ]
                if messages_digest(found) != messages_digest(c.messages):
                    self._bad(w, "message content, role, time or order differs")
            self._add("messages", len(c.messages) - missing)
            if row["message_count"] != len(got):
                self._bad(w, "message_count", len(got), row["message_count"])
            if len(got) == len(c.messages) and _t(row["updated_at"]) != iso(c.updated_at):
                self._bad(w, "updated_at (last message time)", iso(c.updated_at), row["updated_at"])
            out.append(
                {
                    "id": c.id,
                    "messages": len(c.messages),
                    "checksum": c.checksum(),
                    "ok": len(self.mismatches) == n_bad,
                }
            )
        return out

    async def _documents(self, u: LegacyUser, live: set[str], where: dict) -> list[dict]:
        uid = u.user_id
        out = []
        for conv_key, folder in self.source.rag_folders(u):
            if conv_key not in live:
                continue
            conv_id = ids.conversation_id(u.legacy_id, conv_key)
            if self.known.get(("conversation", f"{u.legacy_id}/{conv_key}")):
                continue
            docs = list(self.source.documents(u, conv_key, folder))
            rows = await self.target.existing(
                "documents",
                [ids.document_id(uid, conv_id, d.doc_hash) for d in docs],
                "id,user_id,conversation_id,pharmacy_id,status,chunk_count,legacy_hash,filename",
            )
            for d in docs:
                doc_id = ids.document_id(uid, conv_id, d.doc_hash)
                w = {**where, "conversation": conv_key, "document": d.doc_hash}
                row = rows.get(doc_id)
                if row is None:
                    reason = self.known.get(("document", f"{u.legacy_id}/{conv_key}/{d.doc_hash}"))
                    if reason:
                        self.skipped.append({**w, "reason": reason})
                    else:
                        self._bad(w, "document missing in the target")
                    continue
                self._add("documents")
                n_bad = len(self.mismatches)
                for field, want, have in (
                    ("status", "ready", row["status"]),
                    ("chunk_count", len(d.chunks), row["chunk_count"]),
                    ("legacy_hash", d.doc_hash, row["legacy_hash"]),
                    ("filename", d.filename, row["filename"]),
                    ("conversation_id", conv_id, row["conversation_id"]),
                ):
                    if want != have:
                        self._bad(w, field, want, have)
                if row.get("pharmacy_id") is None and row["user_id"] == uid:
                    self._add("documents_private")
                else:
                    # shared with a pharmacy (or handed to someone else): legacy documents
                    # stay private
                    self._bad(
                        w,
                        "legacy document is not private",
                        {"user_id": uid, "pharmacy_id": None},
                        {"user_id": row["user_id"], "pharmacy_id": row.get("pharmacy_id")},
                    )
                stored = await asyncio.to_thread(self._stored_chunks, uid, doc_id)
                self._add("chunks", len(stored))
                if len(stored) != len(d.chunks):
                    self._bad(w, "chunks in the store", len(d.chunks), len(stored))
                else:
                    have = digest([[s["index"], s["text"]] for s in stored])
                    if have != d.chunk_digest():
                        self._bad(w, "chunk text or order differs")
                    for c, s in zip(d.chunks, stored, strict=True):
                        if s["dim"] != 384:
                            self._bad(w, "vector dimension", 384, s["dim"])
                            break
                        # a cosine collection re-normalises a vector whose norm is 1 ± float32 noise
                        if c.embedding is not None and not np.allclose(
                            c.embedding, s["vector"], rtol=0, atol=1e-6
                        ):
                            self._bad(w, "carried-over vector differs", c.legacy_id)
                            break
                out.append(
                    {
                        "id": doc_id,
                        "chunks": len(d.chunks),
                        "checksum": d.chunk_digest(),
                        "ok": len(self.mismatches) == n_bad,
                    }
                )
        return out

    def _stored_chunks(self, uid: str, doc_id: str) -> list[dict]:
        res = self.store.get(uid, document_id=doc_id, embeddings=True)
        out = []
        for i, cid in enumerate(res["ids"]):
            v = np.asarray(res["embeddings"][i], dtype=np.float32)
            meta = res["metadatas"][i]
            if meta.get("user_id") != uid:
                continue
            out.append(
                {
                    "id": cid,
                    "index": meta.get("chunk_index"),
                    "text": res["documents"][i],
                    "vector": v,
                    "dim": int(v.shape[0]),
                }
            )
        return sorted(out, key=lambda s: s["index"])

    async def _uploads(self, u: LegacyUser, where: dict) -> dict:
        ups = self.source.uploads(u)
        if not ups:
            return {"count": 0}
        rows = await self.target.existing(
            "uploads",
            [ids.upload_id(u.legacy_id, x.index) for x in ups],
            "id,filename,file_size,uploaded_at,outcome",
        )
        n = 0
        for x in ups:
            w = {**where, "upload": x.index}
            row = rows.get(ids.upload_id(u.legacy_id, x.index))
            if row is None:
                reason = self.known.get(("upload", f"{u.legacy_id}#{x.index}"))
                if reason:
                    self.skipped.append({**w, "reason": reason})
                else:
                    self._bad(w, "upload missing in the target")
                continue
            n += 1
            if (row["filename"], row["file_size"], row["outcome"]) != (
                x.filename,
                x.file_size,
                "migrated",
            ):
                self._bad(
                    w,
                    "upload fields",
                    [x.filename, x.file_size],
                    [row["filename"], row["file_size"]],
                )
            if x.uploaded_at is not None and _t(row["uploaded_at"]) != iso(x.uploaded_at):
                self._bad(w, "uploaded_at", iso(x.uploaded_at), row["uploaded_at"])
        self._add("uploads", n)
        return {
            "count": n,
            "checksum": digest([[x.filename, x.file_size, iso(x.uploaded_at)] for x in ups]),
        }


async def verify(services, source: Path | str, **kwargs) -> dict[str, Any]:
    return await Verifier(services, source, **kwargs).run()
