"""Issue 12 on the real stack: bombs end `failed` within their limits with no chunks and no
retry while another user's small file is processed; A cannot reach B's bytes by hash."""

from __future__ import annotations

import codecs
import io
import uuid
import zipfile

import pytest
import pytest_asyncio
from pharmgpt.rag_system import RagSystem
from postgrest.exceptions import APIError

from tests.conftest import client_for, service_settings, user_token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def docx_bomb(paragraphs: int) -> bytes:
    body = "<w:p/>" * paragraphs
    doc = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
        '"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        + body
        + "</w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"/>',
        )
        z.writestr("word/document.xml", doc)
    return buf.getvalue()


BOMBS = {
    "wide.csv": b"," * 100_000 + b"\n" + b"1,2\n" * 1000,
    "paragraphs.docx": docx_bomb(300_000),
    "entities.xml": codecs.BOM_UTF16_LE
    + (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY a "'
        + "x" * 100
        + '">]><document>&a;&a;</document>'
    ).encode("utf-16-le"),
    "deep.xml": b'<document xmlns="urn:hl7-org:v3">'
    + b"<a>" * 5000
    + b"</a>" * 5000
    + b"</document>",
    "binary.txt": b"plain words " * 800 + bytes(range(256)) * 200,
}


@pytest_asyncio.fixture(scope="module")
async def system(stack, tmp_path_factory):
    from pharmgpt.services.container import Services

    svc = await Services.create(
        service_settings(
            stack, tmp_path_factory.mktemp("hostile"), ingest_timeout_s=60, ingest_memory_mb=1024
        )
    )
    yield RagSystem(svc, use_configured_provider=False)
    await svc.close()


async def test_bombs_fail_for_good_and_another_users_file_is_served(system):
    services = system.services
    tag = uuid.uuid4().hex[:6]
    a = await services.users.create_user(f"bomber-{tag}", "long enough pw")
    b = await services.users.create_user(f"victim-{tag}", "long enough pw")
    bombs = [
        await services.documents.register_upload(a.id, name, data) for name, data in BOMBS.items()
    ]
    small = await services.documents.register_upload(
        b.id, "note.txt", b"Digoxin toxicity causes nausea."
    )
    order = []
    while (job := await system.worker.claim()) is not None:
        order.append(job["user_id"])
        await system.worker.process(job)
    order = [u for u in order if u in (a.id, b.id)]  # other tests' users may have jobs queued too
    assert order.index(b.id) <= 1  # users take turns: B's file is not queued behind all of A's
    assert (await services.documents.get_document(b.id, small.id)).status == "ready"
    for d in bombs:
        doc = await services.documents.get_document(a.id, d.id)
        assert doc.status == "failed" and doc.processing_error, doc.filename
        assert doc.chunk_count == 0 and system.store.get_document_chunks(a.id, d.id) == []
    jobs = (
        await services.backend.service.table("ingest_jobs")
        .select("status,attempts")
        .eq("user_id", a.id)
        .execute()
    ).data
    assert jobs and all(j == {"status": "failed", "attempts": 1} for j in jobs)  # never retried
    errors = {
        d.filename: (await services.documents.get_document(a.id, d.id)).processing_error
        for d in bombs
    }
    assert "1,000 columns" in errors["wide.csv"]
    assert "paragraphs" in errors["paragraphs.docx"]
    assert "entities" in errors["entities.xml"]
    assert "levels deep" in errors["deep.xml"]
    assert "binary" in errors["binary.txt"]


async def test_a_stale_job_is_failed_for_good_after_max_attempts(system):
    services, svc = system.services, system.services.backend.service
    u = await services.users.create_user(f"stale-{uuid.uuid4().hex[:6]}", "long enough pw")
    d = await services.documents.register_upload(u.id, "n.md", b"# N\nWarfarin and INR.")
    job = None
    for attempt in range(1, 4):  # a worker claims it and dies, three times
        job = (
            await svc.rpc(
                "claim_ingest_job", {"worker": f"dead-{attempt}", "stale_after": "0 seconds"}
            ).execute()
        ).data
        job = [j for j in job if j["document_id"] == d.id]
        while not job:
            more = (
                await svc.rpc(
                    "claim_ingest_job", {"worker": "other", "stale_after": "1 hour"}
                ).execute()
            ).data
            assert more, "the job should be claimable"
            job = [j for j in more if j["document_id"] == d.id]
        assert job[0]["attempts"] == attempt
    await svc.rpc("claim_ingest_job", {"worker": "next", "stale_after": "0 seconds"}).execute()
    row = (
        await svc.table("ingest_jobs")
        .select("status,attempts")
        .eq("document_id", d.id)
        .single()
        .execute()
    ).data
    assert row == {"status": "failed", "attempts": 3}
    doc = await services.documents.get_document(u.id, d.id)
    assert doc.status == "failed" and "3 attempts" in doc.processing_error


async def test_a_user_cannot_reach_another_users_bytes_by_hash(system, stack):
    import hashlib

    services, svc = system.services, system.services.backend.service
    a = await services.users.create_user(f"thief-{uuid.uuid4().hex[:6]}", "long enough pw")
    b = await services.users.create_user(f"owner-{uuid.uuid4().hex[:6]}", "long enough pw")
    secret = b"# Private\nPatient Jane Roe takes 5 mg warfarin."
    await services.documents.register_upload(b.id, "private.md", secret)
    sha = hashlib.sha256(secret).hexdigest()
    b_proof = (await svc.table("upload_proofs").select("id").eq("user_id", b.id).execute()).data[0][
        "id"
    ]
    ca = await client_for(stack, user_token(stack, a.id))
    with pytest.raises(APIError):  # the old caller-trusted signature is gone
        await ca.rpc(
            "register_document",
            {
                "p_id": str(uuid.uuid4()),
                "p_conversation_id": None,
                "p_sha256": sha,
                "p_filename": "x.md",
                "p_file_type": "text/markdown",
                "p_file_size": 1,
                "p_metadata": {},
            },
        ).execute()
    with pytest.raises(APIError) as e:  # B's proof is not A's
        await ca.rpc(
            "register_document",
            {
                "p_id": str(uuid.uuid4()),
                "p_conversation_id": None,
                "p_upload_id": b_proof,
                "p_filename": "x.md",
                "p_file_type": "text/markdown",
            },
        ).execute()
    assert e.value.code == "P0002"
    with pytest.raises(APIError) as e:  # nor a documents row naming B's hash
        await (
            ca.table("documents")
            .insert({"sha256": sha, "filename": "x.md", "file_type": "text/markdown"})
            .execute()
        )
    assert e.value.code == "42501"
    with pytest.raises(APIError):  # nor a forged proof
        await (
            ca.table("upload_proofs")
            .insert({"user_id": a.id, "sha256": sha, "file_size": 1})
            .execute()
        )
    assert (await ca.table("upload_proofs").select("*").execute()).data == []
    assert (await ca.table("documents").select("id").execute()).data == []
