"""Retrieval quality on SciFact (BEIR layout), through the app's own retriever.

Each abstract (title + text) is indexed as one chunk of one synthetic user in
a throwaway store, exactly as the app indexes documents (Chroma + BM25), and
the same `Retriever` ranks it: dense only, BM25 only, and the RRF hybrid.
The hybrid's weights are tuned on the train split and reported on test.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pharmgpt.services.model_names import EMBEDDING_MODEL

from .embeddings import Embedder
from .lexical import LexicalIndex
from .retriever import RetrievalConfig, Retriever
from .store import ChunkStore

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"
EVAL_USER = "00000000-0000-4000-8000-00000000beef"


@dataclass
class Dataset:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load(
    data_dir: Path, split: str, limit_docs: int | None = None, limit_queries: int | None = None
) -> Dataset:
    corpus = {}
    with open(data_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[str(d["_id"])] = (d.get("title", ""), d.get("text", ""))
    queries = {}
    with open(data_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    with open(data_dir / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    if limit_queries is not None:
        qrels = dict(list(qrels.items())[:limit_queries])
    if limit_docs is not None:  # a small slice for tests: keep the judged documents
        keep = {d for rel in qrels.values() for d in rel}
        ids = list(keep) + [i for i in corpus if i not in keep][: max(0, limit_docs - len(keep))]
        corpus = {i: corpus[i] for i in ids if i in corpus}
    return Dataset(corpus, {q: queries[q] for q in qrels if q in queries}, qrels)


def ndcg_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    positives = {d for d, r in rel.items() if r > 0}
    return len(positives & set(ranked[:k])) / len(positives) if positives else 0.0


def mrr_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if rel.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def score(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    qs = [q for q in qrels if q in runs]
    return {
        "ndcg@10": round(float(np.mean([ndcg_at(runs[q], qrels[q], 10) for q in qs])), 4),
        "recall@10": round(float(np.mean([recall_at(runs[q], qrels[q], 10) for q in qs])), 4),
        "recall@100": round(float(np.mean([recall_at(runs[q], qrels[q], 100) for q in qs])), 4),
        "mrr@10": round(float(np.mean([mrr_at(runs[q], qrels[q], 10) for q in qs])), 4),
        "queries": len(qs),
    }


def cached_embeddings(
    embedder: Embedder, texts: list[str], cache_dir: Path | None
) -> tuple[np.ndarray, bool]:
    """Corpus vectors, reused across runs when `cache_dir` is given (keyed by the exact texts)."""
    if cache_dir is None:
        return embedder.embed(texts), False
    import hashlib

    name = getattr(embedder, "name", EMBEDDING_MODEL)  # the torch cache keeps its old key
    name = EMBEDDING_MODEL if name.endswith("/torch") else name
    key = hashlib.sha256("\x00".join([name, *texts]).encode()).hexdigest()[:24]
    path = cache_dir / f"corpus-{key}.npy"
    if path.exists():
        return np.load(path), True
    vecs = embedder.embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs, False


class ScifactIndex:
    def __init__(
        self,
        corpus: dict[str, tuple[str, str]],
        embedder: Embedder,
        workdir: Path,
        cache_dir: Path | None = None,
    ):
        self.ids = list(corpus)
        self.store = ChunkStore(path=workdir / "chroma")
        self.lexical = LexicalIndex(workdir / "lexical", self.store)
        self.embedder = embedder
        texts = [f"{t}. {x}".strip(". ") for t, x in (corpus[i] for i in self.ids)]
        t0 = time.perf_counter()
        vecs, self.cached = cached_embeddings(embedder, texts, cache_dir)
        self.embed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.store.upsert(
            EVAL_USER,
            [f"{i}:0" for i in self.ids],
            vecs,
            texts,
            [{"document_id": i, "chunk_index": 0} for i in self.ids],
            batch=2000,
        )
        self.lexical.rebuild(EVAL_USER)
        self.index_s = time.perf_counter() - t0

    def run(
        self,
        queries: dict[str, str],
        mode: str,
        config: RetrievalConfig,
        query_vecs: dict[str, np.ndarray],
    ) -> dict[str, list[str]]:
        r = Retriever(self.store, self.lexical, self.embedder, config)
        out = {}
        for qid, text in queries.items():
            passages = r.retrieve_with_embedding(
                EVAL_USER, text, query_vecs[qid], None, k=100, mode=mode
            )
            out[qid] = [p.document_id for p in passages]
        return out


def evaluate(
    data_dir: Path = DEFAULT_DATA,
    split: str = "test",
    *,
    tune: bool = True,
    limit_docs: int | None = None,
    limit_queries: int | None = None,
    embedder: Embedder | None = None,
    cache_dir: Path | None = None,
) -> dict:
    embedder = embedder or Embedder()
    test = load(data_dir, split, limit_docs, limit_queries)
    with tempfile.TemporaryDirectory(prefix="scifact-") as tmp:
        index = ScifactIndex(test.corpus, embedder, Path(tmp), cache_dir)
        base = RetrievalConfig(k=100, candidates=100)
        weights = (1.0, 1.0)
        if tune and split != "train":
            train = load(data_dir, "train")
            train_q = {q: t for q, t in train.queries.items()}
            tv = dict(zip(train_q, embedder.embed(list(train_q.values())), strict=True))
            best = -1.0
            for wd in (0.5, 0.75, 1.0, 1.25, 1.5):
                cfg = RetrievalConfig(k=100, candidates=100, dense_weight=wd, lexical_weight=1.0)
                n = score(index.run(train_q, "hybrid", cfg, tv), train.qrels)["ndcg@10"]
                if n > best:
                    best, weights = n, (wd, 1.0)
        t0 = time.perf_counter()
        qv = dict(zip(test.queries, embedder.embed(list(test.queries.values())), strict=True))
        query_embed_s = time.perf_counter() - t0
        results = {}
        for mode in ("dense", "bm25", "hybrid"):
            cfg = (
                RetrievalConfig(
                    k=100, candidates=100, dense_weight=weights[0], lexical_weight=weights[1]
                )
                if mode == "hybrid"
                else base
            )
            t0 = time.perf_counter()
            runs = index.run(test.queries, mode, cfg, qv)
            results[mode] = {
                **score(runs, test.qrels),
                "ms_per_query": round((time.perf_counter() - t0) * 1000 / max(1, len(runs)), 2),
            }
        return {
            "split": split,
            "documents": len(test.corpus),
            "results": results,
            "hybrid_weights": {"dense": weights[0], "bm25": weights[1]},
            "indexing": {
                "embed_seconds": round(index.embed_s, 1),
                "embeddings_from_cache": index.cached,
                "docs_per_second": round(len(test.corpus) / index.embed_s, 1),
                "store_and_bm25_seconds": round(index.index_s, 1),
                "query_embed_seconds": round(query_embed_s, 2),
            },
            "embedder": getattr(embedder, "name", "?"),
            "published": {"bm25": 0.679, "minilm_dense": 0.645},
        }


def report(r: dict) -> str:
    lines = [
        f"SciFact {r['split']} ({r['documents']} abstracts, "
        f"{r['results']['hybrid']['queries']} queries, "
        f"embedder {r.get('embedder', '?')})",
        f"{'mode':<8}{'nDCG@10':>9}{'R@10':>8}{'R@100':>8}{'MRR@10':>8}{'ms/q':>8}",
    ]
    for mode, m in r["results"].items():
        lines.append(
            f"{mode:<8}{m['ndcg@10']:>9.4f}{m['recall@10']:>8.4f}{m['recall@100']:>8.4f}"
            f"{m['mrr@10']:>8.4f}{m['ms_per_query']:>8.2f}"
        )
    ix = r["indexing"]
    lines.append(
        f"hybrid weights (tuned on train): dense {r['hybrid_weights']['dense']}, bm25 "
        f"{r['hybrid_weights']['bm25']}"
    )
    lines.append(
        f"indexing: embedding {ix['embed_seconds']} s ({ix['docs_per_second']} docs/s"
        f"{', from cache' if ix.get('embeddings_from_cache') else ''}), "
        f"store + BM25 {ix['store_and_bm25_seconds']} s"
    )
    lines.append("published nDCG@10: BM25 0.679, all-MiniLM-L6-v2 dense 0.645")
    return "\n".join(lines)
