"""A pharmacy's shared library in Chroma and BM25, attacked (issue 15, part 4).

The pharmacy's chunks live in its own collection (`p_<hex>`); who may search it is
decided by Postgres membership, read through the asker's own client on every
question. A non-member never retrieves a pharmacy chunk, whatever they ask (the
chunk's exact text, the file's name, the drug's name), through the answer path or
the retriever; a member does, with citations saying "Pharmacy library"; a removed
member loses it on their next question, and the cited source stops opening.
"""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from pharmgpt.rag.owner_scope import OwnerScope, source_place
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.errors import NotFound

from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}"),
]
SHARED_FILE = "Formulary atorvastatin.xml"


@pytest_asyncio.fixture(scope="module")
async def team(services):
    """A pharmacy whose editor uploads the Lipitor label to its library; a reader; an outsider
    with a library of their own (haloperidol), so their questions have something to search."""
    rag = RagSystem(services, use_configured_provider=False)
    users = {}
    for role in ("owner", "editor", "reader", "outsider", "leaver"):
        users[role] = await services.users.create_user(
            f"ph{role[:3]}-{uuid.uuid4().hex[:8]}", "long enough pw 1"
        )
    ph = await services.pharmacies.create(users["owner"].id, "Scope Test Pharmacy")
    for role, as_role in (("editor", "editor"), ("reader", "reader"), ("leaver", "reader")):
        await services.pharmacies.add_member(
            users["owner"].id, ph.id, users[role].username, as_role
        )
    shared = await services.documents.register_upload(
        users["editor"].id,
        SHARED_FILE,
        (LABELS / "lipitor-orig.xml").read_bytes(),
        pharmacy_id=ph.id,
    )
    own = await services.documents.register_upload(
        users["outsider"].id, "haldol.xml", (LABELS / "no-title.xml").read_bytes()
    )
    while await rag.worker.run_once():
        pass
    for who, d in (("owner", shared), ("outsider", own)):
        got = await services.documents.get_document(users[who].id, d.id)
        assert got.status == "ready", (got.status, got.processing_error)
    return rag, ph, users, shared, own


async def ask(rag, services, user_id, question):
    conv = await services.conversations.create_conversation(user_id)
    events = [e async for e in rag.engine.answer(user_id, conv.id, question)]
    text = "".join(e["text"] for e in events if e["type"] == "token")
    return text, next(e for e in events if e["type"] == "sources")["sources"]


def chunk_text(rag, ph, shared) -> str:
    chunks = rag.store.get_document_chunks(OwnerScope.pharmacy(ph.id), shared.id)
    assert chunks, "the shared document's chunks are in the pharmacy's collection"
    return max((c.text for c in chunks), key=len)


async def test_the_chunks_live_in_the_pharmacy_scope_only(team):
    rag, ph, users, shared, _ = team
    scope = OwnerScope.pharmacy(ph.id)
    chunks = rag.store.get_document_chunks(scope, shared.id)
    assert chunks and all(
        c.metadata["scope"] == "pharmacy" and c.metadata["scope_id"] == ph.id for c in chunks
    )
    assert all("user_id" not in c.metadata for c in chunks)
    assert rag.store.get_document_chunks(users["editor"].id, shared.id) == []  # not the uploader's
    assert rag.lexical.indexed_ids(scope) == {c.chunk_id for c in chunks}
    names = {c if isinstance(c, str) else c.name for c in rag.store.client.list_collections()}
    assert scope.collection in names


async def test_a_reader_is_answered_from_the_pharmacy_library(services, team):
    rag, ph, users, shared, _ = team
    text, sources = await ask(
        rag, services, users["reader"].id, "What is the maximum daily dose of Lipitor?"
    )
    assert sources and {s["document_id"] for s in sources} == {shared.id}
    assert all(s["library"] == "Pharmacy library" for s in sources)
    assert source_place(sources[0]).startswith(f"Pharmacy library: {SHARED_FILE}")
    assert f"Pharmacy library: {SHARED_FILE}" in text  # the offline answer names where it lives
    view = await rag.source_view(users["reader"].id, sources[0])
    assert view is not None and view.text


async def test_a_non_member_never_retrieves_a_pharmacy_chunk(services, team):
    rag, ph, users, shared, own = team
    outsider = users["outsider"].id
    exact = chunk_text(rag, ph, shared)
    attacks = [
        exact,
        exact[:200],
        SHARED_FILE,
        "Formulary atorvastatin",
        "atorvastatin",
        "Lipitor dose atorvastatin calcium tablets",
        ph.name,
        ph.id,
        shared.id,
    ]
    for q in attacks:
        _, sources = await ask(rag, services, outsider, q)
        assert shared.id not in {s["document_id"] for s in sources}, q
        assert all(not s.get("library") for s in sources), q
        # the retriever itself, asked for the shared document by id: it is searched in the
        # outsider's own scope (only a document read through RLS maps to a pharmacy scope)
        for ids in (None, [shared.id], [shared.id, own.id]):
            got = await rag.retriever.retrieve(outsider, q, ids, k=20)
            assert all(p.document_id != shared.id for p in got), (q, ids)
    emb = rag.embedder.embed_query(exact)
    assert all(h.document_id != shared.id for h in rag.store.query(outsider, emb, 100))
    assert rag.lexical.search(outsider, exact, 100) == [] or all(
        d != shared.id for _, d, _ in rag.lexical.search(outsider, exact, 100)
    )


async def test_a_removed_member_loses_it_on_the_next_question(services, team):
    rag, ph, users, shared, _ = team
    leaver = users["leaver"].id
    question = "What is the maximum daily dose of Lipitor?"
    _, sources = await ask(rag, services, leaver, question)
    assert {s["document_id"] for s in sources} == {shared.id}
    await services.pharmacies.remove_member(users["owner"].id, ph.id, leaver)
    text, after = await ask(rag, services, leaver, question)
    assert after == [] and "atorvastatin" in text.lower()  # "none of your documents is about …"
    _, exact = await ask(rag, services, leaver, chunk_text(rag, ph, shared))
    assert shared.id not in {s["document_id"] for s in exact}
    with pytest.raises(NotFound, match="no longer available"):
        await rag.source_view(leaver, sources[0])


async def test_deleting_the_shared_document_removes_its_chunks_there(services, team):
    rag, ph, users, _, _ = team
    doc = await services.documents.register_upload(
        users["editor"].id,
        "Local humira protocol.xml",
        (LABELS / "humira.xml").read_bytes(),
        pharmacy_id=ph.id,
    )
    while await rag.worker.run_once():
        pass
    scope = OwnerScope.pharmacy(ph.id)
    assert doc.id in rag.store.document_ids(scope)
    await services.documents.delete_document(users["editor"].id, doc.id)
    assert doc.id not in rag.store.document_ids(scope)
    assert all(d != doc.id for _, d, _ in rag.lexical.search(scope, "adalimumab humira", 50))


async def test_sign_in_warm_up_opens_the_pharmacy_library_too(services, team):
    rag, ph, users, _, _ = team
    await rag.warmup.user(users["editor"].id)
    assert OwnerScope.pharmacy(ph.id) in rag.warmup._users
    await rag.warmup.user(users["outsider"].id)  # a non-member's warm-up lists no pharmacy
    assert rag.warmup._users >= {users["editor"].id, users["outsider"].id}
