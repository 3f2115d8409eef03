"""Grounded answers (DESIGN D8): retrieve, prompt, stream, store with sources.

`answer()` is an async generator of events for the UI:
  {"type": "sources", "sources": [...]}   numbered sources (before any text)
  {"type": "token", "text": "..."}        answer text as it streams
  {"type": "done", "message": Message}    the stored assistant message
Closing the generator early stops the model and stores what was said so far,
marked as stopped, so nothing the pharmacist saw is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from services.container import Services

from .offline import extractive_answer, stream_text
from .prompts import NOT_COVERED, build_messages, sources_payload
from .retriever import Retriever, standalone_query

OFFLINE_MODEL = "offline-extractive"
STOPPED = "\n\n*(stopped)*"


@dataclass
class AnswerPlan:
    query: str
    passages: list  # the relevant passages, numbered 1..n in the prompt and in `sources`
    sources: list[dict[str, Any]]
    strict: bool
    covered: bool


class ChatEngine:
    def __init__(self, services: Services, retriever: Retriever, provider=None, *, fallback_models=()):
        self.services = services
        self.retriever = retriever
        self.provider = provider  # None: offline extractive answers
        self.fallback_models = list(fallback_models)

    async def scope(self, user_id: str, conv_id: str) -> list[str]:
        """Ready documents of the conversation plus the user's library."""
        docs = self.services.documents
        conv_docs = await docs.get_conversation_documents(user_id, conv_id)
        library = await docs.get_library_documents(user_id)
        return [d.id for d in conv_docs + library if d.status == "ready"]

    async def plan(self, user_id: str, conv_id: str, question: str, history: list[dict],
                   prefs: dict) -> AnswerPlan:
        query = standalone_query(question, history)
        doc_ids = await self.scope(user_id, conv_id)
        passages = await self.retriever.retrieve(user_id, query, doc_ids, k=prefs["top_k"]) if doc_ids else []
        relevant = self.retriever.relevant(passages)
        return AnswerPlan(query, relevant, sources_payload(relevant), prefs["strict_mode"], bool(relevant))

    async def answer(self, user_id: str, conv_id: str, question: str, *,
                     message_id: str | None = None) -> AsyncIterator[dict]:
        cs = self.services.conversations
        question = (question or "").strip()
        prefs = await self.services.preferences.get_all(user_id)
        history = [{"role": m.role, "content": m.content}
                   for m in await cs.get_messages(user_id, conv_id, limit=8)]
        await cs.add_message(user_id, conv_id, {"id": message_id or str(uuid.uuid4()), "role": "user",
                                                "content": question})
        plan = await self.plan(user_id, conv_id, question, history, prefs)
        yield {"type": "sources", "sources": plan.sources, "covered": plan.covered}
        model = prefs["model"] if self.provider else OFFLINE_MODEL
        parts: list[str] = []
        finished = False
        try:
            async for piece in self._generate(question, plan, history, prefs):
                parts.append(piece)
                yield {"type": "token", "text": piece}
            finished = True
        finally:
            text = "".join(parts)
            if text or finished:
                stored = await cs.add_message(user_id, conv_id, {
                    "role": "assistant", "content": text if finished else text + STOPPED,
                    "sources": plan.sources, "model": model})
                if finished:
                    yield {"type": "done", "message": stored}

    async def _generate(self, question: str, plan: AnswerPlan, history: list[dict],
                        prefs: dict) -> AsyncIterator[str]:
        if not plan.covered and (plan.strict or self.provider is None):
            async for piece in stream_text(NOT_COVERED):
                yield piece
            return
        if self.provider is None:
            async for piece in stream_text(extractive_answer(question, plan.passages)):
                yield piece
            return
        messages = build_messages(question, plan.passages, history, strict=plan.strict)
        stream = self.provider.stream(messages, model=prefs["model"], temperature=prefs["temperature"])
        try:
            async for piece in stream:
                yield piece
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
