"""RLS, proven by crossing users: with A's token, B's rows can't be read,
inserted, updated or deleted; anon sees nothing; service_role sees all."""

from __future__ import annotations

import uuid

import pytest
from postgrest.exceptions import APIError

from tests.conftest import prove_upload

# the same tests on a Supabase-shaped database too (tests/fixtures/supabase_shape.py)
pytestmark = [pytest.mark.integration, pytest.mark.stacks("localbase", "supabase_shape")]


async def seed(user, service) -> dict:
    """One row of every user-owned table for `user`, written through their own token."""
    c = user.client
    conv = (
        await c.table("conversations").insert({"title": f"{user.username} chat"}).execute()
    ).data[0]
    msg = (
        await c.table("messages")
        .insert({"conversation_id": conv["id"], "role": "user", "content": "secret dose question"})
        .execute()
    ).data[0]
    sha = uuid.uuid4().hex * 2
    await prove_upload(service, user.id, sha)
    doc = (
        await c.table("documents")
        .insert(
            {
                "conversation_id": conv["id"],
                "sha256": sha,
                "filename": "label.pdf",
                "file_type": "application/pdf",
                "file_size": 10,
            }
        )
        .execute()
    ).data[0]
    upl = (
        await c.table("uploads")
        .insert({"document_id": doc["id"], "filename": "label.pdf", "file_size": 10})
        .execute()
    ).data[0]
    pref = (
        await c.table("user_preferences").insert({"key": "theme", "value": "dark"}).execute()
    ).data[0]
    job = (await c.table("ingest_jobs").insert({"document_id": doc["id"]}).execute()).data[0]
    # rows only the service role may write
    sess = (
        await service.table("sessions")
        .insert(
            {
                "user_id": user.id,
                "token_hash": uuid.uuid4().hex * 2,
                "expires_at": "2999-01-01T00:00:00Z",
            }
        )
        .execute()
    ).data[0]
    audit = (
        await service.table("audit_log")
        .insert({"user_id": user.id, "action": "auth.login"})
        .execute()
    ).data[0]
    return {
        "conversations": conv,
        "messages": msg,
        "documents": doc,
        "uploads": upl,
        "user_preferences": pref,
        "ingest_jobs": job,
        "sessions": sess,
        "audit_log": audit,
        "users": {"id": user.id},
    }


KEY = {"user_preferences": "user_id", "users": "id"}
READ_COLS = {"users": "id,username", "sessions": "id,user_id"}


def key_of(table: str) -> str:
    return KEY.get(table, "id")


TABLES = [
    "users",
    "sessions",
    "conversations",
    "messages",
    "documents",
    "uploads",
    "user_preferences",
    "audit_log",
    "ingest_jobs",
]


@pytest.fixture
async def pair(make_user, service):
    a, b = await make_user("a"), await make_user("b")
    return a, b, await seed(a, service), await seed(b, service)


@pytest.mark.parametrize("table", TABLES)
async def test_user_reads_only_own_rows(pair, table):
    a, b, rows_a, rows_b = pair
    cols = READ_COLS.get(table, "*")
    k = key_of(table)
    own = await a.client.table(table).select(cols).execute()
    assert own.data, f"A should see their own {table}"
    seen = {str(r.get(k) if k != "user_id" else r["user_id"]) for r in own.data}
    assert str(rows_b[table][k] if k in rows_b[table] else b.id) not in seen
    direct = await a.client.table(table).select(cols).eq(k, rows_b[table].get(k, b.id)).execute()
    assert direct.data == []


@pytest.mark.parametrize("table", TABLES)
async def test_user_cannot_update_or_delete_others_rows(pair, table, service):
    a, b, rows_a, rows_b = pair
    k = key_of(table)
    target = rows_b[table].get(k, b.id)
    patch = {
        "users": {"email": "x@y.z"},
        "sessions": {"user_agent": "evil"},
        "conversations": {"title": "pwned"},
        "messages": {"content": "pwned"},
        "documents": {"filename": "pwned"},
        "uploads": {"filename": "pwned"},
        "user_preferences": {"value": "pwned"},
        "audit_log": {"action": "pwned"},
        "ingest_jobs": {"status": "failed"},
    }[table]
    for op in ("update", "delete"):
        try:
            q = (
                a.client.table(table).update(patch)
                if op == "update"
                else a.client.table(table).delete()
            )
            r = await q.eq(k, target).execute()
            assert r.data == []
        except APIError as e:
            assert e.code == "42501"
    # B's row is untouched, as the service role sees it
    after = await service.table(table).select(READ_COLS.get(table, "*")).eq(k, target).execute()
    assert after.data, f"B's {table} row must still exist"
    for col, val in patch.items():
        if col in after.data[0]:
            assert after.data[0][col] != val


@pytest.mark.parametrize(
    "table,row",
    [
        ("conversations", lambda b, rb: {"user_id": b.id, "title": "planted"}),
        (
            "messages",
            lambda b, rb: {
                "conversation_id": rb["conversations"]["id"],
                "user_id": b.id,
                "role": "user",
                "content": "planted",
            },
        ),
        (
            "documents",
            lambda b, rb: {"user_id": b.id, "sha256": "f" * 64, "filename": "x", "file_type": "x"},
        ),
        ("uploads", lambda b, rb: {"user_id": b.id, "filename": "x", "file_size": 1}),
        ("user_preferences", lambda b, rb: {"user_id": b.id, "key": "planted", "value": 1}),
        ("ingest_jobs", lambda b, rb: {"user_id": b.id, "document_id": rb["documents"]["id"]}),
        ("users", lambda b, rb: {"username": "planted", "password_hash": "x" * 60}),
        (
            "sessions",
            lambda b, rb: {"user_id": b.id, "token_hash": "e" * 64, "expires_at": "2999-01-01"},
        ),
        ("audit_log", lambda b, rb: {"user_id": b.id, "action": "planted"}),
    ],
)
async def test_user_cannot_insert_as_someone_else(pair, table, row):
    a, b, rows_a, rows_b = pair
    with pytest.raises(APIError) as e:
        await a.client.table(table).insert(row(b, rows_b)).execute()
    assert e.value.code == "42501"


async def test_message_into_someone_elses_conversation_is_refused(pair):
    a, b, rows_a, rows_b = pair
    # A claims the row as their own but points it at B's conversation: the
    # composite foreign key (conversation_id, user_id) refuses it
    with pytest.raises(APIError) as e:
        await (
            a.client.table("messages")
            .insert(
                {"conversation_id": rows_b["conversations"]["id"], "role": "user", "content": "x"}
            )
            .execute()
        )
    assert e.value.code in ("23503", "42501")


@pytest.mark.parametrize("table", TABLES)
async def test_anon_reads_nothing(pair, anon, table):
    try:
        r = await anon.table(table).select(READ_COLS.get(table, "*")).execute()
        assert r.data == []
    except APIError as e:
        assert e.code == "42501"


@pytest.mark.parametrize("table", TABLES)
async def test_service_role_reads_all(pair, service, table):
    a, b, rows_a, rows_b = pair
    k = key_of(table)
    ids = [rows_a[table].get(k, a.id), rows_b[table].get(k, b.id)]
    r = await service.table(table).select(READ_COLS.get(table, "*")).in_(k, ids).execute()
    assert len({str(x[k]) for x in r.data}) == 2


async def test_password_hash_and_token_hash_are_not_readable_by_users(pair):
    a, *_ = pair
    for table, col in [("users", "password_hash"), ("sessions", "token_hash")]:
        with pytest.raises(APIError) as e:
            await a.client.table(table).select(col).execute()
        assert e.value.code == "42501"


async def test_rpc_respects_rls(pair):
    a, b, rows_a, rows_b = pair
    r = await a.client.rpc("search_conversations", {"query": "secret dose"}).execute()
    assert [c["id"] for c in r.data] == [rows_a["conversations"]["id"]]
    r = await a.client.rpc("search_conversation_hits", {"query": "secret dose"}).execute()
    assert {c["id"] for c in r.data} == {rows_a["conversations"]["id"]}
    assert {c["user_id"] for c in r.data} == {a.id}
    with pytest.raises(APIError) as e:  # the worker's queue function is service-role only
        await a.client.rpc("claim_ingest_job", {"worker": "w"}).execute()
    assert e.value.code == "42501"


async def test_audit_log_is_append_only_even_for_service(pair, service):
    a, b, rows_a, rows_b = pair
    with pytest.raises(APIError) as e:
        await (
            service.table("audit_log")
            .update({"action": "x"})
            .eq("id", rows_a["audit_log"]["id"])
            .execute()
        )
    assert e.value.code == "P0001"
    with pytest.raises(APIError):
        await service.table("audit_log").delete().eq("id", rows_a["audit_log"]["id"]).execute()


async def test_anon_cannot_search(pair, anon):
    with pytest.raises(APIError) as e:
        await anon.rpc("search_conversation_hits", {"query": "secret dose"}).execute()
    assert e.value.code == "42501"
