"""The pharmacy-library isolation tests again, against a real Chroma server (`CHROMA_HOST`).

The pharmacy's collection, its BM25 index and every attack of
test_rag_pharmacy_scope.py, with the services pointed at the session's Chroma
server, as a larger install runs them (issue 15, parts 4 and 5).
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.conftest import chroma_server_services
from tests.integration.test_rag_pharmacy_scope import (  # noqa: F401 - collected here again
    LABELS,
    team,
    test_a_non_member_never_retrieves_a_pharmacy_chunk,
    test_a_reader_is_answered_from_the_pharmacy_library,
    test_a_removed_member_loses_it_on_the_next_question,
    test_deleting_the_shared_document_removes_its_chunks_there,
    test_the_chunks_live_in_the_pharmacy_scope_only,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.chroma_server,
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}"),
]


@pytest_asyncio.fixture(scope="module")
async def services(stack, chroma_server, tmp_path_factory):
    svc = await chroma_server_services(
        stack, chroma_server, tmp_path_factory.mktemp("pharmacy-server")
    )
    yield svc
    await svc.close()


async def test_the_pharmacy_collection_is_in_the_server(team, chroma_server):  # noqa: F811
    rag, ph, *_ = team
    assert rag.store.host == chroma_server.host
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from pharmgpt.rag.owner_scope import OwnerScope

    direct = chromadb.HttpClient(
        host=chroma_server.host,
        port=chroma_server.port,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    scope = OwnerScope.pharmacy(ph.id)
    assert direct.get_collection(scope.collection).count() == rag.store.count(scope) > 0
