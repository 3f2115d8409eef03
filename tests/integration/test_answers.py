"""Trustworthy answers on the real stack: right drug, right section, else "not covered"."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from pharmgpt.rag.offline import LABEL_UNSURE
from pharmgpt.rag.prompts import NOT_COVERED
from pharmgpt.rag_system import RagSystem

from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}"),
]


@pytest_asyncio.fixture(scope="module")
async def library(services):
    """A pharmacist with three labels (atorvastatin, haloperidol, an OTC cough syrup) on file."""
    rag = RagSystem(services, use_configured_provider=False)
    user = await services.users.create_user(f"ans-{uuid.uuid4().hex[:8]}", "long enough pw 1")
    docs = {}
    for name in ("lipitor-orig.xml", "no-title.xml", "cough.xml"):
        docs[name] = await services.documents.register_upload(
            user.id, name, (LABELS / name).read_bytes()
        )
    while await rag.worker.run_once():
        pass
    return rag, user, docs


async def ask(engine, user_id, question, conv_id):
    events = [e async for e in engine.answer(user_id, conv_id, question)]
    text = "".join(e["text"] for e in events if e["type"] == "token")
    return text, next(e for e in events if e["type"] == "sources")["sources"]


async def test_each_document_records_its_drugs(services, library):
    _, user, docs = library
    halo = await services.documents.get_document(user.id, docs["no-title.xml"].id)
    lip = await services.documents.get_document(user.id, docs["lipitor-orig.xml"].id)
    assert halo.status == "ready", (halo.status, halo.processing_error)
    assert halo.metadata["drugs"] == ["haloperidol"] and lip.metadata["drugs"] == ["atorvastatin"]


async def test_a_drug_without_a_document_is_not_covered_and_quotes_nothing(services, library):
    rag, user, _ = library
    conv = await services.conversations.create_conversation(user.id)
    text, sources = await ask(
        rag.engine, user.id, "What is the usual dose of Coumadin for atrial fibrillation?", conv.id
    )
    assert text.startswith("None of your documents is about warfarin") and sources == []


async def test_only_the_asked_drugs_chunks_are_cited(services, library):
    rag, user, docs = library
    conv = await services.conversations.create_conversation(user.id)
    text, sources = await ask(
        rag.engine, user.id, "What is the dose of Haldol for children?", conv.id
    )
    assert sources and {s["document_id"] for s in sources} == {docs["no-title.xml"].id}
    assert "haloperidol" in text.lower() or "mg" in text


async def test_a_follow_up_inherits_the_drug(services, library):
    rag, user, docs = library
    conv = await services.conversations.create_conversation(user.id)
    await ask(rag.engine, user.id, "Maximum daily dose of Lipitor?", conv.id)
    text, sources = await ask(rag.engine, user.id, "and in pregnancy?", conv.id)
    assert sources and {s["document_id"] for s in sources} == {docs["lipitor-orig.xml"].id}


async def test_an_spl_table_row_survives_into_the_offline_answer(services, library):
    rag, user, docs = library
    conv = await services.conversations.create_conversation(user.id)
    text, sources = await ask(
        rag.engine,
        user.id,
        "What dose of the cough syrup for children 6 to under 12 years?",
        conv.id,
    )
    assert "children 6 to under 12 years of age | 2 teaspoonfuls (10 mL)" in text
    assert {s["document_id"] for s in sources} == {docs["cough.xml"].id}
    assert any(q.startswith("children 6 to under 12") for s in sources for q in s["quotes"])


async def test_the_strict_toggle_changes_the_outcome_offline_and_with_a_model(services, library):
    from pharmgpt.rag.llm import GroqProvider
    from pharmgpt.services.answering import AnswerService

    from tests.unit.fake_openai_server import FakeChatServer, Tokens

    rag, user, _ = library
    question = "How do I fix a flat bicycle tyre on a mountain bike?"
    conv = await services.conversations.create_conversation(user.id)
    strict_text, strict_sources = await ask(rag.engine, user.id, question, conv.id)
    assert strict_text.startswith(NOT_COVERED) and strict_sources == []
    with FakeChatServer() as server:
        provider = GroqProvider(
            "test-key", base_url=server.url, models=["m"], timeout_s=5, max_retries=0
        )
        engine = AnswerService(
            services.conversations, services.documents, services.preferences, rag.planner, provider
        )
        text, _ = await ask(engine, user.id, question, conv.id)
        assert (
            text.startswith(NOT_COVERED) and server.requests == []
        )  # refused without a model call
        await services.preferences.set(user.id, "strict_mode", False)
        try:
            offline_text, offline_sources = await ask(rag.engine, user.id, question, conv.id)
            assert offline_text.startswith(LABEL_UNSURE) and offline_sources
            server.script(Tokens(["(general knowledge, not from your documents) Patch the tube."]))
            text, _ = await ask(engine, user.id, question, conv.id)
            assert "Patch the tube" in text and len(server.requests) == 1
            assert "general knowledge" in server.requests[0].messages[0]["content"]
        finally:
            await services.preferences.set(user.id, "strict_mode", True)


async def test_the_prompt_holds_only_the_asked_drugs_passages(services, library):
    from pharmgpt.rag.llm import GroqProvider
    from pharmgpt.services.answering import AnswerService

    from tests.unit.fake_openai_server import FakeChatServer, Tokens

    rag, user, _ = library
    conv = await services.conversations.create_conversation(user.id)
    with FakeChatServer() as server:
        provider = GroqProvider(
            "test-key", base_url=server.url, models=["m"], timeout_s=5, max_retries=0
        )
        engine = AnswerService(
            services.conversations, services.documents, services.preferences, rag.planner, provider
        )
        server.script(Tokens(["The dose is [1]."]))
        await ask(engine, user.id, "What is the starting dose of atorvastatin?", conv.id)
        prompt = server.requests[0].messages[-1]["content"]
        assert "[1]" in prompt and "lipitor-orig.xml" in prompt
        assert (
            "no-title.xml" not in prompt
            and "cough.xml" not in prompt
            and "haloperidol" not in prompt.lower()
        )


async def test_an_xml_source_opens_to_its_section_with_the_quote_highlighted(services, library):
    rag, user, docs = library
    conv = await services.conversations.create_conversation(user.id)
    _, sources = await ask(
        rag.engine,
        user.id,
        "What dose of the cough syrup for children 6 to under 12 years?",
        conv.id,
    )
    source = next(s for s in sources if s["quotes"])
    assert source["page"] is None and source["section"]  # a label has sections, not pages
    view = await rag.source_view(user.id, source)
    assert view is not None and source["section"] in view.title
    marked = [view.text[a:b] for a, b in view.highlights]
    assert any("2 teaspoonfuls (10 mL)" in m for m in marked), marked
    assert len(view.text) > sum(len(m) for m in marked)  # the whole section, the quote marked in it


async def test_a_source_of_another_user_or_a_deleted_document_does_not_open(services, library):
    from pharmgpt.services.errors import NotFound

    rag, user, docs = library
    conv = await services.conversations.create_conversation(user.id)
    _, sources = await ask(rag.engine, user.id, "Maximum daily dose of Lipitor?", conv.id)
    stranger = await services.users.create_user(f"peek-{uuid.uuid4().hex[:6]}", "long enough pw 1")
    with pytest.raises(NotFound):
        await rag.source_view(stranger.id, sources[0])
    gone = {**sources[0], "document_id": str(uuid.uuid4())}
    with pytest.raises(NotFound):
        await rag.source_view(user.id, gone)


async def test_reconcile_reindexes_documents_from_before_drug_identity(services):
    from pharmgpt.rag.index import INDEX_FORMAT

    rag = RagSystem(services, use_configured_provider=False)
    user = await services.users.create_user(f"old-{uuid.uuid4().hex[:8]}", "long enough pw 1")
    doc = await services.documents.register_upload(
        user.id, "cough.xml", (LABELS / "cough.xml").read_bytes()
    )
    while await rag.worker.run_once():
        pass
    # what an older version left: no drugs, no format on the row, no drugs on the chunks
    svc = services.backend.service
    await svc.table("documents").update({"metadata": {}}).eq("id", doc.id).execute()
    rag.store.delete_documents(user.id, [doc.id])
    assert [r["id"] for r in await rag.outdated_documents(user.id)] == [doc.id]
    assert await rag.reindex_outdated(user.id) == 1  # scoped: the command itself does every user
    assert (await services.documents.get_document(user.id, doc.id)).status == "pending"
    while await rag.worker.run_once():
        pass
    again = await services.documents.get_document(user.id, doc.id)
    assert (
        again.status == "ready"
        and again.metadata["index_format"] == INDEX_FORMAT
        and again.metadata["drugs"]
    )
    assert doc.id in rag.store.document_ids(user.id)
    assert await rag.outdated_documents(user.id) == [] and await rag.reindex_outdated(user.id) == 0
