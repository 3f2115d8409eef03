"""What an answer is made from (DESIGN D8): the `services.ports.Retriever` of the answer path.

Scope by drug, retrieve, gate; then the prompt for a model, or offline the extractive answer,
and the numbered sources. The use-case (services/answering.py) stores and streams the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, fields

from pharmgpt.services.ports import AnswerPlan, DrugScope, Question

from .drugs import DrugLexicon, shared_lexicon
from .gate import RelevanceGate
from .offline import extractive_answer
from .owner_scope import document_scopes
from .prompts import build_messages, not_covered, sources_payload
from .retriever import Retriever, standalone_query
from .scope import scope_by_drug
from .sections import question_intents
from .vocabulary import expand_query


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


class AnswerPlanner:
    def __init__(
        self,
        retriever: Retriever,
        *,
        lexicon: Callable[[], DrugLexicon] | None = None,
        gate: RelevanceGate | None = None,
        rules: AnswerRules | None = None,
    ):
        self.retriever = retriever
        self.rules = rules or AnswerRules()
        self.lexicon = lexicon or shared_lexicon
        self.gate = gate or RelevanceGate()

    async def plan(self, q: Question) -> AnswerPlan:
        question, history, documents, strict = q.text, q.history, q.documents, q.strict
        query = standalone_query(question, history)
        earlier = [m["content"] for m in history if m.get("role") == "user" and m.get("content")]
        rules = self.rules
        if rules.drug_scope:
            lexicon = await asyncio.to_thread(self.lexicon)
            scope = scope_by_drug(lexicon, question, earlier, documents)
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
                q.user_id,
                expand(query),
                scope.document_ids,
                k=max(q.top_k, 5),
                intents=intents,
                owners=document_scopes(documents),  # a pharmacy's documents: its library
            )
        # the user chose the document (Summarise FILE): its passages are the answer's matter; the
        # gate judges open questions, where the documents were not chosen
        if q.chosen:
            relevant = retrieved
        elif rules.relevance_gate:
            relevant = self.gate.passing(question, retrieved, scope, intents)
        else:
            relevant = retrieved[: q.top_k]
        plan = AnswerPlan(query, relevant, [], strict, bool(relevant), retrieved, scope, intents)
        with_model = q.with_model
        if not relevant:
            # strict off relaxes only what it can: a model may answer generally, offline shows the
            # closest in-scope passages; another drug's label is never a fallback
            relax = not strict and (with_model or (bool(retrieved) and not scope.uncovered))
            if relax:
                plan.passages = [] if scope.uncovered else retrieved[: q.top_k]
            else:
                offer = not scope.uncovered and (with_model or bool(retrieved))
                plan.prepared = not_covered(
                    scope.missing if scope.uncovered else None,
                    strict=strict and offer,
                    with_model=with_model,
                    in_flight=q.in_flight,
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
            if plan.prepared is None:
                plan.messages = build_messages(question, plan.passages, history, strict=strict)
        return plan
