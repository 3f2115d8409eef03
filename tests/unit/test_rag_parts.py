"""Chunking, fusion, follow-up queries, offline answers, lexical and vector stores — no database."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pharmgpt.rag.chunking import chunk_document
from pharmgpt.rag.lexical import LexicalIndex
from pharmgpt.rag.loaders import LoadedDocument, Section
from pharmgpt.rag.offline import LABEL, extractive_answer
from pharmgpt.rag.retriever import Passage, rrf, standalone_query
from pharmgpt.rag.store import ChunkStore

WORDS = (
    "warfarin dosing requires careful INR monitoring in elderly patients with renal impairment"
).split()


def prose(n_words: int, seed: int = 0) -> str:
    return " ".join(
        WORDS[(i + seed) % len(WORDS)] + ("." if i % 13 == 12 else "") for i in range(n_words)
    )


def test_chunks_respect_size_overlap_and_words():
    doc = LoadedDocument(
        [Section(prose(900), 1, "Dosage"), Section(prose(300, 3), 2, "Dosage")], 2, []
    )
    chunks = chunk_document(doc, size=1000, overlap=200)
    assert len(chunks) > 3
    vocab = set(WORDS) | {w + "." for w in WORDS}
    for c in chunks:
        assert len(c.text) <= 1000 + 200 + 2
        assert all(w in vocab for w in c.text.split()), "a word was cut"
        assert c.heading == "Dosage"
    for a, b in zip(chunks, chunks[1:], strict=False):  # consecutive chunks share the overlap
        tail = a.text[-150:].split(" ", 1)[1]
        assert tail[:40] in b.text
    assert chunks[-1].page_end == 2 and chunks[0].page_start == 1
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_headings_split_chunks_and_tables_stay_whole():
    table = "| Drug | Dose |\n| --- | --- |\n" + "\n".join(
        f"| drug{i} | {i} mg |" for i in range(20)
    )
    doc = LoadedDocument(
        [
            Section("Intro text about statins.", None, "Overview"),
            Section(table, None, "Dosing table", kind="table"),
            Section("Contraindicated in pregnancy.", None, "Contraindications"),
        ],
        None,
        [],
    )
    chunks = chunk_document(doc)
    assert [c.heading for c in chunks] == ["Overview", "Dosing table", "Contraindications"]
    assert chunks[1].kind == "table" and chunks[1].text == table
    big = "| Drug | Dose |\n| --- | --- |\n" + "\n".join(
        f"| drug{i} | {i} mg daily |" for i in range(200)
    )
    parts = chunk_document(LoadedDocument([Section(big, 4, "Big", kind="table")], 4, []))
    assert len(parts) > 1 and all(
        p.text.startswith("| Drug | Dose |\n| --- | --- |") for p in parts
    )
    assert all(p.pages == "4" for p in parts)


def test_rrf_and_follow_up_queries():
    fused = rrf({"dense": ["a", "b", "c"], "bm25": ["c", "a"]}, {"dense": 1.0, "bm25": 1.0}, 60)
    assert max(fused, key=fused.get) == "a" and fused["c"] > fused["b"]
    hist = [
        {"role": "user", "content": "warfarin dosing in elderly"},
        {"role": "assistant", "content": "..."},
    ]
    assert (
        standalone_query("and in pregnancy?", hist)
        == "and in pregnancy? warfarin dosing in elderly"
    )
    long_q = "What is the maximum daily dose of metformin in chronic kidney disease stage 3?"
    assert standalone_query(long_q, hist) == long_q
    assert standalone_query("dose?", []) == "dose?"


def test_offline_answer_quotes_and_cites():
    ps = [
        Passage(
            "d1:0",
            "d1",
            "Atorvastatin is an HMG-CoA reductase inhibitor. The starting dose is 10 mg "
            "or 20 mg once daily.",
            {"filename": "lipitor.pdf", "pages": "3"},
            0.03,
        ),
        Passage(
            "d2:0",
            "d2",
            "Metformin is contraindicated in severe renal impairment (eGFR below 30).",
            {"filename": "metformin.pdf"},
            0.02,
        ),
    ]
    answer = extractive_answer("What is the starting dose of atorvastatin?", ps)
    assert answer.text.startswith(LABEL)
    assert "The starting dose is 10 mg or 20 mg once daily. [1]" in answer.text
    assert "[2]" not in answer.text and "Metformin" not in answer.text  # one drug's document only
    assert answer.quotes[1] and not answer.quotes.get(2)


def test_lexical_and_vector_stores_isolate_users(tmp_path):
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(2, 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    store.upsert(
        a, ["da:0"], vec[:1], ["warfarin and aspirin bleeding risk"], [{"document_id": "da"}]
    )
    store.upsert(b, ["db:0"], vec[1:], ["warfarin secret note of user b"], [{"document_id": "db"}])
    lex.rebuild(a)
    lex.rebuild(b)
    # A asks with B's vector and B's document id: nothing of B comes back
    assert store.query(a, vec[1], 10, ["db"]) == []
    assert [h.document_id for h in store.query(a, vec[1], 10)] == ["da"]
    assert lex.search(a, "secret note user", 10) == []
    assert lex.search(a, "warfarin", 10, ["db"]) == []
    assert [d for _, d, _ in lex.search(b, "warfarin", 10)] == ["db"]
    # the BM25 index survives a restart, and rebuilds itself if its files are damaged
    fresh = LexicalIndex(tmp_path / "lex", store)
    assert [d for _, d, _ in fresh.search(a, "aspirin", 10)] == ["da"]
    (fresh._dir(a) / "manifest.json").write_text("{broken")
    again = LexicalIndex(tmp_path / "lex", store)
    assert [d for _, d, _ in again.search(a, "aspirin", 10)] == ["da"]
    store.delete_documents(a, ["da"])
    lex.rebuild(a)
    assert lex.search(a, "aspirin", 10) == [] and store.count(a) == 0


def test_collection_names_require_a_user_uuid(tmp_path):
    store = ChunkStore(path=tmp_path / "c")
    with pytest.raises(ValueError):
        store.query("../../etc", np.zeros(384, dtype=np.float32), 3)


def test_reconcile_groups_live_rows_by_scope_and_reindex_picks_old_formats():
    from pharmgpt.rag.index import INDEX_FORMAT, is_outdated, live_documents
    from pharmgpt.rag.owner_scope import OwnerScope

    u1, u2, p1 = (str(uuid.uuid4()) for _ in range(3))
    rows = [
        {"id": "d1", "user_id": u1, "pharmacy_id": None},
        {"id": "d2", "user_id": u1, "pharmacy_id": p1},  # the pharmacy's, not the uploader's
        {"id": "d3", "user_id": u2, "pharmacy_id": p1},
    ]
    assert live_documents(rows) == {
        OwnerScope.user(u1): {"d1"},
        OwnerScope.pharmacy(p1): {"d2", "d3"},
    }
    assert is_outdated({"status": "ready", "metadata": None})
    assert is_outdated({"status": "ready", "metadata": {"index_format": INDEX_FORMAT - 1}})
    assert not is_outdated({"status": "ready", "metadata": {"index_format": INDEX_FORMAT}})
    assert not is_outdated({"status": "failed", "metadata": {}})  # only ready documents
