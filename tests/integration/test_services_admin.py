"""AdminService and document retry/progress on the real stack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pharmgpt.services.errors import AuthError, Conflict, Forbidden, NotFound, ValidationError
from postgrest.exceptions import APIError

from tests.conftest import client_for

pytestmark = pytest.mark.integration

TXT = b"Atorvastatin 10 mg once daily.\n"


@pytest.fixture
def admin_account(services):
    async def _make():
        name = f"admin-{uuid.uuid4().hex[:10]}"
        return await services.users.create_user(name, "correct horse battery", is_admin=True)

    return _make


async def audit_actions(services, user_id):
    return [(e.action, e.actor_id) for e in await services.audit.list(user_id=user_id, limit=50)]


async def test_list_users_with_counts(services, account, admin_account):
    admin = await admin_account()
    user, _ = await account()
    conv = await services.conversations.create_conversation(user.id)
    await services.conversations.add_message(
        user.id, conv.id, {"role": "user", "content": "Dose of X?"}
    )
    await services.documents.register_upload(user.id, "notes.txt", TXT)
    await services.sessions.create_session(user.id)
    rows = {u.id: u for u in await services.admin.list_users(admin.id, search=user.username)}
    row = rows[user.id]
    assert (row.username, row.is_active, row.is_admin, row.locked) == (
        user.username,
        True,
        False,
        False,
    )
    assert (row.conversations, row.messages, row.documents, row.active_sessions) == (1, 1, 1, 1)
    everyone = await services.admin.list_users(admin.id)
    assert {admin.id, user.id} <= {u.id for u in everyone}


async def test_deactivate_and_activate(services, account, admin_account):
    admin = await admin_account()
    user, password = await account()
    token = await services.sessions.create_session(user.id)
    await services.admin.set_active(admin.id, user.id, False)
    assert await services.sessions.validate_session(token) is None
    with pytest.raises(AuthError):
        await services.users.authenticate_user(user.username, password)
    await services.admin.set_active(admin.id, user.id, True)
    assert (await services.users.authenticate_user(user.username, password)).id == user.id
    actions = await audit_actions(services, user.id)
    assert ("admin.user_deactivated", admin.id) in actions and (
        "admin.user_activated",
        admin.id,
    ) in actions
    with pytest.raises(ValidationError):
        await services.admin.set_active(admin.id, admin.id, False)


async def test_unlock_clears_the_lockout(services, account, admin_account):
    admin = await admin_account()
    user, password = await account()
    for _ in range(services.settings.max_failed_logins):
        with pytest.raises(AuthError):
            await services.users.authenticate_user(user.username, "wrong password!")
    with pytest.raises(AuthError) as e:
        await services.users.authenticate_user(user.username, password)
    assert "locked" in e.value.message
    assert [u for u in await services.admin.list_users(admin.id, search=user.username)][0].locked
    await services.admin.unlock(admin.id, user.id)
    row = (
        await services.backend.service.table("users")
        .select("failed_logins,locked_until,first_failed_at")
        .eq("id", user.id)
        .execute()
    ).data[0]
    assert row == {"failed_logins": 0, "locked_until": None, "first_failed_at": None}
    assert (await services.users.authenticate_user(user.username, password)).id == user.id
    assert ("admin.user_unlocked", admin.id) in await audit_actions(services, user.id)


async def test_promote(services, account, admin_account):
    user, _ = await account()
    promoted = await services.admin.promote(
        user.username.upper()
    )  # usernames match case-insensitively
    assert promoted.is_admin and promoted.id == user.id
    entries = await services.audit.list(user_id=user.id, action="admin.user_promoted")
    assert [e.details["via"] for e in entries] == ["cli"]
    assert [e.actor_id for e in entries] == [None]  # the command line, not the promoted user
    with pytest.raises(NotFound):
        await services.admin.promote(f"nobody-{uuid.uuid4().hex[:8]}")
    admin = await admin_account()
    other, _ = await account()
    await services.admin.promote(other.username, actor_id=admin.id)
    assert ("admin.user_promoted", admin.id) in await audit_actions(services, other.id)


async def test_usage_per_day(services, account, admin_account):
    admin = await admin_account()
    user, _ = await account()
    conv = await services.conversations.create_conversation(user.id)
    await services.conversations.add_message(user.id, conv.id, {"role": "user", "content": "hello"})
    await services.documents.register_upload(
        user.id, "usage.txt", TXT + uuid.uuid4().bytes.hex().encode()
    )
    days = await services.admin.usage(admin.id, 7)
    assert len(days) == 7 and days[-1].day == datetime.now(UTC).date()
    assert all(a.day < b.day for a, b in zip(days, days[1:], strict=False))
    today = days[-1]
    assert (
        today.users >= 1
        and today.conversations >= 1
        and today.messages >= 1
        and today.documents >= 1
    )
    with pytest.raises(ValidationError):
        await services.admin.usage(admin.id, 0)


async def test_ingestion_queue_and_audit_log(services, account, admin_account):
    admin = await admin_account()
    user, _ = await account()
    doc = await services.documents.register_upload(user.id, "queue me.txt", TXT + b"queue")
    queue = await services.admin.ingestion_queue(admin.id)
    item = next(q for q in queue if q.document_id == doc.id)
    assert (item.filename, item.username, item.user_id) == ("queue me.txt", user.username, user.id)
    assert item.status in ("queued", "running", "done", "failed") and item.document_status
    await services.admin.unlock(admin.id, user.id)
    entries = await services.admin.audit_log(admin.id, user_id=user.id)
    assert any(e.action == "admin.user_unlocked" and e.actor_id == admin.id for e in entries)


async def test_non_admins_get_nothing(services, account, stack):
    user, _ = await account()
    other, _ = await account()
    for call in (
        services.admin.list_users(user.id),
        services.admin.usage(user.id),
        services.admin.ingestion_queue(user.id),
        services.admin.audit_log(user.id),
        services.admin.set_active(user.id, other.id, False),
        services.admin.unlock(user.id, other.id),
        services.admin.promote(user.username, actor_id=user.id),
        services.admin.list_users("not-a-uuid"),
    ):
        with pytest.raises(Forbidden):
            await call
    assert (await services.users.get_user_by_id(other.id)).is_active
    # and through the user's own client, straight at the API
    token, _ = services.backend.user_token(user.id)
    own = await client_for(stack, token)
    for fn, args in (("admin_user_overview", {}), ("admin_usage", {"p_days": 7})):
        with pytest.raises(APIError) as e:
            await own.rpc(fn, args).execute()
        assert e.value.code == "42501"
    assert [r["id"] for r in (await own.table("users").select("id").execute()).data] == [user.id]
    with pytest.raises(APIError):
        await own.table("users").update({"is_admin": True}).eq("id", user.id).execute()
    assert not (await services.users.get_user_by_id(user.id)).is_admin
    await services.documents.register_upload(other.id, "theirs.txt", TXT + b"theirs")
    jobs = (await own.table("ingest_jobs").select("user_id").execute()).data
    assert all(j["user_id"] == user.id for j in jobs)
    audit = (await own.table("audit_log").select("user_id").execute()).data
    assert audit and all(a["user_id"] == user.id for a in audit)


async def test_retry_failed_document_requeues_it(services, account):
    user, _ = await account()
    other, _ = await account()
    ds = services.documents
    doc = await ds.register_upload(user.id, "broken.txt", TXT + b"broken")
    svc = services.backend.service
    await (
        svc.table("ingest_jobs")
        .update(
            {"status": "failed", "last_error": "boom", "progress": {"chunks": 4, "chunks_done": 1}}
        )
        .eq("document_id", doc.id)
        .execute()
    )
    await ds.update_document_status(
        doc.id, "failed", error="broken.txt contains no extractable text."
    )
    progress = await ds.job_progress(user.id, [doc.id])
    assert progress[doc.id]["status"] == "failed" and progress[doc.id]["percent"] == 25

    with pytest.raises(NotFound):
        await ds.retry_document(other.id, doc.id)  # someone else's is simply not there
    again = await ds.retry_document(user.id, doc.id)
    assert (again.status, again.processing_error) == ("pending", None)
    jobs = (
        await svc.table("ingest_jobs")
        .select("status")
        .eq("document_id", doc.id)
        .order("created_at")
        .execute()
    ).data
    assert [j["status"] for j in jobs] == ["failed", "queued"]
    assert (await ds.get_document(user.id, doc.id)).status == "pending"
    progress = await ds.job_progress(user.id, [doc.id, str(uuid.uuid4()), "junk"])
    assert list(progress) == [doc.id] and progress[doc.id]["status"] == "queued"
    assert progress[doc.id]["percent"] is None
    assert await ds.job_progress(other.id, [doc.id]) == {}  # RLS: not theirs
    with pytest.raises(Conflict):
        await ds.retry_document(user.id, doc.id)  # only failed documents
    assert ("document.retried", user.id) in await audit_actions(services, user.id)


async def test_cli_promote(services, account, stack, tmp_path, monkeypatch, capsys):
    import asyncio

    from pharmgpt.cli import main

    for key, value in stack.as_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PHARMGPT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PHARMGPT_SECRETS_FILE", str(tmp_path / "none.toml"))
    user, _ = await account()
    assert await asyncio.to_thread(main, ["admin", "promote", user.username]) == 0
    assert f"{user.username} is now an administrator" in capsys.readouterr().out
    services.cache.invalidate("user", user.id)
    assert (await services.users.get_user_by_id(user.id)).is_admin
    assert await asyncio.to_thread(main, ["admin", "promote", "no-such-user-here"]) == 1
    out = capsys.readouterr().out
    assert (
        "There is no account named 'no-such-user-here'. Looked in database: Supabase at "
        f"{stack.url}; data dir {tmp_path} (from PHARMGPT_DATA_DIR)." in out
    )
