"""The RAG flow against a real Chroma server (`CHROMA_HOST`), as larger installs run it (issue 15).

A representative subset of test_rag_flow.py (which runs on the embedded store),
collected here again with the services pointed at the session's Chroma server:
ingestion to ready, cited answers, isolation between users, idempotent re-ingestion,
deletion and reconcile. The whole file would double the RAG suite's time; these
cover every store call the app makes (upsert, query, get, delete, list, drop).
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.conftest import chroma_server_services
from tests.integration.test_rag_flow import (  # noqa: F401 - fixtures and tests collected here again
    LABELS,
    lipitor,
    rag,
    test_answer_cites_a_page_that_contains_the_text,
    test_deleting_documents_and_conversations_removes_chunks,
    test_documents_become_ready_with_counts,
    test_no_user_ever_retrieves_another_users_chunks,
    test_reconcile_removes_orphans,
    test_reingest_is_idempotent,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.chroma_server,
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}"),
]


@pytest_asyncio.fixture(scope="module")
async def services(stack, chroma_server, tmp_path_factory):
    svc = await chroma_server_services(stack, chroma_server, tmp_path_factory.mktemp("rag-server"))
    yield svc
    await svc.close()


async def test_the_store_is_the_server(rag, chroma_server, lipitor):  # noqa: F811 - the fixtures
    """Not the embedded client: the chunks are in the server and nothing was written locally."""
    assert rag.store.host == chroma_server.host and rag.store.port == chroma_server.port
    assert not (rag.services.settings.data_dir / "chroma").exists()
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    direct = chromadb.HttpClient(
        host=chroma_server.host,
        port=chroma_server.port,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    from pharmgpt.rag.store import collection_name

    assert (
        direct.get_collection(collection_name(lipitor["user"].id)).count()
        == rag.store.count(lipitor["user"].id)
        > 0
    )
