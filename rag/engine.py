"""Grounded answers (DESIGN D8): retrieve, prompt, stream, store with sources.

`answer()` is an async generator of events for the UI:
  {"type": "sources", "sources": [...]}   numbered sources (before any text)
  {"type": "token", "text": "..."}        answer text as it streams
  {"type": "done", "message": Message}    the stored assistant message
Closing the generator early stops the model and stores what was said so far,
marked as stopped, so nothing the pharmacist saw is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from typing import Any

from pharmgpt.services.container import Services
from pharmgpt.services.errors import BackendUnavailable
from pharmgpt.services.models import Document

from .drugs import DrugLexicon, shared_lexicon
from .gate import RelevanceGate
from .offline import extractive_answer, stream_text
from .owner_scope import document_scopes
from .prompts import build_messages, not_covered, sources_payload
from .retriever import Retriever, standalone_query
from .scope import DrugScope, ScopedDocument, scope_by_drug
from .sections import question_intents
from .vocabulary import expand_query

OFFLINE_MODEL = "offline-extractive"
STOPPED = "\n\n*(stopped)*"


@dataclass(frozen=True)
class AnswerRules:
    """The answer path's rules, each one switchable so `pharmgpt eval pharm --ablate` can
    measure what it is worth (docs/rag.md). The product always runs with all of them on."""

    drug_scope: bool = True  # search only documents about the drug asked
    section_intents: bool = True  # boost the sections the question is about
    lay_words: bool = True  # also search the label's words for everyday ones
    relevance_gate: bool = True  # refuse when nothing retrieved answers
    one_drug: bool = True  # offline: quote one document only

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class AnswerPlan:
    query: str
    passages: list  # the passages the answer may use, numbered 1..n in the prompt and in `sources`
    sources: list[dict[str, Any]]
    strict: bool
    covered: bool
    retrieved: list = field(default_factory=list)  # everything retrieved in scope, before the gate
    scope: DrugScope = field(default_factory=DrugScope)
    intents: list[str] = field(default_factory=list)
    prepared: str | None = None  # a refusal or an offline answer, fixed before streaming


class ChatEngine:
    def __init__(
        self,
        services: Services,
        retriever: Retriever,
        provider=None,
        *,
        fallback_models=(),
        lexicon: Callable[[], DrugLexicon] | None = None,
        gate: RelevanceGate | None = None,
        rules: AnswerRules | None = None,
    ):
        self.services = services
        self.rules = rules or AnswerRules()
        self.retriever = retriever
        self.provider = provider  # None: offline extractive answers
        self.fallback_models = list(fallback_models)
        self.lexicon = lexicon or shared_lexicon
        self.gate = gate or RelevanceGate()

    async def choose_model(self, preferred: str | None):
        """The model an answer uses (rag.llm.ModelChoice): the preference when the provider offers
        it, else the provider's default with a notice; None offline."""
        if self.provider is None:
            return None
        from .llm import choose_model

        return choose_model(await self.provider.catalogue(), preferred)

    async def scope_documents(self, user_id: str, conv_id: str) -> list[Document]:
        """Ready documents of the conversation, the user's library and their pharmacies' libraries
        (read through RLS for each question, so a removed member loses them at once)."""
        docs = self.services.documents
        conv_docs = await docs.get_conversation_documents(user_id, conv_id)
        library = await docs.get_library_documents(user_id)
        shared = await docs.get_shared_documents(user_id)
        return [d for d in conv_docs + library + shared if d.status == "ready"]

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
        strict = bool(prefs["strict_mode"])
        query = standalone_query(question, history)
        documents = await self.scope_documents(user_id, conv_id)
        if document_ids is not None:
            documents = [d for d in documents if d.id in set(document_ids)]
        earlier = [m["content"] for m in history if m.get("role") == "user" and m.get("content")]
        rules = self.rules
        if rules.drug_scope:
            lexicon = await asyncio.to_thread(self.lexicon)
            scope = scope_by_drug(
                lexicon,
                question,
                earlier,
                [
                    ScopedDocument(
                        d.id,
                        tuple((d.metadata or {}).get("drugs") or ()),
                        tuple((d.metadata or {}).get("products") or ()),
                    )
                    for d in documents
                ],
            )
        else:
            scope = DrugScope(document_ids=[d.id for d in documents])
        if scope.inherited:
            query = f"{query} {' '.join(scope.asked)}"
        intents = (
            (question_intents(question) or question_intents(query)) if rules.section_intents else []
        )
        expand = expand_query if rules.lay_words else (lambda text: text)
        retrieved = []
        if scope.document_ids:
            retrieved = await self.retriever.retrieve(
                user_id,
                expand(query),
                scope.document_ids,
                k=max(prefs["top_k"], 5),
                intents=intents,
                owners=document_scopes(documents),  # a pharmacy's documents: its library
            )
        # the user chose the document (Summarise FILE): its passages are the answer's matter; the
        # gate judges open questions, where the documents were not chosen
        if document_ids is not None:
            relevant = retrieved
        elif rules.relevance_gate:
            relevant = self.gate.passing(question, retrieved, scope, intents)
        else:
            relevant = retrieved[: prefs["top_k"]]
        plan = AnswerPlan(query, relevant, [], strict, bool(relevant), retrieved, scope, intents)
        with_model = self.provider is not None
        if not relevant:
            # strict off relaxes only what it can: a model may answer generally, offline shows the
            # closest in-scope passages; another drug's label is never a fallback
            relax = not strict and (with_model or (bool(retrieved) and not scope.uncovered))
            if relax:
                plan.passages = [] if scope.uncovered else retrieved[: prefs["top_k"]]
            else:
                offer = not scope.uncovered and (with_model or bool(retrieved))
                plan.prepared = not_covered(
                    scope.missing if scope.uncovered else None,
                    strict=strict and offer,
                    with_model=with_model,
                )
        if plan.prepared is None and not with_model:
            answer = extractive_answer(
                question,
                plan.passages,
                intents=intents,
                confident=plan.covered,
                expansion=expand(question)[len(question) :],
                drugs=scope.asked,
                one_document=rules.one_drug,
            )
            plan.prepared, quotes = answer.text, answer.quotes
            plan.sources = sources_payload(plan.passages, quotes=quotes)
        else:
            plan.sources = sources_payload(plan.passages)
        return plan

    async def answer(
        self,
        user_id: str,
        conv_id: str,
        question: str,
        *,
        message_id: str | None = None,
        document_ids: list[str] | None = None,
        replace: bool = False,
    ) -> AsyncIterator[dict]:
        """Stream an answer. `message_id`: the question's id (a resend or Regenerate reuses it);
        `replace`: the new answer replaces the earlier answers to it (Regenerate), once it is stored;
        `document_ids`: only these documents are searched."""
        cs = self.services.conversations
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
        prefs = await self.services.preferences.get_all(user_id)
        earlier = await cs.get_messages(user_id, conv_id, limit=9)
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
            async for piece in self._generate(question, plan, history, prefs, model):
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
        self, question: str, plan: AnswerPlan, history: list[dict], prefs: dict, model: str | None
    ) -> AsyncIterator[str]:
        if plan.prepared is not None:  # a refusal or the offline answer: no model call
            async for piece in stream_text(plan.prepared):
                yield piece
            return
        messages = build_messages(question, plan.passages, history, strict=plan.strict)
        stream = self.provider.stream(messages, model=model, temperature=prefs["temperature"])
        try:
            async for piece in stream:
                yield piece
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
