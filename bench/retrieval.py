"""Retrieval latency at scale, and the Chroma collection layout decision.

Query embedding alone, one question at a time, for the configured embedder
and torch side by side. Then two corpora: one user with 14,000 chunks (a big
library; every query searches all of it) and 100,000 chunks spread over 100
users (1,000 each). Vectors are random unit
vectors (search cost does not depend on what the vectors mean, and embedding
100,000 real chunks would take most of an hour on 2 cores); texts are
synthetic drug sentences so BM25 has real work. Measures, for queries by
random users over their whole scope:
  * hybrid retrieval (Chroma + BM25 + RRF + text fill) excluding the query
    embedding, and including it (a real MiniLM embedding of the question,
    with each embedder);
  * the same dense query against the two layouts: one collection per user
    (what the app uses) vs one shared collection filtered by user_id.

    .venv/bin/python bench/retrieval.py [--users 100] [--per-user 1000] [--single-user-chunks 14000]
        [--queries 300] [--embedder onnx-int8|torch] [--models-dir .pharmgpt] [--no-shared] [--json]

Pharmacy mode (issue 15), instead of the two corpora above: one pharmacy library of
20,000 chunks (200 documents) shared by its members, each of whom also has a library
of their own; a question searches the member's documents and the pharmacy's, each in
its own collection, merged (rag/retriever.py). Reports the whole scope (a question
naming no drug) and a drug-scoped one (3 pharmacy documents and 1 of the member's),
including the query embedding, and what restoring a `scope_id` where-filter would cost.

    .venv/bin/python bench/retrieval.py --pharmacy [--pharmacy-chunks 20000] [--users 20]
        [--per-user 1000] [--queries 200] [--models-dir .pharmgpt] [--json]
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
from pharmgpt.rag.embeddings import Embedder, make_embedder  # noqa: E402
from pharmgpt.rag.lexical import LexicalIndex  # noqa: E402
from pharmgpt.rag.owner_scope import OwnerScope  # noqa: E402
from pharmgpt.rag.retriever import Retriever  # noqa: E402
from pharmgpt.rag.store import ChunkStore  # noqa: E402
from pharmgpt.services.model_names import EMBEDDER_KINDS, ONNX_INT8  # noqa: E402

from bench.figures import stats  # noqa: E402

DRUGS = [
    "warfarin",
    "atorvastatin",
    "metformin",
    "lisinopril",
    "amoxicillin",
    "omeprazole",
    "sertraline",
    "digoxin",
    "lithium",
    "amiodarone",
    "levothyroxine",
    "clopidogrel",
    "apixaban",
    "insulin glargine",
]
TOPICS = [
    "dose adjustment in renal impairment",
    "hepatic impairment",
    "use in pregnancy",
    "interaction with",
    "maximum daily dose",
    "adverse reactions include",
    "contraindicated in",
    "monitoring of",
    "pharmacokinetics: half-life",
    "elderly patients",
]


def sentence(rng: np.random.Generator) -> str:
    d1, d2 = rng.choice(DRUGS, 2, replace=False)
    t = rng.choice(TOPICS)
    return (
        f"{d1} {t} {d2}; {int(rng.integers(1, 500))} mg every {int(rng.integers(4, 25))} hours. "
        f"Section {int(rng.integers(1, 20))}.{int(rng.integers(1, 9))} of the label."
    )


def unit(rng, n, d=384):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(
    store: ChunkStore,
    lexical: LexicalIndex,
    users: list[str],
    per_user: int,
    rng,
    shared_col=None,
    docs_per_user: int = 10,
) -> float:
    t0 = time.perf_counter()
    for u in users:
        n = per_user
        vecs = unit(rng, n)
        texts = [sentence(rng) for _ in range(n)]
        doc_ids = [f"{u[:8]}-doc{i % docs_per_user}" for i in range(n)]
        ids = [f"{doc_ids[i]}:{i}" for i in range(n)]
        metas = [{"document_id": doc_ids[i], "chunk_index": i} for i in range(n)]
        store.upsert(u, ids, vecs, texts, [dict(m) for m in metas], batch=2000)
        lexical.rebuild(u)
        if shared_col is not None:
            for i in range(0, n, 1000):
                shared_col.upsert(
                    ids=[f"{u}:{x}" for x in ids[i : i + 1000]],
                    embeddings=vecs[i : i + 1000],
                    documents=texts[i : i + 1000],
                    metadatas=[{**m, "user_id": u} for m in metas[i : i + 1000]],
                )
    return time.perf_counter() - t0


def query_embedding(embedders: dict[str, Embedder], questions: list[str]) -> dict:
    """One question at a time, as the chat does; the embedders take turns per question."""
    times: dict[str, list[float]] = {k: [] for k in embedders}
    for q in questions:
        for name, e in embedders.items():
            t = time.perf_counter()
            e.embed_query(q)
            times[name].append((time.perf_counter() - t) * 1000)
    return {f"query_embedding_{k}_ms": stats(v) for k, v in times.items()}


def hybrid(
    store,
    lexical,
    embedders: dict[str, Embedder],
    users: list[str],
    questions: list[str],
    rng,
    shared_col=None,
) -> dict:
    first = next(iter(embedders.values()))
    retriever = Retriever(store, lexical, first)
    qusers = [users[int(rng.integers(0, len(users)))] for _ in questions]
    qvecs = unit(rng, len(questions))
    for i in range(min(20, len(questions))):  # warm caches (collections, BM25 indexes)
        retriever.retrieve_with_embedding(qusers[i], questions[i], qvecs[i], None)
    excl, scoped, per_user, shared_ms = [], [], [], []
    incl: dict[str, list[float]] = {k: [] for k in embedders}
    for q, u, v in zip(questions, qusers, qvecs, strict=True):
        t = time.perf_counter()
        retriever.retrieve_with_embedding(u, q, v, None)
        excl.append((time.perf_counter() - t) * 1000)
        for name, e in embedders.items():
            t = time.perf_counter()
            retriever.retrieve_with_embedding(u, q, e.embed_query(q), None)
            incl[name].append((time.perf_counter() - t) * 1000)
        scope = [f"{u[:8]}-doc{i}" for i in range(3)]  # a conversation's documents plus library
        t = time.perf_counter()
        retriever.retrieve_with_embedding(u, q, v, scope)
        scoped.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        store.query(u, v, 40)
        per_user.append((time.perf_counter() - t) * 1000)
        if shared_col is not None:
            t = time.perf_counter()
            shared_col.query(query_embeddings=[v], n_results=40, where={"user_id": u})
            shared_ms.append((time.perf_counter() - t) * 1000)
    out = {"hybrid_excluding_embedding_ms": stats(excl)}
    out.update({f"hybrid_including_{k}_embedding_ms": stats(v) for k, v in incl.items()})
    out["hybrid_scoped_to_3_documents_ms"] = stats(scoped)
    out["dense_only_per_user_collection_ms"] = stats(per_user)
    if shared_ms:
        out["dense_only_shared_collection_filtered_ms"] = stats(shared_ms)
    return out


def run(args) -> dict:
    rng = np.random.default_rng(7)
    tmp = Path(tempfile.mkdtemp(prefix="retr-"))
    embedders: dict[str, Embedder] = {
        args.embedder: make_embedder(args.embedder, args.models_dir or tmp)
    }
    if args.embedder != "torch":
        embedders["torch"] = make_embedder("torch", tmp)
    for e in embedders.values():
        e.embed_query("warm up")  # model load and the ONNX build are first-use costs, not latency
    questions = [f"{rng.choice(DRUGS)} {rng.choice(TOPICS)}" for _ in range(args.queries)]
    out: dict = {"embedder": embedders[args.embedder].name, "queries": args.queries}
    out.update(query_embedding(embedders, questions))

    # one user with a large library: every query searches all of their chunks
    store = ChunkStore(path=tmp / "one-user")
    lexical = LexicalIndex(tmp / "lexical-one", store)
    big = [str(uuid.uuid4())]
    build_s = build(store, lexical, big, args.single_user_chunks, rng, docs_per_user=100)
    out[f"one_user_{args.single_user_chunks}"] = {
        "chunks": args.single_user_chunks,
        "build_seconds": round(build_s, 1),
        **hybrid(store, lexical, embedders, big, questions, rng),
    }
    store.close()

    # many users: the per-user layout against one shared collection filtered by user_id
    store = ChunkStore(path=tmp / "per-user")
    lexical = LexicalIndex(tmp / "lexical", store)
    users = [str(uuid.uuid4()) for _ in range(args.users)]
    shared_col = None
    if not args.no_shared:
        shared = ChunkStore(path=tmp / "shared")
        shared_col = shared.client.get_or_create_collection(
            "shared", embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
    build_s = build(store, lexical, users, args.per_user, rng, shared_col)
    out[f"users_{args.users}"] = {
        "chunks": args.users * args.per_user,
        "users": args.users,
        "build_seconds": round(build_s, 1),
        **hybrid(store, lexical, embedders, users, questions, rng, shared_col),
    }
    return out


def pharmacy(args) -> dict:
    """One pharmacy library of `--pharmacy-chunks` plus `--users` member libraries."""
    rng = np.random.default_rng(11)
    tmp = Path(tempfile.mkdtemp(prefix="retr-ph-"))
    embedder = make_embedder(args.embedder, args.models_dir or tmp)
    embedder.embed_query("warm up")
    questions = [f"{rng.choice(DRUGS)} {rng.choice(TOPICS)}" for _ in range(args.queries)]
    store = ChunkStore(path=tmp / "chroma")
    lexical = LexicalIndex(tmp / "lexical", store)
    ph = OwnerScope.pharmacy(str(uuid.uuid4()))
    users = [str(uuid.uuid4()) for _ in range(args.users)]
    t0 = time.perf_counter()
    n_docs = 200
    n = args.pharmacy_chunks
    ph_docs = [f"ph-doc{i}" for i in range(n_docs)]
    for start in range(0, n, 5000):
        m = min(5000, n - start)
        ids = [f"{ph_docs[i % n_docs]}:{i}" for i in range(start, start + m)]
        store.upsert(
            ph,
            ids,
            unit(rng, m),
            [sentence(rng) for _ in range(m)],
            [{"document_id": i.split(":")[0], "chunk_index": int(i.split(":")[1])} for i in ids],
            batch=2000,
        )
    lexical.rebuild(ph)
    ph_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    build(store, lexical, users, args.per_user, rng)
    users_build = time.perf_counter() - t0
    retriever = Retriever(store, lexical, embedder)
    owners = {d: ph for d in ph_docs}
    mine = {u: [f"{u[:8]}-doc{i}" for i in range(10)] for u in users}
    qusers = [users[int(rng.integers(0, len(users)))] for _ in questions]
    for q, u in list(zip(questions, qusers, strict=True))[:20]:  # warm collections and BM25
        retriever.retrieve_with_embedding(
            u, q, embedder.embed_query(q), mine[u] + ph_docs, owners=owners
        )
    whole, whole_incl, scoped, unfiltered, filtered = [], [], [], [], []
    for q, u in zip(questions, qusers, strict=True):
        t = time.perf_counter()
        v = embedder.embed_query(q)
        retriever.retrieve_with_embedding(u, q, v, mine[u] + ph_docs, owners=owners)
        whole_incl.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        retriever.retrieve_with_embedding(u, q, v, mine[u] + ph_docs, owners=owners)
        whole.append((time.perf_counter() - t) * 1000)
        picked = [ph_docs[int(i)] for i in rng.choice(n_docs, 3, replace=False)]
        t = time.perf_counter()
        retriever.retrieve_with_embedding(
            u, q, embedder.embed_query(q), mine[u][:1] + picked, owners=owners
        )
        scoped.append((time.perf_counter() - t) * 1000)
        col = store._collection(ph, create=False)
        t = time.perf_counter()
        col.query(query_embeddings=[v], n_results=40, include=["metadatas", "distances"])
        unfiltered.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        col.query(
            query_embeddings=[v],
            n_results=40,
            where={"scope_id": ph.id},
            include=["metadatas", "distances"],
        )
        filtered.append((time.perf_counter() - t) * 1000)
    return {
        "embedder": embedder.name,
        "queries": args.queries,
        f"pharmacy_{n}_plus_{args.users}_users_x_{args.per_user}": {
            "chunks": n + args.users * args.per_user,
            "pharmacy_chunks": n,
            "users": args.users,
            "build_seconds": round(ph_build + users_build, 1),
            "hybrid_whole_scope_including_embedding_ms": stats(whole_incl),
            "hybrid_whole_scope_excluding_embedding_ms": stats(whole),
            "hybrid_drug_scoped_including_embedding_ms": stats(scoped),
            "dense_pharmacy_collection_no_filter_ms": stats(unfiltered),
            "dense_pharmacy_collection_scope_id_filter_ms": stats(filtered),
        },
    }


def report(r: dict) -> None:
    print(f"retrieval benchmark: {r['queries']} queries, embedder {r['embedder']}")
    for k, v in r.items():
        if isinstance(v, dict) and "p50" in v:
            print(f"  {k:<48} p50 {v['p50']:>7.2f}  p95 {v['p95']:>7.2f}  max {v['max']:>7.2f} ms")
    for v in r.values():
        if isinstance(v, dict) and "chunks" in v:
            print(
                f"{v['chunks']} chunks"
                + (
                    f": a pharmacy library of {v['pharmacy_chunks']}"
                    if "pharmacy_chunks" in v
                    else ""
                )
                + (f" over {v['users']} users" if "users" in v else " in one user's collection")
                + f" (built in {v['build_seconds']} s):"
            )
            for name, m in v.items():
                if isinstance(m, dict):
                    print(
                        f"  {name:<48} p50 {m['p50']:>7.2f}  p95 {m['p95']:>7.2f}  "
                        f"max {m['max']:>7.2f} ms"
                    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--single-user-chunks", type=int, default=14000)
    ap.add_argument("--embedder", choices=EMBEDDER_KINDS, default=ONNX_INT8)
    ap.add_argument(
        "--models-dir", type=Path, default=None, help="an existing ONNX build to reuse (a data dir)"
    )
    ap.add_argument(
        "--no-shared", action="store_true", help="skip the shared-collection layout (faster build)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pharmacy", action="store_true", help="the pharmacy-library mode (issue 15)")
    ap.add_argument("--pharmacy-chunks", type=int, default=20000)
    a = ap.parse_args()
    if a.pharmacy and a.users == 100:
        a.users = 20  # member libraries beside the pharmacy's (the default here)
    out = pharmacy(a) if a.pharmacy else run(a)
    print(json.dumps(out, indent=2)) if a.json else report(out)
