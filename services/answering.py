"""Answering a question (DESIGN D8): scope, retrieve, stream, cite, store. The use-case.

It depends on the conversation, document and preference services and on two ports: a
`Retriever` (question + documents in scope → passages, sources, prompt) and a chat-model
`Provider` (None: offline, the retriever's extractive answer is streamed). `rag/` implements both.

`answer()` is an async generator of events for the UI:
  {"type": "sources", "sources": [...]}   numbered sources (before any text)
  {"type": "token", "text": "..."}        answer text as it streams
  {"type": "done", "message": Message}    the stored assistant message
Closing the generator early stops the model and stores what was said so far,
marked as stopped, so nothing the pharmacist saw is lost.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

from .conversations import ConversationService
from .documents import DocumentService
from .errors import BackendUnavailable, LLMError
from .model_names import OFFLINE_MODEL
from .models import ACTIVE_STATUSES, Document, Message
from .ports import AnswerPlan, ModelChoice, Provider, Question, Retriever, ScopedDocument
from .preferences import PreferenceService

STOPPED = "\n\n*(stopped)*"
HISTORY_MESSAGES = 9  # the question and the 8 messages before it


def choose_model(available: list[str], preferred: str | None) -> ModelChoice:
    """The user's preference when the provider offers it, else its default with a notice."""
    if not available:
        raise LLMError(
            "The language model server offers no models. "
            "Ask your administrator to set OPENAI_MODEL."
        )
    if not preferred or preferred in available:
        return ModelChoice(preferred or available[0], list(available))
    return ModelChoice(
        available[0],
        list(available),
        f"Your saved model {preferred} is not offered here, so answers use {available[0]}. "
        "Choose another in Settings to change it.",
    )


async def stream_text(text: str) -> AsyncIterator[str]:
    """Yield a prepared answer in word-sized pieces, like a model would."""
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield piece


def scoped(documents: list[Document]) -> list[ScopedDocument]:
    """The documents as the retriever sees them: their ids and what they are about."""
    return [
        ScopedDocument(
            d.id,
            tuple((d.metadata or {}).get("drugs") or ()),
            tuple((d.metadata or {}).get("products") or ()),
            d.user_id,
            d.pharmacy_id,
        )
        for d in documents
    ]


class AnswerService:
    def __init__(
        self,
        conversations: ConversationService,
        documents: DocumentService,
        preferences: PreferenceService,
        retriever: Retriever,
        provider: Provider | None = None,
    ):
        self.conversations = conversations
        self.documents = documents
        self.preferences = preferences
        self.retriever = retriever
        self.provider = provider  # None: offline extractive answers

    async def choose_model(self, preferred: str | None) -> ModelChoice | None:
        """The model an answer uses: the preference when the provider offers it, else the
        provider's default with a notice; None offline."""
        if self.provider is None:
            return None
        return choose_model(await self.provider.catalogue(), preferred)

    async def scope_documents(self, user_id: str, conv_id: str) -> list[Document]:
        """Ready documents of the conversation, the user's library and their pharmacies' libraries
        (read through RLS for each question, so a removed member loses them at once)."""
        return [d for d in await self._documents(user_id, conv_id) if d.status == "ready"]

    async def _documents(self, user_id: str, conv_id: str) -> list[Document]:
        """The three reads are independent: one round trip's wait, not three."""
        docs = self.documents
        conv_docs, library, shared = await asyncio.gather(
            docs.get_conversation_documents(user_id, conv_id),
            docs.get_library_documents(user_id),
            docs.get_shared_documents(user_id),
        )
        return conv_docs + library + shared

    async def plan(
        self,
        user_id: str,
        conv_id: str,
        question: str,
        history: list[dict],
        prefs: dict,
        document_ids: list[str] | None = None,
    ) -> AnswerPlan:
        """`document_ids`: answer from these documents only (e.g. "Summarise FILE")."""
        every = await self._documents(user_id, conv_id)
        if document_ids is not None:
            every = [d for d in every if d.id in set(document_ids)]
        documents = [d for d in every if d.status == "ready"]
        # a refusal says what may still answer it: files not yet searchable
        in_flight = tuple(d.filename for d in every if d.status in ACTIVE_STATUSES)
        return await self.retriever.plan(
            Question(
                user_id,
                question,
                history,
                scoped(documents),
                top_k=prefs["top_k"],
                strict=bool(prefs["strict_mode"]),
                with_model=self.provider is not None,
                chosen=document_ids is not None,
                in_flight=in_flight,
            )
        )

    async def answer(
        self,
        user_id: str,
        conv_id: str,
        question: str,
        *,
        message_id: str | None = None,
        document_ids: list[str] | None = None,
        replace: bool = False,
        prefs: dict | None = None,
        messages: list[Message] | None = None,
    ) -> AsyncIterator[dict]:
        """Stream an answer. `message_id`: the question's id (a resend or Regenerate reuses it);
        `replace`: the new answer replaces the earlier answers to it (Regenerate), once it is
        stored; `document_ids`: only these documents are searched. `prefs` and `messages` (the
        conversation's latest messages, oldest first): what the page holds already; read from
        the store when not given."""
        cs = self.conversations
        question = (question or "").strip()
        # the question is stored (or queued in the outbox) before anything that can fail, so an
        # outage loses nothing; with the store away there is nothing to answer from, so say so now
        asked = await cs.add_message(
            user_id,
            conv_id,
            {"id": message_id or str(uuid.uuid4()), "role": "user", "content": question},
        )
        if asked.pending:
            raise BackendUnavailable(
                "The data store is not reachable right now. Your question is kept and "
                "will be saved when it is back; ask again then for an answer."
            )
        if prefs is None:
            prefs = await self.preferences.get_all(user_id)
        if messages is None:
            earlier = await cs.get_messages(user_id, conv_id, limit=HISTORY_MESSAGES)
        else:
            known = any(m.id == asked.id for m in messages)  # a resend or Regenerate
            earlier = (list(messages) if known else [*messages, asked])[-HISTORY_MESSAGES:]
        ids = [m.id for m in earlier]
        if (
            replace and asked.id in ids
        ):  # asked again: the conversation as it was before it, old answers gone
            earlier = earlier[: ids.index(asked.id)]
        history = [{"role": m.role, "content": m.content} for m in earlier if m.id != asked.id][-8:]
        plan = await self.plan(user_id, conv_id, question, history, prefs, document_ids)
        yield {"type": "sources", "sources": plan.sources, "covered": plan.covered}
        choice = await self.choose_model(prefs["model"]) if plan.prepared is None else None
        if choice is not None and choice.notice:
            yield {"type": "notice", "text": choice.notice}
        # a refusal or quoted answer written without a model call records no model name
        model = choice.model if choice else (None if self.provider else OFFLINE_MODEL)
        parts: list[str] = []
        finished = False
        try:
            async for piece in self._generate(plan, prefs, model):
                parts.append(piece)
                yield {"type": "token", "text": piece}
            finished = True
        finally:
            text = "".join(parts)
            if text or finished:
                stored = await cs.add_message(
                    user_id,
                    conv_id,
                    {
                        "role": "assistant",
                        "content": text if finished else text + STOPPED,
                        "sources": plan.sources,
                        "model": model,
                    },
                )
                if replace and not stored.pending:
                    await cs.delete_answers_after(user_id, conv_id, asked.id, keep=stored.id)
                if finished:
                    yield {"type": "done", "message": stored}

    async def _generate(
        self, plan: AnswerPlan, prefs: dict, model: str | None
    ) -> AsyncIterator[str]:
        if plan.prepared is not None:  # a refusal or the offline answer: no model call
            async for piece in stream_text(plan.prepared):
                yield piece
            return
        stream = self.provider.stream(plan.messages, model=model, temperature=prefs["temperature"])
        try:
            async for piece in stream:
                yield piece
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
