"""The RAG engine end to end on the real stack: upload → worker → Chroma + BM25 →
hybrid retrieval → cited answers; failures, isolation, idempotency, recovery."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
import pytest_asyncio
from pharmgpt.rag.loaders import load_document
from pharmgpt.rag.prompts import NOT_COVERED
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.model_names import OFFLINE_MODEL

from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}"),
]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest_asyncio.fixture(scope="module")
async def rag(services):
    system = RagSystem(services, use_configured_provider=False)
    yield system


async def drain(rag) -> int:
    n = 0
    while await rag.worker.run_once():
        n += 1
    return n


async def ask(rag, user_id, conv_id, question):
    events = [e async for e in rag.engine.answer(user_id, conv_id, question)]
    text = "".join(e["text"] for e in events if e["type"] == "token")
    sources = next(e for e in events if e["type"] == "sources")["sources"]
    done = next(e for e in events if e["type"] == "done")["message"]
    return text, sources, done


@pytest_asyncio.fixture(scope="module")
async def lipitor(rag, services, tmp_path_factory):
    """A user with the Lipitor label as SPL XML (library) and as a generated PDF (conversation)."""
    from tests.fixtures.documents import spl_to_pdf

    user = await services.users.create_user(f"rag-{uuid.uuid4().hex[:8]}", "long enough pw")
    conv = await services.conversations.create_conversation(user.id)
    pdf_path = tmp_path_factory.mktemp("pdf") / "lipitor.pdf"
    pages = spl_to_pdf(LABELS / "lipitor-orig.xml", pdf_path)
    xml = await services.documents.register_upload(
        user.id, "lipitor-orig.xml", (LABELS / "lipitor-orig.xml").read_bytes()
    )
    pdf = await services.documents.register_upload(
        user.id, "Lipitor label.pdf", pdf_path.read_bytes(), conversation_id=conv.id
    )
    assert await drain(rag) >= 2
    return {
        "user": user,
        "conv": conv,
        "xml": xml,
        "pdf": pdf,
        "pdf_bytes": pdf_path.read_bytes(),
        "pages": pages,
    }


async def test_documents_become_ready_with_counts(services, lipitor):
    u = lipitor["user"]
    pdf = await services.documents.get_document(u.id, lipitor["pdf"].id)
    xml = await services.documents.get_document(u.id, lipitor["xml"].id)
    assert (
        pdf.status == "ready" and pdf.chunk_count > 10 and pdf.page_count == len(lipitor["pages"])
    )
    assert xml.status == "ready" and xml.chunk_count > 10 and xml.processing_error is None
    job = (
        await services.backend.service.table("ingest_jobs")
        .select("status,progress")
        .eq("document_id", pdf.id)
        .single()
        .execute()
    ).data
    assert job["status"] == "done" and job["progress"]["chunks_done"] == pdf.chunk_count


async def test_answer_cites_a_page_that_contains_the_text(rag, lipitor):
    u, conv = lipitor["user"], lipitor["conv"]
    text, sources, msg = await ask(
        rag, u.id, conv.id, "What is the recommended starting dose of atorvastatin?"
    )
    assert msg.model == OFFLINE_MODEL and "Offline mode" in text and "[1]" in text
    assert sources and msg.sources == sources
    pdf_sources = [s for s in sources if s["document_id"] == lipitor["pdf"].id]
    assert pdf_sources, "the PDF in the conversation should be cited"
    loaded = load_document("lipitor.pdf", lipitor["pdf_bytes"])
    page_text = {s.page: norm(s.text) for s in loaded.sections}
    for s in pdf_sources:
        first, last = (int(x) for x in (s["pages"].split("-") * 2)[:2])
        cited = norm(" ".join(page_text.get(p, "") for p in range(first, last + 1)))
        probe = norm(s["snippet"])[:120]
        assert probe in cited, f"page {s['pages']} does not contain the cited text"
    assert re.search(r"\b(10|20|40|80) ?mg\b", text)


async def test_strict_mode_says_the_documents_do_not_cover_it(rag, lipitor):
    u, conv = lipitor["user"], lipitor["conv"]
    text, sources, msg = await ask(
        rag, u.id, conv.id, "How do I fix a flat bicycle tyre on a mountain bike?"
    )
    assert text.startswith(NOT_COVERED) and sources == [] and msg.sources == []


async def test_follow_up_uses_the_previous_question(rag, lipitor):
    u, conv = lipitor["user"], lipitor["conv"]
    await ask(rag, u.id, conv.id, "atorvastatin use in patients with hepatic impairment")
    text, sources, _ = await ask(rag, u.id, conv.id, "and in pregnancy?")
    assert sources and text != NOT_COVERED


async def test_bad_files_fail_with_a_reason_and_disturb_nothing(rag, services, lipitor):
    from tests.fixtures.documents import corrupt_pdf, encrypted_pdf

    u = lipitor["user"]
    before = rag.store.count(u.id)
    bad = {
        "damaged.pdf": corrupt_pdf(),
        "locked.pdf": encrypted_pdf(),
        "blank.md": b"   \n\n  ",
        "table.csv": b"\x00\x00\x00",
    }
    docs = {}
    for name, data in bad.items():
        try:
            docs[name] = await services.documents.register_upload(u.id, name, data)
        except Exception as e:  # refused at upload already: that is fine too, with a clear reason
            docs[name] = e
    await drain(rag)
    for name, d in docs.items():
        if isinstance(d, Exception):
            assert getattr(d, "message", "")
            continue
        d = await services.documents.get_document(u.id, d.id)
        assert d.status == "failed" and d.processing_error, name
        assert (
            name.split(".")[0] in d.processing_error
            or "PDF" in d.processing_error
            or "text" in d.processing_error
        )
    assert rag.store.count(u.id) == before
    assert (await services.documents.get_document(u.id, lipitor["pdf"].id)).status == "ready"


async def test_no_user_ever_retrieves_another_users_chunks(rag, services, lipitor):
    victim_docs = [lipitor["pdf"].id, lipitor["xml"].id]
    attackers = [
        await services.users.create_user(f"atk-{uuid.uuid4().hex[:6]}", "long enough pw")
        for _ in range(3)
    ]
    for a in attackers:
        await services.documents.register_upload(
            a.id,
            f"notes-{a.id[:4]}.txt",
            f"Atorvastatin notes of {a.username}: take with water.".encode(),
        )
    await drain(rag)
    for a in attackers:
        for doc_scope in (None, victim_docs, victim_docs + ["*"], [lipitor["pdf"].id, "' OR 1=1"]):
            ps = await rag.retriever.retrieve(
                a.id, "atorvastatin starting dose 10 mg", doc_scope, k=20
            )
            assert all(p.document_id not in victim_docs for p in ps)
            assert all(p.metadata.get("user_id") in (None, a.id) for p in ps)
        emb = rag.embedder.embed_query("atorvastatin dose")
        assert all(h.metadata["user_id"] == a.id for h in rag.store.query(a.id, emb, 50))
        assert rag.lexical.search(a.id, "atorvastatin", 50, victim_docs) == []
        conv = await services.conversations.create_conversation(a.id)
        _, sources, _ = await ask(rag, a.id, conv.id, "What is the starting dose of atorvastatin?")
        assert all(s["document_id"] not in victim_docs for s in sources)


async def test_reingest_is_idempotent(rag, services, lipitor):
    u, doc = lipitor["user"], lipitor["xml"]
    before = rag.store.count(u.id)
    ids_before = {h.chunk_id for h in rag.store.get_document_chunks(u.id, doc.id)}
    await (
        services.backend.service.table("ingest_jobs")
        .insert({"document_id": doc.id, "user_id": u.id})
        .execute()
    )
    assert await drain(rag) == 1
    assert rag.store.count(u.id) == before
    assert {h.chunk_id for h in rag.store.get_document_chunks(u.id, doc.id)} == ids_before
    assert (await services.documents.get_document(u.id, doc.id)).status == "ready"


async def test_a_job_left_by_a_dead_worker_is_picked_up_again(rag, services):
    u = await services.users.create_user(f"dead-{uuid.uuid4().hex[:6]}", "long enough pw")
    d = await services.documents.register_upload(
        u.id, "cough.xml", (LABELS / "cough.xml").read_bytes()
    )
    svc = services.backend.service
    claimed = (await svc.rpc("claim_ingest_job", {"worker": "killed-worker"}).execute()).data
    assert claimed and claimed[0]["document_id"] == d.id  # it took the job and then died
    assert await rag.worker.run_once() is False  # a live lock is respected
    await (
        svc.table("ingest_jobs")
        .update({"locked_at": "2000-01-01T00:00:00Z"})
        .eq("id", claimed[0]["id"])
        .execute()
    )
    assert await rag.worker.run_once() is True
    doc = await services.documents.get_document(u.id, d.id)
    assert doc.status == "ready" and doc.chunk_count > 0
    job = (
        await svc.table("ingest_jobs")
        .select("attempts,status,locked_by")
        .eq("id", claimed[0]["id"])
        .single()
        .execute()
    ).data
    assert job == {"attempts": 2, "status": "done", "locked_by": rag.worker.worker_id}


async def test_deleting_documents_and_conversations_removes_chunks(rag, services):
    u = await services.users.create_user(f"del-{uuid.uuid4().hex[:6]}", "long enough pw")
    conv = await services.conversations.create_conversation(u.id)
    d1 = await services.documents.register_upload(
        u.id, "a.md", b"# Digoxin\nDigoxin toxicity causes nausea."
    )
    d2 = await services.documents.register_upload(
        u.id, "b.md", b"# Lithium\nLithium levels need monitoring.", conversation_id=conv.id
    )
    await drain(rag)
    assert rag.store.document_ids(u.id) == {d1.id, d2.id}
    await services.documents.delete_document(u.id, d1.id)
    assert rag.store.document_ids(u.id) == {d2.id}
    assert rag.lexical.search(u.id, "digoxin", 10) == []
    await services.conversations.delete_conversation(u.id, conv.id)
    assert rag.store.document_ids(u.id) == set() and rag.lexical.search(u.id, "lithium", 10) == []


async def test_reconcile_removes_orphans(rag, services):
    u = await services.users.create_user(f"orph-{uuid.uuid4().hex[:6]}", "long enough pw")
    d = await services.documents.register_upload(
        u.id, "keep.md", b"# Keep\nAmiodarone thyroid effects."
    )
    await drain(rag)
    ghost = str(uuid.uuid4())
    vec = np.zeros((1, 384), dtype=np.float32)
    vec[0, 0] = 1
    rag.store.upsert(u.id, [f"{ghost}:0"], vec, ["orphan chunk"], [{"document_id": ghost}])
    removed = await rag.reconcile()
    assert removed.get(u.id) == 1
    assert rag.store.document_ids(u.id) == {d.id}


async def test_groq_answer_streams_with_sources_and_stops_cleanly(rag, services, lipitor):
    from pharmgpt.rag.llm import GroqProvider
    from pharmgpt.rag.planner import AnswerPlanner
    from pharmgpt.services.answering import AnswerService

    from tests.unit.fake_openai_server import DropAfter, FakeChatServer, Tokens, rate_limited

    u, conv = lipitor["user"], lipitor["conv"]
    with FakeChatServer() as server:
        provider = GroqProvider(
            "test-key",
            base_url=server.url,
            models=["primary-model"],
            timeout_s=5,
            max_retries=2,
            max_wait_s=0.01,
        )
        engine = AnswerService(
            services.conversations,
            services.documents,
            services.preferences,
            AnswerPlanner(rag.retriever),
            provider,
        )
        server.script(
            rate_limited("0"), Tokens(["The starting dose ", "is 10 or 20 mg ", "once daily [1]."])
        )
        events = [
            e
            async for e in engine.answer(
                u.id, conv.id, "What is the starting dose of atorvastatin?"
            )
        ]
        text = "".join(e["text"] for e in events if e["type"] == "token")
        done = events[-1]["message"]
        assert text == "The starting dose is 10 or 20 mg once daily [1]."
        assert done.content == text and done.sources and done.model
        prompt = server.requests[-1].messages
        assert prompt[0]["role"] == "system" and "[1]" in prompt[-1]["content"]
        assert "Question: What is the starting dose of atorvastatin?" in prompt[-1]["content"]
        # the pharmacist stops the stream: what was shown is kept, marked as stopped
        server.script(
            Tokens(["Atorvastatin ", "is ", "metabolised ", "by ", "CYP3A4 "] * 20, delay_s=0.01)
        )
        gen = engine.answer(u.id, conv.id, "How is atorvastatin metabolised?")
        seen = []
        async for e in gen:
            if e["type"] == "token":
                seen.append(e["text"])
                if len(seen) == 3:
                    break
        await gen.aclose()
        last = (await services.conversations.get_messages(u.id, conv.id, limit=1))[0]
        assert (
            last.role == "assistant"
            and last.content.startswith("".join(seen))
            and "stopped" in last.content
        )
        # a model that drops the connection mid-answer is an error, and the partial text is kept
        server.script(DropAfter(["Partial ", "answer "]))
        from pharmgpt.rag.llm import LLMError

        with pytest.raises(LLMError):
            async for _ in engine.answer(
                u.id, conv.id, "What about grapefruit juice with atorvastatin?"
            ):
                pass
        last = (await services.conversations.get_messages(u.id, conv.id, limit=1))[0]
        assert last.content.startswith("Partial answer") and "stopped" in last.content
        await provider.aclose()


def test_provider_selection(tmp_path):
    from pharmgpt.rag.llm import GroqProvider, OpenAICompatProvider
    from pharmgpt.rag_system import make_provider
    from pharmgpt.services.config import Settings

    assert make_provider(Settings(data_dir=tmp_path)) is None
    assert isinstance(
        make_provider(Settings(data_dir=tmp_path, groq_api_key="gsk_x")), GroqProvider
    )
    compat = make_provider(Settings(data_dir=tmp_path, openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(compat, OpenAICompatProvider)


async def test_the_cited_page_can_be_opened_by_its_owner_only(rag, services, lipitor):
    from pharmgpt.services.errors import NotFound

    u, pdf = lipitor["user"], lipitor["pdf"]
    number, text = lipitor["pages"][1]
    got = await rag.page_text(u.id, pdf.id, number)
    assert got and norm(text)[:80] in norm(got)
    stranger = await services.users.create_user(f"peek-{uuid.uuid4().hex[:6]}", "long enough pw")
    with pytest.raises(NotFound):
        await rag.page_text(stranger.id, pdf.id, number)
