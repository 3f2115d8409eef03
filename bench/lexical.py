"""Adding one document to a user's BM25 index: full bm25s rebuild (before) vs incremental (after).

A user with 1,000 documents of 10 chunks each (10,000 chunks; chunk texts are
1,000-character windows of the shared FDA labels, drawn at random) is put in a
real Chroma store. Then, alternating, the 1,001st document is added:
  * before: what `rag/lexical.py` did until issue 14 on every add or delete —
    read every chunk back from Chroma, tokenize, `bm25s.BM25().index`, save;
  * after: `LexicalIndex.add_document` with the chunks the worker just
    stored — tokenize them, write one segment and the manifest.
Also the query latency of both at this size (bm25s `get_scores` + top-k vs
the merged segments), and the first load after a restart.

    .venv/bin/python bench/lexical.py [--docs 1000] [--chunks 10] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pharmgpt.rag.eval_pharm import DEFAULT_LABELS  # noqa: E402
from pharmgpt.rag.lexical import LexicalIndex, tokenize  # noqa: E402
from pharmgpt.rag.store import ChunkStore  # noqa: E402

from bench.figures import stats  # noqa: E402

QUERIES = [
    "warfarin bleeding risk",
    "dose adjustment in renal impairment",
    "atorvastatin myopathy",
    "adalimumab serious infections tuberculosis",
    "hepatic impairment",
    "use in pregnancy",
    "maximum daily dose",
    "pediatric patients",
    "contraindicated hypersensitivity",
    "drug interactions",
]


def label_windows() -> list[str]:
    texts = []
    for p in sorted((DEFAULT_LABELS).glob("*.xml")):
        t = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", p.read_text(errors="replace")))
        texts += [t[i : i + 1000] for i in range(0, len(t) - 200, 800)]
    return texts


def put_document(store: ChunkStore, user: str, doc: str, texts: list[str], rng) -> None:
    vec = rng.normal(size=(len(texts), 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    store.upsert(
        user,
        [f"{doc}:{i}" for i in range(len(texts))],
        vec,
        texts,
        [{"document_id": doc, "chunk_index": i} for i in range(len(texts))],
    )


def full_rebuild(store: ChunkStore, user: str, target: Path, stemmer):
    """The pre-issue-14 rebuild: the whole corpus, every time."""
    import bm25s

    corpus = store.all_chunks(user)
    retriever = bm25s.BM25()
    retriever.index(tokenize([c[2] for c in corpus], stemmer), show_progress=False)
    shutil.rmtree(target, ignore_errors=True)
    retriever.save(str(target))
    (target / "pharmgpt_ids.json").write_text(
        json.dumps({"ids": [c[0] for c in corpus], "doc_ids": [c[1] for c in corpus]})
    )
    return retriever, [c[0] for c in corpus]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(14)
    pool = label_windows()
    work = Path(tempfile.mkdtemp(prefix="pharmgpt-bench-lexical-"))
    try:
        store = ChunkStore(path=work / "chroma")
        lex = LexicalIndex(work / "lex", store)
        user = str(uuid.uuid4())
        t0 = time.perf_counter()
        ids, texts, metas = [], [], []
        for d in range(args.docs):
            for i, j in enumerate(rng.integers(0, len(pool), args.chunks)):
                ids.append(f"d{d:05d}:{i}")
                texts.append(pool[j])
                metas.append({"document_id": f"d{d:05d}", "chunk_index": i})
        vec = rng.normal(size=(len(ids), 384)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        store.upsert(user, ids, vec, texts, metas, batch=5000)
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        lex.rebuild(user)
        seg_rebuild_s = time.perf_counter() - t0
        before, after = [], []
        for r in range(args.rounds):
            doc = f"new{r:03d}"
            texts = [pool[i] for i in rng.integers(0, len(pool), args.chunks)]
            put_document(store, user, doc, texts, rng)
            t0 = time.perf_counter()
            old, old_ids = full_rebuild(store, user, work / "old", lex.stemmer)
            before.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            lex.add_document(
                user, doc, [(f"{doc}:{i}", t) for i, t in enumerate(texts)]
            )  # as the worker does
            after.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        store.delete_documents(user, ["new000"])
        lex.remove_documents(user, ["new000"])
        delete_ms = (time.perf_counter() - t0) * 1000
        q_before, q_after = [], []
        lex.search(user, "warfarin", 1)  # after the last change: the per-term merge happens once
        for _ in range(5):
            for q in QUERIES:
                toks = [t for t in tokenize([q], lex.stemmer)[0] if t in old.vocab_dict]
                t0 = time.perf_counter()
                s = np.asarray(old.get_scores(toks), dtype=np.float32)
                top = np.argpartition(-s, 39)[:40]
                _ = [old_ids[i] for i in top[np.argsort(-s[top])]]
                q_before.append((time.perf_counter() - t0) * 1000)
                tokenize([q], lex.stemmer)  # warm, as the old path tokenized outside the timing too
                t0 = time.perf_counter()
                lex.search(user, q, 40)
                q_after.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        LexicalIndex(work / "lex", store).search(user, "warfarin", 40)
        restart_ms = (time.perf_counter() - t0) * 1000
        b, a = stats(before), stats(after)
        out = {
            "chunks": store.count(user),
            "documents": args.docs + args.rounds,
            "setup_s": round(setup_s, 1),
            "add_before_ms": b,
            "add_after_ms": a,
            "ratio_p50": round(a["p50"] / b["p50"], 4),
            "delete_after_ms": round(delete_ms, 1),
            "segment_full_rebuild_s": round(seg_rebuild_s, 2),
            "query_before_ms": stats(q_before),
            "query_after_ms": stats(q_after),
            "first_load_after_restart_ms": round(restart_ms, 1),
        }
        if args.json:
            print(json.dumps(out))
        else:
            print(
                f"user with {out['chunks']} chunks in {out['documents']} documents "
                f"(setup {setup_s:.1f} s)"
            )
            print(
                f"add one document  before (full bm25s rebuild): "
                f"p50 {b['p50']} ms  p95 {b['p95']} ms"
            )
            print(
                f"add one document  after  (incremental)       : "
                f"p50 {a['p50']} ms  p95 {a['p95']} ms"
            )
            print(f"ratio after/before (p50): {out['ratio_p50']:.2%}   (goal <= 10%)")
            print(f"delete one document (store + index): {delete_ms:.1f} ms")
            print(f"query top-40  before: {out['query_before_ms']}  after: {out['query_after_ms']}")
            print(
                f"full segment rebuild: {seg_rebuild_s:.2f} s; "
                f"first search after restart: {restart_ms:.0f} ms"
            )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
