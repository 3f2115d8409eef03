"""`pharmgpt migrate run`: legacy tree -> Supabase rows + the Chroma store.

Order per batch of users: users -> conversations + messages -> documents +
chunks (+ the user's BM25 index) -> upload history. Every write goes through
the service-role client in bulk, with deterministic ids, as an insert that
ignores rows already there; every item is recorded in `migration_items`
before (pending) and after (done) its rows (see migration/state.py), so a run
killed at any point resumes to the same end state, and rollback knows
exactly what the run wrote.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import BackendUnavailable, PharmGPTError

from . import ids
from .legacy import (
    LegacyConversation,
    LegacyDocument,
    LegacySource,
    LegacyUser,
    Problems,
    digest,
    iso,
)
from .planner import detect
from .state import Target, chunks, expand, ranges

log = logging.getLogger(__name__)

KINDS = ("users", "conversations", "documents", "uploads")
DEFAULT_BATCH = 500
CHUNK_FLUSH = 4000           # chunks held in memory before they are written
STORE_RECYCLE = 20          # users whose chunks were written before the Chroma client is reopened
HEARTBEAT_S = 5.0            # a running run updates heartbeat_at at least this often ...
LIVE_AFTER_S = 120.0         # ... and counts as alive while its heartbeat is younger than this


class MigrationError(RuntimeError):
    pass


class NullProgress:
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, name: str, n: int = 1) -> None: ...
    def stop(self) -> None: ...


def store_for(settings):
    """The same store and lexical index the app uses (rag.system.RagSystem)."""
    from rag.lexical import LexicalIndex
    from rag.store import ChunkStore
    store = ChunkStore(
        path=settings.data_dir / "chroma", host=settings.chroma_host, port=settings.chroma_port
    )
    return store, LexicalIndex(settings.data_dir / "lexical", store)


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
        self._touched = 0

    # ------------------------------------------------------------ helpers
    @property
    def embedder(self):
        if self._embedder is None:
            from rag.embeddings import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    def _item(
        self,
        kind: str,
        key: str,
        target: dict,
        state: str,
        checksum: str | None = None,
        error: str | None = None,
    ) -> dict:
        return Target.item(self.run_id, kind, key, target, state, checksum, error)

    def _message_batch_item(self, key: str, conv, user_id: str, msgs: list) -> dict:
        """The pending item for one block of a conversation's messages (first run and resume alike)."""
        return self._item(
            "message_batch",
            key,
            {
                "conversation_id": conv.id,
                "user_id": user_id,
                "block_size": self.batch,
                "indexes": ranges([m.index for m in msgs]),
            },
            "pending",
            digest([m.index for m in msgs] + [m.content for m in msgs]),
        )

    async def _mine(self, kind: str, keys: list[str]) -> dict[str, dict]:
        """This run's items for these keys (only a resumed run has any)."""
        if not self.resuming or not keys:
            return {}
        idmap = {ids.item_id(self.run_id, kind, k): k for k in keys}
        found = await self.target.items_by_ids(idmap)
        return {idmap[i]: row for i, row in found.items()}

    async def _prior_done(self, kind: str, keys: list[str]) -> dict[str, dict]:
        """Items of earlier runs (not rolled back) that wrote these keys: the row is gone now only
        if someone deleted it after the migration, and it is not brought back."""
        if not self.prior_runs or not keys:
            return {}
        idmap = {ids.item_id(r["id"], kind, k): k for r in self.prior_runs for k in keys}
        found = await self.target.items_by_ids(idmap, states=("done",))
        return {idmap[i]: row for i, row in found.items()}

    def _fallback_time(self) -> datetime:
        """Deterministic stand-in for a missing legacy time: the users.json file time."""
        p = self.root / "users.json"
        try:
            return datetime.fromtimestamp(p.stat().st_mtime, UTC)
        except OSError:
            return datetime(2000, 1, 1, tzinfo=UTC)

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
                if other["state"] == "running" and _alive(other):
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
        self._last_beat = time.monotonic()
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
        try:
            users = source.users()
            for part in chunks(users, self.batch):
                usable = await self._users(part)
                for u in part:
                    uid = usable.get(u.legacy_id)
                    if uid is None:
                        self._skip_user_data(u)
                        continue
                    convs = (
                        await self._conversations(u, uid) if "conversations" in self.only else None
                    )
                    if "documents" in self.only:
                        await self._documents(u, uid, *(convs or (None, None)))

                    if "uploads" in self.only:
                        await self._uploads(u, uid)
                    await self._beat()
                await self._beat(force=True)
            state = "completed"
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"[:4000]
            raise
        finally:
            self.progress.stop()
            self.counts["sessions_not_migrated"] = totals.get("sessions", 0)
            elapsed = time.monotonic() - t0
            report = self.report(state, elapsed, inventory)
            try:
                await target.update_run(
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
                        "error": error,
                        "seconds": round(elapsed, 1),
                    },
                )
            except Exception as e2:  # the run's own outcome matters more than this bookkeeping
                log.error("could not record the end of run %s: %s", self.run_id, e2)
            self.last_report = report
        return report

    async def _beat(self, force: bool = False) -> None:
        """Tell rollback and other runs that this run is alive (at most every few seconds)."""
        if force or time.monotonic() - self._last_beat > HEARTBEAT_S:
            await self.target.update_run(
                self.run_id, {"heartbeat_at": _now(), "counts": dict(self.counts)}
            )
            self._last_beat = time.monotonic()

    def report(self, state: str, elapsed: float, inventory: dict | None = None) -> dict[str, Any]:
        c = self.counts
        rates = {
            k: round(c.get(f"{k}_written", 0) / elapsed, 1) if elapsed > 0 else None
            for k in ("users", "conversations", "messages", "documents", "chunks", "uploads")
        }
        return {
            "run_id": self.run_id,
            "state": state,
            "source": str(self.root),
            "resumed": self.resuming,
            "options": {
                "batch_size": self.batch,
                "only": list(self.only),
                "timezone": getattr(getattr(self, "source", None), "tz_name", self.timezone),
            },
            "source_counts": (inventory or {}).get("counts", {}),
            "counts": dict(sorted(c.items())),
            "seconds": round(elapsed, 2),
            "rates_per_s": rates,
            "peak_rss_mb": peak_rss_mb(),
            "problem_counts": dict(self.source.problems.by_severity)
            if hasattr(self, "source")
            else {},
            "problems": self.source.problems.as_list() if hasattr(self, "source") else [],
        }

    def _skip_user_data(self, u: LegacyUser) -> None:
        """The user was not migrated: neither is anything of theirs (the reason is reported)."""
        n = sum(1 for _ in self.source.conversations(u)) if "conversations" in self.only else 0
        if n:
            self.counts["conversations_skipped"] += n
        self.progress.advance("conversations", n)

    # ------------------------------------------------------------ users
    async def _users(self, part: list[LegacyUser]) -> dict[str, str]:
        """Migrate a batch of users; returns legacy id -> users.id of those whose data follows."""
        t = self.target
        p = self.source.problems
        keys = [u.legacy_id for u in part]
        mine = await self._mine("user", keys)
        found = await t.find_users([u.user_id for u in part], [u.username for u in part])
        by_id = {r["id"]: r for r in found}
        by_name = {r["username"].lower(): r for r in found}
        prior = await self._prior_done("user", keys)
        usable: dict[str, str] = {}
        claims, skips, rows = [], [], []
        fallback = self._fallback_time()
        for u in part:
            key, uid = u.legacy_id, u.user_id
            target = {"user_id": uid}
            m = mine.get(key)
            if m and m["state"] == "done":
                usable[key] = uid
                self.counts["users_written"] += 1
                continue
            row, other = by_id.get(uid), by_name.get(u.username.lower())
            if m and m["state"] == "pending":
                pass  # ours: claimed by this run before it stopped
            elif row is not None and row.get("legacy_user_id") == key:
                usable[key] = uid
                self.counts["users_existing"] += 1
                skips.append(self._item("user", key, target, "skipped", u.checksum(), "exists"))
                continue
            elif row is not None or (other is not None and other["id"] != uid):
                who = other or row
                why = (
                    f"username {u.username!r} already exists with other data "
                    f"(account {who['id']}, legacy id {who.get('legacy_user_id') or 'none'}); "
                    "not overwritten: the user and their data are not migrated"
                )
                p.add("users.json", why, key=key)
                self.counts["users_conflict"] += 1
                skips.append(self._item("user", key, target, "skipped", u.checksum(), why))
                continue
            elif key in prior:
                why = f"migrated by run {prior[key]['run_id']} and deleted since; not recreated"
                p.add("users.json", f"user {u.username!r}: {why}", "warning", key=key)
                self.counts["users_deleted_since"] += 1
                skips.append(self._item("user", key, target, "skipped", u.checksum(), why))
                continue
            elif "users" not in self.only:
                p.add(
                    "users.json",
                    f"user {u.username!r} is not in the database yet; run with --only users "
                    "first: their data is not migrated",
                    key=key,
                )
                self.counts["users_missing"] += 1
                continue
            claims.append(self._item("user", key, target, "pending", u.checksum()))
            rows.append(
                {
                    "id": uid,
                    "username": u.username,
                    "password_hash": u.password_hash,
                    "password_scheme": "legacy_sha256",
                    "password_salt": u.salt,
                    "legacy_user_id": key,
                    "created_at": iso(u.created_at or fallback),
                    "last_login": iso(u.last_seen),
                }
            )
            usable[key] = uid
        await t.put_items(claims + skips)
        failed = await self._insert_rows("users", rows, claims)
        for key in failed:
            usable.pop(key, None)
        done = [dict(c, state="done") for c in claims if c["legacy_key"] not in failed]
        await t.put_items(done)
        self.counts["users_written"] += len(done)
        self.progress.advance("users", len(part))
        return usable

    async def _insert_rows(self, table: str, rows: list[dict], items: list[dict]) -> set[str]:
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
                self.source.problems.add(
                    table, f"{item['legacy_key']}: {why}", key=item["legacy_key"]
                )
                failed.add(item["legacy_key"])
                await self.target.put_items([dict(item, state="failed", error=why)])
                self.counts[f"{table}_failed"] += 1
        return failed

    # ------------------------------------------------------------ conversations
    async def _conversations(self, u: LegacyUser, uid: str) -> tuple[dict[str, str], set[str]]:
        """(legacy key -> id of the user's conversations now in the target, every legacy key)."""
        t, p = self.target, self.source.problems
        L = u.legacy_id
        rel = self.source.rel(self.source.conversations_file(u))
        convs = list(self.source.conversations(u))
        present: dict[str, str] = {}
        live = set(self.source.last_keys)
        if not convs:
            return present, live
        keys = [f"{L}/{c.key}" for c in convs]
        mine = await self._mine("conversation", keys)
        existing = await t.existing("conversations", [c.id for c in convs], "id,user_id")
        prior = await self._prior_done("conversation", keys)
        new: list[LegacyConversation] = []
        topup: list[LegacyConversation] = []
        skips: list[dict] = []
        for c, key in zip(convs, keys, strict=True):
            m = mine.get(key)
            target = {"conversation_id": c.id, "user_id": uid}
            if m and m["state"] == "done":
                present[c.key] = c.id
                self.counts["conversations_written"] += 1
                self.counts["messages_written"] += len(c.messages)
                self.progress.advance("conversations")
                self.progress.advance("messages", len(c.messages))
                continue
            if m and m["state"] == "pending":
                new.append(c)
                continue
            ex = existing.get(c.id)
            if ex is not None and ex["user_id"] != uid:
                why = f"conversation id {c.id} already belongs to another account; not migrated"
                p.add(rel, f"conversation {c.key}: {why}", key=c.key)
                skips.append(self._item("conversation", key, target, "skipped", c.checksum(), why))
                self.counts["conversations_conflict"] += 1
                self.progress.advance("conversations")
                continue
            if ex is not None:
                present[c.key] = c.id
                skips.append(
                    self._item("conversation", key, target, "skipped", c.checksum(), "exists")
                )
                topup.append(c)
                continue
            if key in prior:
                why = "migrated by an earlier run and deleted since; not recreated"
                p.add(rel, f"conversation {c.key}: {why}", "warning", key=c.key)
                skips.append(self._item("conversation", key, target, "skipped", c.checksum(), why))
                self.counts["conversations_deleted_since"] += 1
                self.progress.advance("conversations")
                continue
            new.append(c)
        await t.put_items(skips)
        for part in _groups(new, self.batch, max(4 * self.batch, 2000)):
            present.update(await self._write_conversations(u, uid, part))
        if topup:
            await self._topup_messages(u, uid, topup)
        return present, live

    def _message_blocks(self, c: LegacyConversation) -> dict[int, list]:
        blocks: dict[int, list] = {}
        for m in c.messages:
            blocks.setdefault(m.index // self.batch, []).append(m)
        return blocks

    async def _write_conversations(
        self, u: LegacyUser, uid: str, convs: list[LegacyConversation]
    ) -> dict[str, str]:
        t = self.target
        L = u.legacy_id
        conv_items, batch_items, rows, msg_rows = [], [], [], []
        done_blocks = await self._mine(
            "message_batch", [f"{L}/{c.key}#{b}" for c in convs for b in self._message_blocks(c)]
        )
        for c in convs:
            key = f"{L}/{c.key}"
            conv_items.append(
                self._item(
                    "conversation",
                    key,
                    {"conversation_id": c.id, "user_id": uid},
                    "pending",
                    c.checksum(),
                )
            )
            rows.append(
                {
                    "id": c.id,
                    "user_id": uid,
                    "title": c.title,
                    "model": c.model,
                    "created_at": iso(c.created_at),
                    "updated_at": iso(c.created_at),
                }
            )
            for b, msgs in self._message_blocks(c).items():
                bkey = f"{key}#{b}"
                item = self._message_batch_item(bkey, c, uid, msgs)
                if done_blocks.get(bkey, {}).get("state") == "done":
                    continue
                batch_items.append(item)
                msg_rows += [
                    {
                        "id": ids.message_id(c.id, m.index),
                        "conversation_id": c.id,
                        "user_id": uid,
                        "role": m.role,
                        "content": m.content,
                        "created_at": iso(m.created_at),
                    }
                    for m in msgs
                ]
        await t.put_items(conv_items + batch_items)  # claimed before anything is written
        failed = await self._insert_rows("conversations", rows, conv_items)
        ok = [c for c in convs if f"{L}/{c.key}" not in failed]
        ok_ids = {c.id for c in ok}
        msg_rows = [r for r in msg_rows if r["conversation_id"] in ok_ids]
        try:
            await t.insert("messages", msg_rows, self.batch)
        except BackendUnavailable:
            raise
        except PharmGPTError:  # refused by the database: find the conversation(s) it refuses
            ok = await self._messages_one_by_one(u, uid, ok, msg_rows)
            ok_ids = {c.id for c in ok}
        await self._fix_times(ok)
        done = [
            dict(i, state="done")
            for i in conv_items + batch_items
            if i["target_ids"]["conversation_id"] in ok_ids
        ]
        await t.put_items(done)
        for c in ok:
            self.counts["conversations_written"] += 1
            self.counts["messages_written"] += len(c.messages)
        self.progress.advance("conversations", len(convs))
        self.progress.advance("messages", sum(len(c.messages) for c in convs))
        return {c.key: c.id for c in ok}

    async def _messages_one_by_one(self, u, uid, convs, msg_rows) -> list[LegacyConversation]:
        """A bulk insert was refused: find the conversations whose messages the database rejects,
        and take those conversations out whole (nothing is left half-written)."""
        by_conv: dict[str, list] = {}
        for r in msg_rows:
            by_conv.setdefault(r["conversation_id"], []).append(r)
        ok = []
        for c in convs:
            try:
                await self.target.insert("messages", by_conv.get(c.id, []), self.batch)
                ok.append(c)
            except PharmGPTError as e:
                why = f"messages refused by the database ({e.message}); conversation not migrated"
                self.source.problems.add(
                    self.source.rel(self.source.conversations_file(u)),
                    f"conversation {c.key}: {why}",
                    key=c.key,
                )
                await self.target.delete_ids("conversations", [c.id])
                self.counts["conversations_failed"] += 1
                items = [
                    self._item(
                        "conversation",
                        f"{u.legacy_id}/{c.key}",
                        {"conversation_id": c.id, "user_id": uid},
                        "failed",
                        c.checksum(),
                        why,
                    )
                ]
                await self.target.put_items(items)
        return ok

    async def _fix_times(self, convs: list[LegacyConversation]) -> None:
        """updated_at = the last message's time. The message trigger moves it forward as rows
        arrive; set it explicitly where that did not land on the legacy value."""
        if not convs:
            return
        want = {c.id: c.updated_at for c in convs}
        rows = await self.target.existing("conversations", list(want), "id,updated_at")
        for cid, row in rows.items():
            have = datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00"))
            if have != want[cid]:
                await self.target.ex(
                    self.target.db.table("conversations")
                    .update({"updated_at": iso(want[cid])}, returning="minimal")
                    .eq("id", cid),
                    what="conversation",
                )

    async def _topup_messages(
        self, u: LegacyUser, uid: str, convs: list[LegacyConversation]
    ) -> None:
        """Conversations already in the target (an earlier or interrupted run): add only the legacy
        messages that are missing and that no earlier run wrote (those were deleted since)."""
        t = self.target
        have_rows = await t.select_in(
            "messages", "id,conversation_id", "conversation_id", [c.id for c in convs]
        )
        have = {r["id"] for r in have_rows}
        L = u.legacy_id
        for c in convs:
            missing = [m for m in c.messages if ids.message_id(c.id, m.index) not in have]
            self.progress.advance("conversations")
            self.progress.advance("messages", len(c.messages))
            self.counts["conversations_existing"] += 1
            if not missing:
                continue
            deleted = await self._prior_message_indexes(f"{L}/{c.key}", c)
            missing = [m for m in missing if m.index not in deleted]
            if not missing:
                continue
            blocks: dict[int, list] = {}
            for m in missing:
                blocks.setdefault(m.index // self.batch, []).append(m)
            items = [self._message_batch_item(f"{L}/{c.key}#{b}", c, uid, ms) for b, ms in blocks.items()]
            await t.put_items(items)
            await t.insert(
                "messages",
                [
                    {
                        "id": ids.message_id(c.id, m.index),
                        "conversation_id": c.id,
                        "user_id": uid,
                        "role": m.role,
                        "content": m.content,
                        "created_at": iso(m.created_at),
                    }
                    for m in missing
                ],
                self.batch,
            )
            await t.put_items([dict(i, state="done") for i in items])
            self.counts["messages_written"] += len(missing)
            self.counts["conversations_completed"] += 1
            self.source.problems.add(
                self.source.rel(self.source.conversations_file(u)),
                f"conversation {c.key}: already migrated; {len(missing)} missing message(s) added",
                "info",
                key=c.key,
            )

    async def _prior_message_indexes(self, conv_key: str, c: LegacyConversation) -> set[int]:
        if not self.prior_runs:
            return set()
        idmap = {}
        for r in self.prior_runs:
            bs = int((r.get("options") or {}).get("batch_size") or DEFAULT_BATCH)
            for b in {m.index // bs for m in c.messages}:
                idmap[ids.item_id(r["id"], "message_batch", f"{conv_key}#{b}")] = b
        found = await self.target.items_by_ids(idmap, states=("done",))
        return {i for row in found.values() for i in expand(row["target_ids"].get("indexes", []))}

    # ------------------------------------------------------------ documents
    async def _documents(
        self, u: LegacyUser, uid: str, convs: dict[str, str] | None, live: set[str] | None
    ) -> None:
        t, src = self.target, self.source
        L = u.legacy_id
        if convs is None:  # --only documents: the conversations must be in the target already
            keys = src.conversation_keys(u)
            conv_ids = {k: ids.conversation_id(L, k) for k in keys}
            have = await t.existing("conversations", list(conv_ids.values()), "id,user_id")
            convs = {
                k: cid for k, cid in conv_ids.items() if have.get(cid, {}).get("user_id") == uid
            }
            live = set(keys)
        wrote = False
        for conv_key, folder in src.rag_folders(u):
            if conv_key not in live:
                continue  # reported by the scan: a RAG folder of a conversation that does not exist
            meta = src.document_metadata(folder)
            if conv_key not in convs:
                if meta:
                    src.problems.add(
                        src.rel(folder),
                        f"the conversation was not migrated, so its "
                        f"{len(meta)} document(s) are not either",
                        key=conv_key,
                    )
                    self.counts["documents_skipped"] += len(meta)
                continue
            wrote |= await self._conversation_documents(
                u, uid, conv_key, convs[conv_key], folder, meta
            )
        if wrote:
            await asyncio.to_thread(self.lexical.rebuild, uid)
            self.counts["lexical_rebuilds"] += 1
            self._release(uid)

    async def _conversation_documents(self, u, uid, conv_key, conv_id, folder, meta) -> bool:
        """Read one legacy store, write its documents. Returns whether chunks were written."""
        t, src = self.target, self.source
        prefix = f"{u.legacy_id}/{conv_key}"
        where = src.rel(folder / "chroma_db")
        keys = [f"{prefix}/{h}" for h in meta]
        mine = await self._mine("document", keys)
        existing = await t.existing("documents", [ids.document_id(uid, conv_id, h) for h in meta])
        prior = await self._prior_done("document", keys)
        pending: list[tuple[LegacyDocument, str]] = []
        held = 0
        wrote = False
        docs = src.documents(u, conv_key, folder)
        try:
            for doc in docs:
                key = f"{prefix}/{doc.doc_hash}"
                doc_id = ids.document_id(uid, conv_id, doc.doc_hash)
                if doc.doc_hash not in meta:  # rebuilt from chunks: look it up on its own
                    mine.update(await self._mine("document", [key]))
                    existing.update(await t.existing("documents", [doc_id]))
                    prior.update(await self._prior_done("document", [key]))
                m = mine.get(key)
                if m and m["state"] == "done":
                    self._count_doc(doc)
                    continue
                if not (m and m["state"] == "pending"):
                    skip = None
                    if doc_id in existing:
                        skip, self.counts["documents_existing"] = (
                            "exists",
                            self.counts["documents_existing"] + 1,
                        )
                    elif key in prior:
                        skip = "migrated by an earlier run and deleted since; not recreated"
                        src.problems.add(
                            src.rel(folder),
                            f"document {doc.doc_hash}: {skip}",
                            "warning",
                            key=doc.doc_hash,
                        )
                        self.counts["documents_deleted_since"] += 1
                    if skip:
                        await t.put_items(
                            [
                                self._item(
                                    "document",
                                    key,
                                    {
                                        "document_id": doc_id,
                                        "user_id": uid,
                                        "conversation_id": conv_id,
                                    },
                                    "skipped",
                                    doc.chunk_digest(),
                                    skip,
                                )
                            ]
                        )
                        self.progress.advance("documents")
                        self.progress.advance("chunks", len(doc.chunks))
                        continue
                pending.append((doc, doc_id))
                held += len(doc.chunks)
                if held >= CHUNK_FLUSH:
                    await self._write_documents(u, uid, conv_id, prefix, pending, where)
                    wrote, pending, held = True, [], 0
        finally:
            docs.close()
        if pending:
            await self._write_documents(u, uid, conv_id, prefix, pending, where)
            wrote = True
        return wrote

    def _release(self, uid: str) -> None:
        """Keep memory flat over thousands of users: the user's BM25 index is on disk (the app loads
        it lazily), and the embedded Chroma client keeps every collection's HNSW index it touched in
        memory (~3 MB each) until it is closed, so it is closed and reopened every few users."""
        self.lexical.evict(uid)
        self._touched += 1
        if self._touched < STORE_RECYCLE or self.store.host:
            return
        self._touched = 0
        self.store.close()

    def _count_doc(self, doc: LegacyDocument) -> None:
        self.counts["documents_written"] += 1
        self.counts["chunks_written"] += len(doc.chunks)
        self.progress.advance("documents")
        self.progress.advance("chunks", len(doc.chunks))

    async def _write_documents(
        self, u, uid, conv_id, prefix, docs: list[tuple[LegacyDocument, str]], where: str
    ) -> None:
        """Claim, then chunks into the store, then the rows (status ready): a ready row always has
        all of its chunks; chunks without a row (a run killed in between) are rewritten on
        resume."""
        t = self.target
        items, batch_items, rows = [], [], []
        fallback = self._fallback_time()
        for doc, doc_id in docs:
            key = f"{prefix}/{doc.doc_hash}"
            items.append(
                self._item(
                    "document",
                    key,
                    {"document_id": doc_id, "user_id": uid, "conversation_id": conv_id},
                    "pending",
                    doc.chunk_digest(),
                )
            )
            for s in range(0, len(doc.chunks), self.batch):
                part = doc.chunks[s : s + self.batch]
                batch_items.append(
                    self._item(
                        "chunk_batch",
                        f"{key}#{s // self.batch}",
                        {
                            "document_id": doc_id,
                            "user_id": uid,
                            "chunk_ids": [ids.new_chunk_id(doc_id, c.index) for c in part],
                        },
                        "pending",
                        digest([[c.index, c.text] for c in part]),
                    )
                )
            rows.append(
                {
                    "id": doc_id,
                    "user_id": uid,
                    "conversation_id": conv_id,
                    "sha256": None,
                    "filename": doc.filename,
                    "file_type": doc.file_type,
                    "file_size": None,
                    "chunk_count": len(doc.chunks),
                    "status": "ready",
                    "legacy_hash": doc.doc_hash,
                    "added_at": iso(doc.added_at or fallback),
                    "metadata": {
                        "migrated": True,
                        "legacy_file_type": doc.file_type,
                        "legacy_chunk_count": doc.declared_chunks,
                        "rebuilt_from_chunks": not doc.from_metadata,
                    },
                }
            )
        await t.put_items(items + batch_items)
        await asyncio.to_thread(self._write_chunks, uid, conv_id, docs, where)
        failed = await self._insert_rows("documents", rows, items)
        if failed:  # their chunks must not stay behind
            gone = [d for (doc, d), i in zip(docs, items, strict=True) if i["legacy_key"] in failed]
            await asyncio.to_thread(self.store.delete_documents, uid, gone)
        ok_ids = {
            d for (doc, d), i in zip(docs, items, strict=True) if i["legacy_key"] not in failed
        }
        await t.put_items(
            [
                dict(i, state="done")
                for i in items + batch_items
                if i["target_ids"]["document_id"] in ok_ids
            ]
        )
        for doc, doc_id in docs:
            if doc_id in ok_ids:
                self._count_doc(doc)
            else:
                self.progress.advance("documents")
                self.progress.advance("chunks", len(doc.chunks))

    def _write_chunks(
        self, uid: str, conv_id: str, docs: list[tuple[LegacyDocument, str]], where: str
    ) -> None:
        ids_, texts, metas, vecs, redo = [], [], [], [], []
        for doc, doc_id in docs:
            missing = 0
            for c in doc.chunks:
                ids_.append(ids.new_chunk_id(doc_id, c.index))
                texts.append(c.text)
                metas.append(
                    {
                        "document_id": doc_id,
                        "chunk_index": c.index,
                        "filename": doc.filename,
                        "kind": "text",
                        "position": c.index * 800,
                        "conversation_id": conv_id,
                        "legacy_id": c.legacy_id,
                    }
                )
                if c.embedding is None:
                    redo.append(len(vecs))
                    missing += 1
                vecs.append(c.embedding)
            if missing:
                self.source.problems.add(
                    where,
                    f"document {doc.doc_hash} ({doc.filename}): {missing} chunk vector(s) "
                    "missing or not 384-dimensional; re-embedded from the text",
                    "warning",
                    key=doc.doc_hash,
                )
        if not ids_:
            return
        if redo:
            fresh = self.embedder.embed([texts[i] for i in redo])
            for j, i in enumerate(redo):
                vecs[i] = fresh[j]
            self.counts["chunks_reembedded"] += len(redo)
        self.store.upsert(
            uid, ids_, np.vstack(vecs).astype(np.float32), texts, metas, batch=self.batch
        )

    # ------------------------------------------------------------ uploads
    async def _uploads(self, u: LegacyUser, uid: str) -> None:
        t = self.target
        ups = self.source.uploads(u)
        if not ups:
            return
        L = u.legacy_id
        keys = [f"{L}#{x.index}" for x in ups]
        mine = await self._mine("upload", keys)
        existing = await t.existing("uploads", [ids.upload_id(L, x.index) for x in ups])
        prior = await self._prior_done("upload", keys)
        docs = await t.select_in("documents", "id,filename,conversation_id", "user_id", [uid])
        by_name: dict[str, list] = {}
        for d in docs:
            by_name.setdefault(d["filename"], []).append(d)
        fallback = self._fallback_time()
        claims, skips, rows = [], [], []
        for x, key in zip(ups, keys, strict=True):
            up_id = ids.upload_id(L, x.index)
            target = {"upload_id": up_id, "user_id": uid}
            checksum = digest([x.filename, x.file_size, iso(x.uploaded_at)])
            m = mine.get(key)
            if m and m["state"] == "done":
                self.counts["uploads_written"] += 1
                continue
            if not (m and m["state"] == "pending"):
                if up_id in existing:
                    skips.append(self._item("upload", key, target, "skipped", checksum, "exists"))
                    self.counts["uploads_existing"] += 1
                    continue
                if key in prior:
                    skips.append(
                        self._item(
                            "upload",
                            key,
                            target,
                            "skipped",
                            checksum,
                            "migrated by an earlier run and deleted since",
                        )
                    )
                    continue
            match = by_name.get(x.filename, [])
            doc = (
                match[0] if len(match) == 1 else None
            )  # linked only when the filename is unambiguous
            claims.append(self._item("upload", key, target, "pending", checksum))
            rows.append(
                {
                    "id": up_id,
                    "user_id": uid,
                    "document_id": doc and doc["id"],
                    "conversation_id": doc and doc["conversation_id"],
                    "filename": x.filename,
                    "file_type": mimetypes.guess_type(x.filename)[0],
                    "file_size": x.file_size,
                    "sha256": None,
                    "outcome": "migrated",
                    "uploaded_at": iso(x.uploaded_at or fallback),
                }
            )
        await t.put_items(claims + skips)
        failed = await self._insert_rows("uploads", rows, claims)
        done = [dict(c, state="done") for c in claims if c["legacy_key"] not in failed]
        await t.put_items(done)
        self.counts["uploads_written"] += len(done)
        self.progress.advance("uploads", len(ups))


def _groups(convs: list[LegacyConversation], max_convs: int, max_messages: int) -> list[list]:
    """Conversations in groups of at most `max_convs`, and about `max_messages` messages (a bigger
    conversation goes alone): what one claim / write / done round covers."""
    out, cur, n = [], [], 0
    for c in convs:
        if cur and (len(cur) >= max_convs or n + len(c.messages) > max_messages):
            out.append(cur)
            cur, n = [], 0
        cur.append(c)
        n += len(c.messages)
    if cur:
        out.append(cur)
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _alive(run: dict) -> bool:
    beat = datetime.fromisoformat(run["heartbeat_at"].replace("Z", "+00:00"))
    return (datetime.now(UTC) - beat).total_seconds() < LIVE_AFTER_S


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


__all__ = ["Migrator", "MigrationError", "KINDS", "DEFAULT_BATCH", "store_for", "Problems"]
