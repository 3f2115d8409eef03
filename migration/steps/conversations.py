"""Step 2: conversations.json -> `conversations` + `messages`.

Conversations are written in groups (`_groups`), their messages in blocks of `batch` legacy
indexes, each block a `message_batch` item, so a resumed run re-sends only what is not done and
rollback knows every message id the run wrote. A conversation already in the target (an
earlier or interrupted run) is topped up with the legacy messages it lacks, except those an
earlier run wrote and someone deleted since.
"""

from __future__ import annotations

from datetime import datetime

from pharmgpt.services.errors import BackendUnavailable, PharmGPTError

from .. import ids
from ..ledger import DEFAULT_BATCH, RunLedger
from ..legacy import LegacyConversation, LegacyUser, digest, iso
from ..state import expand, ranges


def message_row(conversation_id: str, user_id: str, m) -> dict:
    """One legacy message as a `messages` row; its id is derived, so a rerun overwrites."""
    return {
        "id": ids.message_id(conversation_id, m.index),
        "conversation_id": conversation_id,
        "user_id": user_id,
        "role": m.role,
        "content": m.content,
        "created_at": iso(m.created_at),
    }


class ConversationStep:
    def __init__(self, run: RunLedger):
        self.run = run
        self.target, self.source, self.counts = run.target, run.source, run.counts
        self.progress, self.batch, self.prior_runs = run.progress, run.batch, run.prior_runs

    def _message_batch_item(self, key: str, conv, user_id: str, msgs: list) -> dict:
        """The pending item for one block of a conversation's messages (first run and resume
        alike)."""
        return self.run.item(
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

    async def migrate(self, u: LegacyUser, uid: str) -> tuple[dict[str, str], set[str]]:
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
        mine = await self.run.mine("conversation", keys)
        existing = await t.existing("conversations", [c.id for c in convs], "id,user_id")
        prior = await self.run.prior_done("conversation", keys)
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
                skips.append(
                    self.run.item("conversation", key, target, "skipped", c.checksum(), why)
                )
                self.counts["conversations_conflict"] += 1
                self.progress.advance("conversations")
                continue
            if ex is not None:
                present[c.key] = c.id
                skips.append(
                    self.run.item("conversation", key, target, "skipped", c.checksum(), "exists")
                )
                topup.append(c)
                continue
            if key in prior:
                why = "migrated by an earlier run and deleted since; not recreated"
                p.add(rel, f"conversation {c.key}: {why}", "warning", key=c.key)
                skips.append(
                    self.run.item("conversation", key, target, "skipped", c.checksum(), why)
                )
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
        done_blocks = await self.run.mine(
            "message_batch", [f"{L}/{c.key}#{b}" for c in convs for b in self._message_blocks(c)]
        )
        for c in convs:
            key = f"{L}/{c.key}"
            conv_items.append(
                self.run.item(
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
                msg_rows += [message_row(c.id, uid, m) for m in msgs]
        await t.put_items(conv_items + batch_items)  # claimed before anything is written
        failed = await self.run.insert_rows("conversations", rows, conv_items)
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
                    self.run.item(
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
            items = [
                self._message_batch_item(f"{L}/{c.key}#{b}", c, uid, ms) for b, ms in blocks.items()
            ]
            await t.put_items(items)
            await t.insert(
                "messages",
                [message_row(c.id, uid, m) for m in missing],
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
