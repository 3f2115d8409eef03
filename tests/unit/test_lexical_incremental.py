"""Incremental BM25 (issue 14): per-document segments give a full bm25s rebuild's scores and
ranking after adds and deletes, and survive a crash between segment and manifest writes."""

import json
import uuid

import bm25s
import numpy as np
import pytest
from pharmgpt.rag.lexical import LexicalIndex, tokenize
from pharmgpt.rag.store import ChunkStore

WORDS = (
    "warfarin aspirin bleeding risk dose dosing renal hepatic impairment metformin lactic acidosis "
    "lisinopril cough angioedema potassium statin myopathy tablet once daily mg elderly children "
    "contraindicated pregnancy interaction inhibitor clearance"
).split()
QUERIES = [
    "warfarin bleeding",
    "renal dose adjustment",
    "metformin lactic acidosis",
    "statin myopathy elderly",
    "dosing in children",
    "potassium potassium lisinopril",
]


def _docs(rng, n_docs):
    out = {}
    for d in range(n_docs):
        doc = f"doc{d:03d}"
        out[doc] = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(3, 25))))
            for _ in range(int(rng.integers(1, 6)))
        ]
    return out


def _put(store, user, doc, texts):
    vec = np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)
    store.upsert(
        user,
        [f"{doc}:{i}" for i in range(len(texts))],
        vec,
        texts,
        [{"document_id": doc} for _ in texts],
    )


def _reference(store, user):
    """What a full bm25s rebuild over the user's chunks scores: chunk id -> score per query."""
    corpus = store.all_chunks(user)
    ids = [c[0] for c in corpus]
    ret = bm25s.BM25()
    ret.index(tokenize([c[2] for c in corpus]), show_progress=False)
    out = {}
    for q in QUERIES:
        toks = [t for t in tokenize([q])[0] if t in ret.vocab_dict]
        s = np.asarray(ret.get_scores(toks)) if toks else np.zeros(len(ids))
        out[q] = {ids[i]: float(s[i]) for i in range(len(ids)) if s[i] > 0}
    return out


def _assert_same(lex, store, user):
    ref = _reference(store, user)
    for q, want in ref.items():
        got = lex.search(user, q, 1000)
        assert {c for c, _, _ in got} == set(want), q
        for cid, _, score in got:
            assert score == pytest.approx(want[cid], rel=1e-5, abs=1e-6), (q, cid)
        # ranking: the same order, up to ties (float32 in bm25s)
        scores = [want[c] for c, _, _ in got]
        assert all(a >= b - 1e-5 for a, b in zip(scores, scores[1:], strict=False)), q


def test_incremental_equals_full_rebuild_after_adds_and_deletes(tmp_path):
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    user = str(uuid.uuid4())
    rng = np.random.default_rng(7)
    docs = _docs(rng, 30)
    for doc, texts in docs.items():
        _put(store, user, doc, texts)
        lex.add_document(user, doc)
    _assert_same(lex, store, user)
    for doc in ["doc003", "doc010", "doc029"]:  # deletes
        store.delete_documents(user, [doc])
    lex.remove_documents(user, ["doc003", "doc010", "doc029"])
    store.delete_documents(user, ["doc005"])  # a re-ingest with different text and chunk count
    _put(store, user, "doc005", ["warfarin warfarin dose", "renal"])
    lex.add_document(user, "doc005")
    _assert_same(lex, store, user)
    assert lex.is_current(user)
    # a fresh process reads the segments back and agrees, and a full rebuild is identical
    fresh = LexicalIndex(tmp_path / "lex", store)
    _assert_same(fresh, store, user)
    for q in QUERIES:
        a, b = fresh.search(user, q, 10), lex.search(user, q, 10)
        assert [h[0] for h in a] == [h[0] for h in b] and [h[2] for h in a] == pytest.approx(
            [h[2] for h in b]
        )
    fresh.rebuild(user)
    _assert_same(fresh, store, user)
    assert lex.search(user, "warfarin", 50, ["doc005"]) and {
        d for _, d, _ in lex.search(user, "warfarin", 50, ["doc005"])
    } == {"doc005"}


def test_crash_between_segment_and_manifest_recovers(tmp_path, monkeypatch):
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    user = str(uuid.uuid4())
    _put(store, user, "a", ["warfarin bleeding risk"])
    lex.add_document(user, "a")
    _put(store, user, "b", ["metformin lactic acidosis"])

    def crash(*args, **kwargs):
        raise SystemExit("killed after the segment was written")

    monkeypatch.setattr(LexicalIndex, "_write_manifest", crash)
    with pytest.raises(SystemExit):
        lex.add_document(user, "b")
    monkeypatch.undo()
    seg_files = sorted(p.name for p in (lex._dir(user) / "seg").iterdir())
    assert len(seg_files) == 2  # a's segment and b's orphan
    # a restarted process: the manifest still names only "a", Chroma has "b": b is read back
    restarted = LexicalIndex(tmp_path / "lex", store)
    assert [d for _, d, _ in restarted.search(user, "metformin", 10)] == ["b"]
    assert restarted.is_current(user)
    assert (
        len(list((lex._dir(user) / "seg").iterdir())) == 2
    )  # the orphan is gone, b's own segment stays
    _assert_same(restarted, store, user)


def test_damaged_manifest_or_segment_rebuilds_from_the_store(tmp_path):
    store = ChunkStore(path=tmp_path / "chroma")
    lex = LexicalIndex(tmp_path / "lex", store)
    user = str(uuid.uuid4())
    _put(store, user, "a", ["warfarin bleeding risk"])
    _put(store, user, "b", ["aspirin bleeding"])
    lex.add_document(user, "a")
    lex.add_document(user, "b")
    d = lex._dir(user)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["segments"]["a"]["chunks"] = 99  # an edit the checksum does not cover
    (d / "manifest.json").write_text(json.dumps(manifest))
    again = LexicalIndex(tmp_path / "lex", store)
    assert {c for c, _, _ in again.search(user, "bleeding", 10)} == {"a:0", "b:0"}
    seg = d / "seg" / json.loads((d / "manifest.json").read_text())["segments"]["b"]["file"]
    seg.write_bytes(seg.read_bytes()[:-5])  # a torn segment
    third = LexicalIndex(tmp_path / "lex", store)
    assert {c for c, _, _ in third.search(user, "bleeding", 10)} == {"a:0", "b:0"}
    _assert_same(third, store, user)


def test_a_second_process_sees_new_documents(tmp_path):
    store = ChunkStore(path=tmp_path / "chroma")
    writer = LexicalIndex(tmp_path / "lex", store)
    reader = LexicalIndex(tmp_path / "lex", store)
    user = str(uuid.uuid4())
    _put(store, user, "a", ["warfarin bleeding risk"])
    writer.add_document(user, "a")
    assert [d for _, d, _ in reader.search(user, "warfarin", 10)] == ["a"]
    _put(store, user, "b", ["warfarin interaction with aspirin"])
    writer.add_document(user, "b")
    assert {d for _, d, _ in reader.search(user, "warfarin", 10)} == {"a", "b"}
    store.delete_documents(user, ["a"])
    writer.remove_documents(user, ["a"])
    assert {d for _, d, _ in reader.search(user, "warfarin", 10)} == {"b"}
