"""The relevance gate: does anything retrieved in scope answer the question?

Strict mode refuses when nothing passes, with a model or without. Calibrated
on the pharmacist development set (docs/rag.md): a passage passes on its
cosine similarity, or on its BM25 score when its similarity is not negligible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pharmgpt.services.ports import Passage

from .scope import DrugScope
from .sections import DATA, section_families


@dataclass(frozen=True)
class RelevanceGate:
    min_similarity: float = 0.35
    min_bm25: float = 3.0
    # a word match alone ("mountain", "fix") is not an answer: it needs some meaning in common too
    min_similarity_with_words: float = 0.2

    def passing(
        self, question: str, passages: Sequence[Passage], scope: DrugScope, intents: Sequence[str]
    ) -> list[Passage]:
        if scope.uncovered:
            return []
        closest = max((p.similarity for p in passages if p.similarity is not None), default=0.0)
        if closest < self.min_similarity_with_words:  # word matches alone, nothing near in meaning
            return []
        # a question naming no drug, no product and no section of a label must be near in meaning:
        # a shared word ("mountain", "fix") is not enough
        words_count = bool(scope.asked or scope.by_product or intents)
        return [
            p
            for p in passages
            if not self._data_only(p)
            and (
                (p.similarity is not None and p.similarity >= self.min_similarity)
                or (words_count and p.bm25 is not None and p.bm25 >= self.min_bm25)
            )
        ]

    @staticmethod
    def _data_only(p: Passage) -> bool:
        """Product data, indexing files and cartons name a drug but answer no clinical question."""
        families = section_families(p.metadata.get("section_code"), p.metadata.get("heading"))
        return bool(families & DATA) and not families - DATA
