"""DocumentService, PreferenceService and AuditService on the real stack."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from pharmgpt.services.errors import NotFound, ValidationError
from postgrest.exceptions import APIError

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def history(services, user_id):
    return [(u.filename, u.outcome) for u in await services.documents.get_upload_history(user_id)]


async def test_register_dedups_per_scope_and_queues_ingestion(services, account):
    user, _ = await account()
    ds = services.documents
    conv = await services.conversations.create_conversation(user.id)
    d1 = await ds.register_upload(user.id, "Lipitor label.pdf", PDF, conversation_id=conv.id)
    assert (
        d1.status == "pending" and not d1.duplicate and d1.sha256 == hashlib.sha256(PDF).hexdigest()
    )
    assert d1.file_type == "application/pdf" and d1.file_size == len(PDF)
    again = await ds.register_upload(user.id, "renamed copy.pdf", PDF, conversation_id=conv.id)
    assert again.duplicate and again.id == d1.id
    lib = await ds.register_upload(
        user.id, "Lipitor label.pdf", PDF
    )  # the library is another scope
    assert not lib.duplicate and lib.id != d1.id and lib.conversation_id is None
    assert [d.id for d in await ds.get_conversation_documents(user.id, conv.id)] == [d1.id]
    assert [d.id for d in await ds.get_library_documents(user.id)] == [lib.id]
    assert (await history(services, user.id)) == [
        ("Lipitor label.pdf", "accepted"),
        ("renamed copy.pdf", "duplicate"),
        ("Lipitor label.pdf", "accepted"),
    ][::-1]
    jobs = (
        await services.backend.service.table("ingest_jobs")
        .select("document_id,status")
        .eq("user_id", user.id)
        .execute()
    ).data
    assert sorted(j["document_id"] for j in jobs) == sorted([d1.id, lib.id])
    assert services.blobs.get(d1.sha256) == PDF


@pytest.mark.parametrize(
    "name,data,msg",
    [
        ("empty.pdf", b"", "empty"),
        ("virus.exe", b"MZ\x90\x00", "not supported"),
        ("fake.pdf", b"<html>not a pdf</html>", "not a valid PDF"),
        ("binary.txt", b"abc\x00\x01\x02", "binary"),
        ("scan.png", b"\xff\xd8\xff\xe0jpeg really", "not a valid PNG"),
    ],
)
async def test_bad_uploads_are_refused_recorded_and_leave_nothing_else(
    services, account, name, data, msg
):
    user, _ = await account()
    with pytest.raises(ValidationError) as e:
        await services.documents.register_upload(user.id, name, data)
    assert msg in e.value.message
    assert await history(services, user.id) == [(name, "rejected")]  # the history shows the refusal
    assert await services.documents.get_library_documents(user.id) == []
    other, _ = await account()
    assert await history(services, other.id) == []  # the user's own entry (RLS)


async def test_oversized_upload(services, account, stack, tmp_path):
    from pharmgpt.services.container import Services

    from tests.conftest import service_settings

    user, _ = await account()
    small = await Services.create(service_settings(stack, tmp_path, max_upload_bytes=1024))
    try:
        with pytest.raises(ValidationError) as e:
            await small.documents.register_upload(user.id, "big.txt", b"a" * 2048)
        assert e.value.message == "big.txt is 2 KB; the limit is 1 KB per file."
    finally:
        await small.close()


async def test_filenames_are_cleaned_and_unicode_kept(services, account):
    user, _ = await account()
    d = await services.documents.register_upload(user.id, "../../etc/passwd.txt", b"hello")
    assert d.filename == "passwd.txt"
    d = await services.documents.register_upload(
        user.id, "Ménière — Ω notes.md", b"# Betahistine\n"
    )
    assert d.filename == "Ménière — Ω notes.md" and d.file_type == "text/markdown"


async def test_status_updates_and_deletion(services, account):
    user, _ = await account()
    ds = services.documents
    d = await ds.register_upload(user.id, "a.txt", b"alpha unique content 1")
    assert (await ds.get_library_documents(user.id))[0].status == "pending"
    ready = await ds.update_document_status(d.id, "ready", chunk_count=12, page_count=3)
    assert (ready.status, ready.chunk_count, ready.page_count) == ("ready", 12, 3)
    assert (await ds.get_library_documents(user.id))[
        0
    ].status == "ready"  # cache invalidated by the write
    failed = await ds.update_document_status(d.id, "failed", error="Page 2 has no text layer")
    assert failed.processing_error == "Page 2 has no text layer"
    with pytest.raises(ValidationError):
        await ds.update_document_status(d.id, "done")
    dropped = []

    async def hook(uid, ids):
        dropped.append(ids)

    ds.on_documents_deleted = hook
    try:
        await ds.delete_document(user.id, d.id)
    finally:
        ds.on_documents_deleted = None
    assert dropped == [[d.id]]
    assert await ds.get_library_documents(user.id) == []
    assert not services.blobs.exists(d.sha256)
    assert any(a.action == "document.deleted" for a in await services.audit.list(user_id=user.id))


async def test_documents_are_private(services, account):
    a, _ = await account()
    b, _ = await account()
    conv_b = await services.conversations.create_conversation(b.id)
    doc_b = await services.documents.register_upload(
        b.id, "b.txt", b"b private text", conversation_id=conv_b.id
    )
    with pytest.raises(NotFound):
        await services.documents.get_document(a.id, doc_b.id)
    with pytest.raises(NotFound):
        await services.documents.delete_document(a.id, doc_b.id)
    with pytest.raises(NotFound):  # can't register into someone else's conversation
        await services.documents.register_upload(
            a.id, "x.txt", b"planted", conversation_id=conv_b.id
        )
    assert await services.documents.get_conversation_documents(a.id, conv_b.id) == []
    assert (await services.documents.get_document(b.id, doc_b.id)).filename == "b.txt"
    # the same bytes uploaded by A are A's own document, not a duplicate of B's
    mine = await services.documents.register_upload(a.id, "b.txt", b"b private text")
    assert not mine.duplicate and mine.user_id == a.id


async def test_preferences_typed_defaults_and_isolation(services, account):
    a, _ = await account()
    b, _ = await account()
    ps = services.preferences
    assert await ps.get(a.id, "top_k") == 6
    assert await ps.set(a.id, "top_k", 10) == 10
    assert await ps.set(a.id, "temperature", 1) == 1.0
    await ps.set(a.id, "strict_mode", False)
    prefs = await ps.get_all(a.id)
    assert prefs["top_k"] == 10 and prefs["temperature"] == 1.0 and prefs["strict_mode"] is False
    assert prefs["theme"] == "light"
    assert (await ps.get_all(b.id))["top_k"] == 6
    for key, value in [
        ("top_k", "ten"),
        ("top_k", 0),
        ("top_k", True),
        ("theme", "neon"),
        ("nope", 1),
        ("temperature", 3.5),
    ]:
        with pytest.raises(ValidationError):
            await ps.set(a.id, key, value)
    await ps.delete(a.id, "top_k")
    assert await ps.get(a.id, "top_k") == 6


async def test_audit_is_recorded_and_append_only(services, account):
    user, pw = await account()
    await services.users.authenticate_user(user.username, pw, ip="10.1.2.3")
    token = await services.sessions.create_session(user.id)
    await services.sessions.logout_all(user.id)
    del token
    entries = await services.audit.list(user_id=user.id)
    actions = [e.action for e in entries]
    assert {"user.created", "auth.login", "auth.logout_all"} <= set(actions)
    login = next(e for e in entries if e.action == "auth.login")
    assert login.ip_address == "10.1.2.3"
    assert [e.action for e in await services.audit.list(user_id=user.id, action="auth.*")] == [
        a for a in actions if a.startswith("auth.")
    ]
    with pytest.raises(APIError):
        await services.backend.service.table("audit_log").delete().eq("id", login.id).execute()


async def test_a_document_another_process_moved_on_is_seen_without_waiting_for_the_cache(
    stack, tmp_path
):
    """The worker runs in its own process under `pharmgpt run`, so the app's cached lists cannot
    be told that a document became ready: a list holding one in flight is re-read soon."""
    from pharmgpt.services.container import Services

    from tests.conftest import service_settings

    svc = await Services.create(service_settings(stack, tmp_path / "svc", cache_ttl_in_flight_s=0))
    try:
        user = await svc.users.create_user(f"flight-{uuid.uuid4().hex[:6]}", "long enough pw")
        doc = await svc.documents.register_upload(
            user.id, "note.md", b"# Note\nDigoxin and potassium."
        )
        assert [d.status for d in await svc.documents.get_library_documents(user.id)] == ["pending"]
        # what another process's worker does: straight to the row, nothing of this process's cache
        await svc.backend.execute(
            svc.backend.service.table("documents").update({"status": "ready"}).eq("id", doc.id),
            what="document",
        )
        assert [d.status for d in await svc.documents.get_library_documents(user.id)] == ["ready"]
        again = await svc.documents.get_library_documents(
            user.id
        )  # settled lists are cached as before
        assert again is await svc.documents.get_library_documents(user.id)
    finally:
        await svc.close()
