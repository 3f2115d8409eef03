"""Conversations and their messages, always as the acting user (RLS decides).

A conversation id of another user behaves exactly like a missing one:
NotFound, never data. Messages are rows appended through `append_message`
(idempotent on the client-chosen id); when the data store cannot be reached
after the retries, the message goes to the local outbox and is delivered later.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from .audit import AuditService
from .backend import Backend
from .cache import TTLCache
from .errors import BackendUnavailable, NotFound, ValidationError
from .ids import parse_id
from .metrics import Metrics, timed
from .models import Conversation, Message, SearchHit, ts
from .outbox import Outbox
from .ports import DocumentIndexer

ROLES = ("user", "assistant", "system")
MAX_PAGE = 200
# called with (user_id, document_ids) before their rows go, and `pharmacy_id=` for a pharmacy's
# documents (their chunks live in its library, not the uploader's); the RAG store drops the chunks
ChunkDropHook = Callable[..., Awaitable[None]]


class ConversationService:
    def __init__(
        self,
        backend: Backend,
        cache: TTLCache,
        metrics: Metrics,
        audit: AuditService,
        outbox: Outbox | None = None,
    ):
        self.backend = backend
        self.cache = cache
        self.metrics = metrics
        self.audit = audit
        self.outbox = outbox
        self.on_documents_deleted: ChunkDropHook | None = None

    def use_indexer(self, indexer: DocumentIndexer) -> None:
        """Deleting a conversation drops its documents' chunks through the indexer."""
        self.on_documents_deleted = indexer.discard

    async def _db(self, user_id: str):
        return await self.backend.for_user(user_id)

    def _invalidate(self, user_id: str, conv_id: str | None = None) -> None:
        self.cache.invalidate("convs", user_id)
        if conv_id:
            self.cache.invalidate("conv", user_id, conv_id)
        else:
            self.cache.invalidate("conv", user_id)

    # ------------------------------------------------------------------ conversations
    @timed("conversations.create")
    async def create_conversation(
        self,
        user_id: str,
        title: str | None = None,
        model: str | None = None,
        conversation_id: str | None = None,
    ) -> Conversation:
        row: dict[str, Any] = {"id": conversation_id or str(uuid.uuid4()), "user_id": user_id}
        if title is not None:
            row["title"] = _clean_title(title)
        if model is not None:
            row["model"] = model[:200]
        db = await self._db(user_id)
        # the id is chosen here, so a retried insert is a no-op rather than a second chat
        await self.backend.execute(
            db.table("conversations").upsert(row, ignore_duplicates=True, returning="minimal"),
            what="conversation",
        )
        self._invalidate(user_id)
        return await self.get_conversation(user_id, row["id"])

    @timed("conversations.list")
    async def get_user_conversations(
        self, user_id: str, *, limit: int = 30, offset: int = 0, archived: bool = False
    ) -> list[Conversation]:
        """Newest first with pinned ones on top; archived ones only when asked for."""
        limit = max(1, min(limit, MAX_PAGE))
        key = ("convs", user_id, archived, limit, offset)
        cached = self.cache.get(key)
        if not self.cache.missing(cached):
            return cached
        db = await self._db(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("conversations")
                .select(Conversation.COLUMNS)
                .eq("is_archived", archived)
                .order("is_pinned", desc=True)
                .order("updated_at", desc=True)
                .order("id")
            ),
            offset=offset,
            limit=limit,
            what="conversation list",
        )
        out = [Conversation.from_row(x) for x in rows]
        self.cache.set(key, out)
        return out

    @timed("conversations.search")
    async def search(self, user_id: str, query: str, limit: int = 20) -> list[SearchHit]:
        """The user's conversations matching `query`, best first, each with a highlighted snippet
        (full-text by stem for words, substrings for codes and partial words: sql/0030)."""
        query = (query or "").strip()
        if not query:
            return []
        if len(query) > 200:
            raise ValidationError("Search for at most 200 characters.")
        db = await self._db(user_id)
        r = await self.backend.execute(
            db.rpc("search_conversation_hits", {"query": query, "max_results": limit}),
            what="search",
        )
        return [SearchHit.from_row(x) for x in r.data]

    async def search_conversations(
        self, user_id: str, query: str, limit: int = 20
    ) -> list[Conversation]:
        return [h.conversation for h in await self.search(user_id, query, limit)]

    @timed("conversations.get")
    async def get_conversation(self, user_id: str, conv_id: str) -> Conversation:
        conv_id = parse_id(conv_id, "conversation")
        key = ("conv", user_id, conv_id)
        cached = self.cache.get(key)
        if not self.cache.missing(cached):
            return cached
        db = await self._db(user_id)
        r = await self.backend.execute(
            db.table("conversations").select(Conversation.COLUMNS).eq("id", conv_id).limit(1),
            what="conversation",
        )
        if not r.data:
            raise NotFound("The conversation was not found.")
        conv = Conversation.from_row(r.data[0])
        self.cache.set(key, conv)
        return conv

    async def _update(self, user_id: str, conv_id: str, patch: dict) -> Conversation:
        conv_id = parse_id(conv_id, "conversation")
        db = await self._db(user_id)
        r = await self.backend.execute(
            db.table("conversations").update(patch).eq("id", conv_id).select(Conversation.COLUMNS),
            what="conversation",
        )
        self._invalidate(user_id, conv_id)
        if not r.data:
            raise NotFound("The conversation was not found.")
        return Conversation.from_row(r.data[0])

    @timed("conversations.rename")
    async def rename(self, user_id: str, conv_id: str, title: str) -> Conversation:
        return await self._update(user_id, conv_id, {"title": _clean_title(title)})

    @timed("conversations.set_archived")
    async def set_archived(self, user_id: str, conv_id: str, archived: bool = True) -> Conversation:
        return await self._update(user_id, conv_id, {"is_archived": bool(archived)})

    @timed("conversations.set_pinned")
    async def set_pinned(self, user_id: str, conv_id: str, pinned: bool = True) -> Conversation:
        return await self._update(user_id, conv_id, {"is_pinned": bool(pinned)})

    @timed("conversations.duplicate")
    async def duplicate_conversation(self, user_id: str, conv_id: str) -> Conversation:
        conv_id = parse_id(conv_id, "conversation")
        new_id = str(uuid.uuid4())
        db = await self._db(user_id)
        r = await self.backend.execute(
            db.rpc("duplicate_conversation", {"p_id": conv_id, "p_new_id": new_id}),
            what="conversation",
            idempotent=False,
        )
        self._invalidate(user_id)
        return Conversation.from_row(r.data[0])

    @timed("conversations.delete")
    async def delete_conversation(self, user_id: str, conv_id: str) -> None:
        conv_id = parse_id(conv_id, "conversation")
        db = await self._db(user_id)
        docs = await self.backend.execute(
            db.table("documents").select("id").eq("conversation_id", conv_id), what="conversation"
        )
        doc_ids = [d["id"] for d in docs.data]
        if doc_ids and self.on_documents_deleted is not None:
            await self.on_documents_deleted(user_id, doc_ids)
        r = await self.backend.execute(
            db.table("conversations").delete().eq("id", conv_id).select("id"), what="conversation"
        )
        self._invalidate(user_id, conv_id)
        self.cache.invalidate("docs", user_id)
        if not r.data:
            raise NotFound("The conversation was not found.")
        await self.audit.record(
            "conversation.deleted",
            user_id=user_id,
            target_type="conversation",
            target_id=conv_id,
            details={"documents": len(doc_ids)},
        )

    @timed("conversations.export")
    async def export_conversation(self, user_id: str, conv_id: str, fmt: str = "json") -> str:
        if fmt not in ("json", "markdown"):
            raise ValidationError("Export as json or markdown.")
        conv = await self.get_conversation(user_id, conv_id)
        messages = await self._all_messages(user_id, conv.id)
        await self.audit.record(
            "conversation.exported",
            user_id=user_id,
            target_type="conversation",
            target_id=conv.id,
            details={"format": fmt, "messages": len(messages)},
        )
        if fmt == "json":
            return json.dumps(
                {
                    "id": conv.id,
                    "title": conv.title,
                    "model": conv.model,
                    "created_at": conv.created_at.isoformat(),
                    "updated_at": conv.updated_at.isoformat(),
                    "messages": [
                        {
                            "id": m.id,
                            "role": m.role,
                            "content": m.content,
                            "sources": m.sources,
                            "model": m.model,
                            "created_at": m.created_at.isoformat(),
                        }
                        for m in messages
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        return _markdown(conv, messages)

    # ------------------------------------------------------------------ messages
    @timed("messages.add")
    async def add_message(self, user_id: str, conv_id: str, message: dict) -> Message:
        """Append a message; idempotent on message["id"]. Returns it `pending` if it went to the
        outbox."""
        conv_id = parse_id(conv_id, "conversation")
        msg = self._normalise(message)
        args = {
            "p_id": msg["id"],
            "p_conversation_id": conv_id,
            "p_role": msg["role"],
            "p_content": msg["content"],
            "p_sources": msg["sources"],
            "p_model": msg["model"],
            "p_created_at": msg["created_at"],
        }
        if self.outbox is not None and self.outbox.has_pending(user_id, conv_id):
            # keep the order: a message may not overtake those still waiting
            await self.flush_outbox(user_id)
            if self.outbox.has_pending(user_id, conv_id):
                return self._to_outbox(user_id, conv_id, args)
        try:
            row = await self._append(user_id, args)
        except BackendUnavailable:
            if self.outbox is None:
                raise
            return self._to_outbox(user_id, conv_id, args)
        return row

    async def _append(self, user_id: str, args: dict) -> Message:
        db = await self._db(user_id)
        r = await self.backend.execute(db.rpc("append_message", args), what="message")
        row = r.data[0]
        self.cache.invalidate("convs", user_id)
        self.cache.invalidate("conv", user_id, args["p_conversation_id"])
        return Message.from_row(row)

    def _to_outbox(self, user_id: str, conv_id: str, args: dict) -> Message:
        self.outbox.put(user_id, conv_id, args["p_id"], args)
        return Message(
            args["p_id"],
            conv_id,
            args["p_role"],
            args["p_content"],
            args["p_sources"],
            args["p_model"],
            ts(args["p_created_at"]),
            pending=True,
        )

    async def flush_outbox(self, user_id: str | None = None) -> int:
        """Deliver held messages in order, exactly once; stops at the first that still can't go."""
        if self.outbox is None:
            return 0
        sent = 0
        for item in self.outbox.pending(user_id):
            try:
                await self._append(item.user_id, item.payload)
            except BackendUnavailable:
                break
            except (
                NotFound,
                ValidationError,
            ) as e:  # can never succeed: keep it, visibly, out of the queue
                self.outbox.fail(item.seq, e.message)
                continue
            self.outbox.done(item.seq)
            sent += 1
        return sent

    def pending_messages(self, user_id: str, conv_id: str | None = None) -> list[Message]:
        if self.outbox is None:
            return []
        return [
            Message(
                i.payload["p_id"],
                i.conversation_id,
                i.payload["p_role"],
                i.payload["p_content"],
                i.payload["p_sources"],
                i.payload["p_model"],
                ts(i.payload["p_created_at"]),
                pending=True,
            )
            for i in self.outbox.pending(user_id)
            if conv_id is None or i.conversation_id == conv_id
        ]

    @timed("messages.get")
    async def get_messages(
        self, user_id: str, conv_id: str, limit: int = 50, before: str | None = None
    ) -> list[Message]:
        """The `limit` messages before message `before` (default: the latest), oldest first."""
        conv_id = parse_id(conv_id, "conversation")
        limit = max(1, min(limit, MAX_PAGE))
        db = await self._db(user_id)
        cond: str | None = None
        if before is not None:
            anchor = await self.backend.execute(
                db.table("messages")
                .select("created_at,id")
                .eq("id", parse_id(before, "message"))
                .eq("conversation_id", conv_id)
                .limit(1),
                what="message",
            )
            if not anchor.data:
                raise NotFound("The message was not found.")
            a = anchor.data[0]
            at = a["created_at"]
            cond = f'created_at.lt."{at}",and(created_at.eq."{at}",id.lt.{a["id"]})'

        def query():
            q = db.table("messages").select(Message.COLUMNS).eq("conversation_id", conv_id)
            if cond is not None:
                q = q.or_(cond)
            return q.order("created_at", desc=True).order("id", desc=True)

        rows = await self.backend.fetch_rows(query, limit=limit, what="messages")
        if not rows and before is None:
            await self.get_conversation(
                user_id, conv_id
            )  # NotFound for a missing or foreign conversation
        return [Message.from_row(x) for x in reversed(rows)]

    @timed("messages.replace_answers")
    async def delete_answers_after(
        self, user_id: str, conv_id: str, question_id: str, *, keep: str | None = None
    ) -> int:
        """Delete the assistant messages after question `question_id` except `keep` (Regenerate:
        the new answer replaces the old). As the user: RLS lets them delete only their own."""
        conv_id = parse_id(conv_id, "conversation")
        db = await self._db(user_id)
        anchor = await self.backend.execute(
            db.table("messages")
            .select("created_at")
            .eq("id", parse_id(question_id, "message"))
            .eq("conversation_id", conv_id)
            .limit(1),
            what="message",
        )
        if not anchor.data:
            raise NotFound("The message was not found.")
        q = (
            db.table("messages")
            .delete(count="exact", returning="minimal")
            .eq("conversation_id", conv_id)
            .eq("role", "assistant")
            .gte("created_at", anchor.data[0]["created_at"])
        )
        if keep is not None:
            q = q.neq("id", parse_id(keep, "message"))
        r = await self.backend.execute(q, what="messages")
        self.cache.invalidate("convs", user_id)
        self.cache.invalidate("conv", user_id, conv_id)
        return r.count or 0

    async def _all_messages(self, user_id: str, conv_id: str) -> list[Message]:
        db = await self._db(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("messages")
                .select(Message.COLUMNS)
                .eq("conversation_id", conv_id)
                .order("created_at")
                .order("id")
            ),
            what="messages",
        )
        return [Message.from_row(x) for x in rows]

    @staticmethod
    def _normalise(message: dict) -> dict:
        role = message.get("role")
        if role not in ROLES:
            raise ValidationError("A message's role is user, assistant or system.")
        content = message.get("content")
        if not isinstance(content, str):
            raise ValidationError("A message needs text content.")
        if len(content) > 200_000:
            raise ValidationError("A message is at most 200,000 characters.")
        sources = message.get("sources") or []
        if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
            raise ValidationError("A message's sources are a list of objects.")
        created = message.get("created_at") or datetime.now(UTC)
        if isinstance(created, datetime):
            created = created.isoformat()
        return {
            "id": parse_id(message.get("id") or uuid.uuid4(), "message"),
            "role": role,
            "content": content,
            "sources": sources,
            "model": message.get("model"),
            "created_at": created,
        }


def _clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError("A title cannot be empty.")
    return title[:200]


def _md_text(text: str) -> str:
    """Text from users or documents, so a Markdown viewer shows it and never runs it as HTML."""
    return html.escape(text or "", quote=False)


def _source_line(i: int, s: dict) -> str:
    """`n. file, pages 3-4 — Section`, as the app labels a source."""
    pages = str(s.get("pages") or s.get("page") or "")
    where = (f", pages {pages}" if "-" in pages else f", page {pages}") if pages else ""
    section = f" — {_md_text(s['section'])}" if s.get("section") else ""
    return f"{s.get('n') or i}. {_md_text(s.get('filename') or 'document')}{where}{section}"


def _markdown(conv: Conversation, messages: list[Message]) -> str:
    lines = [
        f"# {_md_text(conv.title)}",
        "",
        f"*Exported from PharmGPT — created {conv.created_at:%Y-%m-%d %H:%M} UTC, "
        f"{len(messages)} messages*",
        "",
    ]
    for m in messages:
        who = {"user": "You", "assistant": "PharmGPT", "system": "System"}[m.role]
        lines += [f"## {who} — {m.created_at:%Y-%m-%d %H:%M:%S} UTC", "", _md_text(m.content), ""]
        if m.sources:
            lines.append("**Sources**")
            lines += [_source_line(i, s) for i, s in enumerate(m.sources, 1)]
            lines.append("")
    return "\n".join(lines)
