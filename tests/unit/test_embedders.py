"""The int8 ONNX embedder against the torch reference, its build, embedder-separated collections."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from pharmgpt.rag import onnx_build
from pharmgpt.rag.chunking import chunk_document
from pharmgpt.rag.embeddings import (
    DIMENSION,
    ONNX_INT8,
    TORCH_NAME,
    Embedder,
    make_embedder,
    model_dir,
    onnx_available,
)
from pharmgpt.rag.index import embedding_text
from pharmgpt.rag.loaders import load_document
from pharmgpt.rag.reindex import Reindexer
from pharmgpt.rag.store import ChunkStore, collection_name, staging_name
from pharmgpt.services.config import Settings
from pharmgpt.services.errors import ConfigError

from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
needs_onnx = pytest.mark.skipif(
    not onnx_available(), reason="onnxruntime/onnx/tokenizers are not installed"
)


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory):
    if not onnx_available():
        pytest.skip("onnxruntime/onnx/tokenizers are not installed")
    e = make_embedder(ONNX_INT8, tmp_path_factory.mktemp("data"))
    assert e.kind == ONNX_INT8
    e.embed_query("built on first use")
    return e


@pytest.fixture(scope="module")
def label_chunks() -> list[str]:
    if not LABELS.is_dir():
        pytest.skip(f"the FDA labels are not at {LABELS}")
    texts = []
    for xml in sorted(LABELS.glob("*.xml")):
        chunks = chunk_document(load_document(xml.name, xml.read_bytes()))
        texts += [
            embedding_text(c) for c in chunks[:: max(1, len(chunks) // 15)]
        ]  # ~15 per label, spread
    return texts


@needs_onnx
def test_onnx_agrees_with_torch_on_label_chunks(onnx_embedder, torch_embedder, label_chunks):
    ref = torch_embedder.embed(label_chunks)
    got = onnx_embedder.embed(label_chunks)
    assert got.shape == ref.shape == (len(label_chunks), DIMENSION)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cos = (got * ref).sum(axis=1)
    assert cos.mean() >= 0.99, f"mean cosine {cos.mean():.4f}"
    assert cos.min() >= 0.95, f"worst chunk cosine {cos.min():.4f}"
    # activations are quantised per batch, so a text alone comes out nearly, not exactly, the same
    one = onnx_embedder.embed_query(label_chunks[3])
    assert float(one @ got[3]) >= 0.99 and float(one @ ref[3]) >= 0.98
    # truncation is sentence-transformers' 256 tokens, not tokenizer.json's 128
    head = "the dose " * 90  # 180 tokens: past 128, short of 256
    long = head + "grapefruit juice"
    assert float(onnx_embedder.embed_query(long) @ torch_embedder.embed_query(long)) >= 0.97
    assert not np.allclose(
        onnx_embedder.embed_query(long), onnx_embedder.embed_query(head), atol=1e-3
    )


@needs_onnx
def test_build_is_kept_with_the_source_hash_and_reused(onnx_embedder):
    path = onnx_embedder.model_path
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["source_sha256"] == onnx_build.source_hash(model_dir())
    assert manifest["recipe"] == onnx_build.RECIPE and manifest["model_file"] == path.name
    mtime = path.stat().st_mtime_ns
    again = onnx_build.ensure_model(model_dir(), path.parent.parent)
    assert again.path == path and path.stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".build-")]  # no temp left


@needs_onnx
def test_another_data_dir_gets_a_copy_not_a_rebuild(onnx_embedder, tmp_path, monkeypatch):
    def no_build(*a):
        raise AssertionError("rebuilt although this process already has the build")

    monkeypatch.setattr(onnx_build, "_build", no_build)
    copy = onnx_build.ensure_model(model_dir(), tmp_path / "models")
    assert copy.path != onnx_embedder.model_path
    assert copy.path.read_bytes() == onnx_embedder.model_path.read_bytes()
    assert (
        json.loads((copy.path.parent / "manifest.json").read_text())["source_sha256"]
        == copy.source_sha256
    )


def test_stale_or_missing_build_is_rebuilt_once_under_concurrency(tmp_path, monkeypatch):
    calls = []

    def fake_build(src, target, source):  # the decision and the lock, not the 30 s export
        calls.append(source)
        time.sleep(0.3)
        target.mkdir(parents=True, exist_ok=True)
        (target / "model-x.onnx").write_bytes(b"x")
        (target / "manifest.json").write_text(
            json.dumps(
                {"source_sha256": source, "recipe": onnx_build.RECIPE, "model_file": "model-x.onnx"}
            )
        )
        return target / "model-x.onnx"

    monkeypatch.setattr(onnx_build, "_build", fake_build)
    monkeypatch.setattr(onnx_build, "source_hash", lambda d: "hash-a")
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(onnx_build.ensure_model(Path("."), tmp_path))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        calls == ["hash-a"] and len(results) == 3
    )  # three at once: one build, the others wait and reuse
    onnx_build.ensure_model(Path("."), tmp_path)
    assert calls == ["hash-a"]
    monkeypatch.setattr(
        onnx_build, "source_hash", lambda d: "hash-b"
    )  # the packaged weights changed
    onnx_build.ensure_model(Path("."), tmp_path)
    assert calls == ["hash-a", "hash-b"]


def test_embedder_setting_is_validated():
    assert Settings.load(env={}).embedder == "onnx-int8"  # the default: it passed its quality gate
    assert Settings.load(env={"PHARMGPT_EMBEDDER": "torch"}).embedder == "torch"
    with pytest.raises(ConfigError, match="PHARMGPT_EMBEDDER"):
        Settings.load(env={"PHARMGPT_EMBEDDER": "onnx-fp16"})


@needs_onnx
def test_collections_never_mix_embedders_and_reindex_replaces(
    tmp_path, onnx_embedder, torch_embedder, label_chunks
):
    user = str(uuid.uuid4())
    texts = label_chunks[:12]
    old = ChunkStore(path=tmp_path / "chroma")  # built by the torch embedder (the recorded default)
    old.upsert(
        user,
        [f"d1:{i}" for i in range(8)],
        torch_embedder.embed(texts[:8]),
        texts[:8],
        [{"document_id": "d1", "chunk_index": i} for i in range(8)],
    )
    old.upsert(
        user,
        ["d2:0", "d2:1"],
        torch_embedder.embed(texts[8:10]),
        texts[8:10],
        [{"document_id": "d2", "chunk_index": i} for i in range(2)],
    )
    assert old.client.get_collection(collection_name(user)).metadata["embedder"] == TORCH_NAME
    old.close()

    new = ChunkStore(path=tmp_path / "chroma", embedder=onnx_embedder.name)
    assert new.is_stale(user) and new.stale_users() == [user]
    q = onnx_embedder.embed_query(texts[0])
    assert new.query(user, q, 5) == []  # torch vectors are never searched with an ONNX query
    # a document ingested meanwhile goes to the staging collection, never into the torch one
    new.upsert(
        user,
        ["d3:0"],
        onnx_embedder.embed(texts[10:11]),
        texts[10:11],
        [{"document_id": "d3", "chunk_index": 0}],
    )
    torch_col = new.client.get_collection(collection_name(user))
    staging = new.client.get_collection(staging_name(user))
    assert torch_col.count() == 10 and staging.count() == 1
    assert staging.metadata["embedder"] == onnx_embedder.name
    assert [h.chunk_id for h in new.query(user, onnx_embedder.embed_query(texts[10]), 5)] == [
        "d3:0"
    ]
    assert len(new.all_chunks(user)) == 11 and new.count(user) == 11  # texts from both, for BM25
    new.delete_documents(user, ["d2"])  # deletes reach both collections
    assert new.document_ids(user) == {"d1", "d3"}

    seen = []
    progress = Reindexer(new, onnx_embedder, batch=3).run(
        on_progress=lambda p: seen.append(p.chunks_done)
    )
    assert progress.users_done == 1 and not progress.errors and seen[-1] == 8
    assert not new.is_stale(user) and new.stale_users() == []
    names = {c.name for c in new.client.list_collections()}
    assert collection_name(user) in names and staging_name(user) not in names
    col = new.client.get_collection(collection_name(user))
    assert col.metadata["embedder"] == onnx_embedder.name and col.count() == 9  # d2 not resurrected
    rows = col.get(ids=[f"d1:{i}" for i in range(8)], include=["embeddings", "documents"])
    by_id = dict(zip(rows["ids"], rows["embeddings"], strict=True))
    expect, before = onnx_embedder.embed(texts[:8]), torch_embedder.embed(texts[:8])
    for i in range(
        8
    ):  # re-embedded with the new embedder, not copied (int8 batches differ slightly)
        v = np.asarray(by_id[f"d1:{i}"])
        assert float(v @ expect[i]) >= 0.99 and not np.allclose(v, before[i], atol=1e-4)
    hits = new.query(user, q, 3)
    assert hits[0].chunk_id == "d1:0" and hits[0].similarity > 0.99

    # and back: a torch store now sees the ONNX collection as stale, and never queries it
    back = ChunkStore(path=tmp_path / "chroma")
    assert (
        back.stale_users() == [user]
        and back.query(user, torch_embedder.embed_query(texts[0]), 5) == []
    )


def test_shared_embedder_is_one_per_kind(tmp_path):
    from pharmgpt.rag.embeddings import shared_embedder

    e = shared_embedder("torch", tmp_path, 0)
    assert e.name == TORCH_NAME and shared_embedder("torch", tmp_path, 0) is e
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("word2vec", tmp_path)


def test_dense_query_never_returns_a_foreign_chunk_without_a_where_filter(tmp_path):
    """The store drops the user_id where-filter (it cost ~20x); the owner check after it holds."""
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(6, DIMENSION)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    store = ChunkStore(path=tmp_path / "chroma")
    store.upsert(
        a,
        [f"da:{i}" for i in range(3)],
        vecs[:3],
        ["a0", "a1", "a2"],
        [{"document_id": "da", "chunk_index": i} for i in range(3)],
    )
    # a chunk of B's that a bug wrote into A's collection, nearest to the query
    store._collection(a).upsert(
        ids=["db:0"],
        embeddings=vecs[3:4],
        documents=["b secret"],
        metadatas=[{"document_id": "db", "chunk_index": 0, "user_id": b}],
    )
    hits = store.query(a, vecs[3], 10)
    assert [h.chunk_id for h in hits if h.chunk_id == "db:0"] == [] and len(hits) == 3
    assert all(h.metadata["user_id"] == a for h in hits)
    assert [h.chunk_id for h in store.query(a, vecs[0], 10, document_ids=["da"])][0] == "da:0"
    assert store.query(a, vecs[0], 10, document_ids=["db"]) == []
