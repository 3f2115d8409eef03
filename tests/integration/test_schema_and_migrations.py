"""The sql/ files: apply to an empty database, re-apply as a no-op, and the
guarantees the rest of the app leans on (RLS everywhere, no permissive policy,
triggers keeping counts)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from pharmgpt.localbase import migrations
from psycopg import sql

from tests.conftest import prove_upload

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_db(stack):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield stack.db_uri.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def schema_fingerprint(dsn: str) -> list:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                WHERE n.nspname = 'public' ORDER BY 1, 2"""
        ).fetchall()


def test_apply_to_empty_database_then_noop(empty_db):
    names = [m.name for m in migrations.discover()]
    assert migrations.apply(empty_db) == names
    before = schema_fingerprint(empty_db)
    assert migrations.apply(empty_db) == []
    assert schema_fingerprint(empty_db) == before
    assert [n for _, n in migrations.applied(empty_db)] == names


def test_changed_migration_is_refused(empty_db, tmp_path):
    for m in migrations.discover():
        (tmp_path / m.name).write_text(m.sql)
    migrations.apply(empty_db, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        migrations.apply(empty_db, tmp_path)


def test_failed_migration_rolls_back_and_is_not_recorded(empty_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE public.a (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE public.b (id int); SELECT 1/0;")
    with pytest.raises(migrations.MigrationError, match="0002_bad.sql"):
        migrations.apply(empty_db, tmp_path)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('public.b')").fetchone()[0] is None
        assert conn.execute("SELECT array_agg(version) FROM schema_migrations").fetchone()[0] == [
            "0001"
        ]


def test_every_table_has_rls_and_no_permissive_policy(stack):
    with psycopg.connect(stack.db_uri) as conn:
        no_rls = conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity"""
        ).fetchall()
        assert no_rls == []
        permissive = conn.execute(
            """SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public'
                AND (qual IS NOT DISTINCT FROM 'true' OR with_check IS NOT DISTINCT FROM 'true'
                     OR 'public' = ANY(roles) OR 'anon' = ANY(roles))"""
        ).fetchall()
        assert permissive == []
        anon_grants = conn.execute(
            """SELECT table_name, privilege_type FROM information_schema.role_table_grants
                WHERE grantee = 'anon' AND table_schema = 'public'"""
        ).fetchall()
        assert anon_grants == []


async def test_message_count_and_updated_at_follow_messages(make_user):
    u = await make_user()
    conv = (await u.client.table("conversations").insert({"title": "t"}).execute()).data[0]
    msgs = [
        {
            "id": str(uuid.uuid4()),
            "conversation_id": conv["id"],
            "role": "user",
            "content": f"m{i}",
            "created_at": f"2030-01-01T00:00:0{i}Z",
        }
        for i in range(5)
    ]
    await u.client.table("messages").insert(msgs, default_to_null=False).execute()
    c = (
        await u.client.table("conversations")
        .select("message_count,updated_at")
        .eq("id", conv["id"])
        .single()
        .execute()
    ).data
    assert c["message_count"] == 5 and c["updated_at"].startswith("2030-01-01T00:00:04")
    await u.client.table("messages").delete().eq("id", msgs[0]["id"]).execute()
    c = (
        await u.client.table("conversations")
        .select("message_count")
        .eq("id", conv["id"])
        .single()
        .execute()
    ).data
    assert c["message_count"] == 4
    # a client-generated id makes a retried append idempotent
    r = (
        await u.client.table("messages")
        .upsert(msgs[1], ignore_duplicates=True, default_to_null=False)
        .execute()
    )
    assert r.data == []
    c = (
        await u.client.table("conversations")
        .select("message_count")
        .eq("id", conv["id"])
        .single()
        .execute()
    ).data
    assert c["message_count"] == 4


async def test_deleting_a_conversation_cascades(make_user, service):
    u = await make_user()
    conv = (await u.client.table("conversations").insert({"title": "t"}).execute()).data[0]
    await (
        u.client.table("messages")
        .insert({"conversation_id": conv["id"], "role": "user", "content": "x"})
        .execute()
    )
    await prove_upload(service, u.id, "a" * 64)
    doc = (
        await u.client.table("documents")
        .insert(
            {
                "conversation_id": conv["id"],
                "sha256": "a" * 64,
                "filename": "f.pdf",
                "file_type": "pdf",
            }
        )
        .execute()
    ).data[0]
    await u.client.table("conversations").delete().eq("id", conv["id"]).execute()
    assert (
        await service.table("messages").select("id").eq("conversation_id", conv["id"]).execute()
    ).data == []
    assert (await service.table("documents").select("id").eq("id", doc["id"]).execute()).data == []


async def test_same_bytes_once_per_scope(make_user, service):
    from postgrest.exceptions import APIError

    u = await make_user()
    await prove_upload(service, u.id, "b" * 64)
    row = {"sha256": "b" * 64, "filename": "f.pdf", "file_type": "pdf"}
    await u.client.table("documents").insert(row).execute()
    with pytest.raises(APIError) as e:
        await u.client.table("documents").insert(row).execute()
    assert e.value.code == "23505"
    conv = (await u.client.table("conversations").insert({"title": "t"}).execute()).data[0]
    await u.client.table("documents").insert({**row, "conversation_id": conv["id"]}).execute()


async def test_claim_ingest_job_skips_locked_and_reclaims_stale(make_user, service):
    u = await make_user()
    await prove_upload(service, u.id, "c" * 64)
    doc = (
        await u.client.table("documents")
        .insert({"sha256": "c" * 64, "filename": "f.pdf", "file_type": "pdf"})
        .execute()
    ).data[0]
    await u.client.table("ingest_jobs").insert({"document_id": doc["id"]}).execute()
    got = (await service.rpc("claim_ingest_job", {"worker": "w1"}).execute()).data
    mine = [j for j in got if j["document_id"] == doc["id"]]
    while got and not mine:  # other tests' jobs may be queued first
        got = (await service.rpc("claim_ingest_job", {"worker": "w1"}).execute()).data
        mine = [j for j in got if j["document_id"] == doc["id"]]
    assert mine and mine[0]["status"] == "running" and mine[0]["attempts"] == 1
    again = (
        await service.rpc("claim_ingest_job", {"worker": "w2", "stale_after": "1 hour"}).execute()
    ).data
    assert all(j["document_id"] != doc["id"] for j in again)
    stale = (
        await service.rpc(
            "claim_ingest_job", {"worker": "w3", "stale_after": "0 seconds"}
        ).execute()
    ).data
    assert stale and stale[0]["locked_by"] == "w3"
