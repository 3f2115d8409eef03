"""A passing failure during ingestion (the disk, the store) queues the document again with a
structured `retry_at` (sql/0011), which the documents page reads; success clears it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.ingestion import IngestWorker
from postgrest.exceptions import APIError

from tests.conftest import client_for, user_token

pytestmark = pytest.mark.integration

TEXT = b"Atorvastatin: the usual starting dose is 10 or 20 mg once daily.\n" * 3


class FlakyIndexer:
    """The real indexer, after one OSError (a full disk, say) on the document's first try."""

    def __init__(self, inner, document_id: str):
        self.inner, self.document_id, self.calls = inner, document_id, 0

    async def index(self, document, data, **kw):
        if document["id"] == self.document_id:
            self.calls += 1
            if self.calls == 1:
                raise OSError("No space left on device")
        return await self.inner.index(document, data, **kw)

    async def discard(self, user_id, document_ids):
        await self.inner.discard(user_id, document_ids)


@pytest_asyncio.fixture(scope="module")
async def rag(services):
    return RagSystem(services, use_configured_provider=False)


async def test_a_transient_failure_sets_retry_at_and_success_clears_it(rag, services):
    while await rag.worker.run_once():  # what earlier modules left queued
        pass
    u = await services.users.create_user(f"retry-{uuid.uuid4().hex[:6]}", "long enough pw")
    d = await services.documents.register_upload(u.id, "statin.txt", TEXT)
    assert d.retry_at is None
    flaky = FlakyIndexer(rag.indexer, d.id)
    worker = IngestWorker(services.ingestion, services.documents, flaky)
    before = datetime.now(UTC)
    assert await worker.run_once() is True
    doc = await services.documents.get_document(u.id, d.id)
    assert doc.status == "pending" and doc.retry_at is not None
    assert before + timedelta(seconds=4) < doc.retry_at < before + timedelta(seconds=60)
    svc = services.backend.service
    job = (
        await svc.table("ingest_jobs")
        .select("id,status,run_after,last_error")
        .eq("document_id", d.id)
        .single()
        .execute()
    ).data
    assert job["status"] == "queued" and "No space left" in job["last_error"]
    assert datetime.fromisoformat(job["run_after"]) == doc.retry_at  # one time, two places
    assert await worker.run_once() is False  # not before then
    await (
        svc.table("ingest_jobs")
        .update({"run_after": before.isoformat()})
        .eq("id", job["id"])
        .execute()
    )
    assert await worker.run_once() is True
    doc = await services.documents.get_document(u.id, d.id)
    assert doc.status == "ready" and doc.retry_at is None and doc.chunk_count > 0
    assert flaky.calls == 2


async def test_users_cannot_write_retry_at(services, stack):
    u = await services.users.create_user(f"retryw-{uuid.uuid4().hex[:6]}", "long enough pw")
    d = await services.documents.register_upload(u.id, "own.txt", TEXT)
    own = await client_for(stack, user_token(stack, u.id))
    with pytest.raises(APIError) as e:
        await (
            own.table("documents")
            .update({"retry_at": "2030-01-01T00:00:00Z"})
            .eq("id", d.id)
            .execute()
        )
    assert e.value.code == "42501"  # no column grant: processing fields are the worker's
    assert (await services.documents.get_document(u.id, d.id)).retry_at is None
