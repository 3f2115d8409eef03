"""Retrieval latency at scale, and the Chroma collection layout decision.

100,000 chunks spread over 100 users (1,000 each). Vectors are random unit
vectors (search cost does not depend on what the vectors mean, and embedding
100,000 real chunks would take most of an hour on 2 cores); texts are
synthetic drug sentences so BM25 has real work. Measures, for queries by
random users over their whole scope:
  * hybrid retrieval (Chroma + BM25 + RRF + text fill) excluding the query
    embedding, and including it (a real MiniLM embedding of the question);
  * the same dense query against the two layouts: one collection per user
    (what the app uses) vs one shared collection filtered by user_id.

    .venv/bin/python bench/retrieval.py [--users 100] [--per-user 1000] [--queries 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.figures import stats  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.lexical import LexicalIndex  # noqa: E402
from rag.retriever import Retriever  # noqa: E402
from rag.store import ChunkStore  # noqa: E402

DRUGS = ["warfarin", "atorvastatin", "metformin", "lisinopril", "amoxicillin", "omeprazole", "sertraline",
         "digoxin", "lithium", "amiodarone", "levothyroxine", "clopidogrel", "apixaban", "insulin glargine"]
TOPICS = ["dose adjustment in renal impairment", "hepatic impairment", "use in pregnancy", "interaction with",
          "maximum daily dose", "adverse reactions include", "contraindicated in", "monitoring of",
          "pharmacokinetics: half-life", "elderly patients"]


def sentence(rng: np.random.Generator) -> str:
    d1, d2 = rng.choice(DRUGS, 2, replace=False)
    t = rng.choice(TOPICS)
    return f"{d1} {t} {d2}; {int(rng.integers(1, 500))} mg every {int(rng.integers(4, 25))} hours. " \
           f"Section {int(rng.integers(1, 20))}.{int(rng.integers(1, 9))} of the label."


def unit(rng, n, d=384):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)






def run(args) -> dict:
    rng = np.random.default_rng(7)
    tmp = Path(tempfile.mkdtemp(prefix="retr-"))
    store = ChunkStore(path=tmp / "per-user")
    lexical = LexicalIndex(tmp / "lexical", store)
    users = [str(uuid.uuid4()) for _ in range(args.users)]
    docs_per_user = 10
    t0 = time.perf_counter()
    shared = ChunkStore(path=tmp / "shared")
    shared_col = shared.client.get_or_create_collection("shared", embedding_function=None,
                                                        metadata={"hnsw:space": "cosine"})
    for u in users:
        n = args.per_user
        vecs = unit(rng, n)
        texts = [sentence(rng) for _ in range(n)]
        doc_ids = [f"{u[:8]}-doc{i % docs_per_user}" for i in range(n)]
        ids = [f"{doc_ids[i]}:{i}" for i in range(n)]
        metas = [{"document_id": doc_ids[i], "chunk_index": i} for i in range(n)]
        store.upsert(u, ids, vecs, texts, [dict(m) for m in metas])
        lexical.rebuild(u)
        for i in range(0, n, 1000):
            shared_col.upsert(ids=[f"{u}:{x}" for x in ids[i:i + 1000]], embeddings=vecs[i:i + 1000],
                              documents=texts[i:i + 1000],
                              metadatas=[{**m, "user_id": u} for m in metas[i:i + 1000]])
    build_s = time.perf_counter() - t0

    embedder = Embedder()
    embedder.embed_query("warm up")
    retriever = Retriever(store, lexical, embedder)
    questions = [f"{rng.choice(DRUGS)} {rng.choice(TOPICS)}" for _ in range(args.queries)]
    qusers = [users[int(rng.integers(0, len(users)))] for _ in range(args.queries)]
    qvecs = unit(rng, args.queries)
    for i in range(min(20, args.queries)):  # warm caches (collections, BM25 indexes)
        retriever.retrieve_with_embedding(qusers[i], questions[i], qvecs[i], None)

    excl, incl, per_user, shared_ms, scoped = [], [], [], [], []
    for q, u, v in zip(questions, qusers, qvecs, strict=True):
        t = time.perf_counter()
        retriever.retrieve_with_embedding(u, q, v, None)
        excl.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        e = embedder.embed_query(q)
        retriever.retrieve_with_embedding(u, q, e, None)
        incl.append((time.perf_counter() - t) * 1000)
        scope = [f"{u[:8]}-doc{i}" for i in range(3)]  # a conversation's documents plus library
        t = time.perf_counter()
        retriever.retrieve_with_embedding(u, q, v, scope)
        scoped.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        store.query(u, v, 40)
        per_user.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        shared_col.query(query_embeddings=[v], n_results=40, where={"user_id": u})
        shared_ms.append((time.perf_counter() - t) * 1000)
    return {
        "chunks": args.users * args.per_user, "users": args.users, "queries": args.queries,
        "build_seconds": round(build_s, 1),
        "hybrid_excluding_embedding_ms": stats(excl),
        "hybrid_including_embedding_ms": stats(incl),
        "hybrid_scoped_to_3_documents_ms": stats(scoped),
        "dense_only_per_user_collection_ms": stats(per_user),
        "dense_only_shared_collection_filtered_ms": stats(shared_ms),
    }


def report(r: dict) -> None:
    print(f"retrieval benchmark: {r['chunks']} chunks over {r['users']} users, {r['queries']} queries "
          f"(built in {r['build_seconds']} s)")
    for k, v in r.items():
        if isinstance(v, dict):
            print(f"  {k:<44} p50 {v['p50']:>7.2f}  p95 {v['p95']:>7.2f}  max {v['max']:>7.2f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = run(a)
    print(json.dumps(out, indent=2)) if a.json else report(out)
