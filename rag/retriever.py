"""Hybrid retrieval: dense (Chroma) and BM25 rankings fused by reciprocal rank fusion.

Scoped to the documents the caller passes (a conversation's plus the user's
library) and always to the user's own chunks. A passage is "relevant" for
strict mode when its cosine similarity or its BM25 score clears a threshold.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from pharmgpt.services.ports import Passage

from .embeddings import Embedder
from .lexical import LexicalIndex
from .sections import DATA, SECONDARY, section_families
from .store import ChunkStore


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = 6
    candidates: int = 40
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    min_similarity: float = 0.35  # cosine, all-MiniLM-L6-v2
    min_bm25: float = 3.0
    section_boost: float = (
        1.0  # fused score x (1 + boost) for a chunk in a section the question asks for
    )


def section_weight(metadata: dict[str, Any], intents: list[str], boost: float) -> float:
    """Boost a chunk in a section the question asks for; damp summaries, leaflets and data elements."""
    families = section_families(metadata.get("section_code"), metadata.get("heading"))
    weight = 1.0
    if intents and families & set(intents):
        weight += boost * (1.0 if intents[0] in families else 0.6)
    if families & DATA:
        weight *= 0.5
    elif families & SECONDARY:
        weight *= 0.8
    return weight


def rrf(rankings: dict[str, list[str]], weights: dict[str, float], k: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, ids in rankings.items():
        w = weights.get(name, 1.0)
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + w / (k + rank)
    return scores


_FOLLOW_UP = re.compile(
    r"\b(it|its|this|that|these|those|they|them|the drug|the same|what about|and for|how about)\b",
    re.IGNORECASE,
)


def standalone_query(question: str, history: list[dict]) -> str:
    """Make a follow-up self-contained by adding the previous user question's words.

    Deterministic and model-free, so it works in offline mode too: "and in
    pregnancy?" after "warfarin dosing" searches for both.
    """
    previous = [m["content"] for m in history if m.get("role") == "user" and m.get("content")]
    if previous and is_follow_up(question):
        return f"{question} {previous[-1]}"
    return question


def is_follow_up(question: str) -> bool:
    """Short, or leaning on an earlier question ("and in pregnancy?", "what about its dose?")."""
    return len(question.split()) <= 6 or bool(_FOLLOW_UP.search(question))


class Retriever:
    def __init__(
        self,
        store: ChunkStore,
        lexical: LexicalIndex,
        embedder: Embedder,
        config: RetrievalConfig | None = None,
    ):
        self.store = store
        self.lexical = lexical
        self.embedder = embedder
        self.config = config or RetrievalConfig()

    async def retrieve(
        self,
        user_id: str,
        query: str,
        document_ids: list[str] | None,
        k: int | None = None,
        intents: list[str] | None = None,
    ) -> list[Passage]:
        emb = await asyncio.to_thread(self.embedder.embed_query, query)
        return await asyncio.to_thread(
            self.retrieve_with_embedding, user_id, query, emb, document_ids, k, intents=intents
        )

    def retrieve_with_embedding(
        self,
        user_id: str,
        query: str,
        embedding,
        document_ids: list[str] | None,
        k: int | None = None,
        mode: str = "hybrid",
        intents: list[str] | None = None,
    ) -> list[Passage]:
        cfg = self.config
        k = k or cfg.k
        dense = (
            self.store.query(user_id, embedding, cfg.candidates, document_ids)
            if mode != "bm25"
            else []
        )
        lex = (
            self.lexical.search(user_id, query, cfg.candidates, document_ids)
            if mode != "dense"
            else []
        )
        by_id: dict[str, Passage] = {}
        for rank, h in enumerate(dense, 1):
            by_id[h.chunk_id] = Passage(
                h.chunk_id,
                h.document_id,
                h.text,
                h.metadata,
                0.0,
                h.similarity,
                ranks={"dense": rank},
            )
        missing = []
        for rank, (cid, doc, score) in enumerate(lex, 1):
            p = by_id.get(cid)
            if p is None:
                missing.append(cid)
                p = by_id[cid] = Passage(cid, doc, "", {}, 0.0)
            p.bm25 = score
            p.ranks["bm25"] = rank
        fused = rrf(
            {"dense": [h.chunk_id for h in dense], "bm25": [c for c, _, _ in lex]},
            {"dense": cfg.dense_weight, "bm25": cfg.lexical_weight},
            cfg.rrf_k,
        )
        for cid, s in fused.items():
            by_id[cid].score = s
        if intents is not None and cfg.section_boost:
            self._fill_text(user_id, [p for p in by_id.values() if not p.text])
            for p in by_id.values():
                p.score *= section_weight(p.metadata, intents, cfg.section_boost)
        ranked = sorted(by_id.values(), key=lambda p: -p.score)[:k]
        self._fill_text(user_id, [p for p in ranked if not p.text])
        return ranked

    def _fill_text(self, user_id: str, passages: list[Passage]) -> None:
        """Lexical-only hits carry no text yet: fetch it (from the user's own collection)."""
        if not passages:
            return
        res = self.store.get(user_id, ids=[p.chunk_id for p in passages])
        found = {
            i: (t, m)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        }
        for p in passages:
            if p.chunk_id in found and found[p.chunk_id][1].get("user_id") == str(user_id):
                p.text, p.metadata = found[p.chunk_id]

    def relevant(self, passages: list[Passage]) -> list[Passage]:
        cfg = self.config
        return [
            p
            for p in passages
            if (p.similarity is not None and p.similarity >= cfg.min_similarity)
            or (p.bm25 is not None and p.bm25 >= cfg.min_bm25)
        ]
