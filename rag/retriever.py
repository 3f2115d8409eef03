"""Hybrid retrieval: dense (Chroma) and BM25 rankings fused by reciprocal rank fusion.

Scoped to the documents the caller passes (a conversation's, the user's library
and their pharmacies' libraries, as read through RLS for this question), each
searched in the owner scope it lives in (rag/owner_scope.py); the rankings of
all scopes are merged before fusion. A passage is "relevant" for
strict mode when its cosine similarity or its BM25 score clears a threshold.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pharmgpt.services.ports import Passage

from .embeddings import Embedder
from .lexical import LexicalIndex
from .owner_scope import OwnerScope
from .scoped_dense import DocumentVectors
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
    """Boost a chunk in a section the question asks for; damp summaries, leaflets, data elements."""
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


def searches(
    user_id: str,
    document_ids: list[str] | None,
    owners: Mapping[str, OwnerScope] | None = None,
) -> list[tuple[OwnerScope, list[str] | None]]:
    """Which scopes to search and, in each, which documents: `owners` says where each document
    lives (document id -> scope); a document it does not name is the user's own. None: the
    user's whole library only."""
    mine = OwnerScope.user(user_id)
    if document_ids is None:
        return [(mine, None)]
    groups: dict[OwnerScope, list[str]] = {}
    for d in document_ids:
        groups.setdefault((owners or {}).get(str(d), mine), []).append(str(d))
    return sorted(groups.items(), key=lambda kv: (kv[0] != mine, kv[0]))


class Retriever:
    # a scope's dense search skips Chroma's document where-filter (costly: BENCHMARKS.md): when the
    # documents asked hold at least this share of its chunks, one unfiltered search with other
    # documents' hits dropped after; when they are a few, their vectors scored exactly
    # (rag/scoped_dense.py)
    UNFILTERED_SHARE = 0.5

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
        self.vectors = DocumentVectors(store)  # a few documents' vectors, for scoped searches

    async def retrieve(
        self,
        user_id: str,
        query: str,
        document_ids: list[str] | None,
        k: int | None = None,
        intents: list[str] | None = None,
        owners: Mapping[str, OwnerScope] | None = None,
    ) -> list[Passage]:
        """The best passages of `document_ids` (None: the user's whole library); `owners`: the
        scope of each document outside the user's library (a pharmacy's, rag/owner_scope.py)."""
        emb = await asyncio.to_thread(self.embedder.embed_query, query)
        return await asyncio.to_thread(
            self.retrieve_with_embedding,
            user_id,
            query,
            emb,
            document_ids,
            k,
            intents=intents,
            owners=owners,
        )

    def _dense(self, scope: OwnerScope, embedding, ids: list[str] | None, n: int):
        """Nearest chunks of `ids` in one scope, without Chroma's where-filter where it can."""
        if ids is None:
            return self.store.query(scope, embedding, n)
        wanted = set(ids)
        counts = self.lexical.chunk_counts(scope)
        total = sum(counts.values())
        covered = sum(c for d, c in counts.items() if d in wanted)
        if total and covered >= self.UNFILTERED_SHARE * total:
            hits = self.store.query(scope, embedding, min(total, math.ceil(n * total / covered)))
            return [h for h in hits if h.document_id in wanted][:n]
        if 0 < covered <= self.vectors.max_vectors // 4:  # a few documents: scored exactly here
            return self.vectors.search(scope, embedding, self.lexical.segments(scope, ids), n)
        return self.store.query(scope, embedding, n, ids)

    def retrieve_with_embedding(
        self,
        user_id: str,
        query: str,
        embedding,
        document_ids: list[str] | None,
        k: int | None = None,
        mode: str = "hybrid",
        intents: list[str] | None = None,
        owners: Mapping[str, OwnerScope] | None = None,
    ) -> list[Passage]:
        cfg = self.config
        k = k or cfg.k
        plan = searches(user_id, document_ids, owners)
        dense, lex, where = [], [], {}
        for scope, ids in plan:
            if mode != "bm25":
                for h in self._dense(scope, embedding, ids, cfg.candidates):
                    dense.append(h)
                    where[h.chunk_id] = scope
            if mode != "dense":
                for cid, doc, score in self.lexical.search(scope, query, cfg.candidates, ids):
                    lex.append((cid, doc, score))
                    where.setdefault(cid, scope)
        # one ranking per side across scopes: cosines share one embedder, BM25 scores one formula
        dense = sorted(dense, key=lambda h: -h.similarity)[: cfg.candidates]
        lex = sorted(lex, key=lambda x: (-x[2], x[0]))[: cfg.candidates]
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
        for rank, (cid, doc, score) in enumerate(lex, 1):
            p = by_id.get(cid)
            if p is None:
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
            self._fill_text(where, [p for p in by_id.values() if not p.text])
            for p in by_id.values():
                p.score *= section_weight(p.metadata, intents, cfg.section_boost)
        ranked = sorted(by_id.values(), key=lambda p: -p.score)[:k]
        self._fill_text(where, [p for p in ranked if not p.text])
        return ranked

    def _fill_text(self, where: dict[str, OwnerScope], passages: list[Passage]) -> None:
        """Lexical-only hits carry no text yet: fetch it from the collection of their scope."""
        by_scope: dict[OwnerScope, list[Passage]] = {}
        for p in passages:
            by_scope.setdefault(where[p.chunk_id], []).append(p)
        for scope, group in by_scope.items():
            res = self.store.get(scope, ids=[p.chunk_id for p in group])
            found = {
                i: (t, m)
                for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
            }
            for p in group:
                if p.chunk_id in found and scope.owns(found[p.chunk_id][1]):
                    p.text, p.metadata = found[p.chunk_id]

    def relevant(self, passages: list[Passage]) -> list[Passage]:
        cfg = self.config
        return [
            p
            for p in passages
            if (p.similarity is not None and p.similarity >= cfg.min_similarity)
            or (p.bm25 is not None and p.bm25 >= cfg.min_bm25)
        ]
