"""Owner scopes (issue 15): names, chunk stamps, citation labels, and retrieval across scopes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pharmgpt.rag.lexical import LexicalIndex
from pharmgpt.rag.owner_scope import (
    OwnerScope,
    citation_place,
    document_scopes,
    library_label,
    scope_of_collection,
    scope_of_metadata,
    source_place,
)
from pharmgpt.rag.prompts import source_label, sources_payload
from pharmgpt.rag.retriever import Passage, Retriever, searches
from pharmgpt.rag.store import ChunkStore
from pharmgpt.services.models import Document

U = "3f1c2b8e-0000-4000-8000-000000000001"
P = "3f1c2b8e-0000-4000-8000-0000000000aa"


def test_each_scope_has_its_own_collection_and_folder():
    user, ph = OwnerScope.user(U), OwnerScope.pharmacy(P)
    hex_u, hex_p = uuid.UUID(U).hex, uuid.UUID(P).hex
    assert (user.collection, user.staging, user.directory) == (f"u_{hex_u}", f"s_{hex_u}", hex_u)
    assert (ph.collection, ph.staging, ph.directory) == (f"p_{hex_p}", f"q_{hex_p}", f"p_{hex_p}")
    assert OwnerScope.of(U) == user and OwnerScope.of(ph) is ph
    assert OwnerScope.user(U.upper()) == user  # canonical ids
    for name in (user.collection, user.staging):
        assert scope_of_collection(name) == user
    assert scope_of_collection(ph.staging) == ph
    assert scope_of_collection("peer") is None and scope_of_collection("p_xyz") is None
    with pytest.raises(ValueError):
        OwnerScope.pharmacy("../../etc")
    with pytest.raises(ValueError):
        OwnerScope("org", U)


def test_a_document_lives_in_its_pharmacy_else_its_uploader():
    shared = {"id": "d1", "user_id": U, "pharmacy_id": P, "conversation_id": None}
    attached = {"id": "d2", "user_id": U, "pharmacy_id": None, "conversation_id": str(uuid.uuid4())}
    assert OwnerScope.of_document(shared) == OwnerScope.pharmacy(P)
    assert OwnerScope.of_document(attached) == OwnerScope.user(U)
    doc = Document.from_row(
        {
            "id": "d3",
            "user_id": U,
            "pharmacy_id": P,
            "filename": "f.pdf",
            "file_type": "application/pdf",
            "status": "ready",
            "added_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00",
        }
    )
    assert document_scopes([doc, attached]) == {
        "d3": OwnerScope.pharmacy(P),
        "d2": OwnerScope.user(U),
    }


def test_chunks_carry_their_scope_and_old_chunks_are_their_users():
    ph = OwnerScope.pharmacy(P)
    meta = ph.stamp({"document_id": "d", "user_id": U})
    assert meta == {"document_id": "d", "scope": "pharmacy", "scope_id": P}
    assert ph.owns(meta) and not OwnerScope.user(U).owns(meta)
    assert OwnerScope.user(U).owns({"user_id": U})  # before scopes
    assert scope_of_metadata({}) is None and scope_of_metadata({"scope": "pharmacy"}) is None


def test_citations_say_where_a_source_lives():
    assert citation_place("Formulary 2026.pdf", "Pharmacy library") == (
        "Pharmacy library: Formulary 2026.pdf"
    )
    assert citation_place("mine.pdf", None) == "mine.pdf"
    source = {"filename": "Formulary 2026.pdf", "library": "Pharmacy library", "page": 12}
    assert source_place(source) == "Pharmacy library: Formulary 2026.pdf, p. 12"
    assert (
        source_place({**source, "pages": "3-4"}) == "Pharmacy library: Formulary 2026.pdf, pp. 3-4"
    )
    assert source_place({"filename": "mine.xml"}) == "mine.xml"
    shared = Passage(
        "d:0",
        "d",
        "Dose 10 mg.",
        OwnerScope.pharmacy(P).stamp({"filename": "Formulary 2026.pdf", "pages": "12"}),
        0.1,
    )
    own = Passage("e:0", "e", "x", OwnerScope.user(U).stamp({"filename": "mine.pdf"}), 0.1)
    assert source_label(shared) == "Pharmacy library: Formulary 2026.pdf, page 12"
    assert source_label(own) == "mine.pdf"
    payload = sources_payload([shared, own])
    assert [s["library"] for s in payload] == ["Pharmacy library", None]


def test_searches_group_documents_by_scope():
    ph = OwnerScope.pharmacy(P)
    assert searches(U, None) == [(OwnerScope.user(U), None)]
    assert searches(U, ["a", "s", "b"], {"s": ph}) == [
        (OwnerScope.user(U), ["a", "b"]),
        (ph, ["s"]),
    ]
    assert searches(U, []) == []


def _unit(rng, n):
    v = rng.normal(size=(n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_retrieval_merges_scopes_and_never_crosses_them(tmp_path):
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    user, ph, other = OwnerScope.user(U), OwnerScope.pharmacy(P), OwnerScope.pharmacy(uuid.uuid4())
    rng = np.random.default_rng(3)
    vec = _unit(rng, 3)
    store.upsert(
        user, ["mine:0"], vec[:1], ["warfarin in renal impairment"], [{"document_id": "mine"}]
    )
    store.upsert(
        ph, ["shared:0"], vec[1:2], ["warfarin formulary note"], [{"document_id": "shared"}]
    )
    store.upsert(other, ["theirs:0"], vec[2:], ["warfarin secret"], [{"document_id": "theirs"}])
    # a chunk stamped with another scope, planted in this pharmacy's collection, is never handed out
    store._collection(ph).upsert(
        ids=["planted:0"],
        embeddings=vec[2:],
        documents=["warfarin planted"],
        metadatas=[other.stamp({"document_id": "planted"})],
    )
    for s in (user, ph, other):
        lex.rebuild(s)
    r = Retriever(store, lex, embedder=None)
    owners = {"shared": ph}
    got = r.retrieve_with_embedding(
        U, "warfarin", vec[1], ["mine", "shared", "planted"], owners=owners
    )
    assert {p.document_id for p in got} == {"mine", "shared"}
    assert got[0].document_id == "shared" and library_label(got[0].metadata) == "Pharmacy library"
    assert library_label(next(p for p in got if p.document_id == "mine").metadata) is None
    # without the scope map (nothing read through RLS) the shared document is not reachable
    alone = r.retrieve_with_embedding(U, "warfarin formulary", vec[1], ["shared", "theirs"])
    assert alone == []
    assert {p.document_id for p in r.retrieve_with_embedding(U, "warfarin", vec[1], None)} == {
        "mine"
    }
    # lexical-only hits get their text from their own scope's collection
    bm25 = r.retrieve_with_embedding(U, "formulary", vec[0], ["shared"], mode="bm25", owners=owners)
    assert [(p.document_id, p.text) for p in bm25] == [("shared", "warfarin formulary note")]


def test_dense_search_of_part_of_a_scope_avoids_the_where_filter(tmp_path):
    """Most of the scope asked: one unfiltered search, other documents' hits dropped; a few
    documents: their vectors scored exactly (the same hits as Chroma's where-filter), never a
    stale vector after the document is indexed again, nothing after it is deleted."""
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    ph = OwnerScope.pharmacy(P)
    rng = np.random.default_rng(5)
    vec = _unit(rng, 60)
    docs = [f"d{i % 6}" for i in range(60)]
    store.upsert(
        ph,
        [f"{d}:{i}" for i, d in enumerate(docs)],
        vec,
        [f"text {i}" for i in range(60)],
        [{"document_id": d} for d in docs],
    )
    lex.rebuild(ph)
    r = Retriever(store, lex, embedder=None)
    most = r._dense(ph, vec[0], [f"d{i}" for i in range(5)], 8)
    assert len(most) == 8 and {h.document_id for h in most} <= {f"d{i}" for i in range(5)}
    q = _unit(rng, 1)[0]
    few = r._dense(ph, q, ["d5"], 8)
    chroma = store.query(ph, q, 8, ["d5"])
    assert [h.chunk_id for h in few] == [h.chunk_id for h in chroma]
    assert [h.text for h in few] == [h.text for h in chroma]
    assert np.allclose([h.similarity for h in few], [h.similarity for h in chroma], atol=1e-4)
    # d5 indexed again with other vectors: the new ones are scored
    ids5 = [f"d5:{i}" for i in range(5, 60, 6)]
    new = _unit(rng, len(ids5))
    store.upsert(ph, ids5, new, ["again"] * len(ids5), [{"document_id": "d5"} for _ in ids5])
    lex.add_document(ph, "d5")
    assert r._dense(ph, new[3], ["d5"], 1)[0].chunk_id == ids5[3]
    store.delete_documents(ph, ["d5"])
    lex.remove_documents(ph, ["d5"])
    assert r._dense(ph, new[3], ["d5"], 8) == []
